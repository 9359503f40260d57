"""Scale-safe distances and dot products (issue 13.1).

`tests/ops/test_pairwise.py` tests `pairwise_distances` and
`pairwise_similarities` on ordinary inputs (they moved to
`keras_featreg.ops.distances`, and are still importable from
`keras_featreg.ops.pairwise`).
"""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.ops import distances
from keras_featreg.ops import pairwise
from tests import helpers as testing


def numpy_distances(x, y):
    x, y = np.float64(x), np.float64(y)
    return np.sqrt(np.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1))


class ScaleSafetyTest(testing.TestCase):
    def test_old_home_still_works(self):
        self.assertIs(pairwise.pairwise_distances, distances.pairwise_distances)
        self.assertIs(pairwise.safe_sqrt, distances.safe_sqrt)
        self.assertIs(
            pairwise.pairwise_similarities, distances.pairwise_similarities
        )

    def test_huge_batch_distances(self):
        # 64 rows of positive entries ~1e37: their sum (the batch mean)
        # overflows float32, the distances (~1e37) do not.
        rng = np.random.default_rng(4)
        x = 1e37 * rng.uniform(1.0, 3.0, size=(64, 4))
        variable = tf.Variable(x.astype("float32"))
        with tf.GradientTape() as tape:
            value = distances.pairwise_distances(variable)
            total = tf.reduce_sum(value)
        expected = numpy_distances(np.float64(variable.numpy()), x)
        self.assertAllClose(value / 1e37, expected / 1e37, atol=1e-5)
        self.assertTrue(np.all(np.isfinite(tape.gradient(total, variable))))

    @parameterized.parameters(1.0, 1e10, 1e-10)
    def test_scaled_gram(self, scale):
        rng = np.random.default_rng(5)
        x = (scale * rng.normal(size=(5, 3))).astype("float32")
        variable = tf.Variable(x)
        weights = rng.normal(size=(5, 5)).astype("float32")
        with tf.GradientTape() as tape:
            g, s = distances.scaled_gram(variable)
            # sum_ij w_ij x_i.x_j, from the scaled Gram matrix.
            total = tf.reduce_sum(distances.unscale(g * weights, s, 2))
        x64 = np.float64(x)
        self.assertAllClose(
            np.float64(g) * np.float64(s) ** 2 / scale**2,
            x64 @ x64.T / scale**2,
            rtol=1e-6,
        )
        # Its gradient: (W + W^T) x.
        self.assertAllClose(
            tape.gradient(total, variable) / scale,
            (weights + weights.T) @ x64 / scale,
            rtol=1e-5,
            atol=1e-5,
        )
        if scale == 1.0:  # power-of-two scaling: bit for bit
            self.assertAllEqual(
                distances.unscale(g, s, 2), tf.matmul(x, x, transpose_b=True)
            )

    def test_scaled_gram_tie_gradient(self):
        # Dot products ~1e40 (beyond float32) that tie exactly: a loss on
        # their difference, log(1 + exp(s_01 - s_02)) = log 2, has the
        # gradient (x_1 - x_2) / 2 on x_0 (and +-x_0 / 2 on x_1, x_2),
        # ~1e20: finite, although d(loss)/d(g) is ~1e40.
        x = np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]) * 1e20
        variable = tf.Variable(x.astype("float32"))
        with tf.GradientTape() as tape:
            g, s = distances.scaled_gram(variable)
            loss = tf.nn.softplus(distances.unscale(g[0, 1] - g[0, 2], s, 2))
        self.assertAllClose(loss, np.log(2.0))
        expected = np.array([[1.0, -1.0], [0.5, 0.5], [-0.5, -0.5]]) * 1e20
        expected[0] *= 0.5
        self.assertAllClose(
            tape.gradient(loss, variable) / 1e20, expected / 1e20, atol=1e-6
        )

    def test_scaled_distance_differences(self):
        # Squared distances ~1e40 (beyond float32) whose differences are
        # compared in the scaled space: finite and exact.
        x = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.01]]) * 1e20
        d, scale = distances.scaled_pairwise_distances(
            x.astype("float32"), squared=True
        )
        difference = distances.unscale(d[0, 2] - d[0, 1], scale, 2)
        self.assertAllClose(difference / 1e38, 201.0 / 100.0, rtol=1e-5)
        self.assertFalse(np.isfinite(distances.unscale(d, scale, 2)[0, 2]))

    def test_log1p_sum_exp_with_scale(self):
        # Logits scale^2 * x: -1e40 adds 0, a tie at 0 adds log(2).
        x = tf.constant([[-1.0, 0.0, 0.0]])
        scale = tf.constant(2.0**66)
        value = pairwise.log1p_sum_exp(x, tf.ones((1, 3), bool), scale=scale)
        self.assertAllClose(value, [np.log(3.0)])
