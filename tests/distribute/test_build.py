"""build_for_training: the variables `fit` creates, with public API only."""

import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_featreg
from keras_featreg import distribute
from keras_featreg import layers
from keras_featreg import losses
from keras_featreg import models
from tests import helpers as testing


def paths(variables):
    # Names and shapes (layer names differ between two builds of a model).
    return sorted((v.name, tuple(v.shape)) for v in variables)


def state_paths(model):
    """Every variable `fit` needs: model, optimizer, compiled metrics."""
    metric_variables = [v for m in model.metrics for v in m.variables]
    # Optimizer slots are named after the layers: compare their shapes.
    slots = sorted(tuple(v.shape) for v in model.optimizer.variables)
    return paths(model.variables), slots, paths(metric_variables)


def metric_model():
    model = keras.Sequential(
        [
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dropout(0.5, seed=1),
            keras.layers.Dense(3),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def two_view_model():
    model = models.TwoViewModel(
        keras.Sequential([keras.layers.Dense(8)]),
        layers.build_projector((8, 4)),
        loss=losses.VICRegLoss(),
        augmenter=keras.layers.GaussianNoise(0.1, seed=2),
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    return model


def data(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 6)).astype("float32")
    if name == "metric":
        y = (np.arange(16) % 3).astype("int32")
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    return tf.data.Dataset.from_tensor_slices(x).batch(8)


BUILDERS = {"metric": metric_model, "two_view": two_view_model}


class BuildForTrainingTest(testing.TestCase):
    @pytest.mark.slow
    def test_creates_what_fit_creates(self):
        for name, builder in BUILDERS.items():
            dataset = data(name)
            keras.utils.set_random_seed(0)
            fitted = builder()
            fitted.fit(dataset, epochs=1, verbose=0)
            keras.utils.set_random_seed(0)
            built = builder()
            self.assertFalse(built.optimizer.built)
            distribute.build_for_training(built, dataset.element_spec)
            self.assertTrue(built.built)
            self.assertTrue(built.optimizer.built)
            self.assertEqual(state_paths(built), state_paths(fitted), name)
            # Nothing ran: the metrics are still zero, the optimizer made
            # no step, and the model trains as usual afterwards.
            for metric in built.metrics:
                for variable in metric.variables:
                    self.assertAllEqual(variable, np.zeros(variable.shape))
            self.assertEqual(int(built.optimizer.iterations), 0)
            history = built.fit(dataset, epochs=1, verbose=0)
            self.assertTrue(np.isfinite(history.history["loss"]).all())

    def test_under_a_strategy_scope(self):
        strategy = distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])
        dataset = data("metric")
        with strategy.scope():
            model = metric_model()
            distribute.build_for_training(model, dataset.element_spec)
        self.assertTrue(model.built and model.optimizer.built)
        for variable in model.trainable_variables:
            self.assertIsInstance(
                variable.value, tf.distribute.DistributedValues
            )

    def test_no_private_keras_hook_in_the_package(self):
        root = pathlib.Path(keras_featreg.__file__).parent
        for path in root.rglob("*.py"):
            self.assertNotIn("_symbolic_build", path.read_text(), str(path))
