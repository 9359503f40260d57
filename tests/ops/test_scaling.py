"""Exact power-of-two rescaling, subnormal inputs included (issue: TF's CPU
kernels flush subnormal floats to zero whenever a float op reads them)."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import ops
from keras_featreg import regularizers
from keras_featreg.ops.scaling import rescale
from tests import helpers as testing
from tests.ops.common import degenerate_batches

# (dtype, magnitude): normal, huge, tiny-normal and subnormal batches.
MAGNITUDES = (
    (np.float32, 1.0),
    (np.float32, 3e30),
    (np.float32, 1e-30),
    (np.float32, 1e-40),
    (np.float64, 1.0),
    (np.float64, 1e-200),
    (np.float64, 1e-310),
)


class RescaleTest(testing.TestCase):
    @parameterized.parameters(*MAGNITUDES)
    def test_exact_power_of_two(self, dtype, magnitude):
        x = (degenerate_batches(5, 4)["random"] * magnitude).astype(dtype)
        scaled, scale = rescale(tf.constant(x))
        scaled = scaled.numpy().astype(np.float64)
        # Largest entry in [1, 2) (one power of two below max|x|) ...
        self.assertGreaterEqual(np.abs(scaled).max(), 1.0)
        self.assertLess(np.abs(scaled).max(), 2.0)
        # ... and every entry x / 2^e exactly, the subnormal ones included
        # (compared as float64 multiples of the same power of two).
        exponent = np.floor(np.log2(np.abs(x.astype(np.float64)).max()))
        expected = np.ldexp(x.astype(np.float64), -int(exponent))
        self.assertAllEqual(scaled, expected)
        if magnitude > 1e-30:
            self.assertEqual(float(scale), np.ldexp(1.0, int(exponent)))

    def test_rows(self):
        x = np.array([[3.0, -1.0], [0.0, 0.0], [1e-40, 2e-40]], np.float32)
        scaled, scale = rescale(tf.constant(x), axis=1)
        self.assertEqual(scale.shape, (3, 1))
        self.assertAllEqual(scaled[0], [1.5, -0.5])
        self.assertAllEqual(scaled[1], [0.0, 0.0])
        ratio = scaled[2].numpy()
        self.assertAllClose(ratio[1] / ratio[0], 2.0, rtol=1e-3)
        self.assertGreaterEqual(np.abs(ratio).max(), 1.0)

    def test_gradient_is_that_of_the_scaling(self):
        x = tf.constant([[1.0, -6.0], [3.0, 2.0]])
        with tf.GradientTape() as tape:
            tape.watch(x)
            scaled, scale = rescale(x)
            total = tf.reduce_sum(scaled * [[1.0, 2.0], [3.0, 4.0]])
        self.assertEqual(float(scale), 4.0)
        self.assertAllClose(tape.gradient(total, x), [[0.25, 0.5], [0.75, 1.0]])


class SubnormalBatchTest(testing.TestCase):
    def test_l2_normalize_reads_subnormal_rows(self):
        x = degenerate_batches(6, 4)["random"]
        tiny = (x * 1e-40).astype(np.float32)
        expected = x / np.linalg.norm(x, axis=1, keepdims=True)
        # Subnormal inputs carry fewer significant bits: ~1e-5 relative.
        self.assertAllClose(ops.l2_normalize(tiny), expected, atol=1e-4)

    def test_bounded_svmax_penalty_of_a_subnormal_batch(self):
        # Before: the rows were flushed to zero, s_mu = 0 and the penalty
        # was the maximal one although the normalized batch is spread.
        x = degenerate_batches(8, 4)["random"]
        regularizer = regularizers.SVMaxRegularizer(factor=1.0, bounded=True)
        expected = float(regularizer(tf.constant(x, tf.float32)))
        tiny = tf.constant(x * 1e-40, tf.float32)
        self.assertAllClose(float(regularizer(tiny)), expected, rtol=1e-3)
        s_mu = ops.mean_singular_value(ops.l2_normalize(tiny))
        normalized = x / np.linalg.norm(x, axis=1, keepdims=True)
        self.assertAllClose(
            s_mu, np.linalg.svd(normalized, compute_uv=False).mean(), rtol=1e-4
        )
