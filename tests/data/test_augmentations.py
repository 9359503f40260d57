import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import layers
from keras_featreg.data import augmentations
from keras_featreg.data.augmentations import ColorJitter
from keras_featreg.data.augmentations import GaussianBlur
from keras_featreg.data.augmentations import Solarize
from keras_featreg.data.augmentations import two_view_dataset
from keras_featreg.data.augmentations import vicreg_augmenter
from keras_featreg.layers.random_apply import RandomApply
from tests import helpers as testing

LUMA = np.array([0.2989, 0.587, 0.114])


def random_images(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=shape).astype("uint8")


class AugmentationHomeTest(testing.TestCase):
    def test_old_names_are_the_layers(self):
        # The layers live in keras_featreg.layers; data.augmentations keeps
        # the old names as aliases.
        self.assertIs(ColorJitter, layers.ColorJitter)
        self.assertIs(GaussianBlur, layers.GaussianBlur)
        self.assertIs(Solarize, layers.Solarize)
        self.assertIs(augmentations.RandomApply, layers.RandomApply)
        self.assertIs(augmentations.RandomResizedCrop, layers.RandomResizedCrop)

    def test_layers_build_on_public_keras_only(self):
        for layer in (
            layers.ColorJitter(),
            layers.GaussianBlur(),
            layers.Solarize(),
            layers.RandomApply(layers.Solarize()),
            layers.RandomResizedCrop(4, 4),
        ):
            for base in type(layer).__mro__:
                self.assertFalse(
                    base.__module__.startswith(
                        "keras.src.layers.preprocessing"
                    ),
                    msg=f"{type(layer).__name__} subclasses {base}",
                )
            self.assertIsInstance(layer, keras.layers.Layer)
            # TensorFlow image ops: `compile(jit_compile="auto")` skips XLA.
            self.assertFalse(layer.supports_jit)
        model = keras.Sequential(
            [keras.Input((8, 8, 3)), vicreg_augmenter(8, seed=0)]
        )
        model.compile(optimizer="sgd", loss="mse", jit_compile="auto")
        self.assertFalse(model.jit_compile)


class VICRegAugmenterTest(testing.TestCase):
    @parameterized.parameters((1, 1.0, 0.0), (2, 0.1, 0.2))
    def test_view_rates(self, view, blur, solarize):
        augment = vicreg_augmenter(32, view=view, seed=0)
        rates = [
            (type(layer.layer).__name__, layer.rate)
            for layer in augment.layers
            if isinstance(layer, RandomApply)
        ]
        self.assertEqual(
            rates,
            [
                ("ColorJitter", 0.8),
                ("GaussianBlur", blur),
                ("Solarize", solarize),
            ],
        )
        names = [type(layer).__name__ for layer in augment.layers]
        self.assertEqual(names[:2], ["RandomResizedCrop", "RandomFlip"])
        self.assertIn("RandomGrayscale", names)

    @parameterized.parameters((28, 1, 28), (20, 3, (16, 12)))
    def test_shapes_and_normalization(self, size, channels, image_size):
        images = random_images((4, size, size, channels))
        augment = vicreg_augmenter(
            image_size, view=2, channels=channels, normalization="none"
        )
        outputs = np.asarray(augment(images))
        height, width = (
            image_size if isinstance(image_size, tuple) else (size, size)
        )
        self.assertEqual(outputs.shape, (4, height, width, channels))
        self.assertEqual(outputs.dtype, np.float32)
        self.assertTrue(np.all((outputs >= 0) & (outputs <= 255)))
        self.assertEqual(augment(images[0]).shape, (height, width, channels))

    @parameterized.parameters((3, "torch"), (1, "torch"), (3, "tf"))
    def test_normalization_layer(self, channels, normalization):
        images = random_images((2, 3, 3, channels)).astype("float32")
        layer = augmentations._normalization_layer(
            normalization, channels, (0, 255)
        )
        if normalization == "tf":
            expected = images / 127.5 - 1
        elif channels == 3:
            mean = np.array([0.485, 0.456, 0.406])
            std = np.array([0.229, 0.224, 0.225])
            expected = (images / 255 - mean) / std
        else:
            mean = LUMA @ np.array([0.485, 0.456, 0.406])
            std = LUMA @ np.array([0.229, 0.224, 0.225])
            expected = (images / 255 - mean) / std
        self.assertAllClose(layer(images), expected, atol=1e-5)

    def test_seeds(self):
        images = random_images((4, 16, 16, 3))
        a = vicreg_augmenter(16, view=1, seed=3)(images)
        b = vicreg_augmenter(16, view=1, seed=3)(images)
        c = vicreg_augmenter(16, view=2, seed=3)(images)
        self.assertAllClose(a, b)
        self.assertNotAllClose(a, c)
        seeds = [
            layer.seed for layer in vicreg_augmenter(16, seed=3).layers[:3]
        ]
        self.assertLen(set(seeds), 3)

    def test_config(self):
        augment = vicreg_augmenter(16, view=2, channels=1, seed=0)
        config = keras.saving.serialize_keras_object(augment)
        revived = keras.saving.deserialize_keras_object(config)
        self.assertEqual(
            [type(layer).__name__ for layer in revived.layers],
            [type(layer).__name__ for layer in augment.layers],
        )
        images = random_images((2, 16, 16, 1))
        self.assertAllClose(augment(images), revived(images))
        for layer in [
            ColorJitter(0.1, 0.2, 0.3, 0.4, (0, 1), seed=1),
            GaussianBlur((0.5, 1.0), seed=2),
            Solarize(100, (-1, 1)),
        ]:
            self.run_class_serialization_test(layer)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: view=3"):
            vicreg_augmenter(32, view=3)
        with self.assertRaisesRegex(ValueError, "Received: channels=2"):
            vicreg_augmenter(32, channels=2)
        with self.assertRaisesRegex(
            ValueError, "Received: normalization='caffe'"
        ):
            vicreg_augmenter(32, normalization="caffe")
        with self.assertRaisesRegex(ValueError, "Received: image_size=0"):
            vicreg_augmenter(0)
        with self.assertRaisesRegex(ValueError, "Received: blur_rate=2.0"):
            vicreg_augmenter(32, blur_rate=2.0)
        with self.assertRaisesRegex(ValueError, "Received: brightness=-1.0"):
            ColorJitter(brightness=-1.0)
        with self.assertRaisesRegex(ValueError, "Received: hue=0.6"):
            ColorJitter(hue=0.6)
        with self.assertRaisesRegex(
            ValueError, r"Received: sigma_range=\(2, 1\)"
        ):
            GaussianBlur(sigma_range=(2, 1))
        with self.assertRaisesRegex(ValueError, "Received: threshold=300"):
            Solarize(threshold=300)
        with self.assertRaisesRegex(
            ValueError, r"Received: value_range=\(1, 1\)"
        ):
            Solarize(value_range=(1, 1))


class TwoViewDatasetTest(testing.TestCase):
    def test_digits_pairs_and_fit(self):
        images = random_images((10, 8, 8))
        dataset = two_view_dataset(images, batch_size=4, image_size=8, seed=0)
        batches = list(dataset)
        self.assertLen(batches, 2)  # drop_remainder
        for view_a, view_b in batches:
            self.assertEqual(view_a.shape, (4, 8, 8, 1))
            self.assertEqual(view_b.shape, (4, 8, 8, 1))
            self.assertEqual(view_a.dtype, tf.float32)
            self.assertNotAllClose(view_a, view_b)
            self.assertTrue(np.all(np.isfinite(view_a)))
        # Smoke test: regress view b from view a.
        model = keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                keras.layers.Flatten(),
                keras.layers.Dense(64),
            ]
        )
        model.compile(optimizer="sgd", loss="mse")
        pairs = dataset.map(lambda a, b: (a, tf.reshape(b, (-1, 64))))
        history = model.fit(pairs, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))

    def test_rgb_and_options(self):
        images = random_images((5, 12, 12, 3))
        dataset = two_view_dataset(
            images,
            batch_size=2,
            image_size=8,
            shuffle=False,
            drop_remainder=False,
            normalization="none",
        )
        shapes = [tuple(a.shape) for a, _ in dataset]
        self.assertEqual(shapes, [(2, 8, 8, 3), (2, 8, 8, 3), (1, 8, 8, 3)])

    def test_images_of_varying_sizes(self):
        def varying_sizes():
            for size in (10, 14, 20):
                yield random_images((size, 30 - size, 3), seed=size)

        images = tf.data.Dataset.from_generator(
            varying_sizes,
            output_signature=tf.TensorSpec((None, None, 3), tf.uint8),
        )
        dataset = two_view_dataset(images, batch_size=3, image_size=8, seed=1)
        (view_a, view_b), *rest = list(dataset)
        self.assertEqual(rest, [])
        self.assertEqual(view_a.shape, (3, 8, 8, 3))
        self.assertNotAllClose(view_a, view_b)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: batch_size=0"):
            two_view_dataset(random_images((4, 8, 8)), 0, 8)
        with self.assertRaisesRegex(
            ValueError, r"Received: images.shape\[-1\]=2"
        ):
            two_view_dataset(random_images((4, 8, 8, 2)), 2, 8)
        with self.assertRaisesRegex(ValueError, "Received: images.shape"):
            two_view_dataset(random_images((4, 8)), 2, 8)

    def test_too_few_images_for_one_batch_is_an_error(self):
        # 10 images, batch_size=16, drop_remainder=True: no batch at all.
        # The pipeline still builds (same element_spec), but iterating it,
        # as `fit` does, fails with the reason instead of training on
        # nothing.
        message = "10 images.*drop_remainder=False.*Received: batch_size=16"
        dataset = two_view_dataset(random_images((10, 8, 8)), 16, 8)
        self.assertEqual(dataset.element_spec[0].shape, (16, 8, 8, 1))
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
            list(dataset)
        model = keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten()]
        )
        model.compile(optimizer="sgd", loss="mse")
        pairs = dataset.map(lambda a, b: (a, tf.reshape(b, (-1, 64))))
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
            model.fit(pairs, epochs=1, verbose=0)
        images = tf.data.Dataset.from_tensor_slices(random_images((3, 8, 8, 1)))
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "Received: batch_size=4"
        ):
            list(two_view_dataset(images, 4, 8))
        with self.assertRaisesRegex(
            ValueError, r"Received: images.cardinality\(\)=0"
        ):
            two_view_dataset(images.take(0), 1, 8, drop_remainder=False)

    def test_keep_the_partial_batch_when_asked(self):
        dataset = two_view_dataset(
            random_images((10, 8, 8)), 16, 8, drop_remainder=False, seed=0
        )
        shapes = [(tuple(a.shape), tuple(b.shape)) for a, b in dataset]
        self.assertEqual(shapes, [((10, 8, 8, 1), (10, 8, 8, 1))])
        # Exactly one full batch is fine with drop_remainder=True.
        dataset = two_view_dataset(random_images((16, 8, 8)), 16, 8, seed=0)
        self.assertLen(list(dataset), 1)
