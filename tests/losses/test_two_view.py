"""TwoViewLoss: the interface TwoViewModel logs the loss terms through."""

import keras
import numpy as np
import tensorflow as tf

from keras_featreg import losses
from keras_featreg.losses import two_view
from tests import helpers as testing
from tests.models.test_two_view import build_model
from tests.models.test_two_view import two_views


class MeanGap(losses.TwoViewLoss):
    """A minimal subclass: per-row squared gap; logs the gap and its max."""

    term_names = ("gap", "max_gap")

    def values_and_terms(self, z_a, z_b, with_terms=True):
        values = tf.reduce_sum(tf.square(z_a - z_b), axis=-1)
        if not with_terms:
            return values, None
        return values, {
            "gap": tf.reduce_mean(values),
            "max_gap": tf.reduce_max(values),
        }


class TwoViewLossTest(testing.TestCase):
    def test_is_abstract(self):
        with self.assertRaisesRegex(TypeError, "abstract"):
            losses.TwoViewLoss()

    def test_loss_and_terms_is_the_call_and_its_terms(self):
        z_a, z_b = two_views(batch_size=8)
        for loss in (
            losses.VICRegLoss(),
            losses.InvarianceSVMaxLoss(),
            MeanGap(),
        ):
            weights = np.linspace(0.0, 1.0, 8).astype("float32")
            value, terms = loss.loss_and_terms(z_a, z_b, weights)
            self.assertAllClose(value, loss(z_a, z_b, weights), rtol=1e-6)
            expected = loss.terms(z_a, z_b)
            self.assertEqual(sorted(expected), sorted(loss.term_names))
            for name in loss.term_names:
                self.assertAllClose(terms[name], expected[name], rtol=1e-6)
            # Nothing is left behind on the thread.
            self.assertNotIn(id(loss), two_view._captures())
        # A plain call computes no terms.
        values, terms = MeanGap().values_and_terms(z_a, z_b, False)
        self.assertIsNone(terms)
        self.assertEqual(tuple(values.shape), (8,))

    def test_a_subclass_is_logged_by_two_view_model(self):
        model = build_model(loss=MeanGap())
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        view_a, view_b = two_views()
        logs = model.train_on_batch(view_a, view_b, return_dict=True)
        self.assertEqual(
            sorted(logs),
            ["embedding_std", "gap", "loss", "max_gap", "mean_singular_value"],
        )
        z_a, z_b = model((view_a, view_b), training=True)
        gap = np.sum((np.asarray(z_a) - np.asarray(z_b)) ** 2, axis=-1)
        self.assertAllClose(logs["max_gap"], gap.max(), rtol=1e-5)
