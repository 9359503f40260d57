import numpy as np
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing
from tests.losses.common import LABEL_SETS
from tests.losses.common import fit_smoke
from tests.losses.common import numpy_share
from tests.losses.common import random_embeddings


def numpy_n_pair_loss(labels, x, l2_penalty=0.002):
    """Per (a, p): log(1 + sum_n exp(a.n - a.p)); plus 0.5 * l2 * ||x||^2."""
    x = np.float64(x)
    b = len(labels)
    per_pair = {}
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            exponents = [0.0] + [  # log(1 + sum exp(z)) = logsumexp(0, z)
                x[a] @ x[n] - x[a] @ x[p]
                for n in range(b)
                if labels[n] != labels[a]
            ]
            per_pair[(a, p)] = np.logaddexp.reduce(exponents)
    penalty = np.array([0.5 * l2_penalty * (x[i] @ x[i]) for i in range(b)])
    return numpy_share(per_pair, b) + penalty


def numpy_reference_penalty(anchors, positives, reg_lambda=0.002):
    """The L2 term of the reference TF `npairs_loss`."""
    anchors, positives = np.float64(anchors), np.float64(positives)
    reg = np.mean(np.sum(anchors**2, 1)) + np.mean(np.sum(positives**2, 1))
    return 0.25 * reg_lambda * reg


class NPairLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.NPairLoss())
        revived = self.run_class_serialization_test(
            losses.NPairLoss(l2_penalty=0.0)
        )
        self.assertEqual(revived.l2_penalty, 0.0)

    @parameterized.product(
        label_set=sorted(LABEL_SETS), l2_penalty=[0.0, 0.002, 0.5]
    )
    def test_correctness(self, label_set, l2_penalty):
        labels = LABEL_SETS[label_set]
        x = 2.0 * random_embeddings(labels)  # un-normalized, as in Sohn
        expected = numpy_n_pair_loss(labels, x, l2_penalty)
        loss = losses.NPairLoss(l2_penalty, reduction=None)
        self.assertAllClose(loss(labels, x), expected, atol=1e-5)
        self.assertAllClose(
            losses.NPairLoss(l2_penalty)(labels, x),
            expected.mean(),
            atol=1e-5,
        )

    def test_n_pair_batch_penalty_matches_reference(self):
        # On an N-pair batch the penalty equals the reference npairs_loss
        # one.
        rng = np.random.default_rng(0)
        anchors = rng.normal(size=(2, 5)).astype("float32")
        positives = rng.normal(size=(2, 5)).astype("float32")
        x = np.concatenate([anchors, positives])
        labels = np.array([0, 1, 0, 1])
        loss = losses.n_pair_loss(labels, x, l2_penalty=0.002)
        no_penalty = losses.n_pair_loss(labels, x, l2_penalty=0.0)
        reference_penalty = numpy_reference_penalty(anchors, positives)
        self.assertAllClose(
            np.mean(loss) - np.mean(no_penalty), reference_penalty, atol=1e-6
        )

    def test_large_similarities_are_stable(self):
        labels = LABEL_SETS["pk"]
        x = 30.0 * random_embeddings(labels, normalize=True)
        value = losses.n_pair_loss(labels, x, l2_penalty=0.0)
        self.assertTrue(np.all(np.isfinite(value)))
        self.assertAllClose(
            value, numpy_n_pair_loss(labels, x, 0.0), rtol=1e-5, atol=1e-3
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: l2_penalty=-1"):
            losses.NPairLoss(l2_penalty=-1)
        with self.assertRaisesRegex(TypeError, "Received: l2_penalty='a'"):
            losses.NPairLoss(l2_penalty="a")

    def test_fit(self):
        _, history = fit_smoke(self, losses.NPairLoss())
        self.assertLess(history[-1], history[0])


def numpy_reference_npairs_loss(labels, anchors, positives, reg_lambda=0.002):
    """`ranking/npair.py` (= tf.contrib `npairs_loss`) in NumPy float64."""
    anchors, positives = np.float64(anchors), np.float64(positives)
    reg_anchor = np.mean(np.sum(anchors**2, 1))
    reg_positive = np.mean(np.sum(positives**2, 1))
    l2loss = 0.25 * reg_lambda * (reg_anchor + reg_positive)
    similarity = anchors @ positives.T
    labels = np.asarray(labels).reshape(-1, 1)
    target = np.float64(labels == labels.T)
    target /= target.sum(1, keepdims=True)
    shifted = similarity - similarity.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    xent = -np.sum(target * log_softmax, axis=1)
    return l2loss + np.mean(xent)


def pair_batch(num_pairs, dim, seed, interleaved):
    """N pairs of distinct classes, in P x 2 or [anchors; positives] order."""
    rng = np.random.default_rng(seed)
    anchors = rng.normal(size=(num_pairs, dim)).astype("float32")
    positives = (anchors + rng.normal(size=(num_pairs, dim))).astype("float32")
    classes = rng.permutation(100)[:num_pairs]
    if interleaved:
        x = np.stack([anchors, positives], axis=1).reshape(-1, dim)
        labels = np.repeat(classes, 2)
    else:
        x = np.concatenate([anchors, positives])
        labels = np.concatenate([classes, classes])
    return labels, x, classes, anchors, positives


class PairPositivesTest(testing.TestCase):
    def test_config(self):
        revived = self.run_class_serialization_test(
            losses.NPairLoss(negatives="pair_positives")
        )
        self.assertEqual(revived.negatives, "pair_positives")
        self.assertEqual(losses.NPairLoss().negatives, "all")

    @parameterized.product(
        num_pairs=[2, 5, 12],
        interleaved=[True, False],
        l2_penalty=[0.0, 0.002],
        seed=[0, 1],
    )
    def test_equals_reference_npairs_loss(
        self, num_pairs, interleaved, l2_penalty, seed
    ):
        labels, x, classes, anchors, positives = pair_batch(
            num_pairs, 6, seed, interleaved
        )
        expected = numpy_reference_npairs_loss(
            classes, anchors, positives, l2_penalty
        )
        loss = losses.NPairLoss(l2_penalty, negatives="pair_positives")
        self.assertAllClose(loss(labels, x), expected, atol=1e-5)
        self.assertAllClose(
            np.mean(
                losses.n_pair_loss(labels, x, l2_penalty, "pair_positives")
            ),
            expected,
            atol=1e-5,
        )

    def test_only_anchors_carry_the_pair_terms(self):
        labels, x, classes, anchors, positives = pair_batch(3, 4, 2, True)
        per_sample = losses.n_pair_loss(labels, x, 0.0, "pair_positives")
        self.assertAllClose(np.asarray(per_sample)[1::2], np.zeros(3))
        # Anchor i: log(1 + sum_{j != i} exp(a_i.p_j - a_i.p_i)), x 2 / 2.
        a, p = np.float64(anchors), np.float64(positives)
        expected = [
            np.logaddexp.reduce(
                [0.0] + [a[i] @ p[j] - a[i] @ p[i] for j in range(3) if j != i]
            )
            for i in range(3)
        ]
        self.assertAllClose(
            np.asarray(per_sample)[0::2], 2 * np.array(expected), atol=1e-5
        )

    def test_differs_from_all_negatives(self):
        labels, x, *_ = pair_batch(4, 5, 0, True)
        self.assertNotAllClose(
            losses.NPairLoss(negatives="all")(labels, x),
            losses.NPairLoss(negatives="pair_positives")(labels, x),
        )

    def test_invalid_negatives(self):
        with self.assertRaisesRegex(ValueError, "Received: negatives='x'"):
            losses.NPairLoss(negatives="x")
