"""VICRegLoss against a NumPy float64 re-derivation of the reference code."""

import math

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import losses
from keras_featreg import ops
from tests import helpers as testing


def numpy_vicreg_terms(z_a, z_b, gamma=1.0, epsilon=1e-4):
    """The reference code's three terms (seeds README), in float64 loops.

    invariance = mean((z_a - z_b) ** 2); std = sqrt(unbiased var + eps);
    variance = mean(relu(gamma - std_a)) / 2 + mean(relu(gamma - std_b)) / 2;
    covariance = sum(offdiag(cov_a) ** 2) / d + sum(offdiag(cov_b) ** 2) / d.
    """
    z_a = np.asarray(z_a, dtype=np.float64)
    z_b = np.asarray(z_b, dtype=np.float64)
    n, d = z_a.shape
    invariance = sum(
        (z_a[i, j] - z_b[i, j]) ** 2 for i in range(n) for j in range(d)
    ) / (n * d)

    def one_view(z):
        mean = [sum(z[i, j] for i in range(n)) / n for j in range(d)]

        def cov(j, k):
            return sum(
                (z[i, j] - mean[j]) * (z[i, k] - mean[k]) for i in range(n)
            ) / (n - 1)

        stds = [math.sqrt(cov(j, j) + epsilon) for j in range(d)]
        variance = sum(max(gamma - s, 0.0) for s in stds) / d
        covariance = (
            sum(cov(j, k) ** 2 for j in range(d) for k in range(d) if j != k)
            / d
        )
        return variance, covariance

    var_a, cov_a = one_view(z_a)
    var_b, cov_b = one_view(z_b)
    return invariance, (var_a + var_b) / 2.0, cov_a + cov_b


def numpy_vicreg(z_a, z_b, weights=(25.0, 25.0, 1.0), **kwargs):
    terms = numpy_vicreg_terms(z_a, z_b, **kwargs)
    return sum(w * t for w, t in zip(weights, terms, strict=True))


def numpy_vicreg_per_sample(z_a, z_b, weights=(25.0, 25.0, 1.0), **kwargs):
    """Row i: lambda * mean_j (z_a - z_b)[i, j] ** 2 + the batch terms."""
    _, variance, covariance = numpy_vicreg_terms(z_a, z_b, **kwargs)
    diff = np.asarray(z_a, np.float64) - np.asarray(z_b, np.float64)
    return (
        weights[0] * np.mean(diff**2, axis=1)
        + weights[1] * variance
        + weights[2] * covariance
    )


def views(shape, seed=0, scale=0.7, noise=0.3):
    rng = np.random.default_rng(seed)
    z_a = rng.normal(scale=scale, size=shape)
    z_b = z_a + rng.normal(scale=noise, size=shape)
    return z_a.astype("float32"), z_b.astype("float32")


class VICRegLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.VICRegLoss())
        revived = self.run_class_serialization_test(
            losses.VICRegLoss(
                invariance_weight=5.0,
                variance_weight=0.0,
                covariance_weight=0.5,
                gamma=2.0,
                epsilon=1e-3,
                reduction="sum",
            )
        )
        self.assertEqual(revived.gamma, 2.0)
        self.assertEqual(revived.variance_weight, 0.0)
        self.assertEqual(revived.reduction, "sum")
        restored = keras.losses.deserialize(
            keras.losses.serialize(losses.VICRegLoss(covariance_weight=3.0))
        )
        self.assertIsInstance(restored, losses.VICRegLoss)
        self.assertEqual(restored.covariance_weight, 3.0)

    @parameterized.named_parameters(
        ("b_greater_than_d", (12, 5), (25.0, 25.0, 1.0), 1.0, 1e-4),
        ("b_less_than_d", (5, 9), (25.0, 25.0, 1.0), 1.0, 1e-4),  # Gram route
        ("b_equals_d", (6, 6), (10.0, 3.0, 2.0), 0.5, 1e-3),
        ("no_spread", (8, 4), (25.0, 0.0, 0.0), 1.0, 1e-4),
    )
    def test_correctness(self, shape, weights, gamma, epsilon):
        z_a, z_b = views(shape)
        loss = losses.VICRegLoss(*weights, gamma=gamma, epsilon=epsilon)
        expected = numpy_vicreg(z_a, z_b, weights, gamma=gamma, epsilon=epsilon)
        self.assertAllClose(loss(z_a, z_b), expected, rtol=1e-5, atol=1e-5)
        # The op computes the same loss.
        self.assertAllClose(
            ops.vicreg_loss(z_a, z_b, *weights, gamma=gamma, epsilon=epsilon),
            expected,
            rtol=1e-5,
            atol=1e-5,
        )
        terms = loss.terms(z_a, z_b)
        self.assertEqual(sorted(terms), sorted(loss.term_names))
        numpy_terms = numpy_vicreg_terms(z_a, z_b, gamma, epsilon)
        for name, value in zip(loss.term_names, numpy_terms, strict=True):
            self.assertAllClose(terms[name], value, rtol=1e-5, atol=1e-6)

    def test_default_equals_reference_op(self):
        z_a, z_b = views((16, 24), seed=3)
        self.assertAllClose(
            losses.VICRegLoss()(z_a, z_b),
            ops.reference_vicreg_loss(z_a, z_b),
            rtol=1e-5,
        )

    def test_float64(self):
        z_a, z_b = views((7, 3), seed=1)
        z_a, z_b = z_a.astype("float64"), z_b.astype("float64")
        loss = losses.VICRegLoss(dtype="float64")
        value = loss(z_a, z_b)
        self.assertEqual(value.dtype, tf.float64)
        self.assertAllClose(value, numpy_vicreg(z_a, z_b), rtol=1e-10)

    @parameterized.parameters((10, 4), (4, 10))
    def test_per_sample(self, batch_size, dim):
        z_a, z_b = views((batch_size, dim), seed=2)
        per_sample = losses.VICRegLoss(reduction=None)(z_a, z_b)
        self.assertEqual(tuple(per_sample.shape), (batch_size,))
        self.assertAllClose(
            per_sample, numpy_vicreg_per_sample(z_a, z_b), rtol=1e-5
        )
        self.assertAllClose(
            np.mean(per_sample), losses.VICRegLoss()(z_a, z_b), rtol=1e-6
        )
        # Keras applies sample weights to the per-sample values.
        weights = np.linspace(0.0, 2.0, batch_size).astype("float32")
        weighted = losses.VICRegLoss(reduction="sum")(
            z_a, z_b, sample_weight=weights
        )
        self.assertAllClose(
            weighted, np.sum(weights * np.asarray(per_sample)), rtol=1e-5
        )

    def test_gradient_matches_reference(self):
        z_a, z_b = views((6, 10), seed=4)
        a, b = tf.Variable(z_a), tf.Variable(z_b)
        with tf.GradientTape(persistent=True) as tape:
            value = losses.VICRegLoss()(a, b)
            reference = ops.reference_vicreg_loss(a, b)
        for ours, theirs in zip(
            tape.gradient(value, [a, b]),
            tape.gradient(reference, [a, b]),
            strict=True,
        ):
            self.assertAllClose(ours, theirs, rtol=1e-4, atol=1e-6)

    @parameterized.named_parameters(
        ("invariance_weight", {"invariance_weight": -1}, "invariance_weight"),
        ("variance_weight", {"variance_weight": -1}, "variance_weight"),
        ("covariance_weight", {"covariance_weight": -1}, "covariance_weight"),
        ("gamma", {"gamma": 0}, "gamma"),
        ("epsilon", {"epsilon": -1e-4}, "epsilon"),
        ("nan", {"gamma": float("nan")}, "gamma"),
    )
    def test_invalid_arguments(self, kwargs, name):
        value = list(kwargs.values())[0]
        with self.assertRaisesRegex(
            ValueError, f"Received: {name}={float(value)}"
        ):
            losses.VICRegLoss(**kwargs)

    def test_invalid_argument_type(self):
        with self.assertRaisesRegex(TypeError, "Received: gamma='1'"):
            losses.VICRegLoss(gamma="1")

    def test_mismatched_views(self):
        loss = losses.VICRegLoss()
        z = np.ones((8, 4), "float32")
        with self.assertRaisesRegex(ValueError, "same shape"):
            loss(z, np.ones((8, 5), "float32"))
        with self.assertRaisesRegex(ValueError, "same shape"):
            loss(z, np.ones((6, 4), "float32"))
        with self.assertRaisesRegex(ValueError, "at least 2 rows"):
            loss(z[:1], z[:1])
        with self.assertRaisesRegex(ValueError, "NaN"):
            loss(z, np.full((8, 4), np.nan, "float32"))

    def test_mismatched_views_in_graph(self):
        # Unknown batch sizes: the mismatch is caught when the graph runs.
        loss = losses.VICRegLoss()
        spec = tf.TensorSpec((None, 4), tf.float32)
        function = tf.function(loss.__call__, input_signature=[spec, spec])
        with self.assertRaises((tf.errors.InvalidArgumentError, ValueError)):
            function(np.ones((8, 4), "float32"), np.ones((6, 4), "float32"))

    @parameterized.named_parameters(
        ("collapsed", "collapsed"),
        ("zeros", "zeros"),
        ("duplicate_rows", "duplicate_rows"),
        ("tiny", "tiny"),
        ("huge", "huge"),
        ("huge_wide", "huge_wide"),  # b < d: the Gram route
        ("float16", "float16"),
        ("bfloat16", "bfloat16"),
    )
    def test_finite_on_degenerate_input(self, case):
        rng = np.random.default_rng(5)
        z_a = rng.normal(size=(8, 6)).astype("float32")
        z_b = z_a + 0.1
        if case == "collapsed":
            z_a = np.ones((8, 6), "float32") + 1e-7 * z_a
            z_b = np.ones((8, 6), "float32")
        elif case == "zeros":
            z_a = z_b = np.zeros((8, 6), "float32")
        elif case == "duplicate_rows":
            z_a = np.repeat(z_a[:2], 4, axis=0)
            z_b = z_a.copy()
        elif case == "tiny":
            z_a, z_b = 1e-30 * z_a, 1e-30 * z_b
        elif case == "huge":
            # The covariance term grows as scale ** 4: 1e8 gives ~1e32,
            # still a float32; beyond ~1e9 the true value overflows.
            z_a, z_b = 1e8 * z_a, 1e8 * z_b
        elif case == "huge_wide":
            z_a, z_b = 1e8 * z_a.reshape(4, 12), 1e8 * z_b.reshape(4, 12)
        dtype = case if case.endswith("16") else "float32"
        a = tf.Variable(tf.cast(z_a, dtype))
        b = tf.Variable(tf.cast(z_b, a.dtype))
        with tf.GradientTape() as tape:
            value = losses.VICRegLoss()(a, b)
        self.assertEqual(value.dtype, tf.float32)
        self.assertTrue(np.isfinite(value.numpy()), msg=str(value))
        for gradient in tape.gradient(value, [a, b]):
            gradient = tf.cast(gradient, tf.float32).numpy()
            self.assertTrue(np.isfinite(gradient).all())
        if case in ("collapsed", "zeros", "duplicate_rows"):
            self.assertAllClose(
                value, numpy_vicreg(z_a, z_b), rtol=1e-5, atol=1e-5
            )

    def test_fit_smoke(self):
        # Regress one view's embeddings onto a fixed second view.
        keras.utils.set_random_seed(0)  # seeds 0-19 all pass
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 6)).astype("float32")
        targets = x @ rng.normal(size=(6, 4)).astype("float32")
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2), loss=losses.VICRegLoss()
        )
        history = model.fit(x, targets, batch_size=16, epochs=4, verbose=0)
        values = history.history["loss"]
        self.assertTrue(np.isfinite(values).all())
        self.assertLess(values[-1], values[0])
        evaluated = model.evaluate(x, targets, batch_size=64, verbose=0)
        expected = numpy_vicreg(targets, model.predict(x, verbose=0))
        self.assertAllClose(evaluated, expected, rtol=1e-4)
