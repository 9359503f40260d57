"""Ranking losses at extreme scales: the right value, or a clear error.

Un-normalized float32 embeddings of magnitude 1e20 and 1e37 (issue 13.1).
Where the float64 NumPy re-derivation is representable in float32 (every
per-sample value and their batch sum, which Keras' reduction computes), the
loss must return it with the re-derived gradient; where it is not, the loss
must raise a `ValueError` that says so, never return NaN. The batches:

- `random`: unit rows times the scale (dot products ~scale^2, distances
  ~scale): representable for the distance losses, not for the others;
- `separated`: classes on disjoint coordinates, spread within each class:
  every term saturates (0) or stays representable, for every loss;
- `duplicates`: identical rows in every class, so logits tie exactly and
  the exact gradient (~scale) flows through terms of size scale^2;
- `big_batch`: 48 random rows of norm 3 * scale in two classes; at 1e37
  the per-sample values of the distance losses are representable but
  their sum is not.
"""

import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing
from tests.losses.test_angular import numpy_angular_loss
from tests.losses.test_contrastive import numpy_contrastive_loss
from tests.losses.test_lifted_structure import numpy_lifted_per_anchor
from tests.losses.test_n_pair import numpy_n_pair_loss
from tests.losses.test_spread_out import numpy_spread_out
from tests.losses.test_triplet import numpy_batch_hard
from tests.losses.test_triplet import numpy_semihard

SCALES = (1e20, 1e37)
FLOAT32_MAX = float(np.finfo(np.float32).max)


def pairs(labels, same):
    b = len(labels)
    return [
        (a, p)
        for a in range(b)
        for p in range(b)
        if a != p and (labels[a] == labels[p]) == same
    ]


def softmax_weights(exponents):
    """exp(z) / (1 + sum(exp(z))) for each z, in float64, at any scale."""
    exponents = np.asarray(exponents, np.float64)
    total = np.logaddexp.reduce(np.concatenate([[0.0], exponents]))
    return np.exp(exponents - total)


def numpy_n_pair_gradient(labels, x, l2_penalty=0.002):
    """Gradient of sum(n_pair_loss): (b / |P|) sum_{a, p} pair + penalty."""
    x = np.float64(x)
    b = len(labels)
    grad = l2_penalty * x.copy()
    positive_pairs = pairs(labels, True)
    for a, p in positive_pairs:
        negatives = [n for n in range(b) if labels[n] != labels[a]]
        if not negatives:
            continue
        z = [x[a] @ x[n] - x[a] @ x[p] for n in negatives]
        weight = b / len(positive_pairs) * softmax_weights(z)
        for n, w in zip(negatives, weight, strict=True):
            grad[a] += w * (x[n] - x[p])
            grad[n] += w * x[a]
            grad[p] -= w * x[a]
    return grad


def numpy_angular_gradient(labels, x, alpha=45.0):
    """Gradient of sum(angular_loss) over the (a, p) pairs' log-sum-exps."""
    x = np.float64(x)
    tan_sq = math.tan(math.radians(alpha)) ** 2
    b = len(labels)
    grad = np.zeros_like(x)
    positive_pairs = pairs(labels, True)
    for a, p in positive_pairs:
        negatives = [n for n in range(b) if labels[n] != labels[a]]
        f = [
            4 * tan_sq * (x[a] + x[p]) @ x[n] - 2 * (1 + tan_sq) * x[a] @ x[p]
            for n in negatives
        ]
        weight = b / len(positive_pairs) * softmax_weights(f)
        for n, w in zip(negatives, weight, strict=True):
            grad[a] += w * (4 * tan_sq * x[n] - 2 * (1 + tan_sq) * x[p])
            grad[p] += w * (4 * tan_sq * x[n] - 2 * (1 + tan_sq) * x[a])
            grad[n] += w * 4 * tan_sq * (x[a] + x[p])
    return grad


def numpy_spread_out_gradient(labels, x):
    """Gradient of sum(spread_out_loss(..., "all")) = b * (M1^2 + relu)."""
    x = np.float64(x)
    b, dim = x.shape
    negative_pairs = pairs(labels, False)
    grad = np.zeros_like(x)
    if not negative_pairs:
        return grad
    dots = np.array([x[a] @ x[n] for a, n in negative_pairs])
    count = len(negative_pairs)
    active = np.mean(dots**2) > 1.0 / dim
    for (a, n), dot in zip(negative_pairs, dots, strict=True):
        d_value = 2 * np.mean(dots) / count + active * 2 * dot / count
        grad[a] += b * d_value * x[n]
        grad[n] += b * d_value * x[a]
    return grad


def numeric_gradient(reference, labels, x, relative_step=1e-6):
    """Central differences of sum(reference) in float64 (first rows only).

    For the distance losses only: their curvature is ~1 / scale, so a step
    of 1e-6 * scale is exact to ~1e-10 away from kinks (the test batches
    keep the pairs away from them, or on symmetric ones: coincident rows).
    Batches of more than 8 rows get their first row only, the others NaN
    (not compared): the loop references are O(batch_size^3) per call.
    """
    x = np.float64(x)
    step = relative_step * np.max(np.abs(x))
    grad = np.full_like(x, np.nan)
    rows = len(x) if len(x) <= 8 else 1
    for index in np.ndindex((rows, x.shape[1])):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        grad[index] = (
            np.sum(reference(labels, up)) - np.sum(reference(labels, down))
        ) / (2 * step)
    return grad


def numeric(reference):
    return lambda labels, x: numeric_gradient(reference, labels, x)


# name: (function, float64 value reference, float64 gradient reference)
LOSSES = {
    "contrastive": (
        losses.contrastive_loss,
        numpy_contrastive_loss,
        numeric(numpy_contrastive_loss),
    ),
    "contrastive_squared": (
        lambda y, x: losses.contrastive_loss(y, x, squared=True),
        lambda y, x: numpy_contrastive_loss(y, x, squared=True),
        numeric(lambda y, x: numpy_contrastive_loss(y, x, squared=True)),
    ),
    "triplet_hard": (
        losses.triplet_loss,
        numpy_batch_hard,
        numeric(numpy_batch_hard),
    ),
    "triplet_hard_squared": (
        lambda y, x: losses.triplet_loss(y, x, squared=True),
        lambda y, x: numpy_batch_hard(y, x, squared=True),
        numeric(lambda y, x: numpy_batch_hard(y, x, squared=True)),
    ),
    "triplet_semihard": (
        lambda y, x: losses.triplet_loss(y, x, mining="semihard"),
        numpy_semihard,
        numeric(numpy_semihard),
    ),
    "n_pair": (losses.n_pair_loss, numpy_n_pair_loss, numpy_n_pair_gradient),
    "angular": (
        losses.angular_loss,
        numpy_angular_loss,
        numpy_angular_gradient,
    ),
    "lifted_structure": (
        losses.lifted_structure_loss,
        numpy_lifted_per_anchor,
        numeric(numpy_lifted_per_anchor),
    ),
    "spread_out": (
        lambda y, x: losses.spread_out_loss(y, x, "all"),
        numpy_spread_out,
        numpy_spread_out_gradient,
    ),
}

# Homogeneity degree of each loss in the embeddings at huge scales.
DEGREE = {
    "contrastive": 1,
    "contrastive_squared": 2,
    "triplet_hard": 1,
    "triplet_hard_squared": 2,
    "triplet_semihard": 1,
    "n_pair": 2,
    "angular": 2,
    "lifted_structure": 2,
    "spread_out": 4,
}

CLASSES = {
    "contrastive": losses.ContrastiveLoss,
    "triplet_hard": losses.TripletLoss,
    "n_pair": losses.NPairLoss,
    "angular": losses.AngularLoss,
    "lifted_structure": losses.LiftedStructureLoss,
    "spread_out": lambda **kwargs: losses.SpreadOutLoss(
        negatives="all", **kwargs
    ),
}


def batches(scale):
    labels = np.array([0, 0, 1, 1, 2, 2])
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(6, 6))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    separated = np.zeros((6, 6))
    for i, c in enumerate(labels):
        separated[i, 2 * c] = 1.0
        separated[i, 2 * c + 1] = 0.05 * (i + 1)
    big = rng.normal(size=(48, 6))
    big /= np.linalg.norm(big, axis=1, keepdims=True)
    return {
        "random": (labels, scale * unit),
        "separated": (labels, scale * separated),
        "duplicates": (labels, np.full((6, 6), scale / 6.0)),
        "big_batch": (np.arange(48) % 2, 3.0 * scale * big),
    }


def representable(values):
    """Whether float32 holds every value and the sum Keras reduces them to."""
    values = np.asarray(values, np.float64)
    return bool(
        np.all(np.abs(values) <= FLOAT32_MAX)
        and abs(np.sum(values)) <= FLOAT32_MAX
    )


def value_and_gradient(fn, labels, x):
    x = tf.Variable(x)
    with tf.GradientTape() as tape:
        value = fn(labels, x)
        total = tf.reduce_sum(value)
    return value, tape.gradient(total, x)


class ExtremeScaleTest(testing.TestCase):
    @parameterized.product(name=sorted(LOSSES), scale=SCALES)
    def test_value_and_gradient_or_clear_error(self, name, scale):
        fn, reference, gradient_reference = LOSSES[name]
        for case, (labels, x) in batches(scale).items():
            x = x.astype("float32")
            expected = reference(labels, np.float64(x))
            if not representable(expected):
                with self.assertRaisesRegex(
                    ValueError,
                    r"overflows float32.*Received: embeddings with max "
                    r"\|value\|=",
                    msg=case,
                ):
                    value_and_gradient(fn, labels, x)
                continue
            value, gradient = value_and_gradient(fn, labels, x)
            self.assertTrue(np.all(np.isfinite(gradient)), (case, gradient))
            # rtol: the float32 Gram form's error on close pairs (the
            # separated batch's positives), as at scale 1.
            self.assertAllClose(
                value, expected, rtol=1e-4, atol=1e-30, msg=case
            )
            expected_gradient = gradient_reference(labels, np.float64(x))
            known = ~np.isnan(expected_gradient)  # rows the reference did
            expected_gradient = expected_gradient[known]
            # Gradient entries ~1e20 next to exact zeros: compare relative
            # to the largest entry.
            atol = 1e-5 * max(np.max(np.abs(expected_gradient)), 1e-30)
            self.assertAllClose(
                np.asarray(gradient)[known],
                expected_gradient,
                rtol=1e-4,
                atol=atol,
                msg=case,
            )

    def test_some_cases_are_representable_for_every_loss(self):
        # The test above must not pass by raising everywhere: at 1e20 the
        # separated batch is representable for every loss.
        for name, (_, reference, _) in LOSSES.items():
            labels, x = batches(1e20)["separated"]
            self.assertTrue(representable(reference(labels, x)), name)

    @parameterized.parameters(sorted(CLASSES))
    def test_classes(self, name):
        # The classes call the functions: the same value, or the same error.
        _, reference, _ = LOSSES[name]
        for scale in SCALES:
            for case, (labels, x) in batches(scale).items():
                x = x.astype("float32")
                expected = reference(labels, np.float64(x))
                loss = CLASSES[name]()
                if representable(expected):
                    self.assertAllClose(
                        loss(labels, x), np.mean(expected), rtol=1e-5
                    )
                else:
                    with self.assertRaisesRegex(
                        ValueError, "overflows", msg=case
                    ):
                        loss(labels, x)

    @parameterized.parameters(sorted(LOSSES))
    def test_graph_mode_fails_clearly(self, name):
        # Inside tf.function (model.fit) the error comes at run time. Rows
        # near float32's largest value: an antipodal positive pair (distance
        # 6e38) whose closest negative is near.
        fn, reference, _ = LOSSES[name]
        labels = np.array([0, 0, 1, 1])
        x = np.array([[3e38, 0], [-3e38, 0], [3e38, 1e37], [-2.9e38, 1e37]])
        self.assertFalse(representable(reference(labels, x)))
        graph_fn = tf.function(fn)
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "overflows float32"
        ):
            graph_fn(labels, x.astype("float32"))


class Float64Test(testing.TestCase):
    """float64 embeddings beyond float32's range (issue 13.1, last part)."""

    @parameterized.parameters(sorted(LOSSES))
    def test_functions_compute_in_float64(self, name):
        # At 1e200 the distances (1e200) fit float64, their squares and the
        # dot products (1e400) do not. The reference loops overflow there,
        # so the expected values are those at 1e150 times (1e50)^DEGREE:
        # at these scales the margins are negligible and every loss is
        # homogeneous of its degree in the embeddings.
        fn, reference, _ = LOSSES[name]
        labels, x = batches(1e150)["random"]
        if DEGREE[name] == 1:
            value = fn(labels, 1e50 * x)
            self.assertEqual(value.dtype, tf.float64)
            self.assertAllClose(value, 1e50 * reference(labels, x), rtol=1e-7)
        else:
            with self.assertRaisesRegex(ValueError, "overflows float64"):
                fn(labels, 1e50 * x)

    @parameterized.parameters(sorted(CLASSES))
    def test_classes_say_what_is_wrong(self, name):
        labels, x = batches(1e200)["random"]
        # Keras casts y_pred to the loss dtype, float32 by default.
        with self.assertRaisesRegex(ValueError, r"float32.*dtype"):
            CLASSES[name]()(labels, x)
        value = CLASSES[name](dtype="float64")(labels, x / 1e199)
        self.assertEqual(value.dtype, tf.float64)
