import os
import tempfile

import numpy as np
import tensorflow as tf

from tests import helpers as testing
from tests.examples.common import load_example

counting = load_example("counting_ssl")


def numpy_terms(network, images, margin, factor, variant):
    """Eq. 18/19 re-derived in NumPy float64 from the network's outputs."""
    b = len(images)
    tiles = [
        images[:, :14, :14],
        images[:, :14, 14:],
        images[:, 14:, :14],
        images[:, 14:, 14:],
    ]
    down = images.reshape(b, 14, 2, 14, 2, 1).mean(axis=(2, 4))
    n = lambda x: np.asarray(network(x), dtype="float64")  # noqa: E731
    whole = n(down)
    tile_sum = sum(n(t) for t in tiles)
    equivariance = np.mean(
        [np.sum((whole[i] - tile_sum[i]) ** 2) for i in range(b)]
    )
    repulsion = np.mean(
        [
            max(0.0, margin - np.sum((whole[i - 1] - tile_sum[i]) ** 2))
            for i in range(b)
        ]
    )
    s_mu = np.linalg.svd(whole, compute_uv=False).mean()
    loss = {
        "repulsion": equivariance + repulsion,
        "svmax": equivariance - factor * s_mu,
        "none": equivariance,
    }[variant]
    return {
        "loss": loss,
        "equivariance": equivariance,
        "repulsion": repulsion,
        "s_mu": s_mu,
    }


class CountingSSLTest(testing.TestCase):
    def test_tiles_and_downsampled(self):
        images = np.arange(2 * 4 * 4, dtype="float32").reshape(2, 4, 4, 1)
        tiles, down = counting.tiles_and_downsampled(tf.constant(images))
        self.assertEqual(tiles.shape, (4, 2, 2, 2, 1))
        self.assertAllClose(tiles[1, 0], images[0, :2, 2:])
        self.assertAllClose(tiles[2, 1], images[1, 2:, :2])
        self.assertAllClose(down[0, 1, 0, 0], images[0, 2:, :2].mean())

    def test_loss_terms_match_numpy(self):
        rng = np.random.default_rng(0)
        images = rng.random((6, 28, 28, 1)).astype("float32")
        network = counting.build_counting_network(dim=5, filters=2, hidden=8)
        for variant in counting.VARIANTS:
            model = counting.CountingModel(
                network, variant, margin=3.0, factor=2.0
            )
            terms = model.compute_terms(tf.constant(images))
            expected = numpy_terms(network, images, 3.0, 2.0, variant)
            for key, value in expected.items():
                self.assertAllClose(terms[key], value, rtol=1e-4, atol=1e-5)

    def test_invalid_variant(self):
        network = counting.build_counting_network(dim=2, filters=2, hidden=4)
        with self.assertRaisesRegex(ValueError, "Received: variant='x'"):
            counting.CountingModel(network, "x")

    def test_main_trains_and_writes_table_and_plot(self):
        with tempfile.TemporaryDirectory() as directory:
            results = counting.main(
                [
                    "--seeds",
                    "0",
                    "--epochs=1",
                    "--train-size=64",
                    "--test-size=40",
                    "--batch-size=16",
                    "--dim=4",
                    "--filters=2",
                    "--hidden=8",
                    "--probe-epochs=2",
                    "--verbose=0",
                    f"--output-dir={directory}",
                ]
            )
            self.assertEqual(
                [r["variant"] for r in results], list(counting.VARIANTS)
            )
            for run in results:
                self.assertLen(run["history"]["loss"], 1)
                self.assertTrue(np.isfinite(run["history"]["loss"][0]))
                self.assertBetween(run["counts_probe"], 0.0, 1.0)
                self.assertGreaterEqual(run["mean_norm"], 0.0)
            with open(os.path.join(directory, "results.md")) as f:
                table = f.read()
            for variant in counting.VARIANTS:
                self.assertIn(f"| {variant} |", table)
            path = os.path.join(directory, "counting_ssl.png")
            self.assertGreater(os.path.getsize(path), 1000)
            with open(path, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
