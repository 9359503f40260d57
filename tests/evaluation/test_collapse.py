import math

import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.evaluation.collapse import embedding_collapse_report
from tests import helpers as testing
from tests.regularizers.test_svmax import numpy_l2_normalize
from tests.regularizers.test_svmax import numpy_mean_singular_value
from tests.regularizers.test_svmax import numpy_svmax_bounds


def numpy_report(embeddings, std_threshold, normalize=True):
    e = np.asarray(embeddings, dtype=np.float64).reshape(len(embeddings), -1)
    if normalize:
        e = numpy_l2_normalize(e)
    s_mu = numpy_mean_singular_value(e)
    lower, upper = numpy_svmax_bounds(*e.shape)
    std = np.std(e, axis=0)  # population std (ddof=0)
    return {
        "num_samples": e.shape[0],
        "dim": e.shape[1],
        "mean_singular_value": s_mu,
        "lower_bound": lower,
        "upper_bound": upper,
        "position": (s_mu - lower) / (upper - lower),
        "collapsed_dimensions": int(np.sum(std < std_threshold)),
        "min_std": std.min(),
        "mean_std": std.mean(),
    }


class EmbeddingCollapseReportTest(testing.TestCase):
    @parameterized.product(normalize=(True, False), as_tensor=(True, False))
    def test_correctness(self, normalize, as_tensor):
        rng = np.random.default_rng(seed=0)
        embeddings = rng.normal(size=(40, 6))
        embeddings[:, 2] = 0.0  # a dead unit
        embeddings[:, 4] *= 1e-6  # a nearly dead one
        embeddings = embeddings.astype("float32")
        expected = numpy_report(embeddings, 1e-3, normalize)
        if as_tensor:
            embeddings = tf.constant(embeddings)
        report = embedding_collapse_report(embeddings, normalize=normalize)
        self.assertEqual(set(report), set(expected))
        for key in ("num_samples", "dim", "collapsed_dimensions"):
            self.assertIsInstance(report[key], int)
            self.assertEqual(report[key], expected[key])
        self.assertEqual(report["collapsed_dimensions"], 2)
        for key in expected:
            self.assertIsInstance(report[key], (int, float))
            self.assertAllClose(report[key], expected[key], rtol=1e-5)

    def test_collapsed_set_sits_at_the_lower_bound(self):
        embeddings = np.tile([[0.3, -2.0, 1.0, 0.5]], (50, 1))
        report = embedding_collapse_report(embeddings)
        self.assertAllClose(report["position"], 0.0, atol=1e-6)
        self.assertAllClose(
            report["mean_singular_value"], math.sqrt(50) / 4, rtol=1e-6
        )
        self.assertEqual(report["collapsed_dimensions"], 4)

    def test_uniform_set_sits_at_the_upper_bound(self):
        embeddings = np.tile(np.eye(8), (6, 1))  # 48 rows, s = sqrt(6) each
        report = embedding_collapse_report(embeddings)
        self.assertAllClose(report["position"], 1.0, rtol=1e-6)
        self.assertAllClose(report["upper_bound"], math.sqrt(6), rtol=1e-12)
        self.assertEqual(report["collapsed_dimensions"], 0)

    def test_rank_three_and_fewer_samples_than_dims(self):
        embeddings = np.random.default_rng(1).normal(size=(5, 3, 4))
        report = embedding_collapse_report(embeddings)
        expected = numpy_report(embeddings, 1e-3)
        self.assertEqual(report["dim"], 12)
        self.assertAllClose(report["position"], expected["position"], rtol=1e-5)

    def test_single_sample_position_is_one(self):
        report = embedding_collapse_report(np.array([[1.0, 2.0, 2.0]]))
        self.assertEqual(report["lower_bound"], report["upper_bound"])
        self.assertEqual(report["position"], 1.0)
        self.assertEqual(report["collapsed_dimensions"], 3)

    def test_zero_rows_and_huge_values_are_finite(self):
        embeddings = np.concatenate([np.zeros((3, 4)), 1e30 * np.eye(4)])
        report = embedding_collapse_report(embeddings.astype("float32"))
        for value in report.values():
            self.assertTrue(np.isfinite(value))
        expected = numpy_report(embeddings, 1e-3)
        self.assertAllClose(
            report["mean_singular_value"],
            expected["mean_singular_value"],
            rtol=1e-5,
        )

    def test_large_set(self):
        # The paper's scale (60,000 x 512) works the same way; a smaller
        # set keeps the test fast.
        embeddings = np.random.default_rng(2).normal(size=(6000, 128))
        embeddings = embeddings.astype("float32")
        report = embedding_collapse_report(embeddings)
        expected = numpy_report(embeddings, 1e-3)
        self.assertAllClose(
            report["mean_singular_value"],
            expected["mean_singular_value"],
            rtol=1e-5,
        )
        self.assertGreater(report["position"], 0.99)

    def test_invalid_inputs(self):
        with self.assertRaisesRegex(ValueError, "`embeddings`.*Received"):
            embedding_collapse_report(np.zeros((0, 8)))
        with self.assertRaisesRegex(ValueError, "`embeddings`.*NaN"):
            embedding_collapse_report(np.array([[1.0, np.nan], [1.0, 2.0]]))
        with self.assertRaisesRegex(ValueError, "`embeddings`.*rank"):
            embedding_collapse_report(np.ones(5))
        with self.assertRaisesRegex(TypeError, "`embeddings`"):
            embedding_collapse_report(np.ones((3, 2), dtype="int32"))
        with self.assertRaisesRegex(ValueError, "Received: std_threshold=0"):
            embedding_collapse_report(np.ones((3, 2)), std_threshold=0)
        with self.assertRaisesRegex(TypeError, "Received: normalize=1"):
            embedding_collapse_report(np.ones((3, 2)), normalize=1)
