"""Loading what we save: `.keras` files need `import keras_featreg`;
SavedModels serve without it (README, Saving and loading)."""

import json
import os
import pathlib
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_featreg as kf
from tests import helpers as testing

ROOT = pathlib.Path(__file__).resolve().parents[1]
SERVING = ROOT / "saved_models" / "metric_learning" / "serving"

LOAD_SCRIPT = textwrap.dedent(
    """
    import json
    import sys

    import keras
    import numpy as np

    path, x_path, out_path = sys.argv[1:]
    try:
        keras.saving.load_model(path)
        error = None
    except Exception as exception:  # what a user sees
        error = f"{type(exception).__name__}: {exception}"
    imported = "keras_featreg" in sys.modules
    import keras_featreg  # noqa: F401  registers our classes

    model = keras.saving.load_model(path)
    np.save(out_path, model.predict(np.load(x_path), verbose=0))
    print(json.dumps({"error": error, "imported": imported}))
    """
)


def build_model():
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(
        4, activity_regularizer=kf.regularizers.SVMaxRegularizer(0.1)
    )(inputs)
    outputs = kf.layers.EmbeddingRegularization(
        kf.regularizers.VICRegRegularizer()
    )(hidden)
    return keras.Model(inputs, outputs)


@pytest.mark.slow
class KerasFileLoadingTest(testing.TestCase):
    def test_fresh_process_needs_the_import_and_is_told_the_class(self):
        directory = self.get_temp_dir()
        path = os.path.join(directory, "model.keras")
        model = build_model()
        model.save(path)
        x = np.random.default_rng(0).normal(size=(5, 6)).astype("float32")
        x_path = os.path.join(directory, "x.npy")
        out_path = os.path.join(directory, "out.npy")
        np.save(x_path, x)
        result = testing.run_python(
            ["-c", LOAD_SCRIPT, path, x_path, out_path],
            cwd=ROOT,  # `import keras_featreg` finds this checkout
        )
        self.assertEqual(result.returncode, 0, msg=result.stderr[-3000:])
        report = json.loads(result.stdout.strip().splitlines()[-1])
        self.assertFalse(report["imported"])
        # Keras imports only its own packages while loading (and no
        # config entry makes it import ours); its error ends with the
        # innermost cause, which names our class by module and by
        # registered name `keras_featreg>...`.
        cause = report["error"].rsplit("Exception encountered: ", 1)[-1]
        self.assertRegex(cause, "'module': 'keras_featreg\\.[a-z_.]+'")
        self.assertRegex(cause, "'registered_name': 'keras_featreg>[A-Za-z]+'")
        self.assertAllClose(
            np.load(out_path), model.predict(x, verbose=0), atol=1e-6
        )


class ServingInputDtypeTest(testing.TestCase):
    def test_committed_saved_model_inputs(self):
        # saved_models/README.md: float32 images in [0, 255]; NumPy arrays
        # of another dtype (uint8) are converted; a tf.uint8 tensor is not.
        if not SERVING.is_dir():
            self.skipTest("saved_models/ is not in this copy (sdist)")
        served = tf.saved_model.load(str(SERVING))
        images = np.random.default_rng(0).integers(
            0, 256, size=(3, 28, 28, 1), dtype=np.uint8
        )
        expected = served.serve(tf.constant(images, tf.float32)).numpy()
        self.assertEqual(expected.shape, (3, 128))
        self.assertAllClose(np.linalg.norm(expected, axis=1), np.ones(3))
        self.assertAllClose(served.serve(images), expected, atol=0)
        self.assertAllClose(
            served.serve(tf.cast(tf.constant(images), tf.float32)), expected
        )
        with self.assertRaisesRegex(TypeError, "uint8"):
            served.serve(tf.constant(images))
