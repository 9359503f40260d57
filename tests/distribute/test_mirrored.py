"""MirroredStrategy on two logical CPUs against one device, with Keras fit.

Global mode (the default): a few training steps give the same losses and
weights as one device on the same global batch. Per-replica mode
(`gather=False`): the documented behaviour, i.e. the mean over replicas of
the loss of each replica's own half batch, reproduced on one device by
`HalvesLoss`, and different from the global run.
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import distribute
from keras_featreg import layers
from keras_featreg import losses
from keras_featreg import models
from keras_featreg import regularizers
from keras_featreg.losses.regularized import RegularizedLoss
from tests import helpers as testing

GLOBAL_BATCH = 16
REPLICAS = 2


def mirrored():
    return distribute.get_strategy("mirrored", ["CPU:0", "CPU:1"])


class HalvesLoss(keras.losses.Loss):
    """One device, the per-replica mode: `loss` on each half of the batch.

    Concatenating the halves' per-sample values makes Keras' mean the mean
    of the two halves' losses, as two replicas with `gather=False` do.
    """

    def __init__(self, loss, **kwargs):
        super().__init__(**kwargs)
        self.loss = loss

    def call(self, y_true, y_pred):
        half = tf.shape(y_pred)[0] // REPLICAS
        parts = [
            self.loss.call(
                y_true[i * half : (i + 1) * half],
                y_pred[i * half : (i + 1) * half],
            )
            for i in range(REPLICAS)
        ]
        return tf.concat(parts, axis=0)


def dense(units, seed, **kwargs):
    initializer = keras.initializers.GlorotUniform(seed)
    return keras.layers.Dense(units, kernel_initializer=initializer, **kwargs)


def vicreg_run(strategy, loss):
    """Two epochs of two steps of a TwoViewModel; (history, weights)."""
    rng = np.random.default_rng(0)
    x_a = rng.normal(size=(2 * GLOBAL_BATCH, 6)).astype("float32")
    x_b = (x_a + 0.3 * rng.normal(size=x_a.shape)).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((x_a, x_b))
    keras.utils.set_random_seed(0)  # the projector's initializers
    with strategy.scope():
        encoder = keras.Sequential(
            [keras.Input((6,)), dense(8, 1, activation="relu")]
        )
        # VICReg's projector: Dense-BN-ReLU-Dense, with synchronized batch
        # normalization (statistics of the global batch).
        projector = layers.build_projector((8, 8), synchronized=True)
        model = models.TwoViewModel(encoder, projector, loss=loss)
        model.compile(optimizer=keras.optimizers.SGD(0.02))
    history = model.fit(
        dataset.batch(GLOBAL_BATCH), epochs=2, verbose=0, shuffle=False
    )
    return history.history, [np.asarray(w) for w in model.weights]


def metric_run(strategy, loss):
    """Two epochs of a normalized embedding with a compiled metric loss."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2 * GLOBAL_BATCH, 6)).astype("float32")
    y = rng.permutation(np.arange(2 * GLOBAL_BATCH) % 4).astype("int32")
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((6,)), dense(8, 1), keras.layers.UnitNormalization()]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
    history = model.fit(
        x, y, batch_size=GLOBAL_BATCH, epochs=2, verbose=0, shuffle=False
    )
    return history.history, [np.asarray(w) for w in model.weights]


def triplet_svmax(gather=True):
    return RegularizedLoss(
        losses.TripletLoss(margin=0.5),
        regularizers.SVMaxRegularizer(factor=1.0),
        gather=gather,
    )


RUNS = {
    "vicreg": (
        vicreg_run,
        losses.VICRegLoss,
        ("invariance", "variance", "covariance"),
    ),
    "triplet_svmax": (metric_run, triplet_svmax, ()),
}


class MirroredTrainingTest(testing.TestCase):
    @parameterized.named_parameters((name, name) for name in RUNS)
    def test_global_and_per_replica_modes(self, name):
        run, make_loss, terms = RUNS[name]
        # The single-device runs must not inherit state leaked by a test
        # that ran before in this worker (an entered strategy scope, a
        # mixed dtype policy): say so instead of failing on a number.
        self.assertFalse(tf.distribute.has_strategy())
        self.assertEqual(keras.mixed_precision.global_policy().name, "float32")
        self.assertEqual(keras.config.floatx(), "float32")
        single, single_weights = run(tf.distribute.get_strategy(), make_loss())
        # Global (default): the same steps as one device.
        global_, global_weights = run(mirrored(), make_loss())
        for key in ("loss", *terms):
            self.assertAllClose(global_[key], single[key], atol=1e-5)
        for got, expected in zip(global_weights, single_weights, strict=True):
            self.assertAllClose(got, expected, atol=1e-5)
        # Per replica: the mean of the replicas' half-batch losses.
        local, local_weights = run(mirrored(), make_loss(gather=False))
        halves, halves_weights = run(
            tf.distribute.get_strategy(), HalvesLoss(make_loss())
        )
        self.assertAllClose(local["loss"], halves["loss"], atol=1e-5)
        for got, expected in zip(local_weights, halves_weights, strict=True):
            self.assertAllClose(got, expected, atol=1e-5)
        # ... which is not the global-batch loss.
        self.assertNotAllClose(local["loss"], single["loss"], atol=1e-3)


class GatherSwitchTest(testing.TestCase):
    def test_config(self):
        for loss in (
            losses.VICRegLoss(gather=False),
            losses.InvarianceSVMaxLoss(gather=False),
        ):
            self.run_class_serialization_test(loss)
            self.assertFalse(loss.get_config()["gather"])
        self.assertTrue(losses.VICRegLoss().gather)
        self.assertTrue(losses.InvarianceSVMaxLoss().gather)

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(TypeError, "Received: gather='no'"):
            losses.VICRegLoss(gather="no")
        with self.assertRaisesRegex(TypeError, "Received: gather=1"):
            losses.InvarianceSVMaxLoss(gather=1)

    def test_no_effect_on_one_device(self):
        rng = np.random.default_rng(0)
        z_a = rng.normal(size=(8, 5)).astype("float32")
        z_b = rng.normal(size=(8, 5)).astype("float32")
        for cls in (losses.VICRegLoss, losses.InvarianceSVMaxLoss):
            self.assertAllClose(
                cls(gather=True)(z_a, z_b), cls(gather=False)(z_a, z_b)
            )
