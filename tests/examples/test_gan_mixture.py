import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from tests import helpers as testing
from tests.examples.common import EXAMPLES
from tests.examples.common import load_example

gan = load_example("gan_mixture")

TINY = ["--latent-dim=4", "--hidden=8", "--batch-size=16", "--num-samples=40"]


def flat(model):
    return np.concatenate([np.ravel(w) for w in model.get_weights()])


def networks(seed=0):
    keras.utils.set_random_seed(seed)
    return gan.mlp([4, 8, 8, 2], "tanh", "G"), gan.mlp(
        [2, 8, 8, 1], "relu", "D"
    )


class MixtureTest(testing.TestCase):
    def test_weights(self):
        self.assertAllClose(gan.mixture_weights("uniform"), np.full(8, 0.125))
        # The notebook's random_distribution(): uniform(0, 1), normalized.
        expected = np.random.default_rng(5).uniform(size=8)
        self.assertAllClose(
            gan.mixture_weights("random", 5), expected / expected.sum()
        )

    def test_samples_follow_the_weights(self):
        weights = np.array([0.5, 0.5, 0, 0, 0, 0, 0, 0])
        points = gan.sample_mixture(np.random.default_rng(0), 400, weights)
        distances = np.linalg.norm(
            points[:, None] - gan.ring_centers()[None], axis=-1
        )
        self.assertLess(distances.min(1).max(), 6 * gan.STD)
        self.assertEqual(set(distances.argmin(1)), {0, 1})
        self.assertAllClose(np.linalg.norm(gan.ring_centers(), axis=1), [2] * 8)

    def test_pytorch_initialization(self):
        model = gan.mlp([256, 128, 2], "tanh", "G")
        for layer, fan_in in zip(model.layers, (256, 128), strict=True):
            kernel, bias = layer.get_weights()
            for values in (kernel, bias):
                self.assertLessEqual(np.abs(values).max(), fan_in**-0.5)
            # Uniform over the whole interval, not a narrower default.
            self.assertGreater(np.abs(kernel).max(), 0.9 * fan_in**-0.5)
            self.assertGreater(np.abs(bias).std(), 0.0)
        self.assertEqual(model.layers[-1].activation.__name__, "linear")


class TrainStepTest(testing.TestCase):
    def batches(self, unrolling=0):
        rng = np.random.default_rng(0)
        weights = gan.mixture_weights("uniform")
        return (
            gan.sample_mixture(rng, 16, weights),
            rng.normal(size=(16, 4)).astype("float32"),
            rng.normal(size=(16, 4)).astype("float32"),
            gan.sample_mixture(rng, 16 * unrolling, weights).reshape(
                unrolling, 16, 2
            ),
        )

    def test_unrolling_and_svmax_change_only_the_generator(self):
        runs = {}
        for unrolling, factor in ((0, 0.0), (3, 0.0), (0, 1.0)):
            generator, discriminator = networks()
            step = gan.make_train_step(
                generator, discriminator, unrolling, factor, 0.01
            )
            step(*self.batches(unrolling))
            runs[unrolling, factor] = flat(generator), flat(discriminator)
        vanilla = runs[0, 0.0]
        for key in ((3, 0.0), (0, 1.0)):
            # D's own step is the same; the look-ahead is undone.
            self.assertAllClose(runs[key][1], vanilla[1])
            self.assertNotAllClose(runs[key][0], vanilla[0])

    def test_run_reports_each_snapshot(self):
        args = gan.parse_args(
            TINY + ["--steps=4", "--snapshot-every=2", "--unrolling-steps=2"]
        )
        snapshots = gan.run("unrolled_svmax", "random", 0, args)
        self.assertEqual([s["step"] for s in snapshots], [2, 4])
        for s in snapshots:
            self.assertEqual(s["samples"].shape, (40, 2))
            self.assertBetween(s["modes_3sigma"], 0, s["modes_loose"])
            self.assertBetween(s["share_3sigma"], 0.0, 1.0)
            self.assertBetween(s["missed_weight"], 0.0, 1.0 + 1e-9)


class GanExampleTest(testing.TestCase):
    def test_help_and_arguments(self):
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import gan_mixture;"
            " gan_mixture.parse_args([]);"
            " assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
        )
        subprocess.run([sys.executable, "-c", code, str(EXAMPLES)], check=True)
        args = gan.parse_args([])
        self.assertEqual(
            (args.steps, args.snapshot_every, args.learning_rate),
            (3000, 300, 0.025),
        )
        self.assertEqual(args.output_dir, os.path.join("runs", "gan_mixture"))
        with self.assertRaisesRegex(ValueError, "Received: variants=\\['x'\\]"):
            gan.parse_args(["--variants", "x"])

    def test_main_writes_tables_and_figures(self):
        with tempfile.TemporaryDirectory() as directory:
            results = gan.main(
                TINY
                + [
                    "--steps=2",
                    "--snapshot-every=1",
                    "--unrolling-steps=1",
                    "--seeds",
                    "0",
                    "1",
                    "--variants",
                    "vanilla",
                    "unrolled_svmax",
                    f"--output-dir={directory}",
                ]
            )
            self.assertLen(results, 2 * 2)  # mixtures x variants
            self.assertLen(results["random", "vanilla"], 2)  # seeds
            for name in (
                "gan_mixture_random.png",
                "gan_mixture_uniform.png",
                "gan_mixture_coverage.png",
            ):
                with open(os.path.join(directory, name), "rb") as f:
                    self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            with open(os.path.join(directory, "results.md")) as f:
                table = f.read()
            self.assertEqual(table.count("| random | vanilla |"), 2)
            self.assertIn("real samples reach", table)
            with open(os.path.join(directory, "results.json")) as f:
                self.assertLen(json.load(f)["rows"], 2 * 2 * 2)
