import numpy as np
from absl.testing import parameterized
from keras.src import testing

from keras_featreg import losses
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
