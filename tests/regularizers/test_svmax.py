import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import regularizers
from tests import helpers as testing


def numpy_l2_normalize(x):
    """Rows divided by their L2 norm; zero rows stay zero (float64)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    norms = np.sqrt(np.sum(x**2, axis=1, keepdims=True))
    return np.where(norms > 0, x / np.where(norms > 0, norms, 1.0), 0.0)


def numpy_mean_singular_value(x):
    """Mean of the min(b, d) singular values (float64 SVD)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return np.mean(np.linalg.svd(x, compute_uv=False))


def numpy_svmax_bounds(batch_size, dim):
    """The paper's bounds for unit rows, with k = min(b, d) (appendix B.2)."""
    k = min(batch_size, dim)
    return math.sqrt(batch_size) / k, math.sqrt(batch_size / k)


def numpy_svmax(x, factor=1.0, bounded=True, normalize=True):
    """SVMax penalty: factor * exp((U - s) / (U - L)) or -factor * s."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    if normalize:
        x = numpy_l2_normalize(x)
    s_mu = numpy_mean_singular_value(x)
    if not bounded:
        return -factor * s_mu
    lower, upper = numpy_svmax_bounds(*x.shape)
    exponent = (upper - s_mu) / (upper - lower) if upper > lower else 0.0
    return factor * math.exp(exponent)


def value_and_gradient(regularizer, x):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = regularizer.penalty(x)
    return value, tape.gradient(value, x)


class SVMaxRegularizerTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(regularizers.SVMaxRegularizer())
        revived = self.run_class_serialization_test(
            regularizers.SVMaxRegularizer(
                factor=0.25, bounded=False, normalize=False
            )
        )
        self.assertEqual(
            revived.get_config(),
            {
                "factor": 0.25,
                "bounded": False,
                "normalize": False,
                "global_batch": True,
            },
        )

    @parameterized.product(
        bounded=(True, False),
        normalize=(True, False),
        shape=((16, 8), (5, 12), (6, 2, 3, 2)),
    )
    def test_correctness(self, bounded, normalize, shape):
        rng = np.random.default_rng(seed=0)
        x = rng.normal(size=shape).astype("float32")
        regularizer = regularizers.SVMaxRegularizer(
            factor=0.3, bounded=bounded, normalize=normalize
        )
        expected = numpy_svmax(x, 0.3, bounded, normalize)
        stats = regularizer.stats(x)
        self.assertAllClose(stats["penalty"], expected, rtol=1e-5)
        self.assertAllClose(regularizer.penalty(x), expected, rtol=1e-5)
        self.assertEqual(stats["penalty"].dtype, tf.float32)
        rows = numpy_l2_normalize(x) if normalize else x.reshape(shape[0], -1)
        self.assertAllClose(
            stats["mean_singular_value"],
            numpy_mean_singular_value(rows),
            rtol=1e-5,
        )

    def test_call_undoes_the_keras_batch_division(self):
        rng = np.random.default_rng(seed=1)
        for batch_size in (1, 7, 32):
            x = rng.normal(size=(batch_size, 6)).astype("float32")
            regularizer = regularizers.SVMaxRegularizer(factor=2.0)
            self.assertAllClose(
                regularizer(x),
                numpy_svmax(x, 2.0) * batch_size,
                rtol=1e-5,
            )

    def test_float64_input_returns_float32(self):
        x = np.random.default_rng(seed=2).normal(size=(9, 4))
        penalty = regularizers.SVMaxRegularizer().penalty(x)
        self.assertEqual(penalty.dtype, tf.float32)
        self.assertAllClose(penalty, numpy_svmax(x), rtol=1e-6)

    def test_bounded_range(self):
        # Collapsed unit rows: s_mu = L, penalty = e * factor; an identity
        # batch: s_mu = U, penalty = factor.
        regularizer = regularizers.SVMaxRegularizer(factor=0.5)
        collapsed = np.tile([[3.0, -1.0, 2.0, 0.5]], (8, 1)).astype("float32")
        self.assertAllClose(
            regularizer.penalty(collapsed), 0.5 * math.e, rtol=1e-5
        )
        uniform = np.tile(np.eye(4, dtype="float32"), (2, 1))
        self.assertAllClose(regularizer.penalty(uniform), 0.5, rtol=1e-5)

    @parameterized.named_parameters(
        ("collapsed", np.tile([[1.0, 2.0, -3.0]], (6, 1))),
        ("all_zero", np.zeros((6, 3))),
        ("some_zero_rows", np.concatenate([np.eye(3), np.zeros((3, 3))])),
        ("one_row", np.array([[1.0, 2.0, 3.0]])),
        ("one_dim", np.arange(1.0, 7.0).reshape(6, 1)),
        ("fewer_rows_than_dims", np.arange(12.0).reshape(2, 6)),
        ("duplicate_rows", np.repeat(np.arange(6.0).reshape(2, 3), 3, axis=0)),
        ("tiny", 1e-30 * np.arange(1.0, 19.0).reshape(6, 3)),
        ("huge", 1e30 * np.arange(1.0, 19.0).reshape(6, 3)),
    )
    def test_degenerate_batches_are_finite(self, x):
        x = x.astype("float32")
        for bounded in (True, False):
            for normalize in (True, False):
                regularizer = regularizers.SVMaxRegularizer(
                    bounded=bounded, normalize=normalize
                )
                value, gradient = value_and_gradient(regularizer, x)
                self.assertTrue(np.isfinite(value.numpy()))
                self.assertTrue(np.all(np.isfinite(gradient.numpy())))
                if normalize:
                    expected = numpy_svmax(x, 1.0, bounded, normalize)
                    self.assertAllClose(value, expected, rtol=1e-4, atol=1e-6)

    def test_single_singular_value_has_zero_exponent(self):
        # b = 1 or d = 1: U == L, the exponent is 0, the penalty is factor.
        regularizer = regularizers.SVMaxRegularizer(factor=0.7)
        self.assertAllClose(regularizer.penalty(np.ones((1, 5))), 0.7)
        self.assertAllClose(regularizer.penalty(np.ones((5, 1))), 0.7)

    @parameterized.parameters("float16", "bfloat16")
    def test_half_precision(self, dtype):
        x = np.random.default_rng(seed=3).normal(size=(12, 5))
        regularizer = regularizers.SVMaxRegularizer()
        value, gradient = value_and_gradient(
            regularizer, tf.constant(x, dtype=dtype)
        )
        self.assertEqual(value.dtype, tf.float32)
        self.assertTrue(np.all(np.isfinite(tf.cast(gradient, "float32"))))
        rounded = tf.cast(tf.constant(x, dtype=dtype), "float64").numpy()
        self.assertAllClose(value, numpy_svmax(rounded), rtol=1e-4)

    def test_gradient_matches_numpy_finite_differences(self):
        rng = np.random.default_rng(seed=4)
        x = rng.normal(size=(7, 3))
        regularizer = regularizers.SVMaxRegularizer(factor=1.0)
        _, gradient = value_and_gradient(regularizer, x.astype("float32"))
        numeric = np.zeros_like(x)
        step = 1e-6
        for i in range(x.shape[0]):
            for j in range(x.shape[1]):
                up, down = x.copy(), x.copy()
                up[i, j] += step
                down[i, j] -= step
                numeric[i, j] = (numpy_svmax(up) - numpy_svmax(down)) / (
                    2 * step
                )
        self.assertAllClose(gradient, numeric, atol=1e-4)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: factor=-1"):
            regularizers.SVMaxRegularizer(factor=-1)
        with self.assertRaisesRegex(ValueError, "Received: factor=inf"):
            regularizers.SVMaxRegularizer(factor=float("inf"))
        with self.assertRaisesRegex(TypeError, "Received: factor='big'"):
            regularizers.SVMaxRegularizer(factor="big")
        with self.assertRaisesRegex(TypeError, "Received: bounded=1"):
            regularizers.SVMaxRegularizer(bounded=1)
        with self.assertRaisesRegex(TypeError, "Received: normalize='yes'"):
            regularizers.SVMaxRegularizer(normalize="yes")

    def test_invalid_inputs(self):
        regularizer = regularizers.SVMaxRegularizer()
        with self.assertRaisesRegex(ValueError, "NaN"):
            regularizer.penalty(np.array([[1.0, np.nan], [0.0, 1.0]]))
        with self.assertRaisesRegex(ValueError, "rank >= 2"):
            regularizer.penalty(np.ones(3))
