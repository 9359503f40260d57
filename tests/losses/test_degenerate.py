"""Every metric loss on degenerate batches and invalid inputs.

Degenerate batches (one class, no positives, one row, duplicate or all-zero
rows, tiny and huge scales, half precision) must give the documented finite
values (the brute-force references of each loss's test module) and finite
gradients; invalid labels and embeddings must raise clear errors.
"""

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import losses
from keras_featreg.ops.pair_selection import random_negative_mask
from tests import helpers as testing
from tests.losses.test_angular import numpy_angular_loss
from tests.losses.test_contrastive import numpy_contrastive_loss
from tests.losses.test_lifted_structure import numpy_lifted_per_anchor
from tests.losses.test_n_pair import numpy_n_pair_loss
from tests.losses.test_proxy_anchor import numpy_proxy_anchor
from tests.losses.test_spread_out import numpy_spread_out
from tests.losses.test_triplet import numpy_batch_hard
from tests.losses.test_triplet import numpy_semihard

DIM = 3
PROXIES = np.random.default_rng(9).normal(size=(8, DIM)).astype("float32")


def spread_out_random_reference(labels, x):
    mask = random_negative_mask(labels, seed=0).numpy()
    return numpy_spread_out(labels, x, [tuple(p) for p in np.argwhere(mask)])


# name: (function under test, NumPy reference, quadratic in the scale)
LOSSES = {
    "contrastive": (losses.contrastive_loss, numpy_contrastive_loss, False),
    "contrastive_squared": (
        lambda y, x: losses.contrastive_loss(y, x, squared=True),
        lambda y, x: numpy_contrastive_loss(y, x, squared=True),
        True,
    ),
    "triplet_hard": (losses.triplet_loss, numpy_batch_hard, False),
    "triplet_semihard": (
        lambda y, x: losses.triplet_loss(y, x, mining="semihard"),
        numpy_semihard,
        False,
    ),
    "n_pair": (losses.n_pair_loss, numpy_n_pair_loss, True),
    "angular": (losses.angular_loss, numpy_angular_loss, True),
    "lifted_structure": (  # relu(J)^2
        losses.lifted_structure_loss,
        numpy_lifted_per_anchor,
        True,
    ),
    "spread_out_all": (
        lambda y, x: losses.spread_out_loss(y, x, "all"),
        numpy_spread_out,
        True,
    ),
    "spread_out_random": (
        lambda y, x: losses.spread_out_loss(y, x, "random", seed=0),
        spread_out_random_reference,
        True,
    ),
    "proxy_anchor": (
        lambda y, x: losses.proxy_anchor_loss(y, x, PROXIES),
        lambda y, x: np.full(len(y), numpy_proxy_anchor(y, x, PROXIES)),
        False,
    ),
}

CLASSES = [
    losses.ContrastiveLoss,
    losses.TripletLoss,
    losses.NPairLoss,
    losses.AngularLoss,
    losses.LiftedStructureLoss,
    losses.SpreadOutRegularizer,
]


def degenerate_batches(quadratic):
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(5, DIM))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    # Dot-product and squared-distance losses grow with the square of the
    # scale (the exact value overflows float32 beyond ~1e19): "huge" is
    # 1e6 for them.
    huge = 1e6 if quadratic else 1e30
    return {
        "one_class": (np.zeros(5, int), unit),
        "no_positives": (np.arange(5), unit),
        "one_row": (np.array([2]), unit[:1]),
        "two_rows_one_class": (np.array([1, 1]), unit[:2]),
        "duplicate_rows": (np.array([0, 0, 1, 1, 2]), np.ones((5, DIM))),
        "duplicates_within_class": (
            np.array([0, 0, 1, 1, 1]),
            unit[[0, 0, 1, 1, 1]],
        ),
        "all_zero": (np.array([0, 0, 1, 1, 2]), np.zeros((5, DIM))),
        "tiny": (np.array([0, 0, 1, 1, 2]), 1e-30 * unit),
        "huge": (np.array([0, 0, 1, 1, 2]), huge * unit),
    }


def value_and_gradient(fn, labels, x):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = fn(labels, x)
        total = tf.reduce_sum(value)
    return value, tape.gradient(total, x)


class DegenerateBatchTest(testing.TestCase):
    @parameterized.parameters(sorted(LOSSES))
    def test_degenerate_batches(self, name):
        fn, reference, quadratic = LOSSES[name]
        for case, (labels, x) in degenerate_batches(quadratic).items():
            x = x.astype("float32")
            value, gradient = value_and_gradient(fn, labels, x)
            self.assertEqual(value.shape, (len(labels),), case)
            self.assertTrue(np.all(np.isfinite(value)), (case, value))
            self.assertTrue(np.all(np.isfinite(gradient)), (case, gradient))
            if case != "huge":  # the float64 loops overflow there
                self.assertAllClose(
                    value, reference(labels, x), rtol=1e-4, atol=1e-5, msg=case
                )

    @parameterized.parameters(sorted(LOSSES))
    def test_documented_zeros(self, name):
        # No positive pair (or no negative) -> no valid unit -> 0, for
        # every loss whose units need both.
        fn, _, _ = LOSSES[name]
        x = degenerate_batches(False)["one_class"][1].astype("float32")
        if name in ("triplet_hard", "triplet_semihard", "angular"):
            self.assertAllClose(fn(np.arange(5), x), np.zeros(5))
            self.assertAllClose(fn(np.zeros(5, int), x), np.zeros(5))
        if name in ("lifted_structure", "spread_out_all"):
            self.assertAllClose(fn(np.zeros(5, int), x), np.zeros(5))
        # One row: no pair at all; N-pair keeps its L2 penalty, and the
        # proxies still pull and push a single row.
        if name == "n_pair":
            penalty = 0.5 * 0.002 * np.sum(np.float64(x[:1]) ** 2)
            self.assertAllClose(fn(np.array([3]), x[:1]), [penalty])
        elif name != "proxy_anchor":
            self.assertAllClose(fn(np.array([3]), x[:1]), np.zeros(1))

    @parameterized.parameters(sorted(LOSSES))
    def test_half_precision_computes_in_float32(self, name):
        fn, reference, _ = LOSSES[name]
        labels = np.array([0, 0, 1, 1, 2, 2])
        rng = np.random.default_rng(1)
        x = rng.normal(size=(6, DIM))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        for dtype in ("float16", "bfloat16"):
            x_half = tf.constant(x, dtype=dtype)
            value, gradient = value_and_gradient(fn, labels, x_half)
            self.assertEqual(value.dtype, tf.float32)
            self.assertTrue(np.all(np.isfinite(gradient)))
            rounded = tf.cast(x_half, "float32").numpy()
            self.assertAllClose(
                value, reference(labels, rounded), rtol=1e-4, atol=1e-5
            )

    @parameterized.parameters(sorted(LOSSES))
    def test_float64(self, name):
        fn, reference, _ = LOSSES[name]
        labels = np.array([0, 1, 1, 0, 2, 2])
        x = np.random.default_rng(2).normal(size=(6, DIM))
        value = fn(labels, x)
        self.assertEqual(value.dtype, tf.float64)
        self.assertAllClose(value, reference(labels, x), rtol=1e-7, atol=1e-9)

    @parameterized.parameters(sorted(LOSSES))
    def test_graph_with_unknown_batch_size(self, name):
        fn, _, _ = LOSSES[name]
        labels = np.array([0, 1, 1, 0, 2, 2])
        x = np.random.default_rng(3).normal(size=(6, DIM)).astype("float32")
        graph_fn = tf.function(
            fn,
            input_signature=[
                tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([None, DIM], tf.float32),
            ],
        )
        self.assertAllClose(graph_fn(labels, x), fn(labels, x), atol=1e-6)
        with self.assertRaises(tf.errors.InvalidArgumentError):
            graph_fn(labels[:5], x)

    @parameterized.parameters(sorted(LOSSES))
    def test_xla(self, name):
        # Keras compiles `fit` with XLA by default on GPU machines.
        fn, _, _ = LOSSES[name]
        labels = np.array([0, 1, 1, 0, 2, 2])
        x = np.random.default_rng(3).normal(size=(6, DIM)).astype("float32")
        compiled = tf.function(
            fn,
            jit_compile=True,
            input_signature=[
                tf.TensorSpec([None], tf.int32),
                tf.TensorSpec([None, DIM], tf.float32),
            ],
        )
        value = compiled(labels, x)
        if name == "spread_out_random":  # XLA draws other random numbers
            self.assertTrue(np.all(np.isfinite(value)))
        else:
            self.assertAllClose(value, fn(labels, x), atol=1e-6)


class InvalidInputTest(testing.TestCase):
    @parameterized.parameters(sorted(LOSSES))
    def test_invalid_labels(self, name):
        fn, _, _ = LOSSES[name]
        x = np.random.default_rng(4).normal(size=(4, DIM)).astype("float32")
        with self.assertRaisesRegex(ValueError, r"Received: labels.shape"):
            fn(np.zeros((4, 2), int), x)
        with self.assertRaisesRegex(ValueError, r"Received: labels.shape"):
            fn(np.array(1), x)
        with self.assertRaisesRegex(ValueError, r"Received: labels.shape=\(5"):
            fn(np.arange(5), x)
        with self.assertRaisesRegex(ValueError, "Received: labels=1.5"):
            fn(np.array([0.0, 1.5, 1.0, 0.0], "float32"), x)
        with self.assertRaisesRegex(ValueError, "Received: labels=nan"):
            fn(np.array([0.0, np.nan, 1.0, 0.0], "float32"), x)
        with self.assertRaisesRegex(ValueError, "Received: labels=33554432.0"):
            fn(np.array([0, 1, 2**25, 0], "float32"), x)
        with self.assertRaisesRegex(TypeError, "Received: labels.dtype"):
            fn(np.array(["a", "b", "a", "b"]), x)

    @parameterized.parameters(sorted(LOSSES))
    def test_invalid_embeddings(self, name):
        fn, _, _ = LOSSES[name]
        labels = np.array([0, 0, 1, 1])
        with self.assertRaisesRegex(ValueError, "non-finite"):
            fn(labels, np.array([[0, 1], [np.nan, 0], [1, 1], [0, 0.0]]))
        with self.assertRaisesRegex(ValueError, "Received: embeddings.shape"):
            fn(labels, np.ones(4, "float32"))
        with self.assertRaisesRegex(TypeError, "Received: embeddings.dtype"):
            fn(labels, np.ones((4, 2), "int32"))

    @parameterized.parameters(sorted(LOSSES))
    def test_integer_labels_are_compared_exactly(self, name):
        fn, _, _ = LOSSES[name]
        if name == "proxy_anchor":  # labels are proxy indices there
            return
        x = np.random.default_rng(5).normal(size=(6, DIM)).astype("float32")
        small = np.array([0, 1, 1, 0, 2, 2])
        big = np.int64(2**40) + small  # distinct ids beyond float32 and int32
        self.assertAllClose(fn(big, x), fn(small, x))

    @parameterized.parameters(CLASSES)
    def test_class_labels(self, cls):
        x = np.random.default_rng(6).normal(size=(6, DIM)).astype("float32")
        labels = np.array([0, 1, 1, 0, 2, 2])
        kwargs = (
            {"negatives": "all"} if cls is losses.SpreadOutRegularizer else {}
        )
        loss = cls(reduction=None, **kwargs)
        # (batch_size, 1) labels, as Keras often passes y_true.
        self.assertAllClose(loss(labels[:, None], x), loss(labels, x))
        # Integer ids beyond 2**24 stay exact (Keras' float32 cast of y_true
        # is bypassed); float32 ids there cannot be exact and are refused.
        self.assertAllClose(
            loss(np.array([0, 1, 1, 0, 2**25, 2**25 + 1]), x),
            loss(np.array([0, 1, 1, 0, 2, 3]), x),
        )
        with self.assertRaisesRegex(ValueError, "Received: labels=33554432"):
            loss(np.array([0, 1, 1, 0, 2**25, 2**25 + 1], "float32"), x)
