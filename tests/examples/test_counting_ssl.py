import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers as testing
from tests.examples.common import EXAMPLES
from tests.examples.common import help_text
from tests.examples.common import load_example

counting = load_example("counting_ssl")


def numpy_terms(network, images, variant, margin, factor):
    """Eq. 18 and 19 re-derived in NumPy float64 from N's outputs, row by row.

    `network` maps 14 x 14 images to `[conv1, conv2, counts]`.
    """
    b = len(images)
    tiles = [
        images[:, :14, :14],
        images[:, :14, 14:],
        images[:, 14:, :14],
        images[:, 14:, 14:],
    ]
    down = images.reshape(b, 14, 2, 14, 2, 1).mean(axis=(2, 4))

    def n(x):
        return np.asarray(network(x)[-1], dtype=np.float64)

    whole = n(down)
    tile_sum = sum(n(t) for t in tiles)
    equivariance = np.mean(
        [np.sum((whole[i] - tile_sum[i]) ** 2) for i in range(b)]
    )
    # Ihat of image i is image i - 1 (the batch rolled by one).
    repulsion = np.mean(
        [
            max(0.0, margin - np.sum((whole[i - 1] - tile_sum[i]) ** 2))
            for i in range(b)
        ]
    )
    s_mu = np.linalg.svd(whole, compute_uv=False).mean()  # raw counts
    loss = {
        "none": equivariance,
        "repulsion": equivariance + repulsion,  # Eq. 18
        "svmax": equivariance - factor * s_mu,  # Eq. 19
    }[variant]
    return {
        "loss": loss,
        "equivariance": equivariance,
        "repulsion": repulsion,
        "svmax": -factor * s_mu,
        "s_mu": s_mu,
        "norm": np.mean(np.linalg.norm(whole, axis=1)),
    }


class CountingTermsTest(testing.TestCase):
    def test_tiles_and_downsampled(self):
        images = np.arange(2 * 4 * 4, dtype="float32").reshape(2, 4, 4, 1)
        tiles, down = counting.tiles_and_downsampled(tf.constant(images))
        self.assertEqual(tiles.shape, (4, 2, 2, 2, 1))
        self.assertAllClose(tiles[0, 1], images[1, :2, :2])
        self.assertAllClose(tiles[1, 0], images[0, :2, 2:])
        self.assertAllClose(tiles[2, 1], images[1, 2:, :2])
        self.assertAllClose(tiles[3, 0], images[0, 2:, 2:])
        self.assertAllClose(down[0, 1, 0, 0], images[0, 2:, :2].mean())

    def test_eq_18_and_19_match_numpy(self):
        rng = np.random.default_rng(0)
        images = rng.random((6, 28, 28, 1)).astype("float32")
        keras.utils.set_random_seed(0)
        network = counting.build_network(dim=5, filters=2)
        for variant in ("none", "repulsion", "svmax"):
            # margin 3: some hinges of Eq. 18 are active, some are not.
            terms = counting.counting_terms(
                network, tf.constant(images), variant, margin=3.0, factor=2.0
            )
            expected = numpy_terms(network, images, variant, 3.0, 2.0)
            self.assertEqual(sorted(terms), sorted(expected))
            for key, value in expected.items():
                self.assertAllClose(terms[key], value, rtol=1e-4, atol=1e-5)

    def test_collapsed_network_has_zero_terms_but_the_repulsion(self):
        network = counting.build_network(dim=3, filters=2)
        for weight in network.weights:
            weight.assign(tf.zeros_like(weight))  # N(x) = 0: the collapse
        images = tf.random.uniform((4, 28, 28, 1), seed=1)
        terms = counting.counting_terms(network, images, "repulsion", 10.0)
        self.assertAllClose(terms["equivariance"], 0.0)
        self.assertAllClose(terms["s_mu"], 0.0)
        self.assertAllClose(terms["repulsion"], 10.0)  # = m
        self.assertAllClose(terms["loss"], 10.0)

    def test_probe_features_pool_conv_maps(self):
        rng = np.random.default_rng(1)
        maps = rng.normal(size=(3, 5, 5, 4))
        self.assertAllClose(
            counting.probe_features(maps), maps.mean(axis=(1, 2)), atol=1e-6
        )
        # A 2 x 2 grid of a 5 x 5 map: blocks of rows/columns 0-2 and 3-4.
        pooled = counting.probe_features(maps, grid=2).reshape(3, 2, 2, 4)
        self.assertAllClose(pooled[:, 0, 1], maps[:, :3, 3:].mean(axis=(1, 2)))
        self.assertAllClose(pooled[:, 1, 0], maps[:, 3:, :3].mean(axis=(1, 2)))
        vectors = rng.normal(size=(3, 7))
        self.assertAllClose(counting.probe_features(vectors), vectors)

    def test_runs_of_default_variants(self):
        args = counting.parse_args([])
        self.assertEqual(
            [name for name, _, _ in counting.runs_of(args)],
            ["random", "none", "repulsion", "svmax λ=10", "svmax λ=100"],
        )
        args = counting.parse_args(["--variants", "svmax", "--factors", "1"])
        self.assertEqual(counting.runs_of(args), [("svmax λ=1", "svmax", 1.0)])


class CountingSSLTest(testing.TestCase):
    def test_help_is_fast_and_shows_defaults(self):
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import counting_ssl;"
            " args = counting_ssl.parse_args([]);"
            " assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
        )
        subprocess.run([sys.executable, "-c", code, str(EXAMPLES)], check=True)
        args = counting.parse_args([])
        self.assertEqual(args.seeds, [0, 1, 2])
        self.assertEqual(args.steps, 375)
        self.assertEqual(args.factors, [10.0, 100.0])
        self.assertEqual(args.margin, 10.0)
        self.assertEqual(args.output_dir, os.path.join("runs", "counting_ssl"))

    @pytest.mark.slow
    def test_help_text(self):
        text = help_text("counting_ssl")
        for flag in ("--learning-rate", "--seeds", "--steps", "--factors"):
            self.assertIn(flag, text)
        self.assertIn("(default: 0.001)", text)

    @pytest.mark.slow
    def test_main_writes_results(self):
        with tempfile.TemporaryDirectory() as directory:
            results = counting.main(
                [
                    "--seeds",
                    "0",
                    "--steps=2",
                    "--factors",
                    "10",
                    "--train-size=64",
                    "--test-size=40",
                    "--batch-size=16",
                    "--dim=4",
                    "--filters=2",
                    "--probe-epochs=1",
                    f"--output-dir={directory}",
                ]
            )
            names = ["random", "none", "repulsion", "svmax λ=10"]
            self.assertEqual([r["variant"] for r in results], names)
            for run in results:
                for layer in counting.LAYERS:
                    self.assertBetween(run[f"{layer}_probe"], 0.0, 100.0)
                self.assertEqual(run["conv1_dims"], 2)  # pooled channels
                self.assertEqual(run["conv2_dims"], 4)
                self.assertEqual(run["counts_dims"], 4)
                lower, upper = run["s_mu_bounds"]
                self.assertAllClose([lower, upper], [40**0.5 / 4, 10**0.5])
                self.assertLessEqual(run["s_mu"], upper + 1e-6)
                self.assertTrue(np.isfinite(run["equivariance"]))
            with open(os.path.join(directory, "results.md")) as f:
                table = f.read()
            for name in names:
                self.assertIn(f"| {name} | 1 |", table)
            self.assertIn("| repulsion | 18.9 | 30.7 |", table)  # Table 5
            with open(os.path.join(directory, "results.json")) as f:
                self.assertLen(json.load(f)["runs"], 4)
