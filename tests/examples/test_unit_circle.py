import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from tests import helpers as testing
from tests.examples.common import EXAMPLES
from tests.examples.common import help_text
from tests.examples.common import load_example

circle = load_example("unit_circle")


def unit(angles_degrees):
    angles = np.radians(np.asarray(angles_degrees, dtype=np.float64))
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def brute_force_arc(points, share):
    """Shortest arc holding `share` of the points, tried from each point."""
    angles = np.degrees(np.arctan2(points[:, 1], points[:, 0])) % 360
    need = int(np.ceil(share * len(angles)))
    best = 360.0
    for start in angles:
        offsets = np.sort((angles - start) % 360)
        best = min(best, offsets[need - 1])
    return best


class UnitCircleMetricsTest(testing.TestCase):
    def test_arc_95_matches_brute_force(self):
        rng = np.random.default_rng(0)
        for points in (
            unit(rng.uniform(0, 360, 200)),
            unit(rng.normal(30, 20, 150)),
            unit(np.concatenate([rng.normal(0, 5, 60), [170, 190, 300]])),
        ):
            self.assertAllClose(
                circle.arc_95(points), brute_force_arc(points, 0.95), atol=1e-9
            )
        # An even spread over the circle, or over half of it.
        self.assertAllClose(circle.arc_95(unit(np.arange(0, 360, 1.0))), 341)
        self.assertAllClose(circle.arc_95(unit(np.arange(0, 180, 0.5))), 170.5)

    def test_centroid_arc(self):
        labels = np.repeat(np.arange(10), 3)
        # Class c sits at 10 * c degrees: the classes span 90 degrees.
        points = unit(np.repeat(10.0 * np.arange(10), 3))
        self.assertAllClose(circle.centroid_arc(points, labels), 90.0)
        # Spread evenly: 360 - 36 degrees; wrapping around 180 is handled.
        points = unit(np.repeat(36.0 * np.arange(10) + 170, 3))
        self.assertAllClose(circle.centroid_arc(points, labels), 324.0)

    def test_one_nn_accuracy(self):
        rng = np.random.default_rng(1)
        points, labels = rng.normal(size=(30, 2)), rng.integers(0, 3, 30)
        correct = 0
        for i in range(30):
            d = [np.linalg.norm(points[i] - points[j]) for j in range(30)]
            d[i] = np.inf
            correct += labels[int(np.argmin(d))] == labels[i]
        self.assertAllClose(
            circle.one_nn_accuracy(points, labels), correct / 30
        )


class PairedContrastiveTest(testing.TestCase):
    def test_pairs_of_a_class_major_batch(self):
        labels = np.repeat(np.array([3, 7, 1, 0, 9, 2, 5, 8]), 4)
        pairs = labels[circle.PAIR_ORDER].reshape(16, 2)
        same = (pairs[:, 0] == pairs[:, 1]).astype(float)
        self.assertAllClose(same, circle.PAIR_LABELS)
        self.assertEqual(sum(circle.PAIR_LABELS), 8)  # half positive
        self.assertEqual(sorted(circle.PAIR_ORDER), list(range(32)))

    def test_loss_matches_the_official_formula(self):
        rng = np.random.default_rng(2)
        embeddings = rng.normal(size=(32, 2))
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        # Official ranking/contrastive.py, on mnist_embedding.py's pairs.
        index = np.tile([0, 1, 4, 3, 2, 5, 6, 7], 4)
        for i in range(4):
            index[i * 8 : i * 8 + 8] += i * 8
        anchor, positive = (
            embeddings[index].reshape(16, 2, 2).transpose(1, 0, 2)
        )
        y = np.tile([1, 0, 0, 1], 4)
        d = np.sqrt(np.sum((anchor - positive) ** 2, axis=1) + 1e-5)
        expected = np.mean(y * d**2 + (1 - y) * np.maximum(1 - d, 0) ** 2)
        loss = circle.paired_contrastive_loss(embeddings.astype("float32"))
        self.assertAllClose(loss, expected, rtol=1e-5)


class UnitCircleExampleTest(testing.TestCase):
    def test_help_is_fast_and_shows_defaults(self):
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import unit_circle;"
            " args = unit_circle.parse_args([]);"
            " assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
        )
        subprocess.run([sys.executable, "-c", code, str(EXAMPLES)], check=True)
        text = help_text("unit_circle")
        for flag in ("--learning-rate", "--seeds", "--steps", "--output-dir"):
            self.assertIn(flag, text)
        self.assertIn("(default: 0.01)", text)
        args = circle.parse_args([])
        self.assertEqual(args.output_dir, os.path.join("runs", "unit_circle"))

    def test_main_writes_tables_and_figures(self):
        with tempfile.TemporaryDirectory() as directory:
            results = circle.main(
                [
                    "--steps=2",
                    "--seeds",
                    "0",
                    "1",
                    "--eval-steps",
                    "0",
                    "2",
                    "9",
                    "--train-per-class=8",
                    "--test-per-class=3",
                    f"--output-dir={directory}",
                ]
            )
            self.assertEqual(sorted(results), ["svmax", "vanilla"])
            for method in circle.METHODS:
                self.assertLen(results[method], 2)  # seeds
                steps = [r["step"] for r in results[method][0]]
                self.assertEqual(steps, [0, 2])  # 9 is beyond --steps
            # Same seed, same initial network for both methods.
            self.assertAllClose(
                results["vanilla"][0][0]["embeddings"],
                results["svmax"][0][0]["embeddings"],
            )
            self.assertNotAllClose(
                results["vanilla"][0][1]["embeddings"],
                results["svmax"][0][1]["embeddings"],
            )
            for name in ("unit_circle_grid.png", "unit_circle_arcs.png"):
                with open(os.path.join(directory, name), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            with open(os.path.join(directory, "results.md")) as f:
                table = f.read()
            self.assertEqual(table.count("| vanilla |"), 2)
            self.assertIn("+/-", table)
            with open(os.path.join(directory, "results.json")) as f:
                payload = json.load(f)
            self.assertLen(payload["runs"]["svmax"], 2)
