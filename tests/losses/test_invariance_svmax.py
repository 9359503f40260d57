"""InvarianceSVMaxLoss against a NumPy float64 re-derivation."""

import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing


def numpy_svmax_penalty(z, factor, bounded):
    """SVMax (Eq. 1 / Eq. 4) of one batch, bounds with k = min(b, d)."""
    b, d = z.shape
    s_mu = float(np.mean(np.linalg.svd(z, compute_uv=False)))
    if not bounded:
        return -factor * s_mu, s_mu
    k = min(b, d)
    lower, upper = math.sqrt(b) / k, math.sqrt(b / k)
    return factor * math.exp((upper - s_mu) / (upper - lower)), s_mu


def numpy_invariance_svmax(
    z_a, z_b, invariance_weight=1.0, factor=1.0, bounded=True, normalize=True
):
    """Per-sample loss and the two unweighted terms, in float64 loops."""
    z_a = np.asarray(z_a, np.float64)
    z_b = np.asarray(z_b, np.float64)
    if normalize:
        z_a = z_a / np.linalg.norm(z_a, axis=1, keepdims=True)
        z_b = z_b / np.linalg.norm(z_b, axis=1, keepdims=True)
    n, d = z_a.shape
    invariance = np.array(
        [sum((z_a[i, j] - z_b[i, j]) ** 2 for j in range(d)) for i in range(n)]
    )
    penalty_a, s_a = numpy_svmax_penalty(z_a, factor, bounded)
    penalty_b, s_b = numpy_svmax_penalty(z_b, factor, bounded)
    per_sample = invariance_weight * invariance + (penalty_a + penalty_b) / 2
    terms = {
        "invariance": invariance.mean(),
        "svmax_mean_singular_value": (s_a + s_b) / 2,
    }
    return per_sample, terms


def views(shape, seed=0):
    rng = np.random.default_rng(seed)
    z_a = rng.normal(size=shape)
    z_b = z_a + rng.normal(scale=0.5, size=shape)
    return z_a.astype("float32"), z_b.astype("float32")


class InvarianceSVMaxLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.InvarianceSVMaxLoss())
        revived = self.run_class_serialization_test(
            losses.InvarianceSVMaxLoss(
                invariance_weight=2.0,
                factor=0.5,
                bounded=False,
                normalize=False,
            )
        )
        self.assertEqual(revived.factor, 0.5)
        self.assertFalse(revived.bounded)
        self.assertFalse(revived.normalize)

    @parameterized.named_parameters(
        ("bounded", (12, 5), 1.0, 1.0, True, True),
        ("b_less_than_d", (5, 9), 2.0, 0.5, True, True),
        ("unbounded", (10, 4), 1.0, 1.0, False, True),
        ("eq19_literal", (10, 4), 0.5, 2.0, False, False),
        ("bounded_raw", (6, 6), 1.0, 1.0, True, False),
    )
    def test_correctness(self, shape, weight, factor, bounded, normalize):
        z_a, z_b = views(shape)
        kwargs = dict(
            invariance_weight=weight,
            factor=factor,
            bounded=bounded,
            normalize=normalize,
        )
        expected, expected_terms = numpy_invariance_svmax(z_a, z_b, **kwargs)
        per_sample = losses.InvarianceSVMaxLoss(reduction=None, **kwargs)(
            z_a, z_b
        )
        self.assertEqual(tuple(per_sample.shape), (shape[0],))
        self.assertAllClose(per_sample, expected, rtol=1e-5, atol=1e-5)
        loss = losses.InvarianceSVMaxLoss(**kwargs)
        self.assertAllClose(
            loss(z_a, z_b), expected.mean(), rtol=1e-5, atol=1e-5
        )
        terms = loss.terms(z_a, z_b)
        self.assertEqual(sorted(terms), sorted(loss.term_names))
        for name, value in expected_terms.items():
            self.assertAllClose(terms[name], value, rtol=1e-5, atol=1e-6)

    def test_penalty_range(self):
        # Bounded and normalized: the penalty lies in [factor, e * factor].
        rng = np.random.default_rng(1)
        z = rng.normal(size=(16, 8)).astype("float32")
        collapsed = np.tile(z[:1], (16, 1))
        loss = losses.InvarianceSVMaxLoss(factor=2.0)
        spread = loss(z, z)  # invariance 0
        self.assertGreaterEqual(float(spread), 2.0)
        self.assertLess(float(spread), 2.0 * math.e)
        self.assertAllClose(loss(collapsed, collapsed), 2.0 * math.e, rtol=1e-5)

    def test_gradient_matches_numerical(self):
        z_a, z_b = views((6, 4), seed=2)
        z_a64, z_b64 = z_a.astype("float64"), z_b.astype("float64")
        a = tf.Variable(z_a64)
        with tf.GradientTape() as tape:
            value = losses.InvarianceSVMaxLoss(dtype="float64")(a, z_b64)
        gradient = tape.gradient(value, a).numpy()
        numerical = np.zeros_like(z_a64)
        step = 1e-6
        for index in np.ndindex(*z_a64.shape):
            plus, minus = z_a64.copy(), z_a64.copy()
            plus[index] += step
            minus[index] -= step
            numerical[index] = (
                numpy_invariance_svmax(plus, z_b64)[0].mean()
                - numpy_invariance_svmax(minus, z_b64)[0].mean()
            ) / (2 * step)
        self.assertAllClose(gradient, numerical, rtol=1e-4, atol=1e-6)

    @parameterized.named_parameters(
        ("invariance_weight", {"invariance_weight": -1.0}, ValueError),
        ("factor", {"factor": -0.5}, ValueError),
        ("bounded", {"bounded": 1}, TypeError),
        ("normalize", {"normalize": "yes"}, TypeError),
    )
    def test_invalid_arguments(self, kwargs, error):
        name, value = list(kwargs.items())[0]
        with self.assertRaisesRegex(error, f"Received: {name}={value!r}"):
            losses.InvarianceSVMaxLoss(**kwargs)

    def test_mismatched_views(self):
        loss = losses.InvarianceSVMaxLoss()
        z = np.ones((8, 4), "float32")
        with self.assertRaisesRegex(ValueError, "same shape"):
            loss(z, np.ones((8, 3), "float32"))
        with self.assertRaisesRegex(ValueError, "same shape"):
            loss(z, np.ones((7, 4), "float32"))
        with self.assertRaisesRegex(ValueError, "at least 2 rows"):
            loss(z[:1], z[:1])

    @parameterized.named_parameters(
        ("collapsed", "collapsed"),
        ("zeros", "zeros"),
        ("duplicate_rows", "duplicate_rows"),
        ("tiny", "tiny"),
        ("huge", "huge"),
        ("float16", "float16"),
        ("bfloat16", "bfloat16"),
    )
    def test_finite_on_degenerate_input(self, case):
        rng = np.random.default_rng(3)
        z_a = rng.normal(size=(8, 6)).astype("float32")
        z_b = z_a + 0.1
        if case == "collapsed":
            z_a = z_b = np.ones((8, 6), "float32")
        elif case == "zeros":
            z_a = z_b = np.zeros((8, 6), "float32")
        elif case == "duplicate_rows":
            z_a = np.repeat(z_a[:2], 4, axis=0)
            z_b = z_a + 0.1
        elif case == "tiny":
            z_a, z_b = 1e-30 * z_a, 1e-30 * z_b
        elif case == "huge":
            z_a, z_b = 1e30 * z_a, 1e30 * z_b
        dtype = case if case.endswith("16") else "float32"
        a = tf.Variable(tf.cast(z_a, dtype))
        b = tf.Variable(tf.cast(z_b, dtype))
        for bounded in (True, False):
            loss = losses.InvarianceSVMaxLoss(bounded=bounded)
            with tf.GradientTape() as tape:
                value = loss(a, b)
            self.assertEqual(value.dtype, tf.float32)
            self.assertTrue(np.isfinite(value.numpy()), msg=str(value))
            for gradient in tape.gradient(value, [a, b]):
                gradient = tf.cast(gradient, tf.float32).numpy()
                self.assertTrue(np.isfinite(gradient).all(), msg=case)

    def test_fit_smoke(self):
        keras.utils.set_random_seed(0)  # seeds 0-19 all pass
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 6)).astype("float32")
        targets = x @ rng.normal(size=(6, 4)).astype("float32")
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss=losses.InvarianceSVMaxLoss(),
        )
        history = model.fit(x, targets, batch_size=16, epochs=4, verbose=0)
        values = history.history["loss"]
        self.assertTrue(np.isfinite(values).all())
        self.assertLess(values[-1], values[0])
