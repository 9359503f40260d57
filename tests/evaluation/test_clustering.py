import math
import unittest
from unittest import mock

import numpy as np
from absl.testing import parameterized
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from keras_featreg import evaluation
from keras_featreg.evaluation import lloyd
from tests import helpers as testing

try:
    import faiss  # noqa: F401

    HAS_FAISS = True
except ImportError:
    HAS_FAISS = False

AVERAGE_METHODS = ("geometric", "arithmetic", "min", "max")


def numpy_nmi(labels, clusters, average_method="geometric"):
    """NMI from a dense contingency table, in float64, term by term."""
    classes, rows = np.unique(labels, return_inverse=True)
    groups, cols = np.unique(clusters, return_inverse=True)
    n = len(labels)
    table = np.zeros((len(classes), len(groups)))
    for r, c in zip(rows, cols, strict=True):
        table[r, c] += 1
    p = table / n
    p_rows, p_cols = p.sum(axis=1), p.sum(axis=0)
    mutual_information = sum(
        p[i, j] * math.log(p[i, j] / (p_rows[i] * p_cols[j]))
        for i in range(len(classes))
        for j in range(len(groups))
        if p[i, j] > 0
    )
    h_rows = -sum(q * math.log(q) for q in p_rows)
    h_cols = -sum(q * math.log(q) for q in p_cols)
    if len(classes) == len(groups) == 1:
        return 1.0
    if len(classes) == 1 or len(groups) == 1:
        return 0.0
    normalizer = {
        "geometric": math.sqrt(h_rows * h_cols),
        "arithmetic": (h_rows + h_cols) / 2,
        "min": min(h_rows, h_cols),
        "max": max(h_rows, h_cols),
    }[average_method]
    return mutual_information / normalizer


def numpy_lloyd(x, centers, num_iterations):
    """Plain Lloyd in float64 with the documented empty-cluster rule: an
    emptied cluster takes the sample farthest from its center (samples alone
    in their cluster are not taken)."""
    x = np.asarray(x, np.float64)
    centers = np.asarray(centers, np.float64).copy()

    def assign(centers):
        distances = np.sum((x[:, None, :] - centers[None]) ** 2, axis=-1)
        return distances.argmin(axis=1), distances.min(axis=1)

    assignments, distances = assign(centers)
    for _ in range(num_iterations):
        counts = np.bincount(assignments, minlength=len(centers))
        for empty in np.flatnonzero(counts == 0):
            candidates = [
                i for i in range(len(x)) if counts[assignments[i]] >= 2
            ]
            far = max(candidates, key=lambda i: (distances[i], -i))
            counts[assignments[far]] -= 1
            counts[empty] += 1
            assignments[far] = empty
            distances[far] = -np.inf  # taken
        for c in range(len(centers)):
            members = x[assignments == c]
            if len(members):
                centers[c] = members.mean(axis=0)
        assignments, distances = assign(centers)
    return assignments


def blobs(n=600, dim=16, num_classes=40, noise=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    labels = rng.permutation(np.arange(n) % num_classes)
    x = centers[labels] + noise * rng.normal(size=(n, dim))
    return x.astype("float32"), labels


def random_init(n, num_clusters, seed):
    """The documented `init="random"`: distinct samples from the seed."""
    return np.random.default_rng(seed).choice(n, num_clusters, replace=False)


class NormalizedMutualInformationTest(testing.TestCase):
    @parameterized.parameters(*AVERAGE_METHODS)
    def test_matches_numpy_and_scikit_learn(self, average_method):
        rng = np.random.default_rng(0)
        for _ in range(30):
            n = int(rng.integers(1, 200))
            labels = rng.integers(0, rng.integers(1, 12), n)
            clusters = rng.integers(0, rng.integers(1, 12), n)
            value = evaluation.normalized_mutual_information(
                labels, clusters, average_method
            )
            self.assertIsInstance(value, float)
            self.assertAllClose(
                value, numpy_nmi(labels, clusters, average_method), atol=1e-12
            )
            self.assertAllClose(
                value,
                normalized_mutual_info_score(
                    labels, clusters, average_method=average_method
                ),
                atol=1e-12,
            )

    def test_limit_cases(self):
        nmi = evaluation.normalized_mutual_information
        self.assertEqual(nmi([0, 0, 1, 1], [5, 5, 3, 3]), 1.0)  # relabeled
        self.assertEqual(nmi([0, 0, 0], [1, 1, 1]), 1.0)  # one group each
        self.assertEqual(nmi([0, 0, 0], [0, 1, 2]), 0.0)  # one class
        self.assertEqual(nmi([0, 1, 2], [7, 7, 7]), 0.0)  # one cluster
        self.assertEqual(nmi([0, 0, 1, 1], [0, 1, 0, 1]), 0.0)  # independent
        self.assertEqual(nmi([4], [2]), 1.0)  # a single sample
        self.assertEqual(nmi(["a", "b", "a"], [1, 0, 1]), 1.0)  # strings

    def test_invalid_arguments(self):
        nmi = evaluation.normalized_mutual_information
        with self.assertRaisesRegex(ValueError, "Received: average_method="):
            nmi([0, 1], [0, 1], average_method="harmonic")
        with self.assertRaisesRegex(ValueError, "Received: clusters.shape"):
            nmi([0, 1], [0, 1, 1])
        with self.assertRaisesRegex(ValueError, "Received: labels.shape"):
            nmi([], [])


class KMeansTest(testing.TestCase):
    @parameterized.parameters(0, 1, 3, 20)
    def test_matches_plain_lloyd(self, num_iterations):
        x, _ = blobs(noise=1.0)
        assignments, centers = evaluation.kmeans(
            x, 40, num_iterations=num_iterations, seed=3
        )
        expected = numpy_lloyd(x, x[random_init(600, 40, 3)], num_iterations)
        np.testing.assert_array_equal(assignments, expected)
        self.assertEqual(centers.shape, (40, 16))
        self.assertEqual(centers.dtype, np.float32)

    def test_empty_clusters_are_refilled(self):
        # 30 distinct points, each 4 times, and 40 clusters: random init
        # picks equal centers; the higher index loses every tie and its
        # cluster empties. Small integers keep float32 arithmetic exact.
        rng = np.random.default_rng(2)
        points = rng.integers(0, 4, size=(30, 3))
        x = np.repeat(points, 4, axis=0).astype("float32")
        init = random_init(120, 40, 7)
        self.assertLess(len(np.unique(x[init], axis=0)), 40)
        for num_iterations in (1, 2, 5):
            assignments, _ = evaluation.kmeans(
                x, 40, num_iterations=num_iterations, seed=7
            )
            np.testing.assert_array_equal(
                assignments, numpy_lloyd(x, x[init], num_iterations)
            )

    def test_skipping_work_changes_nothing(self):
        # The pruned steps against full assignment passes every iteration.
        x, _ = blobs(n=1500, num_classes=300, noise=0.8, seed=1)
        pruned, _ = evaluation.kmeans(x, 300, seed=4)
        with mock.patch.object(lloyd, "_FULL_PASS_FRACTION", 0.0):
            full, _ = evaluation.kmeans(x, 300, seed=4)
        np.testing.assert_array_equal(pruned, full)

    def test_chunked_equals_unchunked(self):
        x, _ = blobs(n=300, num_classes=30, noise=1.0)
        whole, _ = evaluation.kmeans(x, 30, chunk_size=300)
        for chunk_size in (1, 7, 64):
            chunked, _ = evaluation.kmeans(x, 30, chunk_size=chunk_size)
            np.testing.assert_array_equal(chunked, whole)

    def test_stops_at_a_fixed_point(self):
        x, _ = blobs(n=200, num_classes=10)
        many, centers = evaluation.kmeans(x, 10, num_iterations=10_000)
        some, _ = evaluation.kmeans(x, 10, num_iterations=200)
        np.testing.assert_array_equal(many, some)
        for c in range(10):  # every center is the mean of its samples
            self.assertAllClose(centers[c], x[many == c].mean(axis=0))

    def test_seed(self):
        x, _ = blobs(n=200, num_classes=20, noise=2.0)
        a, _ = evaluation.kmeans(x, 20, seed=1)
        b, _ = evaluation.kmeans(x, 20, seed=1)
        c, _ = evaluation.kmeans(x, 20, seed=2)
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(a, c))

    @parameterized.parameters("random", "k-means++")
    def test_single_cluster_and_one_per_sample(self, init):
        x, _ = blobs(n=50, num_classes=5)
        one, centers = evaluation.kmeans(x, 1, init=init)
        np.testing.assert_array_equal(one, np.zeros(50))
        self.assertAllClose(centers[0], x.mean(axis=0), atol=1e-6)
        each, _ = evaluation.kmeans(x, 50, init=init)
        self.assertLen(np.unique(each), 50)

    @parameterized.named_parameters(
        ("zero_clusters", {"num_clusters": 0}, "Received: num_clusters=0"),
        ("too_many", {"num_clusters": 11}, "Received: num_clusters=11"),
        ("iterations", {"num_iterations": -1}, "Received: num_iterations=-1"),
        ("init", {"init": "forgy"}, "Received: init="),
        ("seed", {"seed": -1}, "Received: seed=-1"),
        ("chunk_size", {"chunk_size": 0}, "Received: chunk_size=0"),
        ("backend", {"backend": "torch"}, "Received: backend="),
    )
    def test_invalid_arguments(self, kwargs, message):
        arguments = {"num_clusters": 2, **kwargs}
        with self.assertRaisesRegex(ValueError, message):
            evaluation.kmeans(np.zeros((10, 3)), **arguments)

    def test_invalid_types(self):
        with self.assertRaisesRegex(TypeError, "Received: num_clusters=2.0"):
            evaluation.kmeans(np.zeros((10, 3)), 2.0)


class NMITest(testing.TestCase):
    @parameterized.parameters(*AVERAGE_METHODS)
    def test_matches_scikit_learn_on_its_clustering(self, average_method):
        x, labels = blobs(noise=1.5)
        clusters, _ = evaluation.kmeans(x, 40, seed=5)
        value = evaluation.nmi(
            x,
            labels,
            seed=5,
            average_method=average_method,
            init="random",  # kmeans' defaults (nmi's until issue 10)
            num_restarts=1,
        )
        self.assertAllClose(
            value,
            normalized_mutual_info_score(
                labels, clusters, average_method=average_method
            ),
            atol=1e-12,
        )
        self.assertAllClose(
            value, numpy_nmi(labels, clusters, average_method), atol=1e-12
        )
        self.assertBetween(value, 0.2, 0.99)  # the test is not trivial

    def test_well_separated_clusters_score_one(self):
        x, labels = blobs(n=400, num_classes=8, noise=0.05, seed=6)
        self.assertEqual(evaluation.nmi(x, labels, init="k-means++"), 1.0)
        sklearn_clusters = KMeans(8, n_init=1, random_state=0).fit_predict(x)
        self.assertEqual(
            normalized_mutual_info_score(
                labels, sklearn_clusters, average_method="geometric"
            ),
            1.0,
        )

    def test_quality_close_to_scikit_learn(self):
        # Overlapping classes: both k-means land on similar local optima.
        x, labels = blobs(n=600, num_classes=20, noise=1.2, seed=8)
        ours = evaluation.nmi(x, labels, init="k-means++", num_iterations=50)
        sklearn_clusters = KMeans(20, n_init=1, random_state=0).fit_predict(x)
        theirs = normalized_mutual_info_score(
            labels, sklearn_clusters, average_method="geometric"
        )
        self.assertAllClose(ours, theirs, atol=0.05)

    def test_num_clusters_defaults_to_number_of_classes(self):
        x, labels = blobs(n=200, num_classes=10, noise=1.0)
        self.assertEqual(
            evaluation.nmi(x, labels),
            evaluation.nmi(x, labels, num_clusters=10),
        )

    def test_degenerate_inputs_are_finite(self):
        labels = np.arange(40) % 4
        for init in ("random", "k-means++"):
            collapsed = evaluation.nmi(np.ones((40, 8)), labels, init=init)
            self.assertEqual(collapsed, 0.0)  # ties: all in cluster 0
        self.assertEqual(evaluation.nmi(np.ones((1, 8)), [3]), 1.0)
        duplicates = np.repeat(np.eye(4), 10, axis=0)  # 4 distinct points
        self.assertEqual(
            evaluation.nmi(duplicates, np.repeat(np.arange(4), 10)), 1.0
        )

    @parameterized.named_parameters(
        ("empty", np.zeros((0, 3)), [], "must not be empty"),
        ("nan", np.array([[0.0], [np.nan]]), [0, 1], "NaN or Inf"),
        ("mismatched", np.zeros((3, 2)), [0, 1], "Received: labels.shape"),
    )
    def test_invalid_input(self, embeddings, labels, message):
        with self.assertRaisesRegex(ValueError, message):
            evaluation.nmi(embeddings, labels)

    @unittest.skipUnless(HAS_FAISS, "faiss is not installed")
    def test_faiss_backend(self):
        x, labels = blobs(noise=1.0, seed=9)
        ours = evaluation.nmi(x, labels)
        theirs = evaluation.nmi(x, labels, backend="faiss")
        self.assertAllClose(ours, theirs, atol=0.05)
        with self.assertRaisesRegex(ValueError, "Received: init='k-means"):
            evaluation.nmi(x, labels, init="k-means++", backend="faiss")


def six_gaussians(seed):
    """6 Gaussian clusters of 40 points (std 1), centers 10 apart in 2-D."""
    angles = 2 * np.pi * np.arange(6) / 6
    centers = 10.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.repeat(np.arange(6), 40)
    noise = np.random.default_rng(seed).normal(size=(240, 2))
    return centers, centers[labels] + noise, labels


class RestartedKMeansTest(testing.TestCase):
    def test_default_nmi_is_one_on_well_separated_clusters(self):
        for seed in range(5):
            centers, x, labels = six_gaussians(seed)
            gaps = np.linalg.norm(centers[:, None] - centers[None], axis=-1)
            self.assertAllClose(gaps[np.triu_indices(6, 1)].min(), 10.0)
            self.assertEqual(evaluation.nmi(x, labels, seed=seed), 1.0)
            sklearn_clusters = KMeans(
                6, n_init=10, random_state=seed
            ).fit_predict(x)
            self.assertEqual(
                normalized_mutual_info_score(labels, sklearn_clusters), 1.0
            )

    def test_single_random_run_is_initialization_noise(self):
        # The former default: one run from random samples (issue 10).
        values = [
            evaluation.nmi(
                *six_gaussians(seed)[1:],
                seed=seed,
                init="random",
                num_restarts=1,
            )
            for seed in range(5)
        ]
        self.assertLess(min(values), 1.0)

    def test_restarts_keep_the_lowest_inertia(self):
        x, _ = blobs(n=300, num_classes=15, noise=1.0, seed=3)
        best, best_centers = evaluation.kmeans(
            x, 15, init="k-means++", seed=2, num_restarts=4
        )
        # The same runs one by one, from the documented derived seeds.
        seeds = [2] + list(np.random.SeedSequence(2).generate_state(3))
        runs = [
            evaluation.kmeans(x, 15, init="k-means++", seed=int(s))
            for s in seeds
        ]

        def numpy_inertia(assignments, centers):
            difference = np.float64(x) - np.float64(centers)[assignments]
            return float(np.sum(difference**2))

        inertias = [numpy_inertia(*run) for run in runs]
        self.assertGreater(len(set(inertias)), 1)  # the runs differ
        expected = runs[int(np.argmin(inertias))]
        np.testing.assert_array_equal(best, expected[0])
        self.assertAllClose(best_centers, expected[1])
        self.assertAllClose(
            numpy_inertia(best, best_centers), min(inertias), rtol=1e-12
        )

    def test_one_restart_is_the_plain_run(self):
        x, labels = blobs(n=200, num_classes=10, noise=1.0)
        one, _ = evaluation.kmeans(x, 10, seed=4, num_restarts=1)
        plain, _ = evaluation.kmeans(x, 10, seed=4)
        np.testing.assert_array_equal(one, plain)
        self.assertEqual(
            evaluation.nmi(x, labels, seed=4),
            evaluation.nmi(x, labels, seed=4, init="k-means++"),
        )

    def test_invalid_num_restarts(self):
        with self.assertRaisesRegex(ValueError, "Received: num_restarts=0"):
            evaluation.kmeans(np.zeros((10, 3)), 2, num_restarts=0)
        with self.assertRaisesRegex(ValueError, "Received: num_restarts=0"):
            evaluation.nmi(np.zeros((10, 3)), np.arange(10) % 2, num_restarts=0)
