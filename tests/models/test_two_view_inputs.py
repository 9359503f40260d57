"""TwoViewModel's data forms and per-step work (issues 12.3 and 13.5)."""

from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from keras_featreg import losses
from keras_featreg.models import two_view_inputs
from keras_featreg.ops import svmax as ops_svmax
from keras_featreg.ops import vicreg as ops_vicreg
from tests import helpers as testing
from tests.models.test_two_view import build_model
from tests.models.test_two_view import numpy_mean_singular_value
from tests.models.test_two_view import two_views
from tests.models.test_two_view import weights_of


def counting(function, counter):
    def wrapper(*args, **kwargs):
        counter.append(1)
        return function(*args, **kwargs)

    return wrapper


class TwoViewInputsTest(testing.TestCase):
    def test_unpack_views_forms(self):
        view_a, view_b = two_views(batch_size=4)
        labels = np.arange(4)
        for data in (
            (view_a, view_b),
            ((view_a, view_b),),
            (view_a, view_b, None),
            ((view_a, view_b), labels),
            ((view_a, view_b), labels, None),
        ):
            got_a, got_b = two_view_inputs.unpack_views(data)
            self.assertAllEqual(got_a, view_a)
            self.assertAllEqual(got_b, view_b)

    def test_views_with_labels_train_as_view_pairs(self):
        # `((view_a, view_b), labels)`: the labels are ignored, as for
        # `(x, labels)` with an augmenter (was an AttributeError).
        view_a, view_b = two_views(batch_size=16)
        labels = np.arange(16)
        dataset = tf.data.Dataset.from_tensor_slices(
            ((view_a, view_b), labels)
        ).batch(16)
        results = []
        for data in ("pairs", "with_labels", "dataset"):
            keras.utils.set_random_seed(0)
            model = build_model()
            model.compile(optimizer=keras.optimizers.SGD(0.1))
            model.run_eagerly = True  # one step: no trace to pay for
            if data == "pairs":
                logs = model.train_on_batch(view_a, view_b, return_dict=True)
            elif data == "with_labels":
                logs = model.train_on_batch(
                    (view_a, view_b), labels, return_dict=True
                )
            else:
                history = model.fit(dataset, verbose=0)
                logs = {k: v[-1] for k, v in history.history.items()}
            results.append((logs, weights_of(model)))
        (expected_logs, expected), *others = results
        for logs, weights in others:
            self.assertAllClose(logs["loss"], expected_logs["loss"], rtol=1e-6)
            for got, want in zip(weights, expected, strict=True):
                self.assertAllClose(got, want, rtol=1e-6, atol=1e-7)

    def test_non_numeric_views_raise_type_error(self):
        strings = np.array([["a"] * 6] * 8)
        model = build_model()
        model.compile(optimizer="sgd")
        message = r"`view_a` must be a numeric .* Received: view_a.dtype=string"
        with self.assertRaisesRegex(TypeError, message):
            model.train_on_batch(strings, strings)
        dataset = tf.data.Dataset.from_tensor_slices((strings, strings))
        model = build_model()
        model.compile(optimizer="sgd")
        with self.assertRaisesRegex(TypeError, message):
            model.fit(dataset.batch(4), verbose=0)
        numbers = np.ones((8, 6), "float32")
        with self.assertRaisesRegex(TypeError, "Received: view_b.dtype=bool"):
            two_view_inputs.unpack_views((numbers, numbers > 0))
        # With an augmenter the images themselves are checked.
        model = build_model(augmenter=keras.layers.GaussianNoise(0.1))
        model.compile(optimizer="sgd")
        with self.assertRaisesRegex(TypeError, "Received: x.dtype=string"):
            model.fit(
                tf.data.Dataset.from_tensor_slices(strings).batch(4),
                verbose=0,
            )

    def test_nested_views_are_rejected(self):
        view_a, view_b = two_views(batch_size=4)
        with self.assertRaisesRegex(ValueError, "Received: view_b of type"):
            two_view_inputs.unpack_views((view_a, {"b": view_b}))
        augmenter = keras.layers.GaussianNoise(0.1)
        with self.assertRaisesRegex(ValueError, "Received: x of type tuple"):
            two_view_inputs.unpack_views(((view_a, view_b), [0]), augmenter)


class TwoViewStepWorkTest(testing.TestCase):
    def _decompositions(self, loss):
        """Singular value decompositions and covariances in one step."""
        svds, covariances = [], []
        svd = counting(ops_svmax.mean_singular_value, svds)
        covariance = counting(ops_vicreg._covariance_term, covariances)
        model = build_model(loss=loss)
        model.compile(optimizer="sgd")
        model.run_eagerly = True
        with (
            mock.patch.object(ops_svmax, "mean_singular_value", svd),
            mock.patch(
                "keras_featreg.models.two_view.mean_singular_value", svd
            ),
            mock.patch.object(ops_vicreg, "_covariance_term", covariance),
        ):
            logs = model.train_on_batch(*two_views(), return_dict=True)
        return len(svds), len(covariances), logs

    def test_terms_are_computed_once_per_step(self):
        # InvarianceSVMaxLoss: the two views' s_mu, reused for the logged
        # terms and `mean_singular_value` (was 5 decompositions).
        svds, covariances, logs = self._decompositions(
            losses.InvarianceSVMaxLoss()
        )
        self.assertEqual((svds, covariances), (2, 0))
        self.assertIn("svmax_mean_singular_value", logs)
        # VICRegLoss: two covariances (was 4) and the logged s_mu.
        svds, covariances, logs = self._decompositions(losses.VICRegLoss())
        self.assertEqual((svds, covariances), (1, 2))
        self.assertIn("covariance", logs)
        # Unnormalized SVMax: its s_mu is not the logged one.
        svds, _, _ = self._decompositions(
            losses.InvarianceSVMaxLoss(normalize=False)
        )
        self.assertEqual(svds, 3)

    def test_logged_terms_are_the_loss_terms(self):
        view_a, view_b = two_views()
        loss_fn = losses.InvarianceSVMaxLoss(factor=0.5)
        model = build_model(loss=loss_fn)
        model.compile(optimizer=keras.optimizers.SGD(0.0))
        logs = model.test_on_batch(view_a, view_b, return_dict=True)
        z_a, z_b = model((view_a, view_b))
        terms = loss_fn.terms(z_a, z_b)
        for name in loss_fn.term_names:
            self.assertAllClose(logs[name], terms[name], rtol=1e-5)
        self.assertAllClose(
            logs["mean_singular_value"],
            numpy_mean_singular_value(z_a),
            rtol=1e-5,
        )
        self.assertAllClose(logs["loss"], loss_fn(z_a, z_b), rtol=1e-5)
