"""examples/ssl_vicreg.py: data split, models, and a tiny end-to-end run."""

import json
import os

import keras
import numpy as np
import tensorflow as tf

from tests import helpers as testing
from tests.examples.common import load_example

ssl = load_example("ssl_vicreg")


class SslVicregPartsTest(testing.TestCase):
    def test_defaults(self):
        args = ssl.parse_args([])
        self.assertEqual(args.dataset, "mnist5k")
        self.assertEqual(args.backbone, "small_cnn")
        self.assertEqual(args.image_size, 28)
        self.assertEqual(args.methods, list(ssl.METHODS))
        self.assertEqual(args.optimizer, "lars")
        args = ssl.parse_args(["--dataset", "stl10", "--projector", "64,32"])
        self.assertEqual(args.backbone, "resnet18")
        self.assertEqual(args.image_size, 96)
        self.assertEqual(args.projector, (64, 32))

    def test_split_is_stratified_and_disjoint(self):
        splits = ssl.load_mnist5k(num_test=1000, seed=0)
        self.assertEqual(splits["x_train"].shape, (4000, 28, 28, 1))
        self.assertEqual(splits["x_test"].shape, (1000, 28, 28, 1))
        self.assertEqual(np.bincount(splits["y_test"]).tolist(), [100] * 10)
        self.assertEqual(np.bincount(splits["y_train"]).tolist(), [400] * 10)
        # The SSL images are the train images (labels used for probing).
        self.assertIs(splits["ssl_images"], splits["x_train"])
        train = {row.tobytes() for row in splits["x_train"].reshape(4000, -1)}
        shared = sum(
            row.tobytes() in train for row in splits["x_test"].reshape(1000, -1)
        )
        self.assertLessEqual(shared, 5)  # MNIST holds a few duplicates
        small = ssl.load_mnist5k(num_test=100, seed=0, num_train=300)
        self.assertEqual(small["x_train"].shape[0], 300)

    def test_encoders(self):
        x = np.zeros((2, 32, 32, 3), "float32")
        for backbone, dim in (("small_cnn", 64), ("resnet18", 512)):
            encoder = ssl.build_encoder(backbone, (32, 32, 3))
            self.assertEqual(tuple(encoder(x).shape), (2, dim))
        # ImageNet-sized inputs get the 7 x 7 stride-2 stem and max pooling.
        encoder = ssl.build_encoder("resnet18", (96, 96, 3))
        self.assertIn("stem_pool", [layer.name for layer in encoder.layers])

    def test_losses_and_optimizer(self):
        args = ssl.parse_args(["--epochs", "4", "--svmax-factor", "0.5"])
        self.assertEqual(ssl.build_loss("vicreg", args).variance_weight, 25.0)
        no_spread = ssl.build_loss("vicreg_no_var_cov", args)
        self.assertEqual(no_spread.variance_weight, 0.0)
        self.assertEqual(no_spread.covariance_weight, 0.0)
        self.assertEqual(ssl.build_loss("invariance_svmax", args).factor, 0.5)
        optimizer = ssl.build_optimizer(args, steps_per_epoch=10)
        self.assertEqual(optimizer.eta, args.lars_eta)
        schedule = keras.optimizers.schedules.deserialize(
            optimizer.get_config()["learning_rate"]
        )
        self.assertEqual(schedule.total_steps, 40)
        self.assertEqual(schedule.warmup_steps, 20)
        self.assertAllClose(schedule(20), 0.3 * args.batch_size / 256)
        adam = ssl.build_optimizer(
            ssl.parse_args(["--optimizer", "adam"]), steps_per_epoch=10
        )
        self.assertIsInstance(adam, keras.optimizers.Adam)

    def test_mock_tfds_cifar10(self):
        import tensorflow_datasets as tfds

        args = ssl.parse_args(["--dataset", "cifar10"])
        with tfds.testing.mock_data(num_examples=12):
            splits = ssl.load_tfds(args)
        self.assertEqual(splits["x_train"].shape, (12, 32, 32, 3))
        self.assertEqual(splits["x_train"].dtype, np.uint8)
        self.assertEqual(splits["y_test"].shape, (12,))
        dataset = ssl.two_views(args, splits["ssl_images"])
        self.assertEqual(
            dataset.element_spec[0].shape.as_list(), [256, 32, 32, 3]
        )


class SslVicregRunTest(testing.TestCase):
    def test_tiny_run(self):
        output_dir = self.get_temp_dir()
        export_dir = os.path.join(output_dir, "export")
        methods = ["vicreg", "random"]  # the others differ by their loss only
        results = ssl.main(
            [
                "--methods",
                *methods,
                "--num-train",
                "256",
                "--num-test",
                "100",
                "--batch-size",
                "64",
                "--epochs",
                "1",
                "--probe-epochs",
                "1",
                "--projector",
                "32,32",
                "--knn-k",
                "5",
                "--verbose",
                "0",
                "--output-dir",
                output_dir,
                "--export-dir",
                export_dir,
            ]
        )
        self.assertEqual([r["method"] for r in results], methods)
        for result in results:
            self.assertTrue(result["finite"], msg=result["method"])
            self.assertBetween(result["linear_probe"], 0.0, 1.0)
            self.assertBetween(result["knn"], 0.0, 1.0)
            for part in ("representation", "embedding"):
                figures = result[part]
                self.assertBetween(
                    figures["mean_singular_value"],
                    0.0,
                    figures["upper_bound"] + 1e-6,
                )
        trained = [r for r in results if r["method"] != "random"]
        for result in trained:
            self.assertLen(result["history"]["loss"], 1)
            self.assertIn("embedding_std", result["history"])
        self.assertEqual(results[-1]["history"], {})
        for name in (
            "results.md",
            "results.csv",
            "runs.json",
            "ssl_training_curves.png",
            "ssl_collapse.png",
        ):
            self.assertTrue(os.path.exists(os.path.join(output_dir, name)))
        with open(os.path.join(output_dir, "results.md")) as f:
            table = f.read()
        self.assertEqual(table.count("\n"), 2 + len(methods))
        with open(os.path.join(output_dir, "runs.json")) as f:
            self.assertLen(json.load(f)["runs"], len(methods))
        # The exported VICReg encoder serves raw images.
        served = tf.saved_model.load(os.path.join(export_dir, "encoder"))
        features = served.serve(tf.zeros((3, 28, 28, 1)))
        self.assertEqual(tuple(features.shape), (3, 64))
        keras.utils.clear_session()
