import math

import numpy as np
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing
from tests.losses.common import LABEL_SETS
from tests.losses.common import fit_smoke
from tests.losses.common import numpy_share
from tests.losses.common import random_embeddings


def numpy_angular_loss(labels, x, alpha=45.0):
    """Per (a, p): log(1 + sum_n exp(f_apn)), SVMax paper Eq. 9-10."""
    x = np.float64(x)
    tan_sq = math.tan(math.radians(alpha)) ** 2
    b = len(labels)
    per_pair = {}
    for a in range(b):
        for p in range(b):
            if p == a or labels[p] != labels[a]:
                continue
            exponents = [0.0]  # log(1 + sum exp(f)) = logsumexp(0, f)
            for n in range(b):
                if labels[n] == labels[a]:
                    continue
                f = 4 * tan_sq * (x[a] + x[p]) @ x[n] - 2 * (1 + tan_sq) * (
                    x[a] @ x[p]
                )
                exponents.append(f)
            per_pair[(a, p)] = np.logaddexp.reduce(exponents)
    return numpy_share(per_pair, b)


class AngularLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.AngularLoss())
        revived = self.run_class_serialization_test(
            losses.AngularLoss(alpha=36.0, reduction="sum")
        )
        self.assertEqual(revived.alpha, 36.0)

    @parameterized.product(
        label_set=sorted(LABEL_SETS), alpha=[45.0, 36.0, 55.0]
    )
    def test_correctness(self, label_set, alpha):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True)
        expected = numpy_angular_loss(labels, x, alpha)
        loss = losses.AngularLoss(alpha, reduction=None)
        self.assertAllClose(loss(labels, x), expected, rtol=1e-5, atol=1e-5)
        self.assertAllClose(
            losses.AngularLoss(alpha)(labels, x),
            expected.mean(),
            rtol=1e-5,
            atol=1e-5,
        )

    def test_bounds(self):
        # Unit embeddings, alpha = 45: the paper's Eq. 11 gives f in
        # [-12, 4], but with c = a.p, max_n f = 4 sqrt(2 + 2c) - 4c, which
        # peaks at c = -1/2: f = 6. Each pair's loss therefore lies in
        # [log(e^-12 |n| + 1), log(e^6 |n| + 1)].
        labels = np.repeat(np.arange(4), 2)
        x = random_embeddings(labels, dim=3, seed=5, normalize=True)
        value = losses.angular_loss(labels, x)
        num_negatives = len(labels) - 2
        self.assertTrue(
            np.all(value >= math.log(math.exp(-12) * num_negatives + 1))
        )
        self.assertTrue(
            np.all(value <= math.log(math.exp(6) * num_negatives + 1))
        )
        # The configuration that reaches f = 6: a, p at 120 degrees, the
        # negative along a + p.
        a = np.array([1.0, 0.0])
        p = np.array([-0.5, math.sqrt(3) / 2])
        n = (a + p) / np.linalg.norm(a + p)
        x = np.stack([a, p, n]).astype("float32")
        value = losses.angular_loss(np.array([0, 0, 1]), x)
        # mean(value) is the mean over the two (anchor, positive) pairs.
        self.assertAllClose(np.mean(value), math.log(1 + math.exp(6)))
        self.assertGreater(np.mean(value), math.log(math.exp(4) + 1))

    def test_invalid_arguments(self):
        for alpha in (0, -10, 90, 120):
            with self.assertRaisesRegex(ValueError, f"Received: alpha={alpha}"):
                losses.AngularLoss(alpha=alpha)
        with self.assertRaisesRegex(ValueError, "Received: alpha=90"):
            losses.angular_loss([0, 0], np.ones((2, 2), "float32"), 90.0)

    def test_fit(self):
        _, history = fit_smoke(self, losses.AngularLoss())
        self.assertLess(history[-1], history[0])


def numpy_reference_angular_loss(labels, anchors, positives, degree=45.0):
    """The official SVMax `ranking/angular.py` (with_l2reg=False), NumPy."""
    anchors, positives = np.float64(anchors), np.float64(positives)
    batch_size = len(anchors)
    sq_tan_alpha = np.tan(np.deg2rad(degree)) ** 2
    xa_xp = anchors @ positives.T
    sim_1 = 2.0 * (1.0 + sq_tan_alpha) * xa_xp * np.eye(batch_size)
    xa_plus_xp_xn = (anchors + positives) @ positives.T
    sim_2 = 4.0 * sq_tan_alpha * xa_plus_xp_xn * (1 - np.eye(batch_size))
    similarity = sim_1 + sim_2
    labels = np.asarray(labels).reshape(-1, 1)
    target = np.float64(labels == labels.T)
    target /= target.sum(1, keepdims=True)
    shifted = similarity - similarity.max(1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return np.mean(-np.sum(target * log_softmax, axis=1))


class AngularPairPositivesTest(testing.TestCase):
    def test_config(self):
        revived = self.run_class_serialization_test(
            losses.AngularLoss(negatives="pair_positives")
        )
        self.assertEqual(revived.negatives, "pair_positives")
        self.assertEqual(losses.AngularLoss().negatives, "all")

    @parameterized.product(
        num_pairs=[2, 5, 10],
        interleaved=[True, False],
        alpha=[45.0, 30.0],
        seed=[0, 1],
    )
    def test_equals_reference_angular_loss(
        self, num_pairs, interleaved, alpha, seed
    ):
        rng = np.random.default_rng(seed)
        anchors = rng.normal(size=(num_pairs, 4))
        anchors /= np.linalg.norm(anchors, axis=1, keepdims=True)
        positives = anchors + 0.5 * rng.normal(size=(num_pairs, 4))
        positives /= np.linalg.norm(positives, axis=1, keepdims=True)
        classes = rng.permutation(50)[:num_pairs]
        if interleaved:
            x = np.stack([anchors, positives], axis=1).reshape(-1, 4)
            labels = np.repeat(classes, 2)
        else:
            x = np.concatenate([anchors, positives])
            labels = np.concatenate([classes, classes])
        expected = numpy_reference_angular_loss(
            classes, anchors, positives, alpha
        )
        loss = losses.AngularLoss(alpha, negatives="pair_positives")
        self.assertAllClose(loss(labels, x.astype("float32")), expected, 1e-5)

    def test_invalid_negatives(self):
        with self.assertRaisesRegex(ValueError, "Received: negatives='x'"):
            losses.AngularLoss(negatives="x")
