"""MAP@R and R-precision against a brute-force NumPy transcription."""

import numpy as np
from absl.testing import parameterized

from keras_featreg import evaluation
from tests import helpers as testing


def numpy_map_at_r_and_r_precision(x, labels, distance="euclidean"):
    """Musgrave et al. (2020), query by query, in float64.

    Each query ranks all OTHER samples by distance (ties to the lower
    index), reads its R = (same-label others) nearest, and scores
    AP@R = sum_i hit_i * precision@i / R and R-precision = hits / R.
    Queries with R = 0 are left out.
    """
    x = np.asarray(x, np.float64)
    if distance == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.asarray(labels)
    average_precisions, r_precisions = [], []
    for q in range(len(x)):
        others = [j for j in range(len(x)) if j != q]
        r = sum(labels[j] == labels[q] for j in others)
        if r == 0:
            continue
        ranked = sorted(others, key=lambda j: (np.sum((x[j] - x[q]) ** 2), j))
        hits = [labels[j] == labels[q] for j in ranked[:r]]
        total, found = 0.0, 0
        for i, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                total += found / i
        average_precisions.append(total / r)
        r_precisions.append(found / r)
    return np.mean(average_precisions), np.mean(r_precisions)


class MapAtRTest(testing.TestCase):
    def test_hand_example(self):
        # Class 0 at 0, 1, 5; class 1 at 2, 3, 9 (1-D).
        x = np.array([[0.0], [1.0], [5.0], [2.0], [3.0], [9.0]])
        labels = np.array([0, 0, 0, 1, 1, 1])
        # R = 2 for every query. Neighbours (ties to the lower index):
        # q0 (0): 1, 3 -> hit, miss: AP = 1/2, RP = 1/2
        # q1 (1): 0, 3 -> hit, miss: AP = 1/2, RP = 1/2
        # q2 (5): 4, 3 -> miss, miss: AP = 0, RP = 0
        # q3 (2): 1, 4 -> miss, hit: AP = (1/2)/2 = 1/4, RP = 1/2
        # q4 (3): 3, 1 -> hit, miss: AP = 1/2, RP = 1/2
        # q5 (9): 2, 4 -> miss, hit: AP = 1/4, RP = 1/2
        expected_map = (0.5 + 0.5 + 0 + 0.25 + 0.5 + 0.25) / 6
        expected_rp = (0.5 + 0.5 + 0 + 0.5 + 0.5 + 0.5) / 6
        self.assertAllClose(evaluation.map_at_r(x, labels), expected_map)
        self.assertAllClose(evaluation.r_precision(x, labels), expected_rp)
        self.assertAllClose(
            numpy_map_at_r_and_r_precision(x, labels),
            (expected_map, expected_rp),
        )

    @parameterized.product(
        seed=[0, 1, 2], distance=["euclidean", "cosine"], noise=[0.5, 3.0]
    )
    def test_matches_brute_force(self, seed, distance, noise):
        rng = np.random.default_rng(seed)
        labels = rng.integers(0, 7, size=60)  # unbalanced, maybe singletons
        labels[-1] = 99  # a query alone in its class: left out
        centers = rng.normal(size=(100, 5))
        x = centers[labels] + noise * rng.normal(size=(60, 5))
        expected = numpy_map_at_r_and_r_precision(x, labels, distance)
        self.assertAllClose(
            evaluation.map_at_r(x, labels, distance=distance),
            expected[0],
            atol=1e-12,
        )
        self.assertAllClose(
            evaluation.r_precision(x, labels, distance=distance),
            expected[1],
            atol=1e-12,
        )

    def test_all_hits_and_no_hits(self):
        x = np.array([[0.0], [1.0], [2.0], [10.0], [20.0], [30.0]])
        first = np.array([0, 0, 1, 2, 3, 4])  # q0, q1 find each other
        self.assertEqual(evaluation.map_at_r(x, first), 1.0)
        self.assertEqual(evaluation.r_precision(x, first), 1.0)
        labels = np.array([0, 1, 2, 0, 3, 4])
        self.assertEqual(evaluation.r_precision(x, labels), 0.0)

    def test_perfect_clusters_score_one(self):
        x = np.repeat(np.eye(4), 5, axis=0)
        labels = np.repeat(np.arange(4), 5)
        self.assertEqual(evaluation.map_at_r(x, labels), 1.0)
        self.assertEqual(evaluation.r_precision(x, labels), 1.0)

    def test_chunk_size_changes_nothing(self):
        rng = np.random.default_rng(3)
        labels = np.arange(50) % 5
        x = rng.normal(size=(50, 4))
        whole = evaluation.map_at_r(x, labels)
        self.assertEqual(evaluation.map_at_r(x, labels, chunk_size=7), whole)

    def test_invalid_input(self):
        with self.assertRaisesRegex(ValueError, "at least two samples"):
            evaluation.map_at_r(np.eye(3), [0, 1, 2])
        with self.assertRaisesRegex(ValueError, "Received: labels.shape"):
            evaluation.r_precision(np.eye(3), [0, 1])
        with self.assertRaisesRegex(ValueError, "Received: distance="):
            evaluation.map_at_r(np.eye(3), [0, 0, 1], distance="l1")
