import math

import numpy as np
from absl.testing import parameterized

from keras_featreg.evaluation.modes import angular_uniformity
from keras_featreg.evaluation.modes import mode_coverage
from tests import helpers as testing

STD = 0.02


def ring(num_modes=8, radius=2.0):
    angles = 2 * np.pi * np.arange(num_modes) / num_modes
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def numpy_mode_coverage(samples, centers, std, num_sigma, min_share):
    """Brute force: one sample at a time, one mode at a time."""
    counts = [0] * len(centers)
    good = 0
    for x in samples:
        distances = [math.dist(x, c) for c in centers]
        nearest = min(range(len(centers)), key=lambda k: distances[k])
        if distances[nearest] <= num_sigma * std:
            good += 1
            counts[nearest] += 1
    needed = max(1, math.ceil(round(min_share * len(samples), 9)))
    return {
        "modes_covered": sum(count >= needed for count in counts),
        "high_quality_share": good / len(samples),
        "counts": counts,
    }


def numpy_angular_uniformity(points, bins):
    """Brute force: sector of each point, then the entropy in nats."""
    counts = [0] * bins
    for x, y in points:
        angle = math.atan2(y, x)
        sector = min(int((angle + math.pi) / (2 * math.pi) * bins), bins - 1)
        counts[sector] += 1
    entropy = 0.0
    for count in counts:
        if count:
            p = count / len(points)
            entropy -= p * math.log(p)
    return entropy / math.log(bins)


class ModeCoverageTest(testing.TestCase):
    def test_eight_clusters_cover_eight_modes(self):
        rng = np.random.default_rng(0)
        centers = ring()
        samples = centers[np.arange(2400) % 8] + rng.normal(
            scale=STD, size=(2400, 2)
        )
        report = mode_coverage(samples, centers, STD)
        self.assertEqual(report["modes_covered"], 8)
        self.assertEqual(report["num_modes"], 8)
        # 3 std in 2-D holds 1 - exp(-4.5) = 98.9 % of a Gaussian.
        self.assertAllClose(report["high_quality_share"], 0.989, atol=0.01)
        self.assertEqual(
            sum(report["counts"]), round(2400 * report["high_quality_share"])
        )

    def test_collapsed_samples_cover_one_mode(self):
        centers = ring()
        samples = np.repeat(centers[3:4], 500, axis=0)
        report = mode_coverage(samples, centers, STD)
        self.assertEqual(report["modes_covered"], 1)
        self.assertEqual(report["high_quality_share"], 1.0)
        self.assertEqual(report["counts"], [0, 0, 0, 500, 0, 0, 0, 0])

    def test_far_samples_are_not_high_quality(self):
        centers = ring()
        rng = np.random.default_rng(1)
        samples = rng.normal(size=(300, 2)) * 0.1 + 10.0
        report = mode_coverage(samples, centers, STD)
        self.assertEqual(report["modes_covered"], 0)
        self.assertEqual(report["high_quality_share"], 0.0)
        # Between two modes: also low quality (radius 2, 8 modes: the
        # midpoint is 0.77 from both).
        middle = (centers[0] + centers[1]) / 2
        report = mode_coverage(np.repeat([middle], 10, 0), centers, STD)
        self.assertEqual(report["high_quality_share"], 0.0)

    def test_min_share(self):
        centers = ring()
        # 95 samples on mode 0, 5 on mode 1: mode 1 has 5 % of the samples.
        samples = np.concatenate(
            [np.repeat(centers[:1], 95, 0), np.repeat(centers[1:2], 5, 0)]
        )
        for min_share, expected in ((0.0, 2), (0.05, 2), (0.06, 1)):
            report = mode_coverage(samples, centers, STD, min_share=min_share)
            self.assertEqual(report["modes_covered"], expected, min_share)
        self.assertEqual(
            mode_coverage(samples, centers, STD, min_share=0.05)["min_count"],
            5,
        )

    def test_num_sigma_is_the_radius(self):
        centers = ring()
        samples = centers[:1] + np.array([[0.05, 0.0]])  # 2.5 std away
        for num_sigma, share in ((2.0, 0.0), (2.6, 1.0)):
            report = mode_coverage(samples, centers, STD, num_sigma=num_sigma)
            self.assertEqual(report["high_quality_share"], share)

    @parameterized.parameters(0.0, 0.01, 0.1)
    def test_correctness(self, min_share):
        rng = np.random.default_rng(2)
        centers = rng.normal(size=(5, 3))
        std = 0.3
        modes = rng.choice(5, size=200, p=[0.5, 0.3, 0.1, 0.07, 0.03])
        samples = centers[modes] + rng.normal(scale=0.5, size=(200, 3))
        expected = numpy_mode_coverage(samples, centers, std, 3.0, min_share)
        report = mode_coverage(samples, centers, std, min_share=min_share)
        for key, value in expected.items():
            self.assertEqual(report[key], value, key)

    def test_accepts_lists_and_float32(self):
        centers = ring().astype("float32")
        report = mode_coverage(centers.tolist(), centers, STD)
        self.assertEqual(report["modes_covered"], 8)

    def test_invalid_arguments(self):
        centers = ring()
        with self.assertRaisesRegex(ValueError, "Received: std=-1.0"):
            mode_coverage(centers, centers, -1.0)
        with self.assertRaisesRegex(ValueError, "Received: std=0.0"):
            mode_coverage(centers, centers, 0.0)
        with self.assertRaisesRegex(ValueError, "Received: num_sigma=0.0"):
            mode_coverage(centers, centers, STD, num_sigma=0)
        with self.assertRaisesRegex(ValueError, "Received: min_share=1.5"):
            mode_coverage(centers, centers, STD, min_share=1.5)
        with self.assertRaisesRegex(TypeError, "Received: std='a'"):
            mode_coverage(centers, centers, "a")
        with self.assertRaisesRegex(
            ValueError, r"Received: samples.shape=\(8, 3\)"
        ):
            mode_coverage(np.zeros((8, 3)), centers, STD)
        with self.assertRaisesRegex(
            ValueError, r"Received: samples.shape=\(0, 2\)"
        ):
            mode_coverage(np.zeros((0, 2)), centers, STD)
        with self.assertRaisesRegex(
            ValueError, r"Received: centers.shape=\(8,\)"
        ):
            mode_coverage(centers, np.zeros(8), STD)
        with self.assertRaisesRegex(ValueError, "NaN or Inf. Received: samp"):
            mode_coverage(np.full((2, 2), np.nan), centers, STD)
        with self.assertRaisesRegex(TypeError, "Received: samples.dtype"):
            mode_coverage(np.array([["a", "b"]]), centers, STD)


class AngularUniformityTest(testing.TestCase):
    def test_evenly_spread_is_one(self):
        angles = (np.arange(360) + 0.5) * 2 * np.pi / 360
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        self.assertAllClose(angular_uniformity(points), 1.0)
        # Uniform random angles: close to 1 (finite-sample bias ~0.01).
        rng = np.random.default_rng(0)
        angles = rng.uniform(-np.pi, np.pi, size=2000)
        points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        self.assertGreater(angular_uniformity(points), 0.99)

    def test_one_angle_is_zero(self):
        points = np.tile([[0.6, 0.8]], (100, 1))
        self.assertEqual(angular_uniformity(points), 0.0)
        # Norms do not matter, only directions.
        points = np.array([[0.6, 0.8]]) * np.arange(1, 101)[:, None]
        self.assertEqual(angular_uniformity(points), 0.0)

    def test_antipodal_clusters(self):
        points = np.array([[1.0, 0.1], [-1.0, -0.1]] * 50)
        self.assertAllClose(
            angular_uniformity(points, bins=36), math.log(2) / math.log(36)
        )

    @parameterized.parameters(2, 7, 36)
    def test_correctness(self, bins):
        rng = np.random.default_rng(bins)
        points = rng.normal(size=(300, 2)) + [0.8, 0.2]
        self.assertAllClose(
            angular_uniformity(points, bins=bins),
            numpy_angular_uniformity(points, bins),
            atol=1e-12,
        )

    def test_degenerate_inputs_are_finite(self):
        for points in (np.zeros((5, 2)), np.ones((1, 2)), [[1e-30, 1e30]]):
            value = angular_uniformity(points)
            self.assertTrue(0.0 <= value <= 1.0)
        self.assertEqual(angular_uniformity(np.zeros((5, 2))), 0.0)

    def test_invalid_arguments(self):
        points = np.ones((4, 2))
        with self.assertRaisesRegex(ValueError, "Received: bins=1"):
            angular_uniformity(points, bins=1)
        with self.assertRaisesRegex(TypeError, "Received: bins=2.5"):
            angular_uniformity(points, bins=2.5)
        with self.assertRaisesRegex(
            ValueError, r"Received: embeddings_2d.shape=\(4, 3\)"
        ):
            angular_uniformity(np.ones((4, 3)))
        with self.assertRaisesRegex(ValueError, "NaN or Inf"):
            angular_uniformity(np.array([[np.inf, 0.0]]))
