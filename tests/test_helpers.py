"""The project's test helpers check what they claim to check."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import helpers as testing


class ForgetfulLayer(keras.layers.Layer):
    """`get_config` drops `units`: a serialization round trip must fail."""

    def __init__(self, units=3, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        if units != 3:
            self.extra = units  # the revived layer lacks this attribute

    def call(self, x):
        return x

    def get_config(self):
        config = super().get_config()
        config.pop("units", None)
        return config


class HelpersTest(testing.TestCase):
    def test_all_close_takes_tensors_and_variables(self):
        self.assertAllClose(tf.constant([1.0, 2.0]), np.array([1.0, 2.0]))
        self.assertAllClose(keras.Variable([1.0]), [1.0 + 1e-7])
        self.assertNotAllClose(tf.constant([1.0]), [1.1])
        with self.assertRaises(AssertionError):
            self.assertNotAllClose([1.0], [1.0])
        self.assertAllEqual(tf.constant([1, 2]), [1, 2])

    def test_serialization_round_trip(self):
        revived = self.run_class_serialization_test(
            keras.layers.Dense(3, name="dense_x")
        )
        self.assertEqual(revived.units, 3)
        with self.assertRaises(AssertionError):
            self.run_class_serialization_test(
                ForgetfulLayer(units=5),
                custom_objects={"ForgetfulLayer": ForgetfulLayer},
            )

    def test_layer_checks(self):
        self.run_layer_test(
            keras.layers.Dense,
            init_kwargs={"units": 4},
            input_shape=(2, 3),
            expected_output_shape=(2, 4),
            expected_num_trainable_weights=2,
        )
        with self.assertRaises(AssertionError):
            self.run_layer_test(
                keras.layers.Dense,
                init_kwargs={"units": 4},
                input_shape=(2, 3),
                expected_output_shape=(2, 5),
            )

    def test_fit_smoke(self):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        x = np.ones((8, 3), "float32")
        history = self.run_fit_smoke_test(model, x, x[:, :1], epochs=2)
        self.assertLen(history.history["loss"], 2)

    def test_temp_dir_is_removed(self):
        directory = self.get_temp_dir()
        self.assertTrue(os.path.isdir(directory))
        self.doCleanups()
        self.assertFalse(os.path.exists(directory))


@pytest.mark.slow
class ServingHelperTest(testing.TestCase):
    def test_serves_in_a_fresh_process(self):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        x = np.arange(6, dtype="float32").reshape(2, 3)
        directory = os.path.join(self.get_temp_dir(), "model")
        model.export(directory, format="tf_saved_model", verbose=False)
        served = self.serve_in_fresh_process(directory, x)
        self.assertAllClose(served, model.predict(x, verbose=0), atol=1e-6)
