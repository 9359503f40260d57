import numpy as np
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing
from tests.losses.common import LABEL_SETS
from tests.losses.common import fit_smoke
from tests.losses.common import numpy_distance
from tests.losses.common import random_embeddings


def numpy_contrastive_loss(labels, x, margin=1.0, squared=False):
    """Per anchor: mean over every other sample of the pair term."""
    b = len(labels)
    out = np.zeros(b)
    for i in range(b):
        terms = []
        for j in range(b):
            if i == j:
                continue
            d = numpy_distance(x[i], x[j])
            if labels[i] == labels[j]:
                term = d**2 if squared else d
            else:
                term = (
                    max(margin - d, 0.0) ** 2
                    if squared
                    else max(margin - d, 0.0)
                )
            terms.append(term)
        out[i] = np.mean(terms) if terms else 0.0
    return out


class ContrastiveLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.ContrastiveLoss())
        revived = self.run_class_serialization_test(
            losses.ContrastiveLoss(margin=0.5, squared=True, reduction="sum")
        )
        self.assertEqual(revived.margin, 0.5)
        self.assertTrue(revived.squared)

    @parameterized.product(
        label_set=sorted(LABEL_SETS), margin=[1.0, 0.3], squared=[False, True]
    )
    def test_correctness(self, label_set, margin, squared):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True)
        expected = numpy_contrastive_loss(labels, x, margin, squared)
        loss = losses.ContrastiveLoss(margin, squared, reduction=None)
        self.assertAllClose(loss(labels, x), expected, atol=1e-5)
        self.assertAllClose(
            losses.contrastive_loss(labels, x, margin, squared),
            expected,
            atol=1e-5,
        )
        # Default reduction: the mean over all pairs of the batch.
        self.assertAllClose(
            losses.ContrastiveLoss(margin, squared)(labels, x),
            expected.mean(),
            atol=1e-5,
        )

    def test_unnormalized_embeddings(self):
        labels = LABEL_SETS["unbalanced"]
        x = 3.0 * random_embeddings(labels, seed=1)
        self.assertAllClose(
            losses.contrastive_loss(labels, x, margin=2.0),
            numpy_contrastive_loss(labels, x, margin=2.0),
            atol=1e-4,
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: margin=-1"):
            losses.ContrastiveLoss(margin=-1)
        with self.assertRaisesRegex(ValueError, "Received: margin=nan"):
            losses.ContrastiveLoss(margin=float("nan"))
        with self.assertRaisesRegex(TypeError, "Received: squared=1"):
            losses.ContrastiveLoss(squared=1)

    def test_fit(self):
        _, history = fit_smoke(self, losses.ContrastiveLoss())
        self.assertLess(history[-1], history[0])


def numpy_official_contrastive_loss(binary_labels, anchors, positives, m=1.0):
    """`ranking/contrastive.py` of the official SVMax code, in NumPy."""
    epsilon = 10e-6
    y = np.float64(binary_labels)
    difference = np.float64(anchors) - np.float64(positives)
    distances = np.sqrt(np.sum(difference**2, axis=1) + epsilon)
    pos_loss = y * distances**2
    neg_loss = (1.0 - y) * np.maximum(m - distances, 0.0) ** 2
    return np.mean(pos_loss + neg_loss)


def balanced_pairs(labels):
    """The documented rule: per anchor, the next same-class and the next
    other-class sample in cyclic batch order."""
    b = len(labels)
    pairs = []
    for i in range(b):
        order = [(i + step) % b for step in range(1, b)]
        same = [j for j in order if labels[j] == labels[i]]
        other = [j for j in order if labels[j] != labels[i]]
        if same:
            pairs.append((i, same[0], 1))
        if other:
            pairs.append((i, other[0], 0))
    return pairs


class BalancedContrastiveTest(testing.TestCase):
    def test_config(self):
        revived = self.run_class_serialization_test(
            losses.ContrastiveLoss(pairs="balanced", squared=True)
        )
        self.assertEqual(revived.pairs, "balanced")
        self.assertEqual(losses.ContrastiveLoss().pairs, "all")

    @parameterized.product(
        label_set=sorted(LABEL_SETS), margin=[1.0, 0.5], seed=[0, 1]
    )
    def test_balanced_equals_official_code(self, label_set, margin, seed):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True, seed=seed)
        pairs = balanced_pairs(labels)
        anchors = x[[i for i, _, _ in pairs]]
        partners = x[[j for _, j, _ in pairs]]
        expected = numpy_official_contrastive_loss(
            [y for _, _, y in pairs], anchors, partners, margin
        )
        loss = losses.ContrastiveLoss(margin, squared=True, pairs="balanced")
        # Up to the official sqrt(. + 1e-5): below 1e-5 on the mean.
        self.assertAllClose(loss(labels, x), expected, atol=2e-5)

    def test_balanced_pairs_are_half_positive(self):
        labels = np.repeat(np.arange(36), 4)  # the paper's P x K = 36 x 4
        rng = np.random.default_rng(0)
        labels = labels[rng.permutation(144)]
        pairs = balanced_pairs(labels)
        self.assertEqual(sum(y for _, _, y in pairs), 144)
        self.assertLen(pairs, 288)
        x = random_embeddings(labels, dim=8, normalize=True)
        loss = losses.ContrastiveLoss(squared=True, pairs="balanced")
        anchors = x[[i for i, _, _ in pairs]]
        partners = x[[j for _, j, _ in pairs]]
        expected = numpy_official_contrastive_loss(
            [y for _, _, y in pairs], anchors, partners
        )
        self.assertAllClose(loss(labels, x), expected, atol=2e-5)

    def test_balanced_unsquared_per_anchor(self):
        labels = LABEL_SETS["unbalanced"]
        x = random_embeddings(labels, normalize=True)
        per_anchor = {}
        for i, j, y in balanced_pairs(labels):
            d = numpy_distance(x[i], x[j])
            per_anchor.setdefault(i, []).append(d if y else max(1.0 - d, 0))
        count = sum(len(v) for v in per_anchor.values())
        expected = np.array(
            [len(labels) / count * sum(per_anchor.get(i, [])) for i in range(7)]
        )
        self.assertAllClose(
            losses.contrastive_loss(labels, x, pairs="balanced"),
            expected,
            atol=1e-5,
        )

    def test_invalid_pairs(self):
        with self.assertRaisesRegex(ValueError, "Received: pairs='random'"):
            losses.ContrastiveLoss(pairs="random")
