import math

import numpy as np
from absl.testing import parameterized
from keras.src import testing

from keras_featreg import losses
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
            total = 0.0
            for n in range(b):
                if labels[n] == labels[a]:
                    continue
                f = 4 * tan_sq * (x[a] + x[p]) @ x[n] - 2 * (1 + tan_sq) * (
                    x[a] @ x[p]
                )
                total += math.exp(f)
            per_pair[(a, p)] = math.log(1.0 + total)
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
