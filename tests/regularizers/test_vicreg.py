import math
import warnings

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import ops
from keras_featreg import regularizers
from tests import helpers as testing


def numpy_vicreg_terms(x, gamma=1.0, epsilon=1e-4):
    """VICReg's variance and covariance terms, one view, in float64 loops."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n, d = x.shape
    mean = [sum(x[i, j] for i in range(n)) / n for j in range(d)]
    denominator = max(n - 1, 1)

    def cov(j, k):
        return (
            sum((x[i, j] - mean[j]) * (x[i, k] - mean[k]) for i in range(n))
            / denominator
        )

    stds = [math.sqrt(cov(j, j) + epsilon) for j in range(d)]
    variance = sum(max(gamma - s, 0.0) for s in stds) / d
    covariance = (
        sum(cov(j, k) ** 2 for j in range(d) for k in range(d) if j != k) / d
    )
    return variance, covariance


def numpy_vicreg(x, variance_weight=25.0, covariance_weight=1.0, **kwargs):
    variance, covariance = numpy_vicreg_terms(x, **kwargs)
    return variance_weight * variance + covariance_weight * covariance


class VICRegRegularizerTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(regularizers.VICRegRegularizer())
        revived = self.run_class_serialization_test(
            regularizers.VICRegRegularizer(
                variance_weight=10.0, covariance_weight=0.5, gamma=2.0
            )
        )
        self.assertEqual(revived.gamma, 2.0)
        self.assertEqual(revived.covariance_weight, 0.5)

    @parameterized.parameters(
        ((16, 4), 25.0, 1.0, 1.0, 1e-4),
        ((5, 9), 10.0, 2.0, 0.5, 1e-3),  # b < d: the Gram route
        ((6, 2, 2), 1.0, 0.0, 1.0, 1e-4),  # rank 3 is flattened
    )
    def test_correctness(self, shape, v_weight, c_weight, gamma, epsilon):
        rng = np.random.default_rng(seed=0)
        x = rng.normal(scale=0.7, size=shape).astype("float32")
        regularizer = regularizers.VICRegRegularizer(
            v_weight, c_weight, gamma=gamma, epsilon=epsilon
        )
        variance, covariance = numpy_vicreg_terms(x, gamma, epsilon)
        stats = regularizer.stats(x)
        self.assertAllClose(stats["variance"], variance, rtol=1e-5)
        self.assertAllClose(stats["covariance"], covariance, rtol=1e-5)
        expected = v_weight * variance + c_weight * covariance
        self.assertAllClose(stats["penalty"], expected, rtol=1e-5)
        self.assertAllClose(regularizer.penalty(x), expected, rtol=1e-5)
        self.assertEqual(stats["penalty"].dtype, tf.float32)

    def test_call_undoes_the_keras_batch_division(self):
        rng = np.random.default_rng(seed=1)
        regularizer = regularizers.VICRegRegularizer()
        for batch_size in (2, 7, 32):
            x = rng.normal(size=(batch_size, 5)).astype("float32")
            self.assertAllClose(
                regularizer(x), numpy_vicreg(x) * batch_size, rtol=1e-5
            )

    @parameterized.named_parameters(
        ("collapsed", np.tile([[1.0, 2.0, -3.0]], (6, 1))),
        ("all_zero", np.zeros((6, 3))),
        ("two_rows", np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 5.0]])),
        ("fewer_rows_than_dims", np.arange(12.0).reshape(3, 4)),
        ("duplicate_rows", np.repeat(np.arange(6.0).reshape(2, 3), 3, axis=0)),
        ("tiny", 1e-20 * np.arange(1.0, 19.0).reshape(6, 3)),
        ("huge", 1e8 * np.arange(1.0, 19.0).reshape(6, 3)),
    )
    def test_degenerate_batches_are_finite(self, x):
        regularizer = regularizers.VICRegRegularizer()
        variable = tf.Variable(x.astype("float32"))
        with tf.GradientTape() as tape:
            value = regularizer.penalty(variable)
        gradient = tape.gradient(value, variable)
        self.assertTrue(np.isfinite(value.numpy()))
        self.assertTrue(np.all(np.isfinite(gradient.numpy())))
        self.assertAllClose(value, numpy_vicreg(x), rtol=1e-4)

    @parameterized.parameters("float16", "bfloat16")
    def test_half_precision(self, dtype):
        x = tf.constant(
            np.random.default_rng(seed=2).normal(size=(8, 4)), dtype=dtype
        )
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = regularizers.VICRegRegularizer().penalty(x)
        gradient = tape.gradient(value, x)
        self.assertEqual(value.dtype, tf.float32)
        self.assertTrue(np.all(np.isfinite(tf.cast(gradient, "float32"))))
        self.assertAllClose(
            value, numpy_vicreg(tf.cast(x, "float64").numpy()), rtol=1e-4
        )

    def test_invalid_arguments(self):
        cls = regularizers.VICRegRegularizer
        with self.assertRaisesRegex(ValueError, "Received: variance_weight=-1"):
            cls(variance_weight=-1)
        with self.assertRaisesRegex(
            ValueError, "Received: covariance_weight=-0.5"
        ):
            cls(covariance_weight=-0.5)
        with self.assertRaisesRegex(ValueError, "Received: gamma=0"):
            cls(gamma=0)
        with self.assertRaisesRegex(ValueError, "Received: epsilon=-1e-05"):
            cls(epsilon=-1e-5)
        with self.assertRaisesRegex(TypeError, "Received: gamma=None"):
            cls(gamma=None)

    def test_one_row_batch_adds_nothing_and_warns_once(self):
        regularizer = regularizers.VICRegRegularizer()
        with self.assertWarnsRegex(UserWarning, "at least 2 rows"):
            value = regularizer.penalty(np.ones((1, 3), "float32"))
        self.assertEqual(float(value), 0.0)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no second warning
            self.assertEqual(float(regularizer(np.ones((1, 3), "f4"))), 0.0)
        # The ops function, called directly, still refuses the batch.
        with self.assertRaisesRegex(ValueError, "at least 2 rows"):
            ops.vicreg_variance(np.ones((1, 3)))
