"""ops.svmax_penalty against a NumPy float64 re-derivation (Eq. 1 and 4)."""

import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import ops
from keras_featreg import regularizers
from tests import helpers as testing
from tests.ops.common import degenerate_batches
from tests.ops.common import numpy_mean_singular_value
from tests.ops.common import unit_rows


def numpy_svmax_penalty(x, factor, bounded, normalize):
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if normalize:
        x = unit_rows(x)
    s_mu = numpy_mean_singular_value(x)
    if not bounded:
        return -factor * s_mu, s_mu
    b, d = x.shape
    k = min(b, d)
    lower, upper = math.sqrt(b) / k, math.sqrt(b / k)
    return factor * math.exp((upper - s_mu) / (upper - lower)), s_mu


class SVMaxPenaltyTest(testing.TestCase):
    @parameterized.product(
        bounded=(True, False),
        normalize=(True, False),
        shape=((16, 8), (5, 12), (6, 2, 3)),
        dtype=("float32", "float64"),
    )
    def test_matches_numpy(self, bounded, normalize, shape, dtype):
        x = np.random.default_rng(0).normal(size=shape).astype(dtype)
        penalty, s_mu = ops.svmax_penalty(x, 0.3, bounded, normalize)
        expected, expected_s_mu = numpy_svmax_penalty(
            x, 0.3, bounded, normalize
        )
        rtol = 1e-5 if dtype == "float32" else 1e-7
        self.assertEqual(penalty.dtype, dtype)
        self.assertAllClose(penalty, expected, rtol=rtol, atol=0)
        self.assertAllClose(s_mu, expected_s_mu, rtol=rtol, atol=0)

    def test_is_what_the_regularizer_returns(self):
        x = degenerate_batches(9, 4)["random"].astype("float32")
        regularizer = regularizers.SVMaxRegularizer(0.5, bounded=False)
        penalty, s_mu = ops.svmax_penalty(x, 0.5, bounded=False)
        stats = regularizer.stats(x)
        self.assertAllEqual(stats["penalty"], penalty)
        self.assertAllEqual(stats["mean_singular_value"], s_mu)

    def test_bounded_range_and_fixed_s_mu(self):
        x = degenerate_batches(16, 8)
        collapsed, _ = ops.svmax_penalty(x["collapsed"], 2.0)
        self.assertAllClose(collapsed, 2.0 * math.e, rtol=1e-5)
        spread, _ = ops.svmax_penalty(x["random"], 2.0)
        self.assertBetween(float(spread), 2.0, 2.0 * math.e)
        # One singular value (b = 1 or d = 1): U == L, the penalty is
        # `factor` with a zero gradient.
        for rows in (np.ones((1, 5)), np.ones((5, 1))):
            variable = tf.Variable(rows)
            with tf.GradientTape() as tape:
                penalty, _ = ops.svmax_penalty(variable, 0.7)
            self.assertAllClose(penalty, 0.7)
            self.assertAllEqual(tape.gradient(penalty, variable), 0 * rows)

    @parameterized.named_parameters(
        ("factor", {"factor": -1.0}, ValueError, "Received: factor=-1.0$"),
        ("bounded", {"bounded": 1}, TypeError, "Received: bounded=1$"),
        (
            "normalize",
            {"normalize": "yes"},
            TypeError,
            "Received: normalize='yes'$",
        ),
    )
    def test_invalid_arguments(self, kwargs, error, message):
        with self.assertRaisesRegex(error, message):
            ops.svmax_penalty(np.ones((4, 3), "float32"), **kwargs)

    def test_invalid_batch(self):
        with self.assertRaisesRegex(TypeError, "x.dtype=int64$"):
            ops.svmax_penalty(np.ones((4, 3), "int64"))
        with self.assertRaisesRegex(ValueError, "1 non-finite entries$"):
            ops.svmax_penalty([[0.0, np.nan], [1.0, 2.0]])
