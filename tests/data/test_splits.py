import numpy as np
from absl.testing import parameterized

from keras_featreg.data import split_by_class
from keras_featreg.data import zero_shot_split


class SplitsTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        rng = np.random.default_rng(0)
        self.labels = rng.permutation(np.repeat(np.arange(10), 5))
        self.images = np.arange(50)[:, None] * np.ones((1, 3))

    def test_zero_shot_split_first_half_trains(self):
        (x_train, y_train), (x_test, y_test) = zero_shot_split(
            self.images, self.labels
        )
        np.testing.assert_array_equal(np.unique(y_train), [0, 1, 2, 3, 4])
        np.testing.assert_array_equal(np.unique(y_test), [5, 6, 7, 8, 9])
        self.assertEqual(len(x_train) + len(x_test), 50)
        # Rows follow their labels, order preserved.
        rows = x_train[:, 0].astype(int)
        np.testing.assert_array_equal(self.labels[rows], y_train)
        self.assertTrue(np.all(np.diff(rows) > 0))
        rows = x_test[:, 0].astype(int)
        np.testing.assert_array_equal(self.labels[rows], y_test)

    def test_zero_shot_split_num_train_classes_and_odd_ids(self):
        labels = self.labels * 10 + 3  # ids 3, 13, ..., 93
        (_, y_train), (_, y_test) = zero_shot_split(
            self.images, labels, num_train_classes=3
        )
        np.testing.assert_array_equal(np.unique(y_train), [3, 13, 23])
        self.assertEqual(np.intersect1d(y_train, y_test).size, 0)
        self.assertEqual(np.unique(y_test).size, 7)

    def test_split_by_class(self):
        (x_train, y_train), (x_test, y_test) = split_by_class(
            self.images, self.labels, [9, 0]
        )
        self.assertEqual(set(y_train.tolist()), {0, 9})
        self.assertEqual(set(y_test.tolist()), set(range(1, 9)))
        self.assertEqual(x_train.shape, (10, 3))
        self.assertEqual(x_test.shape, (40, 3))

    @parameterized.named_parameters(
        ("all_classes", {"num_train_classes": 10}, "num_train_classes=10"),
        ("no_class", {"num_train_classes": 0}, "num_train_classes=0"),
        ("length", {"images": "short"}, r"len\(images\)=49"),
        ("labels_2d", {"labels": "2d"}, r"labels.shape=\(5, 10\)"),
    )
    def test_invalid_zero_shot_split(self, kwargs, message):
        images = self.images[:49] if kwargs.pop("images", None) else self.images
        labels = self.labels
        if kwargs.pop("labels", None):
            labels = labels.reshape(5, 10)
        with self.assertRaisesRegex(ValueError, "Received: " + message):
            zero_shot_split(images, labels, **kwargs)

    @parameterized.parameters(([42], r"\[42\]"), ([], r"\[\]"))
    def test_invalid_train_classes(self, train_classes, received):
        with self.assertRaisesRegex(
            ValueError, "Received: train_classes=" + received
        ):
            split_by_class(self.images, self.labels, train_classes)
        with self.assertRaisesRegex(ValueError, "at least one class"):
            split_by_class(self.images, self.labels, range(10))

    def test_single_class_names_the_labels(self):
        # One class cannot be split: say so, not "num_train_classes=0", an
        # argument the caller did not pass.
        labels = np.full(6, 3)
        with self.assertRaisesRegex(
            ValueError,
            r"at least 2 distinct classes.*Received: np.unique\(labels\)=\[3\]",
        ):
            zero_shot_split(self.images[:6], labels)
        with self.assertRaisesRegex(ValueError, "one class cannot be split"):
            zero_shot_split(self.images[:6], labels, num_train_classes=1)
