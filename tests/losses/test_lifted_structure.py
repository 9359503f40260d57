import numpy as np
from absl.testing import parameterized

from keras_featreg import losses
from tests import helpers as testing
from tests.losses.common import LABEL_SETS
from tests.losses.common import fit_smoke
from tests.losses.common import numpy_distance
from tests.losses.common import random_embeddings


def numpy_j(labels, x, i, j, margin):
    """J_ij of Oh Song et al. Eq. 4, or None without negatives."""
    negatives = [k for k in range(len(labels)) if labels[k] != labels[i]]
    if not negatives:
        return None
    exponents = [margin - numpy_distance(x[i], x[k]) for k in negatives]
    exponents += [margin - numpy_distance(x[j], x[k]) for k in negatives]
    # log(sum(exp(...))) without overflow or underflow at any scale.
    return np.logaddexp.reduce(exponents) + numpy_distance(x[i], x[j])


def numpy_lifted_structure(labels, x, margin=1.0):
    """The paper's batch value over unordered positive pairs."""
    terms = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            if labels[i] == labels[j]:
                value = numpy_j(labels, x, i, j, margin)
                if value is not None:
                    terms.append(max(value, 0.0) ** 2)
    return sum(terms) / (2 * len(terms)) if terms else 0.0


def numpy_lifted_per_anchor(labels, x, margin=1.0):
    """Each ordered pair (i, j) gives relu(J_ij)^2 / 2 to anchor i."""
    b = len(labels)
    out, count = np.zeros(b), 0
    for i in range(b):
        for j in range(b):
            if i != j and labels[i] == labels[j]:
                value = numpy_j(labels, x, i, j, margin)
                if value is not None:
                    out[i] += 0.5 * max(value, 0.0) ** 2
                    count += 1
    return out * b / count if count else out


class LiftedStructureLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(losses.LiftedStructureLoss())
        revived = self.run_class_serialization_test(
            losses.LiftedStructureLoss(margin=0.5)
        )
        self.assertEqual(revived.margin, 0.5)

    @parameterized.product(label_set=sorted(LABEL_SETS), margin=[1.0, 0.2])
    def test_correctness(self, label_set, margin):
        labels = LABEL_SETS[label_set]
        x = random_embeddings(labels, normalize=True)
        per_anchor = losses.LiftedStructureLoss(margin, reduction=None)(
            labels, x
        )
        self.assertAllClose(
            per_anchor, numpy_lifted_per_anchor(labels, x, margin), atol=1e-5
        )
        # The default reduction returns the paper's J exactly.
        expected = numpy_lifted_structure(labels, x, margin)
        self.assertAllClose(
            losses.LiftedStructureLoss(margin)(labels, x), expected, atol=1e-5
        )
        self.assertAllClose(np.mean(per_anchor), expected, atol=1e-5)

    def test_large_margin_is_stable(self):
        labels = LABEL_SETS["pk"]
        x = random_embeddings(labels, normalize=True)
        value = losses.lifted_structure_loss(labels, x, margin=200.0)
        self.assertTrue(np.all(np.isfinite(value)))
        self.assertAllClose(
            np.mean(value),
            numpy_lifted_structure(labels, x, 200.0),
            rtol=1e-5,
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: margin=-1"):
            losses.LiftedStructureLoss(margin=-1)
        with self.assertRaisesRegex(ValueError, "Received: margin=inf"):
            losses.LiftedStructureLoss(margin=float("inf"))

    def test_fit(self):
        _, history = fit_smoke(self, losses.LiftedStructureLoss())
        self.assertLess(history[-1], history[0])
