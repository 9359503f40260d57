import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import ops
from keras_featreg.ops.batch import power_of_two_scale
from tests import helpers as testing


class AsMatrixTest(testing.TestCase):
    @parameterized.parameters(
        (tf.float16, tf.float32),
        (tf.bfloat16, tf.float32),
        (tf.float32, tf.float32),
        (tf.float64, tf.float64),
    )
    def test_dtypes(self, dtype, expected):
        x = tf.constant([[1.5, -2.0], [0.25, 3.0]], dtype)
        matrix = ops.as_matrix(x)
        self.assertEqual(matrix.dtype, expected)
        self.assertAllEqual(matrix, [[1.5, -2.0], [0.25, 3.0]])

    def test_flattens_all_but_the_batch_axis(self):
        x = np.arange(24, dtype="float32").reshape(2, 3, 4)
        self.assertAllEqual(ops.as_matrix(x), x.reshape(2, 12))

    @parameterized.parameters(
        tf.TensorSpec((None, 3, 4), tf.float32),
        tf.TensorSpec((None, None, None), tf.float32),
        tf.TensorSpec((None, None), tf.float32),
    )
    def test_unknown_dimensions(self, spec):
        function = tf.function(ops.as_matrix, input_signature=(spec,))
        x = np.arange(24, dtype="float32").reshape(2, 12)
        if spec.shape.rank == 3:
            x = x.reshape(2, 3, 4)
        self.assertAllEqual(function(x), np.reshape(x, (2, 12)))

    @parameterized.named_parameters(
        ("rank_1", np.ones(3), ValueError, r"Received: x.shape=\(3,\)$"),
        ("scalar", 2.0, ValueError, r"Received: x.shape=\(\)$"),
        ("zero_rows", np.ones((0, 2)), ValueError, r"x.shape=\(0, 2\)$"),
        ("zero_axis", np.ones((2, 3, 0)), ValueError, r"x.shape=\(2, 3, 0\)$"),
        ("integer", np.ones((2, 2), "int32"), TypeError, "x.dtype=int32$"),
        ("bool", np.ones((2, 2), bool), TypeError, "x.dtype=bool$"),
        (
            "nan",
            [[np.nan, 1.0], [1.0, np.nan]],
            ValueError,
            "Received: x with 2 non-finite entries$",
        ),
        (
            "inf",
            [[np.inf, 1.0]],
            ValueError,
            "Received: x with 1 non-finite entries$",
        ),
    )
    def test_invalid(self, x, error, message):
        with self.assertRaisesRegex(error, message):
            ops.as_matrix(x)

    def test_names_the_argument(self):
        with self.assertRaisesRegex(
            ValueError, r"Received: z_a.shape=\(1, 3\)"
        ):
            ops.as_matrix(np.ones((1, 3)), "z_a", min_batch_size=2)
        with self.assertRaisesRegex(TypeError, "`labels` must be a floating"):
            ops.as_matrix(np.ones((2, 3), "int64"), "labels")

    def test_float16_overflow_is_caught(self):
        with self.assertRaisesRegex(ValueError, "1 non-finite entries$"):
            with np.errstate(over="ignore"):  # 7e4 > float16 max
                x = np.array([[7e4, 1.0]]).astype("float16")
            ops.as_matrix(x)

    def test_non_finite_inside_tf_function(self):
        function = tf.function(ops.as_matrix)
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError,
            "`x` must not contain NaN or Inf values",
        ):
            function(tf.constant([[1.0, np.nan]]))
        self.assertAllEqual(function(tf.constant([[1.0, 2.0]])), [[1.0, 2.0]])

    def test_unknown_rank_is_rejected(self):
        function = tf.function(
            ops.as_matrix, input_signature=(tf.TensorSpec(None, tf.float32),)
        )
        with self.assertRaisesRegex(ValueError, "must have rank >= 2"):
            function.get_concrete_function()

    def test_gradient_passes_through(self):
        x = tf.constant([[1.0, 2.0], [3.0, 4.0]], tf.float16)
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(3.0 * ops.as_matrix(x))
        self.assertAllEqual(tape.gradient(total, x), np.full((2, 2), 3.0))


class PowerOfTwoScaleTest(testing.TestCase):
    @parameterized.parameters(1e-30, 3e-7, 1.0, 5.5, 1e30)
    def test_power_of_two_near_max(self, largest):
        x = tf.constant([[largest, -0.5 * largest]], tf.float32)
        scale = float(power_of_two_scale(x))
        self.assertEqual(scale, 2.0 ** round(np.log2(scale)))
        self.assertLessEqual(scale, float(x[0, 0]) * (1 + 1e-6))
        self.assertGreater(2 * scale, float(x[0, 0]))

    def test_all_zero(self):
        self.assertEqual(float(power_of_two_scale(tf.zeros((2, 2)))), 1.0)
