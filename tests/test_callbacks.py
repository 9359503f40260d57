import csv
import glob
import importlib.util
import os

import keras
import numpy as np
import tensorflow as tf

from keras_featreg import metrics
from keras_featreg.callbacks import LOG_KEYS
from keras_featreg.callbacks import CollapseMonitor
from keras_featreg.evaluation.collapse import embedding_collapse_report
from tests import helpers as testing

KEYS = (
    "mean_singular_value",
    "svmax_lower_bound",
    "svmax_upper_bound",
    "collapsed_dimensions",
)


def build_model():
    inputs = keras.Input((6,))
    embeddings = keras.layers.Dense(4, name="embedding")(inputs)
    outputs = keras.layers.Dense(2, name="head")(embeddings)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="sgd", loss="mse")
    return model


def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 6)).astype("float32")
    y = rng.normal(size=(32, 2)).astype("float32")
    return x, y


class CollapseMonitorTest(testing.TestCase):
    def test_logs_reach_history_and_csv_logger(self):
        model = build_model()
        x, y = data()
        monitor = CollapseMonitor(x[:16], std_threshold=1e-2)
        path = os.path.join(self.get_temp_dir(), "log.csv")
        history = model.fit(
            x,
            y,
            batch_size=16,
            epochs=2,
            verbose=0,
            callbacks=[monitor, keras.callbacks.CSVLogger(path)],
        )
        for key in KEYS:
            self.assertLen(history.history[key], 2)
        self.assertLen(monitor.history, 2)
        self.assertEqual([h["epoch"] for h in monitor.history], [0, 1])
        # The weights do not change after the last epoch end: a fresh
        # report on the same batch gives the last logged values.
        expected = embedding_collapse_report(
            model.predict(x[:16], verbose=0), std_threshold=1e-2
        )
        self.assertEqual(monitor.history[-1], {"epoch": 1, **expected})
        self.assertAllClose(
            history.history["mean_singular_value"][-1],
            expected["mean_singular_value"],
        )
        self.assertEqual(history.history["svmax_lower_bound"][-1], 16**0.5 / 2)
        self.assertEqual(history.history["svmax_upper_bound"][-1], 8**0.5)
        with open(path) as f:
            rows = list(csv.DictReader(f))
        self.assertLen(rows, 2)
        self.assertAllClose(
            float(rows[1]["mean_singular_value"]),
            expected["mean_singular_value"],
        )

    def test_tensorboard_event_file_holds_the_collapse_scalars(self):
        if importlib.util.find_spec("tensorboard") is None:
            self.skipTest(
                "tensorboard is not installed (`pip install "
                "'keras-featreg[tensorboard]'`, also in the `test` extra)"
            )
        model = build_model()
        x, y = data()
        monitor = CollapseMonitor(x[:16])
        log_dir = self.get_temp_dir()
        model.fit(
            x,
            y,
            batch_size=16,
            epochs=2,
            verbose=0,
            callbacks=[monitor, keras.callbacks.TensorBoard(log_dir)],
        )
        scalars = {}  # tag -> {step: value}
        for path in glob.glob(os.path.join(log_dir, "train", "events.*")):
            for record in tf.data.TFRecordDataset(path):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if not value.tag.startswith("epoch_"):
                        continue  # the model config, written once
                    scalars.setdefault(value.tag, {})[event.step] = float(
                        tf.make_ndarray(value.tensor)
                    )
        for key in KEYS:
            written = scalars["epoch_" + key]
            self.assertEqual(sorted(written), [0, 1])
            for entry in monitor.history:
                self.assertAllClose(
                    written[entry["epoch"]], entry[LOG_KEYS[key]]
                )
        self.assertEqual(scalars["epoch_svmax_lower_bound"][1], 16**0.5 / 2)

    def test_every_and_layer_name(self):
        model = build_model()
        x, y = data()
        monitor = CollapseMonitor(x, every=2, layer_name="embedding")
        history = model.fit(
            x, y, batch_size=32, epochs=3, verbose=0, callbacks=[monitor]
        )
        self.assertEqual([h["epoch"] for h in monitor.history], [0, 2])
        self.assertLen(history.history["mean_singular_value"], 2)
        self.assertEqual(monitor.history[-1]["dim"], 4)
        embedding_model = keras.Model(
            model.inputs, model.get_layer("embedding").output
        )
        expected = embedding_collapse_report(
            embedding_model.predict(x, verbose=0)
        )
        self.assertAllClose(
            monitor.history[-1]["mean_singular_value"],
            expected["mean_singular_value"],
        )

    def test_embedding_model_and_prefix_next_to_the_metric(self):
        model = build_model()
        model.compile(
            optimizer="sgd", loss="mse", metrics=[metrics.MeanSingularValue()]
        )
        x, y = data()
        embedding_model = keras.Model(
            model.inputs, model.get_layer("embedding").output
        )
        monitor = CollapseMonitor(
            x, embedding_model=embedding_model, prefix="monitor_"
        )
        history = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
        self.assertIn("mean_singular_value", history.history)  # the metric
        for key in KEYS:
            self.assertIn("monitor_" + key, history.history)
        self.assertEqual(monitor.history[-1]["dim"], 4)

    def test_clash_with_a_metric_warns_and_keeps_the_metric(self):
        model = build_model()
        model.compile(
            optimizer="sgd", loss="mse", metrics=[metrics.MeanSingularValue()]
        )
        x, y = data()
        monitor = CollapseMonitor(x)
        with self.assertWarnsRegex(UserWarning, "Set `prefix`"):
            history = model.fit(x, y, epochs=1, verbose=0, callbacks=[monitor])
        metric_value = history.history["mean_singular_value"][0]
        self.assertNotAllClose(
            metric_value, monitor.history[0]["mean_singular_value"]
        )
        self.assertIn("svmax_upper_bound", history.history)

    def test_invalid_arguments(self):
        x = np.ones((4, 3), dtype="float32")
        with self.assertRaisesRegex(ValueError, "Received: every=0"):
            CollapseMonitor(x, every=0)
        with self.assertRaisesRegex(ValueError, "Received: std_threshold=-1"):
            CollapseMonitor(x, std_threshold=-1)
        with self.assertRaisesRegex(TypeError, "Received: normalize=None"):
            CollapseMonitor(x, normalize=None)
        with self.assertRaisesRegex(ValueError, "Received: x=<1 samples>"):
            CollapseMonitor(x[:1])
        with self.assertRaisesRegex(ValueError, "at most one"):
            CollapseMonitor(
                x, embedding_model=build_model(), layer_name="embedding"
            )
