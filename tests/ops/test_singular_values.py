import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import ops
from keras_featreg.ops import singular_values
from tests import helpers as testing
from tests.ops.common import degenerate_batches
from tests.ops.common import numerical_gradient
from tests.ops.common import numpy_mean_singular_value
from tests.ops.common import numpy_mean_singular_value_gradient
from tests.ops.common import relative_error
from tests.ops.common import value_and_gradients

# b > d, b = d, b < d, far from square both ways (float32 Gram route),
# b = 1 and d = 1.
SHAPES = ((6, 4), (4, 4), (3, 6), (24, 4), (4, 24), (1, 5), (5, 1))
KINDS = (
    "random",
    "collapsed",
    "nearly_collapsed",
    "rank_1",
    "all_zero",
    "duplicate_rows",
    "huge",
    "tiny",
)
# Relative tolerances against NumPy float64 on the same (rounded) inputs.
VALUE_RTOL = {tf.float32: 1e-5, tf.float64: 1e-10}
GRAD_RTOL = {tf.float32: 1e-4, tf.float64: 1e-8}


def cases(dtypes=(tf.float32, tf.float64)):
    return [
        {
            "testcase_name": f"{kind}_{b}x{d}_{dtype.name}",
            "kind": kind,
            "shape": (b, d),
            "dtype": dtype,
        }
        for kind in KINDS
        for b, d in SHAPES
        for dtype in dtypes
    ]


def with_spectrum(batch_size, dim, singular, seed=0):
    """x = Q_1 diag(singular) Q_2^T with random orthonormal Q_1, Q_2."""
    rng = np.random.default_rng(seed)
    k = min(batch_size, dim)
    left, _ = np.linalg.qr(rng.normal(size=(batch_size, k)))
    right, _ = np.linalg.qr(rng.normal(size=(dim, k)))
    return left @ np.diag(singular) @ right.T


def route_of(x):
    matrix = ops.as_matrix(tf.convert_to_tensor(x))
    route = singular_values._decompose(matrix)[-1]
    return singular_values.ROUTES[int(route)]


class MeanSingularValueTest(testing.TestCase):
    @parameterized.named_parameters(cases())
    def test_value_and_gradient_match_numpy(self, kind, shape, dtype):
        x = tf.constant(degenerate_batches(*shape)[kind], dtype)
        value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
        self.assertEqual(value.dtype, dtype)
        expected = numpy_mean_singular_value(x.numpy())
        self.assertAllClose(value, expected, rtol=VALUE_RTOL[dtype], atol=0)
        self.assertAllClose(
            ops.mean_singular_value(x),
            value,
            rtol=0,
            atol=0,  # forward only
        )
        # The gradient is U V^T / k where s_mu is differentiable (full
        # rank); on rank-deficient batches it is the minimum-norm
        # subgradient U_r V_r^T / k. Finite either way.
        self.assertTrue(np.all(np.isfinite(grad.numpy())))
        expected = numpy_mean_singular_value_gradient(x.numpy())
        if kind == "all_zero":
            self.assertAllEqual(grad, np.zeros(shape))
        else:
            self.assertLess(
                relative_error(grad, expected), GRAD_RTOL[dtype], kind
            )

    @parameterized.parameters((5, 3), (3, 5), (4, 4), (7, 2), (2, 7))
    def test_gradient_matches_finite_differences(self, batch_size, dim):
        for kind in ("random", "nearly_collapsed"):
            x = degenerate_batches(batch_size, dim, seed=3)[kind]
            _, (grad,) = value_and_gradients(ops.mean_singular_value, x)
            numpy_fd = numerical_gradient(numpy_mean_singular_value, x)
            self.assertLess(relative_error(grad, numpy_fd), 1e-6, kind)
            # The custom gradient is the derivative of the op's own value.
            ours_fd = numerical_gradient(
                lambda a: float(ops.mean_singular_value(a)), x
            )
            # (The Gram route's value carries ~1e-11 relative noise on a
            # nearly collapsed batch: 1e-5 of noise in a difference quotient.)
            self.assertLess(relative_error(grad, ours_fd), 1e-4, kind)

    @parameterized.product(
        dtype=(tf.float16, tf.bfloat16),
        kind=(
            "random",
            "collapsed",
            "nearly_collapsed",
            "rank_1",
            "all_zero",
            "duplicate_rows",
        ),
        shape=((6, 4), (4, 4), (3, 6)),
    )
    def test_half_precision(self, dtype, kind, shape):
        x = tf.constant(degenerate_batches(*shape)[kind], dtype)
        value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
        self.assertEqual(value.dtype, tf.float32)
        self.assertEqual(grad.dtype, dtype)
        expected = numpy_mean_singular_value(
            x.numpy().astype(np.float64)  # the rounded values
        )
        self.assertAllClose(value, expected, rtol=1e-5, atol=0)
        self.assertTrue(np.all(np.isfinite(grad.numpy().astype(np.float64))))

    @parameterized.parameters(
        (tf.float16, 1e4), (tf.float16, 1e-3), (tf.bfloat16, 1e30)
    )
    def test_half_precision_extreme_scales(self, dtype, scale):
        x = tf.constant(scale * degenerate_batches(5, 3)["random"], dtype)
        value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
        expected = numpy_mean_singular_value(x.numpy().astype(np.float64))
        self.assertAllClose(value, expected, rtol=1e-5, atol=0)
        self.assertTrue(np.all(np.isfinite(grad.numpy().astype(np.float64))))

    @parameterized.named_parameters(
        ("float32_gram", (40, 8), 3.0, tf.float32, "float32 Gram", 1e-5),
        # k >= SVD_MIN_SIZE, near square: one float32 SVD with vectors.
        ("float32_svd", (300, 280), 100.0, tf.float32, "float32 SVD", 1e-4),
        (
            "float32_svd_limit",
            (260, 256),
            1.5e3,
            tf.float32,
            "float32 SVD",
            1e-4,
        ),
        # Beyond its U V^T condition limit: the float64 Gram.
        (
            "float32_svd_fallback",
            (260, 256),
            2e4,
            tf.float32,
            "float64 Gram",
            1e-6,
        ),
        (
            "float64_gram_square",
            (16, 16),
            100.0,
            tf.float32,
            "float64 Gram",
            1e-6,
        ),
        ("float64_gram_limit", (24, 20), 5e4, tf.float32, "float64 Gram", 1e-6),
        ("float64_gram_tall", (40, 8), 1e3, tf.float32, "float64 Gram", 1e-6),
        ("float64_gram_wide", (8, 40), 1e3, tf.float32, "float64 Gram", 1e-6),
        (
            "deflated_tall",
            (40, 8),
            1e6,
            tf.float32,
            "float64 Gram, deflated",
            1e-6,
        ),
        (
            "deflated_square",
            (16, 16),
            1e7,
            tf.float32,
            "float64 Gram, deflated",
            1e-6,
        ),
        (
            "deflated_wide",
            (8, 40),
            1e7,
            tf.float32,
            "float64 Gram, deflated",
            1e-6,
        ),
        # Singular values spread over 11 decades: the deflated Gram's own
        # condition is out of reach, one float64 SVD resolves them (U V^T
        # of a square matrix moves by ~1e-16 / (s_k + s_k-1) ~ 1e-6 here,
        # in NumPy's SVD too).
        ("float64_svd", (16, 16), 1e11, tf.float64, "float64 SVD", 1e-6),
    )
    def test_routes(self, shape, condition, dtype, route, grad_rtol):
        singular = np.geomspace(1.0, 1.0 / condition, min(shape))
        x = tf.constant(with_spectrum(*shape, singular), dtype)
        self.assertEqual(route_of(x), route)
        value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
        x64 = x.numpy().astype(np.float64)
        self.assertAllClose(
            value, numpy_mean_singular_value(x64), rtol=1e-5, atol=0
        )
        expected = numpy_mean_singular_value_gradient(x64, rtol=1e-15)
        self.assertLess(relative_error(grad, expected), grad_rtol)

    @parameterized.parameters((144, 128), (128, 144), (512, 64), (16, 16))
    def test_nearly_collapsed_batches_are_exact(self, batch_size, dim):
        # Unit rows of one shared row plus noise: cond(x) from 1e5 to 1e9.
        # The deflated route takes the small singular pairs' directions
        # from the deflated matrix y; taken from x instead, they carried
        # s_max times their rounding (gradient errors up to 5: noise 1e-7).
        rng = np.random.default_rng(0)
        base = rng.normal(size=(1, dim))
        for noise in (1e-3, 1e-5, 1e-7):
            x = base + noise * rng.normal(size=(batch_size, dim))
            x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
            value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
            x64 = x.astype(np.float64)
            self.assertAllClose(
                value, numpy_mean_singular_value(x64), rtol=1e-6, atol=0
            )
            expected = numpy_mean_singular_value_gradient(x64, rtol=1e-15)
            self.assertLess(relative_error(grad, expected), 1e-6, noise)

    @parameterized.parameters((256, 256), (300, 280), (280, 300))
    def test_large_collapsing_batches_take_one_float32_svd(self, b, d):
        # Route 6: the power-iterated direction in float64, one float32 SVD
        # of the rest (y) instead of the reference's two SVDs of x.
        rng = np.random.default_rng(1)
        base = rng.normal(size=(1, d))
        for noise in (1e-3, 1e-6):
            x = base + noise * rng.normal(size=(b, d))
            x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
            self.assertEqual(route_of(x), "float32 SVD, deflated")
            value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
            x64 = x.astype(np.float64)
            self.assertAllClose(
                value, numpy_mean_singular_value(x64), rtol=1e-6, atol=0
            )
            expected = numpy_mean_singular_value_gradient(x64, rtol=1e-15)
            self.assertLess(relative_error(grad, expected), 1e-4, noise)

    def test_large_collapsing_rank_deficient_batch_falls_back(self):
        # Two equal rows: y has a second (genuine) zero singular value,
        # which route 6 does not accept; route 2 drops it exactly.
        rng = np.random.default_rng(2)
        x = rng.normal(size=(1, 256)) + 1e-3 * rng.normal(size=(256, 256))
        x[1] = x[0]
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype("float32")
        self.assertEqual(route_of(x), "float64 Gram, deflated")
        value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
        x64 = x.astype(np.float64)
        self.assertAllClose(
            value, numpy_mean_singular_value(x64), rtol=1e-6, atol=0
        )
        expected = numpy_mean_singular_value_gradient(x64, rtol=1e-12)
        self.assertLess(relative_error(grad, expected), 1e-4)

    def test_float64_routes(self):
        x = degenerate_batches(12, 4)
        self.assertEqual(route_of(x["random"]), "float64 Gram")
        # Exactly rank 1: the deflated Gram finds only rounding residuals.
        self.assertEqual(route_of(x["rank_1"]), "float64 Gram, deflated")
        self.assertEqual(
            route_of(x["random"].astype("float32")), "float32 Gram"
        )

    def test_subnormal_batch_keeps_its_gradient(self):
        # TF's CPU kernels flush subnormals to zero; the rescaling reads
        # them from their bits, so the gradient (scale invariant) is exact.
        x = degenerate_batches(6, 4)["random"]
        tiny = tf.constant(x * 1e-40, tf.float32)
        self.assertGreater(np.count_nonzero(tiny.numpy()), 20)
        _, (grad,) = value_and_gradients(ops.mean_singular_value, tiny)
        expected = numpy_mean_singular_value_gradient(
            tiny.numpy().astype(np.float64)
        )
        self.assertLess(relative_error(grad, expected), 1e-4)

    def test_rank_3_input_is_flattened(self):
        x = degenerate_batches(6, 12)["random"]
        self.assertAllClose(
            ops.mean_singular_value(x.reshape(6, 3, 4)),
            numpy_mean_singular_value(x),
            rtol=1e-10,
            atol=0,
        )

    def test_homogeneous_with_scale_invariant_gradient(self):
        x = degenerate_batches(8, 5)["nearly_collapsed"].astype("float32")
        value, (grad,) = value_and_gradients(ops.mean_singular_value, x)
        # Powers of two: scaling x rounds nothing, so nothing changes.
        for scale in (2.0**-100, 2.0**-30, 2.0**30, 2.0**100):
            scaled_value, (scaled_grad,) = value_and_gradients(
                ops.mean_singular_value, (scale * x).astype("float32")
            )
            self.assertAllClose(scaled_value / scale, value, rtol=1e-7)
            self.assertAllClose(scaled_grad, grad, rtol=0, atol=1e-7)

    @parameterized.parameters(
        tf.TensorSpec((None, 6), tf.float32),
        tf.TensorSpec((None, None), tf.float32),
        tf.TensorSpec((None, None), tf.float64),
    )
    def test_tf_function_with_unknown_shape(self, spec):
        @tf.function(input_signature=(spec,))
        def value_and_grad(x):
            return value_and_gradients(ops.mean_singular_value, x)

        # One trace serves every route: far from square (Gram), near square
        # (SVD), wide, ill-conditioned and collapsed batches.
        for batch_size in (30, 6, 5, 2, 1):
            batches = degenerate_batches(batch_size, 6)
            for kind in ("random", "nearly_collapsed", "collapsed"):
                x = batches[kind].astype(spec.dtype.as_numpy_dtype)
                value, (grad,) = value_and_grad(x)
                expected = numpy_mean_singular_value(x)
                self.assertAllClose(value, expected, rtol=1e-5, atol=0)
                expected = numpy_mean_singular_value_gradient(x)
                self.assertLess(relative_error(grad, expected), 1e-4)
        self.assertLen(value_and_grad._list_all_concrete_functions(), 1)

    @parameterized.parameters((600, 256), (256, 600))
    def test_static_large_far_from_square_shape_traces(self, b, d):
        # k >= SVD_MIN_SIZE but far from square: routes 5 and 6 cannot fire
        # and their (empty) slots must not reach the traced gradient.
        x = degenerate_batches(b, d)["random"].astype("float32")

        @tf.function(input_signature=(tf.TensorSpec((b, d), tf.float32),))
        def value_and_grad(x):
            return value_and_gradients(ops.mean_singular_value, x)

        value, (grad,) = value_and_grad(x)
        self.assertAllClose(
            value, numpy_mean_singular_value(x), rtol=1e-5, atol=0
        )
        expected = numpy_mean_singular_value_gradient(x)
        self.assertLess(relative_error(grad, expected), 1e-4)

    def test_graph_mode(self):
        x = degenerate_batches(9, 4)["random"].astype("float32")
        with tf.Graph().as_default():
            placeholder = tf.compat.v1.placeholder(tf.float32, (None, 4))
            value = ops.mean_singular_value(placeholder)
            (grad,) = tf.gradients(value, placeholder)
            with tf.compat.v1.Session() as session:
                value, grad = session.run(
                    [value, grad], feed_dict={placeholder: x}
                )
                bad = x.copy()
                bad[0, 0] = np.nan
                with self.assertRaisesRegex(
                    tf.errors.InvalidArgumentError, "must not contain NaN"
                ):
                    session.run(value_op(placeholder), {placeholder: bad})
        self.assertAllClose(value, numpy_mean_singular_value(x), rtol=1e-5)
        expected = numpy_mean_singular_value_gradient(x)
        self.assertLess(relative_error(grad, expected), 1e-4)

    def test_nan_inside_tf_function_raises(self):
        function = tf.function(ops.mean_singular_value)
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "must not contain NaN or Inf"
        ):
            function(tf.constant([[1.0, np.inf], [0.0, 1.0]]))

    @parameterized.named_parameters(
        ("rank_1", np.ones(3), ValueError, r"Received: x.shape=\(3,\)"),
        ("scalar", 1.0, ValueError, r"Received: x.shape=\(\)"),
        (
            "zero_rows",
            np.zeros((0, 3)),
            ValueError,
            r"Received: x.shape=\(0, 3\)",
        ),
        (
            "zero_features",
            np.zeros((3, 0)),
            ValueError,
            r"Received: x.shape=\(3, 0\)",
        ),
        (
            "nan",
            [[1.0, np.nan], [0.0, 1.0]],
            ValueError,
            "Received: x with 1 non-finite entries$",
        ),
        (
            "inf",
            [[1.0, -np.inf], [np.inf, 1.0]],
            ValueError,
            "Received: x with 2 non-finite entries$",
        ),
        (
            "integer",
            np.ones((3, 2), np.int32),
            TypeError,
            "Received: x.dtype=int32$",
        ),
    )
    def test_invalid_input(self, x, error, message):
        with self.assertRaisesRegex(error, message):
            ops.mean_singular_value(x)
        with self.assertRaisesRegex(error, message):
            ops.reference_mean_singular_value(x)

    def test_reference_matches_numpy(self):
        for shape in ((6, 4), (4, 6), (5, 5)):
            x = degenerate_batches(*shape)["random"].astype("float32")
            value, (grad,) = value_and_gradients(
                ops.reference_mean_singular_value, x
            )
            expected = numpy_mean_singular_value(x)
            self.assertAllClose(value, expected, rtol=1e-5, atol=0)
            expected = numpy_mean_singular_value_gradient(x)
            self.assertLess(relative_error(grad, expected), 1e-4)


def value_op(x):
    return ops.mean_singular_value(x)
