"""Linear probe and k-NN accuracy against brute force and scikit-learn."""

import keras
import numpy as np
from absl.testing import parameterized
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from keras_featreg.evaluation.linear_probe import knn_accuracy
from keras_featreg.evaluation.linear_probe import linear_probe_accuracy
from tests import helpers as testing


def numpy_knn_predictions(train, train_labels, test, k, vote, temperature):
    """Brute force: loop over test samples, sort every similarity."""
    train = np.asarray(train, np.float64)
    test = np.asarray(test, np.float64)
    classes = sorted(set(train_labels.tolist()))
    predictions = []
    for query in test:
        similarities = []
        for row in train:
            norms = np.linalg.norm(query) * np.linalg.norm(row)
            similarities.append(query @ row / norms if norms > 0 else 0.0)
        order = np.argsort(-np.array(similarities), kind="stable")[:k]
        scores = {}
        for c in classes:
            members = [j for j in order if train_labels[j] == c]
            if vote == "weighted":
                scores[c] = sum(
                    np.exp(similarities[j] / temperature) for j in members
                )
            else:  # count, then summed similarity, then the smaller label
                scores[c] = (
                    len(members),
                    sum(similarities[j] for j in members),
                )
        best = max(classes, key=lambda c: (scores[c], -classes.index(c)))
        predictions.append(best)
    return np.array(predictions)


def blobs(num_per_class, num_classes=3, dim=5, spread=1.0, seed=0):
    rng = np.random.default_rng(seed)
    centers = 3.0 * rng.normal(size=(num_classes, dim))
    labels = np.repeat(np.arange(num_classes), num_per_class)
    x = centers[labels] + spread * rng.normal(size=(len(labels), dim))
    order = rng.permutation(len(labels))
    return x[order].astype("float32"), labels[order]


class KnnAccuracyTest(testing.TestCase):
    @parameterized.product(k=[1, 3, 10, 40], vote=["weighted", "majority"])
    def test_matches_brute_force(self, k, vote):
        train, train_labels = blobs(10, num_classes=4, spread=3.0, seed=1)
        test, test_labels = blobs(6, num_classes=4, spread=3.0, seed=2)
        temperature = 0.5
        expected = numpy_knn_predictions(
            train, train_labels, test, k, vote, temperature
        )
        accuracy = knn_accuracy(
            train,
            train_labels,
            test,
            test_labels,
            k=k,
            vote=vote,
            temperature=temperature,
            chunk_size=7,  # several blocks, one partial
        )
        self.assertAllClose(accuracy, np.mean(expected == test_labels))
        self.assertGreater(accuracy, 0.0)

    def test_majority_matches_sklearn(self):
        # Two classes and odd k: no ties, so sklearn's rule is the same.
        train, train_labels = blobs(30, num_classes=2, spread=4.0, seed=3)
        test, test_labels = blobs(20, num_classes=2, spread=4.0, seed=4)
        for k in (1, 5, 15):
            sklearn = KNeighborsClassifier(
                n_neighbors=k, metric="cosine", algorithm="brute"
            ).fit(train, train_labels)
            expected = np.mean(sklearn.predict(test) == test_labels)
            accuracy = knn_accuracy(
                train, train_labels, test, test_labels, k=k, vote="majority"
            )
            self.assertAllClose(accuracy, expected)

    def test_tie_breaking(self):
        train = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]])
        test = np.array([[1.0, 0.2]])
        # k=2 neighbours: one of class 7 (similarity 0.99...) and one of
        # class 3 (0.98...): majority ties, the summed similarity decides.
        labels = np.array([3, 5, 7, 5])
        self.assertEqual(
            knn_accuracy(train, labels, test, [7], k=2, vote="majority"), 1.0
        )
        # Exact ties go to the smaller label.
        train = np.array([[1.0, 0.0], [1.0, 0.0]])
        self.assertEqual(
            knn_accuracy(train, [4, 2], [[1.0, 0.0]], [2], k=2), 1.0
        )

    def test_labels_of_any_type(self):
        train, train_labels = blobs(10, num_classes=3, seed=5)
        test, test_labels = blobs(5, num_classes=3, seed=5)
        names = np.array(["cat", "dog", "emu"])
        as_ints = knn_accuracy(train, train_labels, test, test_labels, k=3)
        as_strings = knn_accuracy(
            train, names[train_labels], test, names[test_labels], k=3
        )
        self.assertEqual(as_ints, as_strings)
        # A test label never seen in training is a miss.
        unseen = test_labels.copy()
        unseen[:5] = 9
        predictions = numpy_knn_predictions(
            train, train_labels, test, 3, "weighted", 0.07
        )
        self.assertAllClose(
            knn_accuracy(train, train_labels, test, unseen, k=3),
            np.mean(predictions == unseen),
        )
        self.assertAllClose(as_ints, np.mean(predictions == test_labels))

    def test_degenerate_features(self):
        labels = np.array([0, 1, 0, 1])
        zeros = np.zeros((4, 3), "float32")
        accuracy = knn_accuracy(zeros, labels, zeros, labels, k=4)
        self.assertTrue(0.0 <= accuracy <= 1.0)
        collapsed = np.ones((4, 3), "float32")
        accuracy = knn_accuracy(collapsed, labels, collapsed, labels, k=4)
        self.assertTrue(0.0 <= accuracy <= 1.0)

    @parameterized.named_parameters(
        ("k_zero", {"k": 0}, ValueError, "Received: k=0"),
        ("k_too_large", {"k": 5}, ValueError, "Received: k=5"),
        ("vote", {"vote": "mean"}, ValueError, "Received: vote='mean'"),
        ("temperature", {"temperature": 0.0}, ValueError, "temperature=0.0"),
        ("chunk_size", {"chunk_size": 0}, ValueError, "chunk_size=0"),
    )
    def test_invalid_arguments(self, kwargs, error, message):
        x = np.eye(4, dtype="float32")
        with self.assertRaisesRegex(error, message):
            knn_accuracy(x, [0, 1, 0, 1], x, [0, 1, 0, 1], **{"k": 2, **kwargs})

    def test_invalid_inputs(self):
        x = np.eye(4, dtype="float32")
        with self.assertRaisesRegex(ValueError, "same number of features"):
            knn_accuracy(x, [0, 1, 0, 1], x[:, :3], [0, 1, 0, 1])
        with self.assertRaisesRegex(ValueError, "train_labels"):
            knn_accuracy(x, [0, 1, 0], x, [0, 1, 0, 1])
        with self.assertRaisesRegex(ValueError, "NaN"):
            knn_accuracy(x * np.nan, [0, 1, 0, 1], x, [0, 1, 0, 1])


class LinearProbeAccuracyTest(testing.TestCase):
    def test_matches_logistic_regression(self):
        # Overlapping classes: the accuracy is not trivially 1.
        x_train, y_train = blobs(60, num_classes=3, spread=3.0, seed=0)
        x_test, y_test = blobs(40, num_classes=3, spread=3.0, seed=0)
        x_test = x_test + 0.5  # not the train points
        scores = linear_probe_accuracy(
            None, x_train, y_train, x_test, y_test, epochs=60, batch_size=32
        )
        scaler = StandardScaler().fit(x_train)
        sklearn = LogisticRegression(max_iter=1000).fit(
            scaler.transform(x_train), y_train
        )
        expected_train = sklearn.score(scaler.transform(x_train), y_train)
        expected_test = sklearn.score(scaler.transform(x_test), y_test)
        self.assertLess(expected_test, 0.99)
        self.assertAllClose(scores["train_accuracy"], expected_train, atol=0.04)
        self.assertAllClose(scores["test_accuracy"], expected_test, atol=0.05)

    def test_frozen_encoder(self):
        x_train, y_train = blobs(30, num_classes=2, dim=4, seed=1)
        x_test, y_test = blobs(20, num_classes=2, dim=4, seed=1)
        encoder = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(6, activation="tanh")]
        )
        before = [np.array(w) for w in encoder.get_weights()]
        scores = linear_probe_accuracy(
            encoder, x_train, y_train, x_test, y_test, epochs=20, seed=3
        )
        for weight, old in zip(encoder.get_weights(), before, strict=True):
            self.assertAllClose(weight, old, atol=0, rtol=0)
        # Same as probing the features computed by hand, same seed.
        features = linear_probe_accuracy(
            None,
            encoder.predict(x_train, verbose=0),
            y_train,
            encoder.predict(x_test, verbose=0),
            y_test,
            epochs=20,
            seed=3,
        )
        self.assertEqual(scores, features)
        # A plain callable works too.
        called = linear_probe_accuracy(
            lambda batch: encoder(batch),
            x_train,
            y_train,
            x_test,
            y_test,
            epochs=20,
            seed=3,
        )
        self.assertAllClose(called["test_accuracy"], scores["test_accuracy"])

    def test_separable_and_scale_invariant(self):
        x_train, y_train = blobs(30, num_classes=4, spread=0.2, seed=2)
        x_test, y_test = blobs(10, num_classes=4, spread=0.2, seed=2)
        scores = linear_probe_accuracy(
            None, x_train, y_train, x_test, y_test, epochs=30, batch_size=16
        )
        self.assertEqual(scores, {"train_accuracy": 1.0, "test_accuracy": 1.0})
        # Standardized: a shrunken representation scores the same.
        tiny = linear_probe_accuracy(
            None,
            1e-6 * x_train,
            y_train,
            1e-6 * x_test,
            y_test,
            epochs=30,
            batch_size=16,
        )
        self.assertEqual(tiny, scores)

    def test_constant_features(self):
        x = np.ones((12, 3), "float32")
        y = np.arange(12) % 3
        scores = linear_probe_accuracy(None, x, y, x, y, epochs=2)
        # No information: every sample gets the same class.
        self.assertAllClose(scores["test_accuracy"], 1 / 3)

    @parameterized.named_parameters(
        ("epochs", {"epochs": 0}, ValueError, "Received: epochs=0"),
        ("batch_size", {"batch_size": 0}, ValueError, "batch_size=0"),
        ("learning_rate", {"learning_rate": -1.0}, ValueError, "rate=-1.0"),
        ("seed", {"seed": 0.5}, TypeError, "Received: seed=0.5"),
        ("standardize", {"standardize": 1}, TypeError, "standardize=1"),
    )
    def test_invalid_arguments(self, kwargs, error, message):
        x = np.eye(4, dtype="float32")
        with self.assertRaisesRegex(error, message):
            linear_probe_accuracy(
                None, x, [0, 1, 0, 1], x, [0, 1, 0, 1], **kwargs
            )

    def test_invalid_inputs(self):
        x = np.eye(4, dtype="float32")
        y = [0, 1, 0, 1]
        with self.assertRaisesRegex(ValueError, "same size"):
            linear_probe_accuracy(None, x, y, x[:, :3], y, epochs=1)
        with self.assertRaisesRegex(ValueError, "y_test"):
            linear_probe_accuracy(None, x, y, x, y[:3], epochs=1)
        with self.assertRaisesRegex(TypeError, "Received: encoder=3"):
            linear_probe_accuracy(3, x, y, x, y, epochs=1)
