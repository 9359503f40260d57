import os
import tempfile

import keras
import numpy as np
from keras.src import testing

from keras_featreg.ops import svmax_bounds
from tests.examples.common import load_example

circle = load_example("unit_circle")


class UnitCircleDataTest(testing.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.splits = circle.load_split(test_per_class=100)

    def test_split_is_stratified_and_disjoint(self):
        (x_train, y_train), (x_test, y_test) = self.splits
        self.assertEqual(x_train.shape, (4000, 28, 28, 1))
        self.assertEqual(x_test.shape, (1000, 28, 28, 1))
        self.assertEqual(np.bincount(y_train).tolist(), [400] * 10)
        self.assertEqual(np.bincount(y_test).tolist(), [100] * 10)
        self.assertEqual(x_train.dtype, np.float32)
        self.assertBetween(float(x_train.max()), 0.99, 1.0)
        # No test image is also a train image.
        train = {row.tobytes() for row in x_train.reshape(4000, -1)}
        shared = sum(row.tobytes() in train for row in x_test.reshape(1000, -1))
        self.assertLessEqual(shared, 5)  # MNIST holds a few duplicates

    def test_digit_subsets(self):
        (_, y_train), (_, y_test) = circle.load_split(
            test_per_class=10,
            train_per_class=20,
            train_digits=[0, 1],
            test_digits=[5],
        )
        self.assertEqual(np.bincount(y_train).tolist(), [20, 20])
        self.assertEqual(y_test.tolist(), [5] * 10)


class UnitCircleModelTest(testing.TestCase):
    def test_embeds_on_the_unit_circle(self):
        images = np.random.default_rng(0).random((6, 28, 28, 1), "float32")
        for svmax in (False, True):
            model = circle.build_model(svmax, filters=4, hidden=8)
            embeddings = keras.ops.convert_to_numpy(model(images))
            self.assertEqual(embeddings.shape, (6, 2))
            self.assertAllClose(np.linalg.norm(embeddings, axis=1), [1.0] * 6)
            self.assertLen(model.losses, 1 if svmax else 0)
        # The bounded penalty of this batch: factor * exp((U - s) / (U - L)).
        s_mu = np.linalg.svd(embeddings, compute_uv=False).mean()
        lower, upper = svmax_bounds(6, 2)
        self.assertAllClose(
            model.losses[0],
            np.exp((upper - s_mu) / (upper - lower)),
            rtol=1e-5,
        )

    def test_one_nn_accuracy(self):
        rng = np.random.default_rng(1)
        embeddings = rng.normal(size=(30, 2))
        labels = rng.integers(0, 3, size=30)
        expected = 0
        for i in range(30):
            others = [j for j in range(30) if j != i]
            nearest = min(
                others,
                key=lambda j: np.linalg.norm(embeddings[i] - embeddings[j]),
            )
            expected += labels[nearest] == labels[i]
        self.assertAllClose(
            circle.one_nn_accuracy(embeddings, labels), expected / 30
        )

    def test_train_method_records_every_epoch(self):
        splits = circle.load_split(test_per_class=4, train_per_class=8)
        run = circle.train_method(
            "svmax", splits, epochs=2, p=5, k=4, num_plot=30
        )
        self.assertEqual([r["epoch"] for r in run["records"]], [0, 1, 2])
        lower, upper = svmax_bounds(30, 2)
        for record in run["records"]:
            self.assertEqual(record["embeddings"].shape, (30, 2))
            self.assertAllClose(record["lower_bound"], lower)
            self.assertAllClose(record["upper_bound"], upper)
            self.assertBetween(
                record["mean_singular_value"], lower - 1e-4, upper + 1e-4
            )
            self.assertBetween(record["angular_uniformity"], 0.0, 1.0)
        for key in ("loss", "contrastive", "mean_singular_value"):
            self.assertLen(run["history"][key], 2)
            self.assertTrue(np.all(np.isfinite(run["history"][key])), key)
        # The total loss holds the bounded penalty, at least lambda = 1.
        self.assertGreater(
            run["history"]["loss"][0], run["history"]["contrastive"][0] + 0.9
        )
        with self.assertRaisesRegex(ValueError, "Received: method='x'"):
            circle.train_method("x", splits)


class UnitCircleExampleTest(testing.TestCase):
    def test_main_writes_table_and_figures(self):
        with tempfile.TemporaryDirectory() as directory:
            runs = circle.main(
                [
                    "--epochs=1",
                    "--train-per-class=8",
                    "--test-per-class=4",
                    "--p=5",
                    "--k=4",
                    "--num-plot=30",
                    f"--output-dir={directory}",
                ]
            )
            self.assertEqual(
                [run["method"] for run in runs], ["vanilla", "svmax"]
            )
            for name in (
                "unit_circle_grid.png",
                "unit_circle_metrics.png",
                "unit_circle_animation.gif",
                "results.md",
                "results.json",
            ):
                path = os.path.join(directory, name)
                self.assertGreater(os.path.getsize(path), 100, name)
            with open(
                os.path.join(directory, "unit_circle_grid.png"), "rb"
            ) as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
            with open(
                os.path.join(directory, "unit_circle_animation.gif"), "rb"
            ) as f:
                self.assertEqual(f.read(3), b"GIF")
            with open(os.path.join(directory, "results.md")) as f:
                table = f.read()
            self.assertEqual(table.count("| vanilla |"), 2)  # epochs 0, 1
            self.assertEqual(table.count("| svmax |"), 2)
            with self.assertRaisesRegex(ValueError, "plot_epochs"):
                circle.main(["--epochs=1", "--plot-epochs", "0", "3"])
