"""examples/ssl_vicreg.py: flags, data, models, schedule, table, a tiny run."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_featreg
from tests import helpers as testing
from tests.examples.common import EXAMPLES
from tests.examples.common import load_example

ssl = load_example("ssl_vicreg")


def fake_run(method, seed, probe, finite=True):
    """A `run` result as `main` collects it (no training)."""
    result = {"method": method, "seed": seed}
    if finite:
        result.update(linear_probe=probe, knn=probe / 2)
        for part in ("repr", "emb"):
            result.update({f"{part}_s_mu": 1.0 + seed, f"{part}_std": 0.5})
            result[f"{part}_bounds"] = [0.124, 1.976]
    if method != "random":
        result["train_seconds"] = 10.0 * (seed + 1)
        result["history"] = {"step": [15, 30], "loss": [2.0, 1.0 + seed]}
        result["history"]["invariance"] = [0.5, 0.25]
        result["history"]["embedding_std"] = [0.3, 0.4]
        result["history"]["mean_singular_value"] = [0.2, 0.3]
    return result


class SslVicregPartsTest(testing.TestCase):
    def test_help_is_fast_and_shows_defaults(self):
        code = (
            "import runpy, sys; sys.argv = [sys.argv[1], '--help']\n"
            "try: runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except SystemExit: pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
        )
        script = str(EXAMPLES / "ssl_vicreg.py")
        text = subprocess.run(
            [sys.executable, "-c", code, script],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        for flag in ("--learning-rate", "--seeds", "--steps", "--output-dir"):
            self.assertIn(flag, text)
        for default in ("0.3", "[0, 1, 2]", "150", "runs/ssl", "mnist5k"):
            self.assertIn(f"(default: {default})", text.replace("\n ", ""))

    def test_defaults(self):
        args = ssl.parse_args([])
        self.assertEqual(args.dataset, "mnist5k")
        self.assertEqual(args.backbone, "small_cnn")
        self.assertEqual(args.image_size, 28)
        self.assertEqual(args.methods, list(ssl.METHODS))
        self.assertEqual(args.seeds, [0, 1, 2])
        self.assertEqual(args.steps, 150)
        self.assertEqual(args.projector, [256, 256, 256])
        args = ssl.parse_args(["--dataset", "cifar10", "--projector", "64,32"])
        self.assertEqual(args.image_size, 32)
        self.assertEqual(args.projector, [64, 32])
        self.assertEqual(
            ssl.parse_args(["--dataset=imagenette"]).image_size, 128
        )
        with self.assertRaises(SystemExit):
            ssl.parse_args(["--methods", "simclr"])

    def test_split_is_stratified_and_disjoint(self):
        x_train, y_train, x_test, y_test = ssl.load_mnist5k()
        self.assertEqual(x_train.shape, (4000, 28, 28, 1))
        self.assertEqual(x_test.shape, (1000, 28, 28, 1))
        self.assertEqual(x_train.dtype, np.uint8)
        self.assertEqual(np.bincount(y_test).tolist(), [100] * 10)
        self.assertEqual(np.bincount(y_train).tolist(), [400] * 10)
        self.assertNotEqual(y_train[:10].tolist(), sorted(y_train[:10]))
        train = {row.tobytes() for row in x_train.reshape(4000, -1)}
        shared = sum(row.tobytes() in train for row in x_test.reshape(1000, -1))
        self.assertLessEqual(shared, 5)  # MNIST holds a few duplicates
        self.assertAllEqual(ssl.load_mnist5k()[1], y_train)  # deterministic

    def test_encoders(self):
        x = np.zeros((2, 32, 32, 3), "float32")
        for backbone, dim in (("small_cnn", 64), ("resnet18", 512)):
            encoder = ssl.build_encoder(backbone, (32, 32, 3))
            self.assertEqual(tuple(encoder(x).shape), (2, dim))
        names = [layer.__class__.__name__ for layer in encoder.layers]
        self.assertEqual(names.count("Add"), 8)  # 2-2-2-2 basic blocks
        self.assertNotIn("MaxPooling2D", names)  # 3 x 3 stem on 32 px
        encoder = ssl.build_encoder("resnet18", (96, 96, 3))
        names = [layer.__class__.__name__ for layer in encoder.layers]
        self.assertIn("MaxPooling2D", names)  # 7 x 7 stride-2 stem
        for layer in encoder.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                self.assertEqual(layer.momentum, 0.9)

    def test_losses(self):
        args = ssl.parse_args(["--svmax-factor", "0.5"])
        vicreg = ssl.build_loss("vicreg", args)
        self.assertEqual(vicreg.variance_weight, 25.0)
        self.assertEqual(vicreg.covariance_weight, 1.0)
        invariance = ssl.build_loss("invariance", args)
        self.assertEqual(invariance.variance_weight, 0.0)
        self.assertEqual(invariance.covariance_weight, 0.0)
        self.assertEqual(ssl.build_loss("invariance_svmax", args).factor, 0.5)

    def test_two_views(self):
        args = ssl.parse_args(["--batch-size", "16"])
        images = ssl.load_mnist5k()[0][:40]
        views = ssl.two_views(images, args, seed=0)
        self.assertEqual(int(views.cardinality()), 2)  # drops the remainder
        view_a, view_b = next(iter(views))
        self.assertEqual(tuple(view_a.shape), (16, 28, 28, 1))
        self.assertEqual(tuple(view_b.shape), (16, 28, 28, 1))
        self.assertNotAllClose(view_a, view_b)
        self.assertBetween(float(tf.reduce_min(view_a)), 0.0, 255.0)
        self.assertBetween(float(tf.reduce_max(view_a)), 1.0, 255.0 + 1e-3)

    def test_mock_tfds(self):
        import tensorflow_datasets as tfds

        for dataset, size in (("cifar10", 32), ("imagenette", 128)):
            args = ssl.parse_args(["--dataset", dataset])
            with tfds.testing.mock_data(num_examples=6):
                x_train, y_train, x_test, y_test = ssl.load_tfds(args)
            self.assertEqual(x_train.shape, (6, size, size, 3))
            self.assertEqual(x_test.shape, (6, size, size, 3))
            self.assertEqual(x_train.dtype, np.uint8)
            self.assertEqual(y_test.shape, (6,))

    def test_table_and_plot(self):
        args = ssl.parse_args(["--seeds", "0", "1", "--output-dir", "x"])
        args.output_dir = self.get_temp_dir()
        results = [
            fake_run("vicreg", 0, 0.90),
            fake_run("vicreg", 1, 0.80),
            fake_run("invariance", 0, 0.5),
            fake_run("invariance", 1, 0.0, finite=False),
            fake_run("invariance_svmax", 0, 0.7),
            fake_run("invariance_svmax", 1, 0.7),
            fake_run("random", 0, 0.6),
            fake_run("random", 1, 0.6),
        ]
        text = ssl.table(results, args)
        lines = text.splitlines()
        self.assertIn("seeds [0, 1]", lines[0])
        self.assertIn("[0.124, 1.98]", lines[1])
        rows = [line.split(" | ") for line in lines if line.startswith("| ")]
        self.assertEqual(rows[0][1], "Linear probe (%)")
        # 90 and 80: mean 85, sample std sqrt(50) = 7.07.
        self.assertEqual(
            rows[1][1:4], ["85.0 +/- 7.1", "42.5 +/- 3.5", "1.500 +/- 0.707"]
        )
        self.assertEqual(rows[0][0], "| method")
        self.assertEqual(rows[1][0], "| VICReg")
        self.assertEqual(rows[1][-2:], ["15 +/- 7", "2/2 |"])
        self.assertEqual(rows[2][1], "50.0 +/- 0.0")  # the finite seed
        self.assertEqual(rows[2][-1], "1/2 |")  # one seed diverged
        self.assertEqual(rows[4][-2], "-")  # random: not trained
        path = ssl.plot(results, args)
        with open(path, "rb") as f:
            self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
class SslVicregRunTest(testing.TestCase):
    def test_train_logs_whole_passes(self):
        # 3 batches a pass: 4 steps round up to 2 logs of 3 steps.
        args = ssl.parse_args(["--steps", "4", "--verbose", "0"])
        rng = np.random.default_rng(0)
        views = tf.data.Dataset.from_tensor_slices(
            (rng.normal(size=(24, 8)), rng.normal(size=(24, 8)))
        ).batch(8)
        encoder = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
        projector = keras_featreg.layers.build_projector([8, 8])
        loss = ssl.build_loss("vicreg", args)
        model = keras_featreg.models.TwoViewModel(encoder, projector, loss)
        history = ssl.train(model, views, args)
        self.assertEqual(history["step"], [3, 6])
        for key in ("loss", "invariance", "variance", "covariance"):
            self.assertLen(history[key], 2)
        self.assertLen(history["mean_singular_value"], 2)
        self.assertEqual(int(model.optimizer.iterations), 6)
        self.assertIsInstance(model.optimizer, keras_featreg.optimizers.LARS)
        config = model.optimizer.get_config()
        self.assertEqual(config["eta"], args.lars_eta)
        self.assertEqual(config["weight_decay"], args.weight_decay)
        schedule = keras.optimizers.schedules.deserialize(
            config["learning_rate"]
        )
        self.assertEqual(schedule.total_steps, 6)
        # Warm-up over int(0.1 * 6) = 0 steps, the peak rate 0.3 * 256 / 256.
        self.assertAllClose(schedule(0), 0.3)
        self.assertAllClose(schedule(6), 0.3 * 0.001, atol=1e-7)

    def test_tiny_run_writes_results_and_exports_the_best_encoder(self):
        output_dir = self.get_temp_dir()
        export_dir = os.path.join(output_dir, "export")
        methods = ["vicreg", "random"]  # the others differ by their loss only
        flags = ["--methods", *methods, "--seeds", "0", "1", "--steps", "2"]
        flags += ["--batch-size", "64", "--projector", "32,32"]
        flags += ["--probe-epochs", "1", "--knn-k", "5", "--verbose", "0"]
        flags += ["--output-dir", output_dir, "--export-dir", export_dir]
        results = ssl.main(flags)
        self.assertEqual(
            [(r["method"], r["seed"]) for r in results],
            [("vicreg", 0), ("random", 0), ("vicreg", 1), ("random", 1)],
        )
        for result in results:
            self.assertIn("linear_probe", result, msg=result["method"])
            self.assertBetween(result["linear_probe"], 0.0, 1.0)
            self.assertBetween(result["knn"], 0.0, 1.0)
            for part in ("repr", "emb"):
                lower, upper = result[f"{part}_bounds"]
                self.assertBetween(
                    result[f"{part}_s_mu"], lower - 1e-6, upper + 1e-6
                )
                self.assertGreater(result[f"{part}_std"], 0.0)
        self.assertEqual(results[0]["history"]["step"], [2])
        self.assertIn("embedding_std", results[0]["history"])
        self.assertNotIn("history", results[1])
        with open(os.path.join(output_dir, "results.md")) as f:
            table = f.read()
        self.assertEqual(table.count("\n| "), 1 + len(methods))
        with open(os.path.join(output_dir, "results.json")) as f:
            self.assertLen(json.load(f)["runs"], 4)
        path = os.path.join(output_dir, "ssl_training_curves.png")
        self.assertFileExists(path)
        # The best VICReg seed's encoder, in both forms, serving raw images.
        with open(os.path.join(export_dir, "model_info.json")) as f:
            info = json.load(f)
        vicreg = [r for r in results if r["method"] == "vicreg"]
        best = max(vicreg, key=lambda r: r["linear_probe"])
        self.assertEqual(info["seed"], best["seed"])
        self.assertEqual(info["linear_probe"], best["linear_probe"])
        images = np.random.default_rng(0).integers(0, 256, (3, 28, 28, 1))
        images = images.astype("float32")
        served = tf.saved_model.load(os.path.join(export_dir, "serving"))
        features = np.asarray(served.serve(tf.constant(images)))
        self.assertEqual(features.shape, (3, 64))
        loaded = keras.saving.load_model(
            os.path.join(export_dir, "encoder.keras")
        )
        self.assertAllClose(loaded({"images": images}), features, atol=1e-5)
