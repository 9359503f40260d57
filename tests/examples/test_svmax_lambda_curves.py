import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from keras_featreg.ops import svmax_bounds
from tests import helpers as testing
from tests.examples.common import EXAMPLES
from tests.examples.common import load_example

curves = load_example("svmax_lambda_curves")


class SVMaxLambdaCurvesArgsTest(testing.TestCase):
    def test_defaults(self):
        args = curves.parse_args([])
        self.assertEqual(args.seeds, [0, 1, 2])
        self.assertEqual(args.factors, [0.0, 1e-4, 0.1])
        self.assertEqual(args.dim, args.batch_size)  # b = d, as Fig. 3
        self.assertEqual(args.proxy_lr_multiplier, 100.0)
        self.assertEqual(
            args.output_dir, os.path.join("runs", "svmax_lambda_curves")
        )

    def test_help_shows_defaults_without_importing_tensorflow(self):
        script = str(EXAMPLES / "svmax_lambda_curves.py")
        code = (
            "import runpy, sys\n"
            f"sys.argv = [{script!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_path({script!r}, run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "assert 'tensorflow' not in sys.modules, 'imported TensorFlow'\n"
            "assert 'keras' not in sys.modules, 'imported Keras'\n"
        )
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertLess(time.perf_counter() - start, 10.0)
        self.assertIn("(default: 456)", result.stdout)
        self.assertIn("(default: [0, 1, 2])", result.stdout)


class SVMaxLambdaCurvesPartsTest(testing.TestCase):
    def test_report_is_mean_and_sample_std_over_seeds(self):
        args = curves.parse_args(["--factors", "0", "0.1", "--seeds", "0", "1"])
        rng = np.random.default_rng(0)
        results = [
            {
                "factor": factor,
                "seed": seed,
                "s_mu_test": list(rng.uniform(0.1, 1.0, 4)),
                "s_mu_train": list(rng.uniform(0.1, 1.0, 4)),
                "recall_at_1": rng.uniform(),
                "train_seconds": 10.0,
                "lower_bound": 0.088,
                "upper_bound": 1.0,
            }
            for seed in (0, 1)
            for factor in (0.0, 0.1)
        ]
        _, rows = curves.report(results, args)
        for row, factor in zip(rows, (0.0, 0.1), strict=True):
            runs = [r for r in results if r["factor"] == factor]
            last = np.array([r["s_mu_test"][-1] for r in runs])
            expected = f"{last.mean():.3f} +/- {last.std(ddof=1):.3f}"
            self.assertEqual(row[0], f"{factor:g}")
            self.assertEqual(row[2], expected)

    def test_only_the_proxies_get_the_larger_rate(self):
        args = curves.parse_args([])
        _, trainer, optimizer = curves.build(0.1, 5, args, steps=30)
        optimizer.build(trainer.trainable_variables)
        (group,) = optimizer.group_optimizers
        self.assertEqual(
            [v.path for v in group._trainable_variables],
            ["proxy_anchor/proxies"],
        )
        self.assertAllClose(group.learning_rate, 100 * args.learning_rate)
        self.assertAllClose(optimizer.learning_rate, args.learning_rate)


@pytest.mark.slow
class SVMaxLambdaCurvesRunTest(testing.TestCase):
    def test_main_writes_curves_table_and_figure(self):
        directory = self.get_temp_dir()
        results = curves.main(
            [
                "--factors",
                "0",
                "0.1",
                "--seeds",
                "3",
                "--steps=4",
                "--steps-per-epoch=2",
                "--batch-size=8",
                "--dim=8",
                f"--output-dir={directory}",
            ]
        )
        self.assertEqual(
            [(r["seed"], r["factor"]) for r in results], [(3, 0.0), (3, 0.1)]
        )
        lower, upper = svmax_bounds(8, 8)
        for run in results:
            self.assertAllClose(run["lower_bound"], lower)
            self.assertAllClose(run["upper_bound"], upper)
            for name in ("test", "train"):
                curve = run[f"s_mu_{name}"]
                self.assertLen(curve, 3)  # before training + 2 epochs
                for value in curve:
                    self.assertBetween(value, lower - 1e-4, upper + 1e-4)
            self.assertBetween(run["recall_at_1"], 0.0, 1.0)
            self.assertTrue(run["finite"])
        # Same seed, same initial weights and fixed batch: same start.
        self.assertAllClose(
            results[0]["s_mu_test"][0], results[1]["s_mu_test"][0]
        )
        with open(os.path.join(directory, "results.md")) as f:
            lines = f.read().splitlines()
        rows = [line.split(" | ")[0] for line in lines if line[:3] == "| 0"]
        self.assertEqual(rows, ["| 0", "| 0.1"])
        self.assertIn("+/-", lines[-1])
        with open(os.path.join(directory, "results.json")) as f:
            payload = json.load(f)
        self.assertLen(payload["runs"], 2)
        self.assertEqual(payload["args"]["seeds"], [3])
        recalls = [100 * results[1]["recall_at_1"]]
        self.assertEqual(
            payload["rows"][1][4].split(" ")[0], f"{np.mean(recalls):.1f}"
        )
        path = os.path.join(directory, "svmax_lambda_curves.png")
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        self.assertGreater(os.path.getsize(path), 1000)
