import os
import tempfile

import numpy as np

from keras_featreg.ops import svmax_bounds
from tests import helpers as testing
from tests.examples.common import load_example

curves = load_example("svmax_lambda_curves")


class SVMaxLambdaCurvesTest(testing.TestCase):
    def test_main_writes_curves_table_and_plot(self):
        with tempfile.TemporaryDirectory() as directory:
            results = curves.main(
                [
                    "--factors",
                    "0",
                    "0.1",
                    "--iterations=4",
                    "--epochs=2",
                    "--p=2",
                    "--k=4",
                    "--dim=4",
                    "--monitor-size=16",
                    "--verbose=0",
                    f"--output-dir={directory}",
                ]
            )
            self.assertEqual([r["factor"] for r in results], [0.0, 0.1])
            lower, upper = svmax_bounds(16, 4)
            for run in results:
                # Before training plus one point per epoch.
                self.assertLen(run["mean_singular_value_curve"], 3)
                self.assertAllClose(run["lower_bound"], lower)
                self.assertAllClose(run["upper_bound"], upper)
                for value in run["mean_singular_value_curve"]:
                    self.assertBetween(value, lower - 1e-4, upper + 1e-4)
                self.assertBetween(run["recall_at_1"], 0.0, 1.0)
                self.assertTrue(run["finite"])
            # Same seed and weights before training: same starting s_mu.
            self.assertAllClose(
                results[0]["mean_singular_value_curve"][0],
                results[1]["mean_singular_value_curve"][0],
            )
            with open(os.path.join(directory, "results.md")) as f:
                rows = [
                    line.split(" | ")[0]
                    for line in f.read().splitlines()[2:]
                    if line
                ]
            self.assertEqual(rows, ["| 0", "| 0.1"])
            path = os.path.join(directory, "svmax_lambda_curves.png")
            self.assertGreater(os.path.getsize(path), 1000)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertTrue(np.isfinite(results[1]["final_mean_singular_value"]))
