"""RegularizedLoss: a per-sample loss plus a batch regularizer's penalty.

On one device (here); tests/distribute/ checks the global-batch gathers.
"""

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import losses
from keras_featreg import regularizers
from keras_featreg.losses.regularized import RegularizedLoss
from tests import helpers as testing
from tests.losses.common import LABEL_SETS
from tests.losses.common import fit_smoke
from tests.losses.common import random_embeddings


def numpy_svmax(x, factor, bounded):
    """SVMax on L2-normalized rows (paper Eq. 1 and 4), in float64."""
    x = np.float64(x)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    b, d = x.shape
    k = min(b, d)
    s_mu = np.linalg.svd(x, compute_uv=False).mean()
    if not bounded:
        return -factor * s_mu
    lower, upper = np.sqrt(b) / k, np.sqrt(b / k)
    return factor * np.exp((upper - s_mu) / (upper - lower))


class RegularizedLossTest(testing.TestCase):
    def test_config(self):
        self.run_class_serialization_test(
            RegularizedLoss(
                losses.TripletLoss(margin=0.3),
                regularizers.SVMaxRegularizer(factor=0.1, bounded=False),
                gather=False,
            )
        )
        self.run_class_serialization_test(
            RegularizedLoss(losses.ContrastiveLoss(), gather_loss=False)
        )
        config = RegularizedLoss(losses.NPairLoss(), gather=False).get_config()
        self.assertFalse(config["gather"])
        self.assertFalse(config["gather_loss"])  # follows `gather`
        self.assertIsNone(config["regularizer"])

    @parameterized.product(labels=sorted(LABEL_SETS), bounded=(True, False))
    def test_correctness(self, labels, bounded):
        labels = LABEL_SETS[labels]
        x = random_embeddings(labels, dim=5, seed=3)
        inner = losses.TripletLoss(margin=0.5, reduction=None)
        loss = RegularizedLoss(
            inner,
            regularizers.SVMaxRegularizer(factor=0.7, bounded=bounded),
            reduction=None,
        )
        expected = inner(labels, x) + numpy_svmax(x, 0.7, bounded)
        self.assertAllClose(loss(labels, x), expected, rtol=1e-5, atol=1e-6)
        # The default reduction: mean(loss) + penalty, SVMax Eq. 5 + Eq. 4.
        mean = RegularizedLoss(
            losses.TripletLoss(margin=0.5),
            regularizers.SVMaxRegularizer(factor=0.7, bounded=bounded),
        )
        self.assertAllClose(
            mean(labels, x), np.mean(expected), rtol=1e-5, atol=1e-6
        )

    def test_without_regularizer_is_the_loss(self):
        labels = LABEL_SETS["unbalanced"]
        x = random_embeddings(labels, seed=1)
        inner = losses.LiftedStructureLoss()
        self.assertAllClose(
            RegularizedLoss(inner)(labels, x), inner(labels, x), rtol=1e-6
        )

    def test_any_regularizer(self):
        # Regularizers without `penalty` are called: L2 is 0.1 * sum(x^2).
        labels = LABEL_SETS["pk"]
        x = random_embeddings(labels, seed=2)
        inner = losses.ContrastiveLoss(reduction=None)
        loss = RegularizedLoss(inner, "l2", reduction=None)
        loss_l2 = RegularizedLoss(
            inner, keras.regularizers.L2(0.1), reduction=None
        )
        expected = inner(labels, x) + 0.1 * np.sum(np.float64(x) ** 2)
        self.assertAllClose(loss_l2(labels, x), expected, rtol=1e-5)
        self.assertAllClose(
            loss(labels, x),
            inner(labels, x) + 0.01 * np.sum(np.float64(x) ** 2),
            rtol=1e-5,
        )

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(TypeError, "Received: loss=3"):
            RegularizedLoss(3)
        with self.assertRaisesRegex(TypeError, "Received: regularizer=3"):
            RegularizedLoss(losses.TripletLoss(), 3)
        with self.assertRaisesRegex(TypeError, "Received: gather='yes'"):
            RegularizedLoss(losses.TripletLoss(), gather="yes")
        with self.assertRaisesRegex(TypeError, "Received: gather_loss=1"):
            RegularizedLoss(losses.TripletLoss(), gather_loss=1)
        scalar = RegularizedLoss(lambda y_true, y_pred: tf.reduce_sum(y_pred))
        with self.assertRaisesRegex(ValueError, "loss output shape=()"):
            scalar(np.zeros(4), np.ones((4, 2), "float32"))

    @parameterized.named_parameters(
        ("collapsed", np.ones((6, 4), "float32")),
        ("zeros", np.zeros((6, 4), "float32")),
        ("tiny", 1e-30 * np.eye(6, 4, dtype="float32")),
        ("huge", 1e30 * np.eye(6, 4, dtype="float32")),
        ("float16", np.eye(6, 4, dtype="float16")),
    )
    def test_degenerate_input_is_finite(self, x):
        labels = LABEL_SETS["pk"]
        loss = RegularizedLoss(
            losses.TripletLoss(), regularizers.SVMaxRegularizer(factor=0.5)
        )
        variable = tf.Variable(tf.cast(x, "float32"))
        with tf.GradientTape() as tape:
            value = loss(labels, variable)
        gradient = tape.gradient(value, variable)
        self.assertTrue(np.isfinite(value.numpy()))
        self.assertTrue(np.all(np.isfinite(gradient.numpy())))

    def test_fit(self):
        fit_smoke(
            self,
            RegularizedLoss(
                losses.TripletLoss(margin=0.5),
                regularizers.SVMaxRegularizer(factor=0.1),
            ),
        )
