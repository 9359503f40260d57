"""A model using the regularizers exports to a SavedModel that serves alone.

The SavedModel is loaded in a fresh Python process that never imports
keras_featreg: serving must not depend on the package.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np

from keras_featreg import layers
from keras_featreg import regularizers
from tests import helpers as testing

SERVE = textwrap.dedent(
    """
    import sys

    import numpy as np
    import tensorflow as tf

    model_dir, x_path, out_path = sys.argv[1:]
    served = tf.saved_model.load(model_dir)
    outputs = served.serve(tf.constant(np.load(x_path)))
    assert "keras_featreg" not in sys.modules, "keras_featreg was imported"
    np.save(out_path, outputs.numpy())
    """
)


def build_model():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(
        8,
        activation="relu",
        activity_regularizer=regularizers.VICRegRegularizer(),
    )(inputs)
    hidden = layers.EmbeddingRegularization(
        regularizers.SVMaxRegularizer(factor=0.5)
    )(hidden)
    feature_map = keras.layers.Reshape((2, 2, 2))(hidden)
    feature_map = layers.EmbeddingRegularization(
        regularizers.VICRegRegularizer(), pooling="avg"
    )(feature_map)
    flat = keras.layers.Flatten()(feature_map)
    outputs = keras.layers.Dense(
        4,
        activity_regularizer=regularizers.SVMaxRegularizer(bounded=False),
    )(flat)
    return keras.Model(inputs, outputs)


class ExportTest(testing.TestCase):
    def test_saved_model_serves_without_keras_featreg(self):
        model = build_model()
        x = np.random.default_rng(0).normal(size=(11, 6)).astype("float32")
        model(x)
        self.assertLen(model.losses, 4)  # every regularizer is active
        expected = model.predict(x, verbose=0)
        directory = self.get_temp_dir()
        model_dir = os.path.join(directory, "saved_model")
        model.export(model_dir, format="tf_saved_model", verbose=False)
        x_path = os.path.join(directory, "x.npy")
        out_path = os.path.join(directory, "out.npy")
        np.save(x_path, x)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
        result = subprocess.run(
            [sys.executable, "-c", SERVE, model_dir, x_path, out_path],
            env=env,
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=300,
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        self.assertAllClose(np.load(out_path), expected, atol=0, rtol=0)
