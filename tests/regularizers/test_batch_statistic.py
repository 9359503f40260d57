"""BatchStatisticRegularizer: the one interface of batch regularizers."""

import keras
import numpy as np
import tensorflow as tf

from keras_featreg import layers
from keras_featreg import losses
from keras_featreg import regularizers
from tests import helpers as testing


class MeanNorm(regularizers.BatchStatisticRegularizer):
    """A minimal subclass: the mean row norm of the batch."""

    def __init__(self, global_batch=True):
        self.global_batch = global_batch

    def stats(self, x):
        norm = tf.reduce_mean(tf.norm(tf.cast(x, tf.float32), axis=-1))
        return {"penalty": 2.0 * norm, "mean_norm": norm}

    def get_config(self):
        return {"global_batch": self.global_batch}


class DuckPenalty(keras.regularizers.Regularizer):
    """Not a batch statistic: its `penalty` method is not the interface."""

    def __call__(self, x):
        return tf.reduce_sum(tf.square(x))

    def penalty(self, x):
        raise AssertionError("duck typing: `penalty` must not be called")


class BatchStatisticRegularizerTest(testing.TestCase):
    def test_is_abstract(self):
        with self.assertRaisesRegex(TypeError, "abstract"):
            regularizers.BatchStatisticRegularizer()

    def test_a_subclass_gets_the_interface(self):
        x = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
        regularizer = MeanNorm()
        expected = 2.0 * np.mean(np.linalg.norm(x, axis=-1))
        self.assertAllClose(regularizer.penalty(x), expected, rtol=1e-6)
        self.assertAllClose(regularizer.contribution(x), expected, rtol=1e-6)
        # `__call__` undoes Keras' division by the batch size.
        self.assertAllClose(regularizer(x), 6 * expected, rtol=1e-6)
        layer = layers.EmbeddingRegularization(regularizer)
        layer(x)
        self.assertAllClose(layer.losses[0], expected, rtol=1e-6)
        loss = losses.RegularizedLoss(
            losses.TripletLoss(), regularizer, reduction=None
        )
        labels = np.array([0, 0, 1, 1, 2, 2])
        plain = losses.TripletLoss(reduction=None)(labels, x)
        self.assertAllClose(loss(labels, x), plain + expected, rtol=1e-5)

    def test_other_regularizers_are_called(self):
        x = np.ones((4, 3), "float32")
        layer = layers.EmbeddingRegularization(DuckPenalty())
        layer(x)
        self.assertAllClose(layer.losses[0], 12.0)
        loss = losses.RegularizedLoss(
            losses.TripletLoss(), DuckPenalty(), reduction=None
        )
        labels = np.array([0, 0, 1, 1])
        plain = losses.TripletLoss(reduction=None)(labels, x)
        self.assertAllClose(loss(labels, x), plain + 12.0)
