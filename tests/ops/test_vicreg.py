import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import ops
from tests import helpers as testing
from tests.ops.common import degenerate_batches
from tests.ops.common import numerical_gradient
from tests.ops.common import numpy_covariance
from tests.ops.common import numpy_invariance
from tests.ops.common import numpy_variance
from tests.ops.common import numpy_vicreg_loss
from tests.ops.common import relative_error
from tests.ops.common import value_and_gradients

# b < d (b x b Gram route), b = d and b > d (d x d route), b = 2.
SHAPES = ((3, 7), (5, 5), (9, 4), (2, 6), (2, 1))
KINDS = (
    "random",
    "collapsed",
    "nearly_collapsed",
    "rank_1",
    "all_zero",
    "duplicate_rows",
    "tiny",
)
HALF_KINDS = KINDS[:-1]


def views(kind, shape, dtype=tf.float32):
    """Two views of one kind (z_b: the same kind from another seed)."""
    z_a = degenerate_batches(*shape, seed=0)[kind]
    z_b = degenerate_batches(*shape, seed=1)[kind]
    return tf.constant(z_a, dtype), tf.constant(z_b, dtype)


def rounded(*tensors):
    return [t.numpy().astype(np.float64) for t in tensors]


def cases(kinds=KINDS, dtypes=(tf.float32, tf.float64)):
    return [
        {
            "testcase_name": f"{kind}_{b}x{d}_{dtype.name}",
            "kind": kind,
            "shape": (b, d),
            "dtype": dtype,
        }
        for kind in kinds
        for b, d in SHAPES
        for dtype in dtypes
    ]


def tolerance(dtype):
    return {"rtol": 1e-5 if dtype != tf.float64 else 1e-10, "atol": 1e-30}


def vicreg_gradients(z_a, z_b):
    """The float64 gradient of the reference loss, written out by hand."""

    def view(z):
        n, d = z.shape
        zc = z - z.mean(axis=0)
        std = np.sqrt((zc**2).sum(axis=0) / (n - 1) + 1e-4)
        active = (1.0 - std > 0).astype(np.float64)
        variance = -active / std * zc / ((n - 1) * d)
        cov = zc.T @ zc / (n - 1)
        np.fill_diagonal(cov, 0.0)
        covariance = 4.0 * zc @ cov / (d * (n - 1))
        return 12.5 * variance + covariance

    n, d = z_a.shape
    invariance = 50.0 * (z_a - z_b) / (n * d)
    return invariance + view(z_a), -invariance + view(z_b)


class VICRegTest(testing.TestCase):
    @parameterized.named_parameters(cases())
    def test_values_and_gradients_match_numpy(self, kind, shape, dtype):
        z_a, z_b = views(kind, shape, dtype)
        a, b = rounded(z_a, z_b)
        tol = tolerance(dtype)
        for value, expected in (
            (ops.vicreg_invariance(z_a, z_b), numpy_invariance(a, b)),
            (ops.vicreg_variance(z_a), numpy_variance(a)),
            (ops.vicreg_covariance(z_a), numpy_covariance(a)),
            (ops.reference_vicreg_covariance(z_a), numpy_covariance(a)),
        ):
            self.assertEqual(value.dtype, dtype)
            self.assertAllClose(value, expected, **tol)
        value, grads = value_and_gradients(ops.vicreg_loss, z_a, z_b)
        self.assertAllClose(value, numpy_vicreg_loss(a, b), **tol)
        for grad, wanted in zip(grads, vicreg_gradients(a, b), strict=True):
            self.assertTrue(np.all(np.isfinite(grad.numpy())))
            if np.linalg.norm(wanted) == 0:
                self.assertAllClose(grad, wanted, rtol=0, atol=1e-30)
            else:
                limit = 1e-5 if dtype == tf.float32 else 1e-10
                self.assertLess(relative_error(grad, wanted), limit)

    @parameterized.parameters((3, 7), (5, 5), (9, 4), (2, 3))
    def test_gradients_match_finite_differences(self, batch_size, dim):
        for kind in ("random", "nearly_collapsed"):
            z_a, z_b = rounded(*views(kind, (batch_size, dim), tf.float64))
            _, (grad_a, grad_b) = value_and_gradients(ops.vicreg_loss, z_a, z_b)
            self.assertLess(
                relative_error(
                    grad_a,
                    numerical_gradient(
                        lambda a, z_b=z_b: numpy_vicreg_loss(a, z_b), z_a
                    ),
                ),
                1e-6,
            )
            self.assertLess(
                relative_error(
                    grad_b,
                    numerical_gradient(
                        lambda b, z_a=z_a: numpy_vicreg_loss(z_a, b), z_b
                    ),
                ),
                1e-6,
            )
            # Each term alone, both covariance routes included.
            for function, numpy_function in (
                (ops.vicreg_variance, numpy_variance),
                (ops.vicreg_covariance, numpy_covariance),
            ):
                _, (grad,) = value_and_gradients(function, z_a)
                expected = numerical_gradient(numpy_function, z_a)
                self.assertLess(relative_error(grad, expected), 1e-6)

    @parameterized.product(
        dtype=(tf.float16, tf.bfloat16),
        kind=HALF_KINDS,
        shape=((3, 7), (9, 4)),
    )
    def test_half_precision(self, dtype, kind, shape):
        z_a, z_b = views(kind, shape, dtype)
        value, grads = value_and_gradients(ops.vicreg_loss, z_a, z_b)
        self.assertEqual(value.dtype, tf.float32)
        self.assertAllClose(
            value, numpy_vicreg_loss(*rounded(z_a, z_b)), rtol=1e-5, atol=0
        )
        for grad in grads:
            self.assertEqual(grad.dtype, dtype)
            self.assertTrue(np.all(np.isfinite(grad.numpy().astype("f8"))))

    @parameterized.parameters(
        (tf.float32, 1e8), (tf.float64, 1e30), (tf.bfloat16, 1e8)
    )
    def test_huge_entries(self, dtype, scale):
        # The covariance term grows as scale**4: 1e8 is about as large as a
        # float32 loss can represent (1e30 fits in float64).
        z_a, z_b = views("random", (4, 6), tf.float64)
        z_a = tf.cast(scale * z_a, dtype)
        z_b = tf.cast(scale * z_b, dtype)
        value, grads = value_and_gradients(ops.vicreg_loss, z_a, z_b)
        a, b = rounded(z_a, z_b)
        self.assertAllClose(value, numpy_vicreg_loss(a, b), rtol=1e-5)
        # A bfloat16 gradient keeps 8 bits of mantissa.
        limit = 1e-2 if dtype == tf.bfloat16 else 1e-5
        for grad, wanted in zip(grads, vicreg_gradients(a, b), strict=True):
            self.assertLess(relative_error(grad, wanted), limit)
        self.assertAllClose(
            ops.vicreg_covariance(z_a), numpy_covariance(a), rtol=1e-5
        )

    def test_covariance_routes_agree(self):
        for shape in ((3, 40), (39, 40), (40, 40), (41, 40), (80, 8)):
            z = degenerate_batches(*shape)["random"].astype("float32")
            self.assertAllClose(
                ops.vicreg_covariance(z),
                ops.reference_vicreg_covariance(z),
                rtol=1e-5,
            )
            self.assertAllClose(
                ops.vicreg_loss(z, z[::-1]),
                ops.reference_vicreg_loss(z, z[::-1]),
                rtol=1e-5,
            )

    def test_weights_and_hyperparameters(self):
        z_a, z_b = rounded(*views("random", (6, 5), tf.float64))
        arguments = dict(
            invariance_weight=2.0,
            variance_weight=3.0,
            covariance_weight=0.5,
            gamma=0.7,
            epsilon=1e-3,
        )
        self.assertAllClose(
            ops.vicreg_loss(z_a, z_b, **arguments),
            numpy_vicreg_loss(z_a, z_b, **arguments),
            rtol=1e-10,
        )
        self.assertAllClose(
            ops.vicreg_variance(z_a, gamma=0.7, epsilon=1e-3),
            numpy_variance(z_a, gamma=0.7, epsilon=1e-3),
            rtol=1e-10,
        )

    def test_zero_weights_give_zero_and_zero_gradients(self):
        z_a, z_b = views("random", (6, 5))
        zero = dict(invariance_weight=0, variance_weight=0, covariance_weight=0)
        value, grads = value_and_gradients(
            lambda a, b: ops.vicreg_loss(a, b, **zero), z_a, z_b
        )
        self.assertEqual(float(value), 0.0)
        for grad in grads:
            self.assertAllEqual(grad, np.zeros((6, 5)))

    @parameterized.parameters(
        tf.TensorSpec((None, 6), tf.float32),
        tf.TensorSpec((None, None), tf.float32),
    )
    def test_tf_function_with_unknown_shape(self, spec):
        @tf.function(input_signature=(spec, spec))
        def loss_and_grads(z_a, z_b):
            return value_and_gradients(ops.vicreg_loss, z_a, z_b)

        @tf.function(input_signature=(spec,))
        def covariance_and_grad(z):
            return value_and_gradients(ops.vicreg_covariance, z)

        # One trace serves both covariance routes (b < d and b >= d).
        for batch_size in (3, 6, 13):
            z_a, z_b = rounded(*views("random", (batch_size, 6)))
            value, grads = loss_and_grads(z_a, z_b)
            self.assertAllClose(
                value, numpy_vicreg_loss(z_a, z_b), rtol=1e-5, atol=0
            )
            expected = vicreg_gradients(z_a, z_b)
            for grad, wanted in zip(grads, expected, strict=True):
                self.assertLess(relative_error(grad, wanted), 1e-5)
            value, (grad,) = covariance_and_grad(z_a)
            self.assertAllClose(value, numpy_covariance(z_a), rtol=1e-5)
            expected = numerical_gradient(numpy_covariance, z_a)
            self.assertLess(relative_error(grad, expected), 1e-4)
        self.assertLen(loss_and_grads._list_all_concrete_functions(), 1)
        # A dynamic batch of one row is finite (variance and covariance 0).
        value, grads = loss_and_grads(*rounded(*views("random", (1, 6))))
        self.assertTrue(np.isfinite(value.numpy()))
        for grad in grads:
            self.assertTrue(np.all(np.isfinite(grad.numpy())))

    def test_graph_mode(self):
        z_a, z_b = rounded(*views("random", (5, 7)))
        with tf.Graph().as_default():
            a = tf.compat.v1.placeholder(tf.float32, (None, 7))
            b = tf.compat.v1.placeholder(tf.float32, (None, 7))
            loss = ops.vicreg_loss(a, b)
            grads = tf.gradients(loss, [a, b])
            with tf.compat.v1.Session() as session:
                value, grads = session.run([loss, grads], {a: z_a, b: z_b})
        self.assertAllClose(value, numpy_vicreg_loss(z_a, z_b), rtol=1e-5)
        for grad, wanted in zip(grads, vicreg_gradients(z_a, z_b), strict=True):
            self.assertLess(relative_error(grad, wanted), 1e-5)

    @parameterized.named_parameters(
        ("gamma", {"gamma": -1.0}, ValueError, "Received: gamma=-1.0$"),
        ("gamma_zero", {"gamma": 0}, ValueError, "Received: gamma=0.0$"),
        ("gamma_nan", {"gamma": np.nan}, ValueError, "Received: gamma=nan$"),
        (
            "epsilon",
            {"epsilon": -1e-4},
            ValueError,
            "Received: epsilon=-0.0001$",
        ),
        ("epsilon_str", {"epsilon": "a"}, TypeError, "Received: epsilon='a'$"),
        (
            "invariance_weight",
            {"invariance_weight": -1},
            ValueError,
            "Received: invariance_weight=-1.0$",
        ),
        (
            "variance_weight",
            {"variance_weight": np.inf},
            ValueError,
            "Received: variance_weight=inf$",
        ),
        (
            "covariance_weight",
            {"covariance_weight": float("nan")},
            ValueError,
            "Received: covariance_weight=nan$",
        ),
        (
            "weight_bool",
            {"covariance_weight": True},
            TypeError,
            "Received: covariance_weight=True$",
        ),
    )
    def test_invalid_hyperparameters(self, kwargs, error, message):
        z_a, z_b = views("random", (4, 3))
        with self.assertRaisesRegex(error, message):
            ops.vicreg_loss(z_a, z_b, **kwargs)
        variance_kwargs = {
            key: value
            for key, value in kwargs.items()
            if key in ("gamma", "epsilon")
        }
        if variance_kwargs:
            with self.assertRaisesRegex(error, message):
                ops.vicreg_variance(z_a, **variance_kwargs)

    @parameterized.named_parameters(
        ("rank_1", np.ones(4), ValueError, r"Received: z.shape=\(4,\)$"),
        ("zero_size", np.ones((0, 4)), ValueError, r"z.shape=\(0, 4\)$"),
        ("one_row", np.ones((1, 4)), ValueError, r"z.shape=\(1, 4\)$"),
        ("integer", np.ones((4, 3), "int64"), TypeError, "z.dtype=int64$"),
        (
            "nan",
            [[0.0, np.nan], [1.0, 2.0]],
            ValueError,
            "Received: z with 1 non-finite entries$",
        ),
    )
    def test_invalid_batch(self, z, error, message):
        with self.assertRaisesRegex(error, message):
            ops.vicreg_variance(z)
        with self.assertRaisesRegex(error, message):
            ops.vicreg_covariance(z)
        with self.assertRaisesRegex(error, message.replace("z", "z_a")):
            ops.vicreg_loss(z, z)

    def test_invariance_allows_one_row(self):
        self.assertAllClose(
            ops.vicreg_invariance([[1.0, 2.0]], [[0.0, 0.0]]), 2.5
        )

    def test_mismatched_views(self):
        with self.assertRaisesRegex(
            ValueError, r"Received: z_a.shape=\(4, 3\), z_b.shape=\(5, 3\)$"
        ):
            ops.vicreg_loss(np.ones((4, 3)), np.ones((5, 3)))
        with self.assertRaisesRegex(
            ValueError, r"Received: z_a.shape=\(4, 3\), z_b.shape=\(4, 2\)$"
        ):
            ops.vicreg_invariance(np.ones((4, 3)), np.ones((4, 2)))

    def test_nan_inside_tf_function_raises(self):
        function = tf.function(ops.vicreg_loss)
        z = np.ones((3, 2), "float32")
        bad = z.copy()
        bad[1, 1] = np.nan
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "`z_b` must not contain NaN"
        ):
            function(tf.constant(z), tf.constant(bad))

    def test_reference_loss_matches_numpy(self):
        for shape in ((3, 7), (9, 4)):
            z_a, z_b = views("random", shape)
            value, grads = value_and_gradients(
                ops.reference_vicreg_loss, z_a, z_b
            )
            a, b = rounded(z_a, z_b)
            self.assertAllClose(value, numpy_vicreg_loss(a, b), rtol=1e-5)
            for grad, wanted in zip(grads, vicreg_gradients(a, b), strict=True):
                self.assertLess(relative_error(grad, wanted), 1e-5)
