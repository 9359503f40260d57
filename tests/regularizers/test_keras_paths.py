"""Both ways of using a regularizer give the documented loss in Keras.

`activity_regularizer=` (Keras divides the value by the batch size, the
regularizer's `__call__` multiplies it back) and the
`EmbeddingRegularization` wrapper (adds `penalty(x)`), through `model.losses`,
`fit`, `.keras` saving and mixed precision.
"""

import os

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized
from keras import ops

from keras_featreg import layers
from keras_featreg import regularizers
from tests import helpers as testing
from tests.regularizers.test_svmax import numpy_l2_normalize
from tests.regularizers.test_svmax import numpy_mean_singular_value
from tests.regularizers.test_svmax import numpy_svmax
from tests.regularizers.test_vicreg import numpy_vicreg

CASES = {
    "svmax": (
        lambda: regularizers.SVMaxRegularizer(factor=0.5),
        lambda z: numpy_svmax(z, 0.5),
    ),
    "svmax_unbounded": (
        lambda: regularizers.SVMaxRegularizer(factor=0.2, bounded=False),
        lambda z: numpy_svmax(z, 0.2, bounded=False),
    ),
    "vicreg": (
        lambda: regularizers.VICRegRegularizer(2.0, 0.5),
        lambda z: numpy_vicreg(z, 2.0, 0.5),
    ),
}
PARAMETERS = [
    {"testcase_name": f"{name}_{path}", "name": name, "path": path}
    for name in CASES
    for path in ("activity", "layer")
]


def build_model(regularizer, path, dim=5):
    inputs = keras.Input((6,))
    if path == "activity":
        outputs = keras.layers.Dense(
            dim, activity_regularizer=regularizer, name="embedding"
        )(inputs)
    else:
        embeddings = keras.layers.Dense(dim, name="embedding")(inputs)
        outputs = layers.EmbeddingRegularization(regularizer)(embeddings)
    return keras.Model(inputs, outputs)


def data(batch_size, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, 6)).astype("float32")
    y = rng.normal(size=(batch_size, 5)).astype("float32")
    return x, y


class KerasPathsTest(testing.TestCase):
    @parameterized.named_parameters(PARAMETERS)
    def test_model_losses_equal_the_formula(self, name, path):
        make, reference = CASES[name]
        model = build_model(make(), path)
        batch_sizes = (1, 2, 5, 33) if name.startswith("svmax") else (2, 5, 33)
        for batch_size in batch_sizes:
            x, _ = data(batch_size)
            outputs = model(x)
            self.assertLen(model.losses, 1)
            self.assertEqual(model.losses[0].dtype, tf.float32)
            self.assertAllClose(
                model.losses[0], reference(outputs.numpy()), rtol=1e-5
            )

    @parameterized.named_parameters(PARAMETERS)
    def test_fit_loss_includes_the_penalty(self, name, path):
        make, reference = CASES[name]
        model = build_model(make(), path)
        # A zero learning rate keeps the weights, so the logged loss of one
        # full-batch step can be recomputed exactly afterwards.
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
        x, y = data(24)
        history = model.fit(x, y, batch_size=24, epochs=1, verbose=0)
        outputs = model.predict(x, verbose=0).astype("float64")
        mse = np.mean((outputs - y) ** 2)
        self.assertAllClose(
            history.history["loss"][0], mse + reference(outputs), rtol=1e-5
        )

    @parameterized.named_parameters(PARAMETERS)
    def test_training_on_the_penalty_alone_spreads_embeddings(self, name, path):
        make, reference = CASES[name]
        model = build_model(make(), path, dim=4)
        embedding = model.get_layer("embedding")
        rng = np.random.default_rng(seed=1)
        # Start nearly collapsed: every output close to the same direction.
        kernel = np.ones((6, 4)) + 0.05 * rng.normal(size=(6, 4))
        embedding.kernel.assign(kernel.astype("float32"))
        model.compile(
            optimizer=keras.optimizers.SGD(0.05),
            loss=lambda y_true, y_pred: ops.zeros_like(y_pred[:, 0]),
        )
        x = np.abs(rng.normal(size=(32, 6))).astype("float32")
        outputs = model.predict(x, verbose=0)
        before = reference(outputs)
        s_mu_before = numpy_mean_singular_value(numpy_l2_normalize(outputs))
        # 30 steps in one epoch (cheaper than 30 epochs).
        steps = np.tile(x, (30, 1))
        model.fit(steps, steps[:, :4], batch_size=32, epochs=1, verbose=0)
        outputs = model.predict(x, verbose=0)
        after = reference(outputs)
        s_mu_after = numpy_mean_singular_value(numpy_l2_normalize(outputs))
        self.assertLess(after, before)
        if name.startswith("svmax"):
            self.assertGreater(s_mu_after, s_mu_before)

    @parameterized.named_parameters(PARAMETERS)
    def test_keras_file_round_trip(self, name, path):
        make, _ = CASES[name]
        model = build_model(make(), path)
        x, _ = data(9)
        outputs = model(x)
        penalty = model.losses[0]
        filepath = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(filepath)
        revived = keras.saving.load_model(filepath)
        revived_outputs = revived(x)
        self.assertAllClose(revived_outputs, outputs, atol=0, rtol=0)
        self.assertLen(revived.losses, 1)
        self.assertAllClose(revived.losses[0], penalty, atol=0, rtol=0)
        if path == "layer":
            revived_regularizer = revived.layers[-1].regularizer
        else:
            revived_regularizer = revived.get_layer(
                "embedding"
            ).activity_regularizer
        self.assertIsInstance(revived_regularizer, type(make()))
        self.assertEqual(revived_regularizer.get_config(), make().get_config())

    @parameterized.named_parameters(PARAMETERS)
    def test_mixed_precision(self, name, path):
        make, reference = CASES[name]
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy("mixed_float16")
        self.addCleanup(keras.mixed_precision.set_global_policy, previous)
        model = build_model(make(), path)
        x, y = data(16)
        with tf.GradientTape() as tape:
            outputs = model(x, training=True)
            penalty = model.losses[0]
        self.assertEqual(outputs.dtype, tf.float16)
        self.assertEqual(penalty.dtype, tf.float32)
        self.assertAllClose(
            penalty, reference(outputs.numpy().astype("float64")), rtol=1e-4
        )
        gradients = tape.gradient(penalty, model.trainable_variables)
        for gradient in gradients:
            self.assertEqual(gradient.dtype, tf.float32)
            self.assertTrue(np.all(np.isfinite(gradient.numpy())))
        self.assertGreater(
            sum(float(tf.reduce_sum(tf.abs(g))) for g in gradients), 0.0
        )
        model.compile(optimizer="sgd", loss="mse")
        history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        self.assertTrue(np.isfinite(history.history["loss"][0]))
