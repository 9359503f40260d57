import collections

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.data import PKSampler
from keras_featreg.data import dataset_to_arrays
from keras_featreg.data import pk_dataset


def indexed_images(num_classes=8, per_class=5):
    """Image i is filled with i, so every batch row tells its index."""
    labels = np.repeat(np.arange(num_classes), per_class)
    np.random.default_rng(0).shuffle(labels)
    images = np.arange(labels.size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(images, (labels.size, 4, 4)).copy(), labels


class PKDatasetTest(parameterized.TestCase):
    def check_batch(self, images, labels, batch_labels, p, k, labels_all):
        self.assertEqual(images.shape[0], p * k)
        indices = images[:, 0, 0].astype(int)
        np.testing.assert_array_equal(labels_all[indices], batch_labels)
        counts = collections.Counter(batch_labels.tolist())
        self.assertLen(counts, p)
        self.assertEqual(set(counts.values()), {k})

    @parameterized.parameters(False, True)
    def test_batches_match_the_sampler(self, with_preprocess):
        images, labels = indexed_images()
        preprocess = (lambda x: 2.0 * x) if with_preprocess else None
        dataset = pk_dataset(
            images, labels, p=3, k=2, seed=5, preprocess=preprocess
        )
        self.assertEqual(dataset.element_spec[0].shape, (6, 4, 4))
        self.assertEqual(dataset.element_spec[1].shape, (6,))
        sampler = PKSampler(labels, p=3, k=2, seed=5)
        steps = sampler.steps_per_epoch
        expected = np.concatenate([sampler.epoch(0), sampler.epoch(1)])
        batches = list(dataset.take(2 * steps).as_numpy_iterator())
        self.assertLen(batches, 2 * steps)
        for (x, y), indices in zip(batches, expected, strict=True):
            scale = 2.0 if with_preprocess else 1.0
            np.testing.assert_array_equal(x[:, 0, 0], scale * indices)
            np.testing.assert_array_equal(y, labels[indices])
            self.check_batch(x / scale, labels, y, 3, 2, labels)

    def test_single_epoch_has_known_cardinality(self):
        images, labels = indexed_images()
        dataset = pk_dataset(images, labels, p=4, k=2, seed=0, repeat=False)
        steps = PKSampler(labels, p=4, k=2).steps_per_epoch
        self.assertEqual(int(dataset.cardinality()), steps)
        self.assertLen(list(dataset), steps)

    def test_seeded_datasets_are_reproducible(self):
        images, labels = indexed_images()
        first = [y for _, y in pk_dataset(images, labels, 2, 2, seed=1).take(6)]
        again = [y for _, y in pk_dataset(images, labels, 2, 2, seed=1).take(6)]
        other = [y for _, y in pk_dataset(images, labels, 2, 2, seed=2).take(6)]
        np.testing.assert_array_equal(first, again)
        self.assertFalse(np.array_equal(first, other))

    def test_dataset_input_equals_array_input(self):
        images, labels = indexed_images()
        source = tf.data.Dataset.from_tensor_slices((images, labels))
        from_dataset = pk_dataset(source, None, p=2, k=3, seed=4, repeat=False)
        from_arrays = pk_dataset(images, labels, p=2, k=3, seed=4, repeat=False)
        for (x1, y1), (x2, y2) in zip(from_dataset, from_arrays, strict=True):
            np.testing.assert_array_equal(x1, x2)
            np.testing.assert_array_equal(y1, y2)

    def test_encoded_images_are_decoded_per_batch(self):
        labels = np.repeat(np.arange(4), 3)
        encoded = [
            tf.io.encode_png(tf.fill((5 + i, 7, 1), tf.constant(i, tf.uint8)))
            for i in range(labels.size)
        ]
        source = tf.data.Dataset.from_tensor_slices((encoded, labels))
        images, read_labels = dataset_to_arrays(source)
        self.assertEqual(images.dtype, object)
        self.assertIsInstance(images[0], bytes)
        np.testing.assert_array_equal(read_labels, labels)

        def decode(image):
            image = tf.io.decode_png(image, channels=1)
            return tf.image.resize_with_crop_or_pad(image, 4, 4)

        dataset = pk_dataset(images, labels, 2, 3, seed=0, preprocess=decode)
        for x, y in dataset.take(3):
            self.assertEqual(x.shape, (6, 4, 4, 1))
            values = x.numpy()[:, 2, 2, 0].astype(int)  # = the index
            np.testing.assert_array_equal(labels[values], y)

    def test_fit_smoke(self):
        images, labels = indexed_images(num_classes=6, per_class=4)
        images = images / images.max()
        sampler = PKSampler(labels, p=3, k=2)
        model = keras.Sequential(
            [keras.Input((4, 4)), keras.layers.Flatten(), keras.layers.Dense(6)]
        )
        model.compile(
            "sgd",
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        history = model.fit(
            pk_dataset(images, labels, p=3, k=2, seed=0),
            epochs=2,
            steps_per_epoch=sampler.steps_per_epoch,
            shuffle=False,  # the sampler shuffles
            verbose=0,
        )
        self.assertTrue(np.all(np.isfinite(history.history["loss"])))

    def test_invalid_arguments(self):
        images, labels = indexed_images()
        source = tf.data.Dataset.from_tensor_slices((images, labels))
        with self.assertRaisesRegex(ValueError, "Received: labels=ndarray"):
            pk_dataset(source, labels, p=2, k=2)
        with self.assertRaisesRegex(ValueError, "Received: labels=None"):
            pk_dataset(images, None, p=2, k=2)
        with self.assertRaisesRegex(ValueError, "Received: len\\(images\\)=39"):
            pk_dataset(images[:39], labels, p=2, k=2)
        with self.assertRaisesRegex(ValueError, "Received: p=9"):
            pk_dataset(images, labels, p=9, k=2)
        with self.assertRaisesRegex(ValueError, "Received: k=0"):
            pk_dataset(images, labels, p=2, k=0)
        with self.assertRaisesRegex(TypeError, "Received: repeat='yes'"):
            pk_dataset(images, labels, p=2, k=2, repeat="yes")
        with self.assertRaisesRegex(TypeError, "Received: preprocess=3"):
            pk_dataset(images, labels, p=2, k=2, preprocess=3)
        dicts = tf.data.Dataset.from_tensor_slices({"x": images, "y": labels})
        with self.assertRaisesRegex(TypeError, "element_spec"):
            dataset_to_arrays(dicts)
        ragged = tf.data.Dataset.from_generator(
            lambda: ((np.zeros((i + 1, 2)), 0) for i in range(2)),
            output_signature=(
                tf.TensorSpec((None, 2), tf.float64),
                tf.TensorSpec((), tf.int64),
            ),
        )
        with self.assertRaisesRegex(ValueError, "one shape"):
            dataset_to_arrays(ragged)
        with self.assertRaisesRegex(ValueError, "must not be empty"):
            dataset_to_arrays(source.take(0))
