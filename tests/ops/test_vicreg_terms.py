"""ops.vicreg_terms: the one function every VICReg quantity sums."""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import losses
from keras_featreg import ops
from keras_featreg import regularizers
from tests import helpers as testing
from tests.ops.common import degenerate_batches
from tests.ops.common import numpy_covariance
from tests.ops.common import numpy_variance
from tests.ops.common import value_and_gradients


def views(shape, dtype="float64"):
    z_a = degenerate_batches(*shape, seed=0)["random"].astype(dtype)
    z_b = degenerate_batches(*shape, seed=1)["random"].astype(dtype)
    return z_a, z_b


class VICRegTermsTest(testing.TestCase):
    @parameterized.parameters((3, 7), (9, 4), (2, 6))
    def test_terms_match_numpy(self, batch_size, dim):
        z_a, z_b = views((batch_size, dim))
        terms = ops.vicreg_terms(z_a, z_b, gamma=0.8, epsilon=1e-3)
        self.assertIsInstance(terms, ops.VICRegTerms)
        self.assertAllClose(
            terms.invariance, np.mean((z_a - z_b) ** 2, axis=1), rtol=1e-12
        )
        self.assertAllClose(
            terms.variance,
            (numpy_variance(z_a, 0.8, 1e-3) + numpy_variance(z_b, 0.8, 1e-3))
            / 2,
            rtol=1e-10,
        )
        self.assertAllClose(
            terms.covariance,
            numpy_covariance(z_a) + numpy_covariance(z_b),
            rtol=1e-10,
        )

    def test_every_vicreg_place_is_a_weighted_sum_of_it(self):
        z_a, z_b = views((8, 5), "float32")
        terms = ops.vicreg_terms(z_a, z_b)
        weights = (2.0, 3.0, 0.5)
        # The op: the mean invariance plus the batch terms.
        self.assertAllClose(
            ops.vicreg_loss(z_a, z_b, *weights),
            weights[0] * np.mean(terms.invariance)
            + weights[1] * terms.variance
            + weights[2] * terms.covariance,
            rtol=1e-6,
        )
        # The loss: per row, bit for bit.
        per_row = losses.VICRegLoss(*weights, reduction=None)(z_a, z_b)
        self.assertAllEqual(
            per_row,
            weights[0] * terms.invariance
            + (weights[1] * terms.variance + weights[2] * terms.covariance),
        )
        # The regularizer: one view.
        one_view = ops.vicreg_terms(z_a)
        self.assertAllEqual(one_view.invariance, np.zeros(8))
        self.assertAllEqual(one_view.variance, ops.vicreg_variance(z_a))
        self.assertAllEqual(one_view.covariance, ops.vicreg_covariance(z_a))
        regularizer = regularizers.VICRegRegularizer(3.0, 0.5)
        self.assertAllClose(
            regularizer.penalty(z_a),
            3.0 * one_view.variance + 0.5 * one_view.covariance,
            rtol=1e-6,
        )

    def test_skipped_terms_are_zero_with_zero_gradients(self):
        z_a, z_b = views((6, 5))
        skip = ("invariance", "variance", "covariance")
        for names in (skip, skip[1:], skip[:1]):

            def total(a, b, names=names):
                terms = ops.vicreg_terms(a, b, skip=names)
                return (
                    tf.reduce_sum(terms.invariance)
                    + terms.variance
                    + terms.covariance
                )

            value, grads = value_and_gradients(total, z_a, z_b)
            terms = ops.vicreg_terms(z_a, z_b, skip=names)
            for name in names:
                term = np.asarray(getattr(terms, name))
                self.assertAllEqual(term, np.zeros_like(term))
            self.assertTrue(np.isfinite(value.numpy()))
            for grad in grads:
                self.assertIsNotNone(grad)
        value, grads = value_and_gradients(
            lambda a, b: ops.vicreg_loss(a, b, 0, 0, 0), 1e30 * z_a, z_b
        )
        self.assertEqual(float(value), 0.0)
        for grad in grads:
            self.assertAllEqual(grad, np.zeros((6, 5)))

    def test_dynamic_batch_of_one_row(self):
        spec = tf.TensorSpec((None, 4), tf.float32)
        function = tf.function(
            lambda a, b: tuple(ops.vicreg_terms(a, b)),
            input_signature=(spec, spec),
        )
        invariance, variance, covariance = function(
            np.ones((1, 4), "float32"), np.zeros((1, 4), "float32")
        )
        self.assertAllClose(invariance, [1.0])
        self.assertEqual(float(variance), 0.0)
        self.assertEqual(float(covariance), 0.0)

    def test_invalid_arguments(self):
        z_a, z_b = views((4, 3))
        with self.assertRaisesRegex(ValueError, "Received: skip='variance'$"):
            ops.vicreg_terms(z_a, z_b, skip="variance")
        with self.assertRaisesRegex(ValueError, r"Received: skip=\('std',\)"):
            ops.vicreg_terms(z_a, z_b, skip=("std",))
        with self.assertRaisesRegex(TypeError, "Received: gather=1$"):
            ops.vicreg_terms(z_a, z_b, gather=1)
        with self.assertRaisesRegex(ValueError, "Received: gamma=0.0$"):
            ops.vicreg_terms(z_a, z_b, gamma=0)
        with self.assertRaisesRegex(ValueError, r"z_a.shape=\(1, 3\)$"):
            ops.vicreg_terms(z_a[:1], z_b[:1])
        with self.assertRaisesRegex(ValueError, "same shape"):
            ops.vicreg_terms(z_a, z_b[:, :2])


class AsViewPairTest(testing.TestCase):
    def test_casts_and_checks(self):
        z_a, z_b = ops.as_view_pair(
            np.ones((3, 2), "float64"), np.ones((3, 2), "float16")
        )
        self.assertEqual((z_a.dtype, z_b.dtype), (tf.float64, tf.float64))
        with self.assertRaisesRegex(
            ValueError, r"Received: z_a.shape=\(3, 2\), z_b.shape=\(4, 2\)$"
        ):
            ops.as_view_pair(np.ones((3, 2)), np.ones((4, 2)))
        with self.assertRaisesRegex(ValueError, r"z_b.shape=\(1, 2\)$"):
            ops.as_view_pair(np.ones((3, 2)), np.ones((1, 2)), 2)
