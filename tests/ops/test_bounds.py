import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from keras_featreg import ops
from tests import helpers as testing
from tests.ops.common import numpy_mean_singular_value
from tests.ops.common import unit_rows


def paper_bounds(b, d):
    """Eq. 2-3 of the SVMax paper for b >= d; appendix B.2 for b < d."""
    if b >= d:
        lower = math.sqrt(b) / d  # s*(E) / d, s*(E) = sqrt(b)   (Eq. 2)
        # ||E||_* / d <= sqrt(b d / max(b, d)) ||E||_F / d      (Eq. 3)
        upper = math.sqrt(b * d / max(b, d)) * math.sqrt(b) / d
    else:
        lower = math.sqrt(b) / b
        upper = math.sqrt(b * d / max(b, d)) * math.sqrt(b) / b
    return lower, upper


def random_unit_rows(b, d, seed):
    return unit_rows(np.random.default_rng(seed).normal(size=(b, d)))


class SVMaxBoundsTest(testing.TestCase):
    @parameterized.parameters(
        (144, 128), (128, 128), (512, 512), (2048, 8192), (72, 128), (1, 5),
        (5, 1), (1, 1), (7, 3),
    )  # fmt: skip
    def test_matches_the_paper(self, b, d):
        lower, upper = ops.svmax_bounds(b, d)
        self.assertIsInstance(lower, float)
        self.assertIsInstance(upper, float)
        self.assertAllClose((lower, upper), paper_bounds(b, d), rtol=1e-12)

    def test_paper_examples(self):
        # b = d = 512 in the paper's BN experiment: [L, U] = [0.044, 1].
        lower, upper = ops.svmax_bounds(512, 512)
        self.assertAllClose((lower, upper), (0.044, 1.0), atol=5e-4)
        self.assertEqual(
            ops.svmax_bounds(144, 128), (0.09375, math.sqrt(1.125))
        )

    def test_tensor_arguments(self):
        for b, d in ((144, 128), (72, 128)):
            lower, upper = ops.svmax_bounds(tf.constant(b), tf.constant(d))
            self.assertEqual(lower.dtype, tf.float32)
            self.assertAllClose((lower, upper), paper_bounds(b, d), rtol=1e-6)
        lower, upper = ops.svmax_bounds(np.int64(72), 128)
        self.assertIsInstance(lower, float)
        self.assertAllClose((lower, upper), paper_bounds(72, 128))

    def test_inside_tf_function_with_unknown_batch(self):
        @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32)])
        def bounds(x):
            return ops.svmax_bounds(tf.shape(x)[0], tf.shape(x)[1])

        for b in (2, 6, 20):
            self.assertAllClose(
                bounds(tf.zeros((b, 6))), paper_bounds(b, 6), rtol=1e-6
            )

    @settings(max_examples=12, deadline=None)
    @given(
        b=st.integers(1, 24),
        d=st.integers(1, 24),
        seed=st.integers(0, 2**16),
    )
    def test_random_unit_rows_lie_within_bounds(self, b, d, seed):
        x = random_unit_rows(b, d, seed).astype("float32")
        lower, upper = ops.svmax_bounds(b, d)
        s_mu = float(ops.mean_singular_value(x))
        self.assertGreaterEqual(s_mu, lower * (1 - 1e-6))
        self.assertLessEqual(s_mu, upper * (1 + 1e-6))

    @parameterized.parameters((12, 4), (6, 6), (3, 8))
    def test_random_unit_rows_within_bounds_each_shape_class(self, b, d):
        # b > d, b = d and b < d, on a few fixed seeds.
        lower, upper = ops.svmax_bounds(b, d)
        for seed in range(5):
            x = random_unit_rows(b, d, seed)
            s_mu = float(ops.mean_singular_value(x))
            self.assertAllClose(s_mu, numpy_mean_singular_value(x))
            self.assertTrue(lower <= s_mu <= upper, (lower, s_mu, upper))

    @parameterized.parameters((12, 4), (6, 6), (3, 8), (1, 4), (4, 1))
    def test_collapsed_batch_reaches_lower_bound(self, b, d):
        row = unit_rows(np.random.default_rng(0).normal(size=(1, d)))
        x = np.repeat(row, b, axis=0).astype("float32")
        lower, _ = ops.svmax_bounds(b, d)
        self.assertAllClose(ops.mean_singular_value(x), lower, rtol=1e-6)

    @parameterized.parameters((12, 4), (6, 6), (3, 8), (1, 4), (4, 1))
    def test_uniform_batch_reaches_upper_bound(self, b, d):
        rng = np.random.default_rng(0)
        if b <= d:  # orthonormal rows
            x = np.linalg.qr(rng.normal(size=(d, b)))[0].T
        else:  # a tight frame: copies of an orthonormal basis, rotated
            basis = np.linalg.qr(rng.normal(size=(d, d)))[0]
            x = np.tile(basis, (b // d, 1))
        np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0)
        _, upper = ops.svmax_bounds(b, d)
        self.assertAllClose(
            ops.mean_singular_value(x.astype("float32")), upper, rtol=1e-6
        )

    @parameterized.named_parameters(
        ("zero", 0, 4, ValueError, "Received: batch_size=0$"),
        ("negative_dim", 4, -2, ValueError, "Received: dim=-2$"),
        ("float", 2.5, 4, TypeError, "Received: batch_size=2.5$"),
        ("bool", True, 4, TypeError, "Received: batch_size=True$"),
        ("string", 4, "8", TypeError, "Received: dim='8'$"),
        ("none", None, 4, TypeError, "Received: batch_size=None$"),
    )
    def test_invalid_arguments(self, b, d, error, message):
        with self.assertRaisesRegex(error, message):
            ops.svmax_bounds(b, d)

    @parameterized.named_parameters(
        ("zero", tf.constant(0), tf.constant(5), ValueError,
         "Received: batch_size=0$"),
        ("negative_dim", tf.constant(4), tf.constant(-2, tf.int64),
         ValueError, "Received: dim=-2$"),
        ("numpy_zero", np.int64(4), tf.constant(0), ValueError,
         "Received: dim=0$"),
        ("float_tensor", tf.constant(2.5), 4, TypeError,
         "Received: batch_size.dtype=float32$"),
        ("vector", tf.constant([3, 4]), 4, ValueError,
         r"Received: batch_size.shape=\(2,\)$"),
    )  # fmt: skip
    def test_invalid_tensor_arguments(self, b, d, error, message):
        # Issue 13.3: tensors of 0 used to give [nan, nan].
        with self.assertRaisesRegex(error, message):
            ops.svmax_bounds(b, d)

    def test_invalid_tensor_arguments_in_a_graph(self):
        # Known when traced: the same ValueError; known only at run time:
        # an assertion.
        @tf.function
        def constant_batch():
            return ops.svmax_bounds(tf.constant(0), tf.constant(5))

        with self.assertRaisesRegex(ValueError, "Received: batch_size=0$"):
            constant_batch()

        @tf.function(input_signature=[tf.TensorSpec((None, 6), tf.float32)])
        def bounds(x):
            return ops.svmax_bounds(tf.shape(x)[0] - 2, tf.shape(x)[1])

        self.assertAllClose(bounds(tf.zeros((8, 6))), paper_bounds(6, 6))
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "`batch_size` must be a positive"
        ):
            bounds(tf.zeros((2, 6)))
