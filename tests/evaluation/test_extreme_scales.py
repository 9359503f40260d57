"""Evaluation at extreme scales (issue 13.2).

Rankings, k-NN votes and k-means clusterings do not change when every
embedding is multiplied by the same positive number. float64 embeddings of
scale 1e-25 (whose squares underflow float32) and 1e25 (whose squares
overflow it) must give the results of the same embeddings at scale 1.
"""

import numpy as np
from absl.testing import parameterized

from keras_featreg import evaluation
from tests import helpers as testing

SCALES = (1e-25, 1e25, 1e-150, 1e150)


def clustered(n=120, dim=8, num_classes=6, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    labels = np.arange(n) % num_classes
    return centers[labels] + noise * rng.normal(size=(n, dim)), labels


class ExtremeScaleTest(testing.TestCase):
    @parameterized.product(scale=SCALES, distance=("euclidean", "cosine"))
    def test_recall_at_k(self, scale, distance):
        x, labels = clustered(noise=1.0)
        expected = evaluation.recall_at_k(x, labels, distance=distance)
        self.assertLess(expected[1], 1.0)  # not trivially perfect
        self.assertEqual(
            evaluation.recall_at_k(scale * x, labels, distance=distance),
            expected,
        )
        self.assertAllEqual(
            evaluation.nearest_neighbors(scale * x, 4, distance=distance),
            evaluation.nearest_neighbors(x, 4, distance=distance),
        )

    @parameterized.parameters(*SCALES)
    def test_nmi_and_kmeans(self, scale):
        x, labels = clustered()
        expected = evaluation.nmi(x, labels)
        self.assertGreater(expected, 0.5)
        self.assertEqual(evaluation.nmi(scale * x, labels), expected)
        if not 1e-38 < scale < 1e38:
            # float32 centers cannot hold them: said, not returned as 0/Inf.
            with self.assertRaisesRegex(ValueError, "float32 centers"):
                evaluation.kmeans(scale * x, 6)
            return
        for init in ("random", "k-means++"):
            assignments, centers = evaluation.kmeans(x, 6, init=init)
            scaled, scaled_centers = evaluation.kmeans(scale * x, 6, init=init)
            self.assertAllEqual(scaled, assignments)
            # The centers are returned at the embeddings' scale.
            self.assertAllClose(
                np.float64(scaled_centers) / scale, centers, rtol=1e-6
            )

    @parameterized.product(scale=SCALES, vote=("weighted", "majority"))
    def test_knn_accuracy(self, scale, vote):
        x, labels = clustered(noise=1.2)
        train, test = x[:80], x[80:]
        expected = evaluation.knn_accuracy(
            train, labels[:80], test, labels[80:], k=5, vote=vote
        )
        self.assertLess(expected, 1.0)
        self.assertEqual(
            evaluation.knn_accuracy(
                scale * train, labels[:80], scale * test, labels[80:], k=5,
                vote=vote,
            ),
            expected,
        )  # fmt: skip
