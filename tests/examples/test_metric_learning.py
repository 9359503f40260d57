import json
import os
import subprocess
import sys
import tempfile

import keras
import numpy as np

from keras_featreg import data
from tests import helpers as testing
from tests.examples.common import load_example

metric_learning = load_example("metric_learning")


class MetricLearningExampleTest(testing.TestCase):
    def test_short_grid_writes_tables_plots_and_a_serving_model(self):
        out = tempfile.mkdtemp()
        export = os.path.join(out, "export")
        results = metric_learning.main(
            [
                "--iterations", "4", "--epochs", "2", "--lrs", "0.01",
                "--losses", "contrastive", "--methods", "vanilla", "svmax",
                "--verbose", "0", "--output-dir", out, "--export-dir", export,
            ]
        )  # fmt: skip
        self.assertEqual([r["method"] for r in results], ["vanilla", "svmax"])
        for result in results:
            self.assertTrue(result["finite"])
            self.assertBetween(result["recall"][1], 0.0, 1.0)
            self.assertBetween(
                result["mean_singular_value"],
                result["lower_bound"] - 1e-6,
                result["upper_bound"] + 1e-6,
            )
            self.assertLen(result["training_mean_singular_value"], 2)
        for name in (
            "results.md",
            "results.csv",
            "runs.json",
            "recall_vs_lr.png",
            "mean_singular_value.png",
            "training_mean_singular_value.png",
        ):
            self.assertGreater(os.path.getsize(os.path.join(out, name)), 0)
        with open(os.path.join(out, "results.md")) as f:
            self.assertIn("| contrastive | svmax |", f.read())

        # The exported model: `.keras` reloads; the SavedModel serves the
        # same embeddings in a fresh process without keras_featreg.
        images, _ = data.load_mnist_5k()
        x = images[:6].astype("float32")
        model = keras.models.load_model(
            os.path.join(export, "embedding_model.keras")
        )
        expected = model.predict(x, verbose=0)
        np.save(os.path.join(out, "x.npy"), x)
        serving = os.path.join(export, "serving")
        script = (
            "import sys, numpy as np, tensorflow as tf\n"
            f"served = tf.saved_model.load({serving!r})\n"
            f"x = np.load({os.path.join(out, 'x.npy')!r})\n"
            "print(json.dumps(served.serve(tf.constant(x)).numpy().tolist()))\n"
            "assert 'keras_featreg' not in sys.modules\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", "import json\n" + script],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
            check=True,
        )
        served = np.array(json.loads(result.stdout.strip().splitlines()[-1]))
        self.assertAllClose(served, expected, atol=1e-6)
        with open(os.path.join(export, "model_info.json")) as f:
            self.assertEqual(json.load(f)["dataset"], "mnist5k")

    def test_batch_shape_caps_p_by_the_training_classes(self):
        shape = metric_learning.batch_shape
        self.assertEqual(shape(100, 144, (24, 6)), (24, 6))
        self.assertEqual(shape(5, 144, (24, 6)), (4, 36))
        with self.assertRaisesRegex(ValueError, "Received: batch_size=1"):
            shape(5, 1, (24, 6))
