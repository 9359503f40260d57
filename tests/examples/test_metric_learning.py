import json
import os
from unittest import mock

import numpy as np
import tensorflow as tf

from keras_featreg import data
from keras_featreg import losses
from keras_featreg import regularizers
from tests import helpers as testing
from tests.examples.common import EXAMPLES
from tests.examples.common import load_example

metric_learning = load_example("metric_learning")

# Loads the exported `.keras` file in a process that must not import
# keras_featreg (the export holds Keras layers only) and prints embeddings.
LOAD_SCRIPT = """
import json, sys
import keras, numpy as np
model = keras.saving.load_model(sys.argv[1])
out = model.predict(np.load(sys.argv[2]), verbose=0)
assert "keras_featreg" not in sys.modules
print(json.dumps(out.tolist()))
"""


def fewer_test_images(load_data, count=500):
    """`load_data` keeping `count` (seeded) of the unseen test images.

    These runs check the plumbing, not accuracy: evaluating 500 of the
    2,500 test digits keeps each run's evaluation short.
    """

    def load(args):
        x_train, y_train, x_test, y_test, *prep = load_data(args)
        rng = np.random.default_rng(0)
        keep = np.sort(rng.permutation(len(x_test))[:count])
        return (x_train, y_train, x_test[keep], y_test[keep], *prep)

    return load


class MetricLearningExampleTest(testing.TestCase):
    """End-to-end runs (slow: see conftest.py)."""

    def setUp(self):
        super().setUp()
        patch = mock.patch.object(
            metric_learning,
            "load_data",
            fewer_test_images(metric_learning.load_data),
        )
        patch.start()
        self.addCleanup(patch.stop)

    def test_seeds_grid_writes_table_figures_and_a_serving_model(self):
        out = self.get_temp_dir()
        export = os.path.join(out, "export")
        runs = metric_learning.main(
            [
                "--steps", "4", "--epochs", "2", "--seeds", "0", "1",
                "--losses", "contrastive", "--methods", "vanilla", "svmax",
                "--output-dir", out, "--export-dir", export,
            ]
        )  # fmt: skip
        self.assertEqual(
            [(r["method"], r["seed"]) for r in runs],
            [("vanilla", 0), ("vanilla", 1), ("svmax", 0), ("svmax", 1)],
        )
        for run in runs:
            self.assertEqual((run["p"], run["k"]), (4, 36))
            for key in ("nmi", "recall_1", "recall_8", "map_at_r"):
                self.assertBetween(run[key], 0.0, 1.0)
            self.assertBetween(run["r_precision"], 0.0, 1.0)
            self.assertBetween(
                run["mean_singular_value"],
                run["lower_bound"] - 1e-6,
                run["upper_bound"] + 1e-6,
            )
        for name in (
            "results.md",
            "results.json",
            "recall_at_1.png",
            "mean_singular_value.png",
        ):
            self.assertGreater(os.path.getsize(os.path.join(out, name)), 0)
        with open(os.path.join(out, "results.md")) as f:
            table = f.read()
        self.assertIn("| contrastive | svmax | 0.01 |", table)
        self.assertIn(" +/- ", table)
        self.assertIn("| 2/2 |", table)
        with open(os.path.join(out, "results.json")) as f:
            self.assertLen(json.load(f)["runs"], 4)

        # The export: the `.keras` file loads without keras_featreg (no
        # SVMax layer) and the SavedModel serves the same embeddings.
        images, _ = data.load_mnist_5k()
        x = images[:6].astype("float32")
        np.save(os.path.join(out, "x.npy"), x)
        keras_path = os.path.join(export, "embedding_model.keras")
        result = testing.run_python(
            ["-c", LOAD_SCRIPT, keras_path, os.path.join(out, "x.npy")]
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        loaded = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
        served = self.serve_in_fresh_process(os.path.join(export, "serving"), x)
        self.assertAllClose(served, loaded, atol=1e-6)
        self.assertAllClose(np.linalg.norm(served, axis=1), np.ones(6))
        with open(os.path.join(export, "model_info.json")) as f:
            info = json.load(f)
        self.assertEqual(info["dataset"], "mnist5k")
        best = max(runs, key=lambda r: r["recall_1"])
        self.assertEqual(info["recall_1"], best["recall_1"])

    def test_every_loss_with_spread_out_trains(self):
        out = self.get_temp_dir()
        runs = metric_learning.main(
            [
                "--steps", "2", "--seeds", "0", "--methods", "spread_out",
                "--losses", *metric_learning.LOSSES,
                "--output-dir", out, "--export-dir", "",
            ]
        )  # fmt: skip
        self.assertEqual(
            [r["loss"] for r in runs], list(metric_learning.LOSSES)
        )
        for run in runs:
            self.assertIn("recall_1", run)  # finite embeddings
        self.assertFalse(os.path.exists(os.path.join(out, "export")))

    def test_tfds_path_with_encoded_images(self):
        # `--dataset cub200` reads encoded images through
        # `data.load_retrieval_encoded` (mocked: no tfds data here) and
        # decodes them in the P x K pipeline at --image-size.
        rng = np.random.default_rng(0)

        def fake_load(name, split, data_dir=None):
            self.assertEqual((name, data_dir), ("cub", "somewhere"))
            labels = np.repeat(np.arange(6) + (6 if split == "test" else 0), 4)
            images = np.empty(len(labels), dtype=object)
            for i in range(len(labels)):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                images[i] = tf.io.encode_png(pixels).numpy()
            return images, labels

        out = self.get_temp_dir()
        with mock.patch.object(
            metric_learning.data, "load_retrieval_encoded", fake_load
        ):
            runs = metric_learning.main(
                [
                    "--dataset", "cub200", "--data-dir", "somewhere",
                    "--backbone", "small_cnn", "--image-size", "32",
                    "--batch-size", "12", "--dim", "8", "--steps", "1",
                    "--seeds", "0", "--losses", "triplet",
                    "--methods", "svmax", "--output-dir", out,
                    "--export-dir", os.path.join(out, "export"),
                ]
            )  # fmt: skip
        self.assertEqual((runs[0]["p"], runs[0]["k"]), (6, 2))
        self.assertIn("recall_1", runs[0])
        with open(os.path.join(out, "export", "model_info.json")) as f:
            info = json.load(f)
        self.assertEqual(info["dataset"], "cub200")
        self.assertEqual(info["backbone"], "small_cnn")


class MetricLearningPartsTest(testing.TestCase):
    def test_batch_shape_caps_p_by_the_training_classes(self):
        shape = metric_learning.batch_shape
        self.assertEqual(shape(100, 144, (24, 6)), (24, 6))
        self.assertEqual(shape(5, 144, (24, 6)), (4, 36))
        with self.assertRaisesRegex(ValueError, "Received: batch_size=1"):
            shape(5, 1, (24, 6))

    def test_default_grid_and_flags(self):
        args = metric_learning.parse_args([])
        self.assertEqual(args.seeds, [0, 1, 2])
        self.assertEqual(args.steps, 150)
        self.assertEqual(args.learning_rates, [0.01])
        self.assertEqual(
            args.losses, ["contrastive", "triplet", "npair", "angular"]
        )
        self.assertEqual(args.methods, ["vanilla", "spread_out", "svmax"])
        self.assertEqual(args.backbone, "small_cnn")
        parse = metric_learning.parse_args
        self.assertEqual(parse(["--iterations", "7"]).steps, 7)
        self.assertEqual(parse(["--steps", "7"]).steps, 7)
        self.assertEqual(
            parse(["--learning-rate", "0.1"]).learning_rates, [0.1]
        )
        self.assertEqual(
            parse(["--lrs", "0.1", "0.001"]).learning_rates, [0.1, 0.001]
        )
        self.assertEqual(
            parse(
                ["--learning-rate", "0.1", "--learning-rates", "0.5"]
            ).learning_rates,
            [0.5],
        )
        self.assertEqual(parse(["--dataset", "cub200"]).backbone, "resnet50")
        with self.assertRaises(SystemExit):
            parse(["--steps", "0"])

    def test_help_answers_before_tensorflow_is_imported(self):
        script = (
            "import runpy, sys\n"
            f"sys.argv = ['metric_learning.py', '--help']\n"
            "try:\n"
            f"    runpy.run_path({str(EXAMPLES / 'metric_learning.py')!r}, "
            "run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
            "assert 'keras' not in sys.modules, 'keras imported'\n"
        )
        result = testing.run_python(["-c", script])
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        self.assertIn("--learning-rates", result.stdout)
        self.assertIn("(default: 150)", result.stdout)

    def test_losses_follow_the_official_conventions(self):
        contrastive = metric_learning.LOSSES["contrastive"]()
        self.assertIsInstance(contrastive, losses.ContrastiveLoss)
        self.assertEqual(
            (contrastive.margin, contrastive.squared, contrastive.pairs),
            (1.0, True, "balanced"),
        )
        triplet = metric_learning.LOSSES["triplet"]()  # the paper: batch hard
        self.assertEqual((triplet.margin, triplet.mining), (0.2, "hard"))
        semihard = metric_learning.LOSSES["triplet_semihard"]()
        self.assertEqual(
            (semihard.mining, semihard.squared, semihard.fallback),
            ("semihard", True, "farthest"),
        )
        for name in ("npair", "angular"):
            loss = metric_learning.LOSSES[name]()
            self.assertEqual(loss.negatives, "pair_positives")
        self.assertEqual(metric_learning.LOSSES["angular"]().alpha, 45.0)
        self.assertEqual(
            metric_learning.PAPER,
            {
                "contrastive": ((36, 4), 1.0),
                "triplet": ((24, 6), 0.1),
                "npair": ((72, 2), 1.0),
                "angular": ((72, 2), 2.0),
                "triplet_semihard": ((24, 6), 0.1),
            },
        )

    def test_training_loss_per_method(self):
        args = metric_learning.parse_args([])
        make = metric_learning.training_loss
        loss, svmax = make("triplet", "vanilla", 0.1, args, 0)
        self.assertIsInstance(loss, losses.TripletLoss)
        self.assertIsNone(svmax)
        loss, svmax = make("triplet", "svmax", 0.1, args, 0)
        self.assertIsInstance(svmax, regularizers.SVMaxRegularizer)
        self.assertEqual(svmax.factor, 0.1)
        args.strategy = "mirrored"  # SVMax in the loss, on the global batch
        loss, svmax = make("npair", "svmax", 1.0, args, 0)
        self.assertIsInstance(loss, losses.RegularizedLoss)
        self.assertIsNone(svmax)

    def test_spread_out_adds_its_term_with_the_paper_negatives(self):
        # Triplet: the triplets' own negatives; other losses: one random
        # negative per anchor. Checked through the per-sample values.
        args = metric_learning.parse_args([])
        rng = np.random.default_rng(0)
        labels = np.repeat(np.arange(4), 3)
        z = rng.normal(size=(12, 8)).astype("float32")
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        for name, negatives in (("triplet", "triplet"), ("npair", "random")):
            loss, svmax = metric_learning.training_loss(
                name, "spread_out", 1.0, args, 3
            )
            self.assertIsNone(svmax)
            ranking = metric_learning.LOSSES[name]()
            spread = losses.SpreadOutLoss(
                1.0,
                negatives=negatives,
                seed=3,
                mining=getattr(ranking, "mining", "hard"),
            )
            expected = ranking.call(labels, z) + spread.call(labels, z)
            self.assertAllClose(loss(labels, z), expected, atol=1e-6)
