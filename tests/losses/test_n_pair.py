import numpy as np
from absl.testing import parameterized
from keras.src import testing

from keras_featreg import losses
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
