import sys
import tempfile
from unittest import mock

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl.testing import parameterized

from keras_featreg import data

# (name, label key, number of classes, number of train classes)
DATASETS = [
    ("caltech_birds2011", "label", 200, 100),
    ("cars196", "label", 196, 98),
    ("stanford_online_products", "class_id", 22634, 11318),
]
GREY = 150  # every mock image is this constant RGB value
MEAN, STD = (0.485, 0.456, 0.406), np.array([0.229, 0.224, 0.225])


def fake_records(label_key, num_classes, num_train):
    """Encoded constant JPEGs of varied sizes around the class boundary."""
    labels = [0, 1, num_train - 1, num_train - 1, num_train, num_classes - 1]
    records = {"image": [], label_key: []}
    for i, label in enumerate(labels):
        image = np.full((20 + 7 * i, 33 - 2 * i, 3), GREY, np.uint8)
        records["image"].append(tf.io.encode_jpeg(image).numpy())
        records[label_key].append(label)
    return records


def mock_tfds(label_key, num_classes, num_train):
    """tfds mock that returns our records for `train+test`, undecoded."""
    records = fake_records(label_key, num_classes, num_train)

    def as_dataset(self, split, decoders=None, **kwargs):
        del kwargs
        assert str(split) == "train+test", split  # tfds splits are merged
        assert isinstance(decoders["image"], tfds.decode.SkipDecoding)
        return tf.data.Dataset.from_tensor_slices(
            {
                "image": records["image"],
                label_key: np.array(records[label_key], np.int64),
            }
        )

    return tfds.testing.mock_data(as_dataset_fn=as_dataset)


class RetrievalDatasetTest(parameterized.TestCase):
    @parameterized.parameters(*DATASETS)
    def test_zero_shot_splits(self, name, label_key, num_classes, num_train):
        with mock_tfds(label_key, num_classes, num_train):
            train = data.load_retrieval_dataset(name, "train", image_size=32)
            test = data.load_retrieval_dataset(name, "test", image_size=32)
            train = list(train.as_numpy_iterator())
            test = list(test.as_numpy_iterator())
        np.testing.assert_array_equal(
            [y for _, y in train], [0, 1, num_train - 1, num_train - 1]
        )
        np.testing.assert_array_equal(
            [y for _, y in test], [num_train, num_classes - 1]
        )
        for image, label in train + test:
            self.assertEqual(image.shape, (32, 32, 3))
            self.assertEqual(image.dtype, np.float32)
            self.assertEqual(label.dtype, np.int64)

    @parameterized.parameters(
        ("torch", (GREY / 255 - np.array(MEAN)) / STD, 1 / 255 / min(STD)),
        ("caffe", GREY - np.array([103.939, 116.779, 123.68]), 1.0),
        ("tf", np.full(3, GREY / 127.5 - 1), 1 / 127.5),
        ("none", np.full(3, float(GREY)), 1.0),
    )
    def test_normalization(self, normalization, expected, per_grey_level):
        # Constant images: any crop and flip keep the normalized colour.
        with mock_tfds("label", 196, 98):
            for split, training in [("train", True), ("test", False)]:
                dataset = data.load_retrieval_dataset(
                    "cars",
                    split,
                    24,
                    training=training,
                    normalization=normalization,
                )
                for image, _ in dataset.as_numpy_iterator():
                    self.assertEqual(image.shape, (24, 24, 3))
                    # JPEG may shift the grey by a level or two.
                    np.testing.assert_allclose(
                        image.reshape(-1, 3),
                        np.broadcast_to(expected, (24 * 24, 3)),
                        atol=2 * per_grey_level,
                    )

    def test_load_encoded(self):
        with mock_tfds("class_id", 22634, 11318):
            images, labels = data.load_retrieval_encoded("sop", "test")
        self.assertEqual(images.dtype, object)
        self.assertIsInstance(images[0], bytes)
        self.assertEqual(labels.dtype, np.int64)
        np.testing.assert_array_equal(labels, [11318, 22633])
        decoded = tf.io.decode_jpeg(images[1])
        self.assertEqual(decoded.shape[-1], 3)

    def test_encoded_train_half_feeds_pk_batches(self):
        with mock_tfds("label", 200, 100):
            images, labels = data.load_retrieval_encoded("cub", "train")
        np.testing.assert_array_equal(labels, [0, 1, 99, 99])
        preprocess = data.retrieval_preprocess(32, training=True)
        dataset = data.pk_dataset(
            images, labels, p=2, k=2, seed=0, preprocess=preprocess
        )
        for x, y in dataset.take(2):
            self.assertEqual(x.shape, (4, 32, 32, 3))
            self.assertEqual(x.dtype, tf.float32)
            self.assertLen(np.unique(y), 2)

    def test_stock_tfds_mock(self):
        # tfds' own random mock (encoded random images, random class ids).
        seen = 0
        with tfds.testing.mock_data(num_examples=6):
            for split in ("train", "test"):
                dataset = data.load_retrieval_dataset("sop", split, 16)
                for image, label in dataset.as_numpy_iterator():
                    self.assertEqual(image.shape, (16, 16, 3))
                    self.assertEqual(label < 11318, split == "train")
                    seen += 1
        self.assertEqual(seen, 6)  # each example in exactly one half

    def test_absent_data_says_how_to_prepare_it(self):
        with tempfile.TemporaryDirectory() as data_dir:
            with self.assertRaises(FileNotFoundError) as context:
                data.load_retrieval_dataset("cars196", data_dir=data_dir)
            message = str(context.exception)
            self.assertIn(f"tfds build cars196 --data_dir={data_dir}", message)
            self.assertIn(f"data_dir='{data_dir}'", message)
            self.assertIn("--manual_dir", message)
            with self.assertRaisesRegex(FileNotFoundError, "caltech_birds"):
                data.load_retrieval_encoded("cub", "test", data_dir=data_dir)

    def test_dataset_info_and_aliases(self):
        for alias, name in [
            ("cub", "caltech_birds2011"),
            ("cub200", "caltech_birds2011"),
            ("cars", "cars196"),
            ("sop", "stanford_online_products"),
        ]:
            self.assertIs(
                data.get_retrieval_dataset_info(alias),
                data.RETRIEVAL_DATASETS[name],
            )
        for name, label_key, num_classes, num_train in DATASETS:
            info = data.RETRIEVAL_DATASETS[name]
            self.assertEqual(
                (
                    info.tfds_name,
                    info.label_key,
                    info.num_classes,
                    info.num_train_classes,
                ),
                (name, label_key, num_classes, num_train),
            )
            # The label key and class count are those of the tfds builder.
            features = tfds.builder(name).info.features
            self.assertEqual(features[label_key].num_classes, num_classes)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: name='mnist'"):
            data.load_retrieval_dataset("mnist")
        with self.assertRaisesRegex(ValueError, "Received: split='val'"):
            data.load_retrieval_dataset("cub", split="val")
        with self.assertRaisesRegex(ValueError, "Received: image_size=0"):
            data.load_retrieval_dataset("cub", image_size=0)
        with self.assertRaisesRegex(TypeError, "Received: download='no'"):
            data.load_retrieval_encoded("cub", download="no")

    def test_missing_tfds_names_the_extra(self):
        with mock.patch.dict(sys.modules, {"tensorflow_datasets": None}):
            with self.assertRaisesRegex(ImportError, r"keras-featreg\[data\]"):
                data.load_retrieval_encoded("cub")
