import sys
import unittest
from unittest import mock

import numpy as np
from absl.testing import parameterized

from keras_featreg import evaluation
from tests import helpers as testing

try:
    import faiss  # noqa: F401

    HAS_FAISS = True
except ImportError:
    HAS_FAISS = False


def numpy_neighbours(x, k, distance="euclidean"):
    """Full float64 distance matrix; self excluded; stable sort (ties to the
    lower index)."""
    x = np.asarray(x, np.float64).reshape(len(x), -1)
    if distance == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
    d = np.sum((x[:, None, :] - x[None, :, :]) ** 2, axis=-1)  # (n, n)
    np.fill_diagonal(d, np.inf)
    return np.argsort(d, axis=1, kind="stable")[:, :k]


def numpy_recall(x, labels, ks, distance="euclidean"):
    neighbours = numpy_neighbours(x, max(ks), distance)
    recall = {}
    for k in ks:
        hits = 0
        for i in range(len(labels)):
            if any(labels[j] == labels[i] for j in neighbours[i, :k]):
                hits += 1
        recall[k] = hits / len(labels)
    return recall


def clustered(n=700, dim=16, num_classes=140, noise=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    labels = rng.permutation(np.arange(n) % num_classes)
    x = centers[labels] + noise * rng.normal(size=(n, dim))
    return x.astype("float32"), labels


class NearestNeighborsTest(testing.TestCase):
    @parameterized.product(
        chunk_size=[1000, 300, 7], distance=["euclidean", "cosine"]
    )
    def test_matches_brute_force(self, chunk_size, distance):
        # 300 > 8 * 32 columns per block: the grouped candidate search runs.
        x, _ = clustered()
        found = evaluation.nearest_neighbors(
            x, 8, distance=distance, chunk_size=chunk_size
        )
        self.assertEqual(found.dtype, np.int64)
        np.testing.assert_array_equal(found, numpy_neighbours(x, 8, distance))

    def test_chunked_equals_unchunked(self):
        x, _ = clustered(n=900, dim=32)
        whole = evaluation.nearest_neighbors(x, 5, chunk_size=900)
        for chunk_size in (17, 64, 257, 450, 899):
            np.testing.assert_array_equal(
                evaluation.nearest_neighbors(x, 5, chunk_size=chunk_size), whole
            )

    @parameterized.parameters(1, 4, 9)
    def test_ties_go_to_the_lower_index(self, k):
        # Integer points on a line: exact float32 arithmetic, many exact
        # ties (i - 1 and i + 1 are equally far), plus duplicates. Sorted
        # order also makes later blocks closer than earlier ones, which
        # defeats the k-th-best bound and exercises the re-ranking.
        rng = np.random.default_rng(1)
        x = np.sort(rng.integers(0, 400, size=600))[:, None].astype("float32")
        for chunk_size in (600, 290, 100):
            np.testing.assert_array_equal(
                evaluation.nearest_neighbors(x, k, chunk_size=chunk_size),
                numpy_neighbours(x, k),
            )

    def test_collapsed_embeddings_give_lowest_indices(self):
        x = np.ones((600, 8), "float32")
        found = evaluation.nearest_neighbors(x, 3, chunk_size=300)
        np.testing.assert_array_equal(found, numpy_neighbours(x, 3))
        np.testing.assert_array_equal(found[5], [0, 1, 2])
        np.testing.assert_array_equal(found[0], [1, 2, 3])

    def test_matches_scikit_learn(self):
        from sklearn.neighbors import NearestNeighbors

        x, _ = clustered(n=500, dim=24, seed=3)
        search = NearestNeighbors(n_neighbors=7, algorithm="brute").fit(x)
        _, expected = search.kneighbors()  # leave-one-out over the fit set
        found = evaluation.nearest_neighbors(x, 7, chunk_size=128)
        np.testing.assert_array_equal(found, expected)

    def test_input_dtypes_and_shapes(self):
        x, _ = clustered(n=120, dim=12)
        expected = numpy_neighbours(x, 4)
        for value in (x.astype("float64"), x.reshape(120, 3, 4)):
            np.testing.assert_array_equal(
                evaluation.nearest_neighbors(value, 4), expected
            )
        ints = np.arange(20)[:, None] * 3
        np.testing.assert_array_equal(
            evaluation.nearest_neighbors(ints, 2), numpy_neighbours(ints, 2)
        )
        half = x.astype("float16")
        np.testing.assert_array_equal(
            evaluation.nearest_neighbors(half, 4), numpy_neighbours(half, 4)
        )

    def test_zero_rows_with_cosine(self):
        # Exactly normalizable rows; the zero row is equally far (1) from
        # all others, so it gets the lowest indices.
        x = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])
        found = evaluation.nearest_neighbors(x, 2, distance="cosine")
        np.testing.assert_array_equal(found, numpy_neighbours(x, 2, "cosine"))

    @parameterized.parameters(0, 20)
    def test_invalid_k(self, k):
        x, _ = clustered(n=20)
        with self.assertRaisesRegex(ValueError, f"Received: k={k}"):
            evaluation.nearest_neighbors(x, k)

    @parameterized.named_parameters(
        ("distance", {"distance": "manhattan"}, "Received: distance="),
        ("backend", {"backend": "jax"}, "Received: backend="),
        ("chunk_size", {"chunk_size": 0}, "Received: chunk_size=0"),
    )
    def test_invalid_arguments(self, kwargs, message):
        x, _ = clustered(n=20)
        with self.assertRaisesRegex(ValueError, message):
            evaluation.nearest_neighbors(x, 2, **kwargs)

    def test_faiss_is_optional(self):
        with mock.patch.dict(sys.modules, {"faiss": None}):
            with self.assertRaisesRegex(ImportError, "pip install faiss-cpu"):
                evaluation.nearest_neighbors(np.eye(3), 1, backend="faiss")

    @unittest.skipUnless(HAS_FAISS, "faiss is not installed")
    def test_faiss_backend(self):
        x, _ = clustered(n=400, dim=16, seed=5)
        np.testing.assert_array_equal(
            evaluation.nearest_neighbors(x, 6, backend="faiss"),
            numpy_neighbours(x, 6),
        )


class RecallAtKTest(testing.TestCase):
    def assertRecallEqual(self, recall, expected):
        self.assertEqual(list(recall), list(expected))
        for k, value in expected.items():
            self.assertIsInstance(recall[k], float)
            self.assertAllClose(recall[k], value, atol=1e-12)

    @parameterized.product(
        chunk_size=[4096, 300, 33], distance=["euclidean", "cosine"]
    )
    def test_matches_brute_force(self, chunk_size, distance):
        x, labels = clustered(noise=1.2)
        ks = (1, 2, 4, 8, 16)
        recall = evaluation.recall_at_k(
            x, labels, ks, distance=distance, chunk_size=chunk_size
        )
        self.assertRecallEqual(recall, numpy_recall(x, labels, ks, distance))
        self.assertBetween(recall[1], 0.1, 0.99)  # the test is not trivial

    def test_hand_computed(self):
        # Positions 0, 1, 3, 10, 11: neighbours 0->1, 1->0, 3->1, 10->11,
        # 11->10; second neighbours 0->3, 1->3, 3->0, 10->3, 11->3.
        x = np.array([[0.0], [1.0], [3.0], [10.0], [11.0]])
        labels = np.array(["a", "b", "a", "c", "c"])
        recall = evaluation.recall_at_k(x, labels, k=(1, 2, 3))
        # k=1: only 10 and 11 hit; k=2: 0 (via 3) and 3 (via 0) join;
        # k=3 adds no one: "b" has no other sample.
        self.assertEqual(recall, {1: 0.4, 2: 0.8, 3: 0.8})

    def test_singleton_classes_count_as_misses(self):
        x, labels = clustered(n=200, num_classes=40, noise=0.1)
        self.assertEqual(evaluation.recall_at_k(x, labels, k=1), {1: 1.0})
        labels = labels.copy()
        labels[:10] = 1000 + np.arange(10)  # ten classes of one sample
        recall = evaluation.recall_at_k(x, labels, k=(1, 100))
        self.assertRecallEqual(recall, numpy_recall(x, labels, (1, 100)))
        # The other 190 still find a classmate within 100 neighbours; the
        # ten singletons never can, and are not excluded: 190 / 200.
        self.assertEqual(recall[100], 0.95)

    def test_int_k_and_column_labels(self):
        x, labels = clustered(n=60, num_classes=6)
        self.assertEqual(
            evaluation.recall_at_k(x, labels[:, None], k=3),
            evaluation.recall_at_k(x, labels, k=[3]),
        )

    def test_collapsed_embeddings_are_finite(self):
        labels = np.arange(50) % 5
        x = np.zeros((50, 4))
        recall = evaluation.recall_at_k(x, labels, k=(1, 8))
        # Ties go to the lowest indices: sample i's neighbours are 0, 1, ...
        # skipping i. At k=1, 5, 10, ..., 45 hit (neighbour 0); at k=8 only
        # 4 misses (neighbours 0-3, 5-8: labels 0-3, 0-3).
        self.assertRecallEqual(recall, numpy_recall(x, labels, (1, 8)))
        self.assertEqual(recall, {1: 0.18, 8: 0.98})

    def test_two_samples(self):
        x = np.array([[0.0, 1.0], [1.0, 0.0]])
        self.assertEqual(evaluation.recall_at_k(x, [3, 3], k=1), {1: 1.0})
        self.assertEqual(evaluation.recall_at_k(x, [3, 4], k=1), {1: 0.0})

    @parameterized.named_parameters(
        ("empty", np.zeros((0, 4)), [], {}, "must not be empty"),
        ("no_features", np.zeros((3, 0)), [0, 1, 2], {}, "must not be empty"),
        ("single_sample", np.zeros((1, 4)), [0], {"k": 1}, "Received: k=1"),
        (
            "k_too_large",
            np.zeros((5, 4)),
            [0] * 5,
            {"k": (1, 5)},
            "k=\\(1, 5\\)",
        ),
        ("k_zero", np.zeros((5, 4)), [0] * 5, {"k": 0}, "Received: k=0"),
        ("k_empty", np.zeros((5, 4)), [0] * 5, {"k": ()}, "Received: k=..$"),
        (
            "mismatched_labels",
            np.zeros((5, 4)),
            [0] * 4,
            {},
            "Received: labels.shape=\\(4,\\)",
        ),
        ("rank_1", np.zeros(5), [0] * 5, {}, "Received: embeddings.shape"),
        (
            "nan",
            np.array([[0.0], [np.nan], [1.0]]),
            [0, 0, 1],
            {"k": 1},
            "NaN or Inf",
        ),
        (
            "inf",
            np.array([[0.0], [np.inf], [1.0]]),
            [0, 0, 1],
            {"k": 1},
            "NaN or Inf",
        ),
    )
    def test_invalid_input(self, embeddings, labels, kwargs, message):
        with self.assertRaisesRegex(ValueError, message):
            evaluation.recall_at_k(embeddings, labels, **kwargs)

    def test_values_beyond_float32_squares(self):
        # Once refused ("too large": the squares overflow float32); since
        # issue 13.2 ranked as at scale 1: queries 0 and 2 are nearest to
        # each other, and the tie 1e30 vs 1e30 - 1 (equal in float64 too)
        # goes to the lower index.
        x = np.array([[0.0], [1e30], [1.0]])
        self.assertAllEqual(
            evaluation.nearest_neighbors(x, k=1)[:, 0], [2, 0, 0]
        )
        self.assertEqual(
            evaluation.recall_at_k(x, [0, 0, 1], k=1),
            numpy_recall(x, [0, 0, 1], [1]),
        )

    def test_invalid_types(self):
        with self.assertRaisesRegex(TypeError, "Received: k=1.5"):
            evaluation.recall_at_k(np.zeros((5, 2)), [0] * 5, k=1.5)
        with self.assertRaisesRegex(TypeError, "embeddings.dtype=bool"):
            evaluation.recall_at_k(np.zeros((5, 2), bool), [0] * 5, k=1)
        with self.assertRaisesRegex(TypeError, "embeddings.dtype=<U1"):
            evaluation.recall_at_k(np.full((5, 2), "a"), [0] * 5, k=1)

    @unittest.skipUnless(HAS_FAISS, "faiss is not installed")
    def test_faiss_backend_matches(self):
        x, labels = clustered(noise=1.2, seed=4)
        self.assertEqual(
            evaluation.recall_at_k(x, labels, backend="faiss"),
            evaluation.recall_at_k(x, labels),
        )
