import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.ops import pair_selection
from keras_featreg.ops import pairwise
from tests import helpers as testing


def numpy_distances(x, y):
    x, y = np.float64(x), np.float64(y)
    return np.array([[np.sqrt(np.sum((xi - yj) ** 2)) for yj in y] for xi in x])


class LabelTest(testing.TestCase):
    def test_label_masks(self):
        labels = np.array([2, 0, 2, 1])
        positive, negative = pairwise.label_masks(labels)
        for i in range(4):
            for j in range(4):
                same = labels[i] == labels[j]
                self.assertEqual(bool(positive[i, j]), same and i != j)
                self.assertEqual(bool(negative[i, j]), not same)
        with_diagonal, _ = pairwise.label_masks(labels, remove_diagonal=False)
        self.assertAllEqual(tf.linalg.diag_part(with_diagonal), [True] * 4)

    def test_as_labels(self):
        self.assertAllEqual(
            pairwise.as_labels(np.array([[1], [2], [1]]), batch_size=3),
            [1, 2, 1],
        )
        floats = pairwise.as_labels(np.array([1.0, -2.0], "float32"))
        self.assertEqual(floats.dtype, tf.float32)
        with self.assertRaisesRegex(ValueError, r"Received: labels.shape=\(3"):
            pairwise.as_labels(np.arange(3), batch_size=4)
        with self.assertRaisesRegex(ValueError, "Received: y=0.5"):
            pairwise.as_labels(np.array([0.5]), name="y")
        # float16 holds integers exactly up to 2048 only.
        with self.assertRaisesRegex(ValueError, "Received: labels=4096.0"):
            pairwise.as_labels(np.array([4096], "float16"))
        with self.assertRaisesRegex(TypeError, "Received: labels.dtype=bool"):
            pairwise.as_labels(np.array([True, False]))

    def test_as_labeled_batch(self):
        labels, x = pairwise.as_labeled_batch(
            np.array([0, 1]), np.ones((2, 2, 3), "float16")
        )
        self.assertEqual(x.shape, (2, 6))
        self.assertEqual(x.dtype, tf.float32)
        with self.assertRaisesRegex(ValueError, r"Received: labels.shape=\(3"):
            pairwise.as_labeled_batch(np.arange(3), np.ones((2, 2)))


class DistanceTest(testing.TestCase):
    @parameterized.parameters(False, True)
    def test_pairwise_distances(self, squared):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(6, 4)).astype("float32")
        y = rng.normal(size=(3, 4)).astype("float32")
        power = 2 if squared else 1
        self.assertAllClose(
            pairwise.pairwise_distances(x, squared=squared),
            numpy_distances(x, x) ** power,
            atol=1e-5,
        )
        self.assertAllClose(
            pairwise.pairwise_distances(x, y, squared=squared),
            numpy_distances(x, y) ** power,
            atol=1e-5,
        )

    def test_collapsed_batch_is_accurate(self):
        # Points within 1e-3 of a common unit-scale center: the plain Gram
        # form has errors ~ the distances themselves in float32.
        rng = np.random.default_rng(1)
        x = np.ones((64, 128)) + 1e-3 * rng.normal(size=(64, 128))
        x = x.astype("float32")
        expected = numpy_distances(x, x)
        self.assertAllClose(
            pairwise.pairwise_distances(x), expected, rtol=1e-4, atol=1e-7
        )

    def test_scale_extremes(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(4, 3))
        for scale in (1e-30, 1e30):
            value = pairwise.pairwise_distances((scale * x).astype("float32"))
            self.assertAllClose(
                value / scale, numpy_distances(x, x), rtol=1e-5, atol=1e-6
            )

    def test_gradient(self):
        # d/dx_i sum_j D_ij = sum_j (x_i - x_j) / D_ij (both orders: x2),
        # and duplicate rows (D = 0) contribute 0.
        x = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 4.0], [1.0, 0.0]])
        variable = tf.Variable(x.astype("float32"))
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(pairwise.pairwise_distances(variable))
        gradient = tape.gradient(total, variable)
        expected = np.zeros_like(x)
        for i in range(4):
            for j in range(4):
                d = np.linalg.norm(x[i] - x[j])
                if d > 0:
                    expected[i] += 2 * (x[i] - x[j]) / d
        self.assertAllClose(gradient, expected, atol=1e-5)

    def test_safe_sqrt(self):
        x = tf.Variable([0.0, 4.0, -1e-9])
        with tf.GradientTape() as tape:
            value = pairwise.safe_sqrt(x)
        self.assertAllClose(value, [0.0, 2.0, 0.0])
        self.assertAllClose(tape.gradient(value, x), [0.0, 0.25, 0.0])


class SimilarityTest(testing.TestCase):
    def test_pairwise_similarities(self):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(5, 3)).astype("float32")
        y = rng.normal(size=(2, 3)).astype("float32")
        self.assertAllClose(pairwise.pairwise_similarities(x), x @ x.T)
        unit_x = x / np.linalg.norm(x, axis=1, keepdims=True)
        unit_y = y / np.linalg.norm(y, axis=1, keepdims=True)
        self.assertAllClose(
            pairwise.pairwise_similarities(x, y, normalize=True),
            unit_x @ unit_y.T,
        )

    def test_l2_normalize_extremes(self):
        x = tf.Variable([[0.0, 0.0], [3e30, 4e30], [3.0, 4.0]])
        with tf.GradientTape() as tape:
            value = pairwise.l2_normalize(x)
            total = tf.reduce_sum(value)
        self.assertAllClose(value, [[0, 0], [0.6, 0.8], [0.6, 0.8]])
        self.assertTrue(np.all(np.isfinite(tape.gradient(total, x))))


class MaskedReductionTest(testing.TestCase):
    def test_masked_max_min(self):
        x = tf.Variable([[1.0, 5.0, 3.0], [2.0, 2.0, 2.0]])
        mask = tf.constant([[True, False, True], [False, False, False]])
        with tf.GradientTape() as tape:
            values, has_any = pairwise.masked_max(x, mask)
        self.assertAllClose(values, [3.0, 0.0])
        self.assertAllEqual(has_any, [True, False])
        self.assertAllClose(tape.gradient(values, x), [[0, 0, 1], [0, 0, 0]])
        values, _ = pairwise.masked_min(x, mask)
        self.assertAllClose(values, [1.0, 0.0])

    def test_logsumexp_forms(self):
        x = tf.Variable([[1.0, 2.0, 900.0], [3.0, -4.0, 0.0]])
        mask = tf.constant([[True, True, False], [False, False, False]])
        with tf.GradientTape(persistent=True) as tape:
            lse, has_any = pairwise.masked_logsumexp(x, mask)
            soft = pairwise.log1p_sum_exp(x, mask)
        self.assertAllClose(lse, [np.logaddexp(1.0, 2.0), 0.0])
        self.assertAllEqual(has_any, [True, False])
        self.assertAllClose(soft, [np.logaddexp.reduce([0.0, 1.0, 2.0]), 0.0])
        for value in (lse, soft):
            gradient = tape.gradient(value, x).numpy()
            self.assertTrue(np.all(np.isfinite(gradient)))
            self.assertAllClose(gradient[:, 2], [0.0, 0.0])
            self.assertAllClose(gradient[1], [0.0, 0.0, 0.0])
        # Huge masked-in entries stay finite: log(1 + e^1000) = 1000.
        big = pairwise.log1p_sum_exp([[1000.0, 1.0]], [[True, False]])
        self.assertAllClose(big, [1000.0])

    def test_pair_mean_per_anchor(self):
        values = np.arange(9, dtype="float32").reshape(3, 3)
        mask = np.array(
            [[False, True, True], [False, False, False], [True, False, False]]
        )
        out = pairwise.pair_mean_per_anchor(values, mask)
        self.assertAllClose(out, [3 * (1 + 2) / 3, 0.0, 3 * 6 / 3])
        self.assertAllClose(np.mean(out), np.mean(values[mask]))
        empty = pairwise.pair_mean_per_anchor(values, np.zeros((3, 3), bool))
        self.assertAllClose(empty, np.zeros(3))
        per_anchor = pairwise.pair_mean_per_anchor(
            np.array([1.0, 2.0, 3.0]), np.array([True, False, True])
        )
        self.assertAllClose(per_anchor, [1.5, 0.0, 4.5])

    def test_random_negative_mask(self):
        labels = np.array([0, 0, 1, 1, 1])
        mask = pair_selection.random_negative_mask(labels, seed=3).numpy()
        self.assertAllEqual(mask.sum(axis=1), np.ones(5))
        for a, n in np.argwhere(mask):
            self.assertNotEqual(labels[a], labels[n])
        same = pair_selection.random_negative_mask(labels, seed=3)
        self.assertAllEqual(mask, same)
        single = pair_selection.random_negative_mask(np.zeros(3, int), seed=3)
        self.assertAllEqual(single, np.zeros((3, 3), bool))


class LossCheckTest(testing.TestCase):
    """Issue 13.1: a clear error, never NaN or Inf, for a loss overflow."""

    def test_check_finite_loss(self):
        embeddings = tf.constant([[1e20, 0.0]])
        values = tf.constant([1.0, 2.0])
        self.assertIs(pairwise.check_finite_loss(values, embeddings), values)
        for bad in ([1.0, np.inf], [np.nan, 1.0], [3e38, 3e38]):
            with self.assertRaisesRegex(
                ValueError,
                r"overflows float32.*or compute the loss in float64\. "
                r"Received: embeddings with max \|value\|=1e\+20$",
            ):
                pairwise.check_finite_loss(tf.constant(bad), embeddings)

        @tf.function
        def graph(values):
            return pairwise.check_finite_loss(values, embeddings)

        self.assertAllClose(graph(values), values)
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "overflows float32"
        ):
            graph(tf.constant([np.inf, 1.0]))

    def test_infinite_embeddings_message(self):
        # What a float32 loss receives for float64 embeddings beyond float32.
        with self.assertRaisesRegex(
            ValueError, r"dtype.*Received: embeddings with 1 non-finite"
        ):
            pairwise.as_labeled_batch([0, 1], np.array([[np.inf], [0.0]]))
        with self.assertRaisesRegex(
            ValueError, "Received: embeddings with 2 non-finite entries$"
        ):
            pairwise.as_labeled_batch([0, 1], np.array([[np.inf], [np.nan]]))
