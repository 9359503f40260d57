"""TwoViewModel: its train step, collapse behaviour, Keras APIs, bad input."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg import layers
from keras_featreg import losses
from keras_featreg import models
from keras_featreg import ops
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


def two_views(batch_size=16, dim=6, seed=0, noise=0.3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, dim)).astype("float32")
    view_a = x + noise * rng.normal(size=x.shape).astype("float32")
    view_b = x + noise * rng.normal(size=x.shape).astype("float32")
    return view_a, view_b


def build_model(loss=None, augmenter=None, dim=6, regularize=False, **kwargs):
    """A small MLP encoder and a VICReg projector (Dense-BN-ReLU-Dense)."""
    hidden = {}
    if regularize:
        hidden = {
            "kernel_regularizer": keras.regularizers.L2(0.01),
            "activity_regularizer": regularizers.SVMaxRegularizer(0.5),
        }
    encoder = keras.Sequential(
        [
            keras.Input((dim,)),
            keras.layers.Dense(12, activation="relu", **hidden),
            keras.layers.Dense(8),
        ],
        name="encoder",
    )
    return models.TwoViewModel(
        encoder,
        layers.build_projector((16, 8)),
        loss=losses.VICRegLoss() if loss is None else loss,
        augmenter=augmenter,
        **kwargs,
    )


def numpy_mean_singular_value(z):
    z = np.asarray(z, np.float64)
    norms = np.linalg.norm(z, axis=1, keepdims=True)
    z = z / np.where(norms > 0, norms, 1.0)  # zero rows stay zero
    return float(np.mean(np.linalg.svd(z, compute_uv=False)))


def weights_of(model):
    return [np.array(w.numpy()) for w in model.weights]


class TwoViewModelTest(testing.TestCase):
    def test_train_step_gradient_equals_hand_gradient(self):
        # SGD with lr=1 and no momentum: new weights = weights - gradient.
        model = build_model(regularize=True)
        model.compile(optimizer=keras.optimizers.SGD(1.0, momentum=0.0))
        view_a, view_b = two_views()
        model((view_a, view_b))  # build
        variables = model.trainable_variables
        self.assertLen(variables, 2 + 2 + 2 + 2 + 1)  # encoder, projector
        before = [np.array(v.numpy()) for v in variables]
        encoder, projector, loss_fn = (
            model.encoder,
            model.projector,
            (model.loss_fn),
        )
        svmax = regularizers.SVMaxRegularizer(0.5)
        with tf.GradientTape() as tape:
            hidden_a = encoder.layers[0](view_a)
            hidden_b = encoder.layers[0](view_b)
            z_a = projector(encoder(view_a, training=True), training=True)
            z_b = projector(encoder(view_b, training=True), training=True)
            # The loss, both views' activity penalties and the L2 penalty,
            # written out by hand.
            loss = (
                loss_fn(z_a, z_b)
                + svmax.penalty(hidden_a)
                + svmax.penalty(hidden_b)
                + 0.01 * tf.reduce_sum(tf.square(encoder.layers[0].kernel))
            )
        gradients = tape.gradient(loss, variables)
        terms = loss_fn.terms(z_a, z_b)
        logs = model.train_on_batch(view_a, view_b, return_dict=True)
        for old, new, gradient in zip(
            before, variables, gradients, strict=True
        ):
            self.assertGreater(float(tf.reduce_max(tf.abs(gradient))), 0.0)
            self.assertAllClose(new, old - gradient, rtol=1e-4, atol=1e-5)
        # The step reports the loss and its terms on the same batch.
        self.assertAllClose(logs["loss"], loss, rtol=1e-5)
        for name in ("invariance", "variance", "covariance"):
            self.assertAllClose(logs[name], terms[name], rtol=1e-5, atol=1e-7)
        self.assertAllClose(
            logs["mean_singular_value"],
            numpy_mean_singular_value(z_a),
            rtol=1e-5,
        )
        self.assertAllClose(
            logs["embedding_std"],
            np.mean(np.std(np.asarray(z_a, np.float64), axis=0)),
            rtol=1e-5,
        )

    def test_metrics_without_terms(self):
        model = build_model(track_terms=False)
        model.compile(optimizer="sgd")
        logs = model.train_on_batch(*two_views(), return_dict=True)
        self.assertEqual(list(logs), ["loss"])

    def test_loss_is_a_parameter(self):
        model = build_model(loss=losses.InvarianceSVMaxLoss(factor=0.5))
        model.compile(optimizer="sgd")
        logs = model.train_on_batch(*two_views(), return_dict=True)
        self.assertEqual(
            sorted(logs),
            [
                "embedding_std",
                "invariance",
                "loss",
                "mean_singular_value",
                "svmax_mean_singular_value",
            ],
        )
        # Any keras loss taking (z_a, z_b) works: no terms, no error.
        model = build_model(loss="mean_squared_error")
        model.compile(optimizer="sgd")
        view_a, view_b = two_views()
        logs = model.train_on_batch(view_a, view_b, return_dict=True)
        self.assertTrue(np.isfinite(logs["loss"]))

    def _train_toy(self, loss, steps=80):
        """A real, small run: noisy copies of Gaussian points, Adam."""
        keras.utils.set_random_seed(0)
        x = np.random.default_rng(0).normal(size=(256, 8)).astype("float32")
        model = build_model(
            loss=loss,
            dim=8,
            augmenter=keras.layers.GaussianNoise(0.5, seed=1),
            track_terms=False,
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        dataset = (
            tf.data.Dataset.from_tensor_slices(x)
            .repeat()
            .batch(64, drop_remainder=True)
        )
        model.fit(dataset, steps_per_epoch=steps, verbose=0)
        z = model((x[:64], x[:64]), training=True)[0]
        return np.asarray(z, np.float64)

    def test_vicreg_without_variance_and_covariance_collapses(self):
        z_collapsed = self._train_toy(
            losses.VICRegLoss(variance_weight=0.0, covariance_weight=0.0)
        )
        z_full = self._train_toy(losses.VICRegLoss())
        std_collapsed = np.mean(np.std(z_collapsed, axis=0))
        std_full = np.mean(np.std(z_full, axis=0))
        # Invariance alone: the embedding shrinks to a point (std ~ 0;
        # 0.03 after 60 steps, 0.014 after 120 when this was written).
        # The shrinking map keeps its directions (s_mu of the normalized
        # rows stays high): VICReg's collapse shows in the std.
        self.assertLess(std_collapsed, 0.05)
        # Full VICReg keeps every dimension's std near gamma = 1.
        self.assertGreater(std_full, 0.7)
        self.assertGreater(std_full, 20 * std_collapsed)

    def test_invariance_without_svmax_collapses_directions(self):
        # On the unit sphere the scale cannot shrink: invariance alone
        # turns every embedding towards one direction, s_mu -> L, while the
        # SVMax term keeps s_mu near its upper bound U.
        lower, upper = ops.svmax_bounds(64, 8)
        z_collapsed = self._train_toy(losses.InvarianceSVMaxLoss(factor=0.0))
        z_spread = self._train_toy(losses.InvarianceSVMaxLoss(factor=1.0))
        s_collapsed = numpy_mean_singular_value(z_collapsed)
        s_spread = numpy_mean_singular_value(z_spread)
        self.assertLess(s_collapsed, lower + 0.2 * (upper - lower))
        self.assertGreater(s_spread, lower + 0.7 * (upper - lower))

    def test_fit_evaluate_and_callbacks(self):
        view_a, view_b = two_views(batch_size=48)
        model = build_model()
        model.compile(optimizer=keras.optimizers.Adam(1e-2))
        batch_logs = []
        recorder = keras.callbacks.LambdaCallback(
            on_train_batch_end=lambda batch, logs: batch_logs.append(logs)
        )
        history = model.fit(
            view_a,
            view_b,
            batch_size=16,
            epochs=3,
            validation_data=(view_a[:32], view_b[:32]),
            callbacks=[
                recorder,
                keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
            ],
            verbose=0,
        )
        names = [
            "covariance",
            "embedding_std",
            "invariance",
            "loss",
            "mean_singular_value",
            "variance",
        ]
        self.assertEqual(
            sorted(history.history), sorted(names + [f"val_{n}" for n in names])
        )
        for values in history.history.values():
            self.assertLen(values, 3)
            self.assertTrue(np.isfinite(values).all())
        self.assertLen(batch_logs, 9)
        self.assertEqual(sorted(batch_logs[-1]), names)
        # Metrics reset every epoch: epoch 1's loss is its batches' mean.
        self.assertLess(history.history["loss"][-1], history.history["loss"][0])
        results = model.evaluate(
            view_a, view_b, batch_size=48, verbose=0, return_dict=True
        )
        self.assertEqual(sorted(results), names)
        z_a, z_b = model((view_a, view_b), training=False)
        self.assertAllClose(results["loss"], model.loss_fn(z_a, z_b), rtol=1e-5)

    def test_augmenter_makes_the_views(self):
        x = np.random.default_rng(0).normal(size=(32, 6)).astype("float32")
        labels = np.arange(32)
        model = build_model(augmenter=keras.layers.GaussianNoise(0.2, seed=3))
        model.compile(optimizer="adam")
        history = model.fit(x, batch_size=16, epochs=1, verbose=0)
        self.assertGreater(history.history["invariance"][-1], 0.0)
        # Labels are ignored.
        logs = model.train_on_batch(x, labels, return_dict=True)
        self.assertGreater(logs["invariance"], 0.0)
        self.assertTrue(
            np.isfinite(model.evaluate(x, batch_size=16, verbose=0)[0])
        )

    def test_save_and_load(self):
        view_a, view_b = two_views(batch_size=32)
        model = build_model(
            loss=losses.VICRegLoss(covariance_weight=2.0),
            augmenter=keras.layers.GaussianNoise(0.1),
            regularize=True,
        )
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        model.fit(view_a, view_b, batch_size=16, epochs=1, verbose=0)
        path = os.path.join(self.get_temp_dir(), "two_view.keras")
        model.save(path)
        restored = keras.saving.load_model(path)
        self.assertIsInstance(restored, models.TwoViewModel)
        self.assertEqual(
            restored.loss_fn.get_config(), model.loss_fn.get_config()
        )
        self.assertIsInstance(restored.augmenter, keras.layers.GaussianNoise)
        for restored_weight, weight in zip(
            weights_of(restored), weights_of(model), strict=True
        ):
            self.assertAllClose(restored_weight, weight, atol=0, rtol=0)
        for outputs, expected in zip(
            restored((view_a, view_b)), model((view_a, view_b)), strict=True
        ):
            self.assertAllClose(outputs, expected, atol=0, rtol=0)
        self.assertAllClose(
            restored.encoder(view_a), model.encoder(view_a), atol=0, rtol=0
        )
        # The optimizer state is restored and training goes on.
        self.assertEqual(
            int(restored.optimizer.iterations), int(model.optimizer.iterations)
        )
        restored.fit(view_a, view_b, batch_size=16, epochs=1, verbose=0)
        self.assertEqual(int(restored.optimizer.iterations), 4)
        self.run_class_serialization_test(build_model())

    def test_export_encoder_serves_without_keras_featreg(self):
        view_a, view_b = two_views(batch_size=32)
        model = build_model(regularize=True)
        model.compile(optimizer="adam")
        model.fit(view_a, view_b, batch_size=16, epochs=1, verbose=0)
        x = np.random.default_rng(1).normal(size=(5, 6)).astype("float32")
        expected = model.encoder.predict(x, verbose=0)
        directory = self.get_temp_dir()
        model_dir = os.path.join(directory, "encoder")
        model.export_encoder(model_dir, verbose=False)
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
        self.assertAllClose(np.load(out_path), expected, atol=1e-6, rtol=1e-6)

    def test_invalid_arguments(self):
        encoder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        projector = layers.build_projector((4,))
        loss = losses.VICRegLoss()
        with self.assertRaisesRegex(TypeError, "Received: encoder=3"):
            models.TwoViewModel(3, projector, loss)
        with self.assertRaisesRegex(TypeError, "Received: projector='x'"):
            models.TwoViewModel(encoder, "x", loss)
        with self.assertRaisesRegex(TypeError, "Received: augmenter=1.0"):
            models.TwoViewModel(encoder, projector, loss, augmenter=1.0)
        with self.assertRaisesRegex(ValueError, "Could not interpret"):
            models.TwoViewModel(encoder, projector, "no_such_loss")
        with self.assertRaisesRegex(TypeError, "Received: track_terms=1"):
            models.TwoViewModel(encoder, projector, loss, track_terms=1)
        model = models.TwoViewModel(encoder, projector, loss)
        with self.assertRaisesRegex(ValueError, "Received: loss='mse'"):
            model.compile(optimizer="sgd", loss="mse")

    def _compiled(self, **kwargs):
        # A fresh model per failing call: a first trace that raises leaves
        # Keras' cached train function unable to create the optimizer.
        model = build_model(**kwargs)
        model.compile(optimizer="sgd")
        return model

    def test_views_of_different_shapes(self):
        view_a, view_b = two_views()
        with self.assertRaisesRegex(ValueError, "same shape"):
            self._compiled().fit(view_a, view_b[:, :5], batch_size=8, verbose=0)
        with self.assertRaisesRegex(ValueError, "same shape"):
            self._compiled().train_on_batch(view_a, view_b[:8])
        # Batch sizes known only at run time: a clear graph assertion.
        dataset = tf.data.Dataset.zip(
            tf.data.Dataset.from_tensor_slices(view_a).batch(8),
            tf.data.Dataset.from_tensor_slices(view_b).batch(4),
        )
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "same batch size"
        ):
            self._compiled().fit(dataset, verbose=0)

    def test_single_view_without_augmenter(self):
        view_a, _ = two_views()
        with self.assertRaisesRegex(ValueError, "view pairs"):
            self._compiled().fit(view_a, batch_size=8, verbose=0)
        with self.assertRaisesRegex(ValueError, "view pairs"):
            self._compiled().evaluate(view_a, batch_size=8, verbose=0)
        with self.assertRaisesRegex(ValueError, "view pairs"):
            self._compiled().train_on_batch(view_a)

    def test_encoder_output_of_rank_3(self):
        encoder = keras.Sequential([keras.Input((4, 6)), keras.layers.Dense(5)])
        model = models.TwoViewModel(
            encoder, layers.build_projector((8,)), losses.VICRegLoss()
        )
        model.compile(optimizer="sgd")
        x = np.ones((8, 4, 6), "float32")
        with self.assertRaisesRegex(ValueError, r"\(batch_size, features\)"):
            model.fit(x, x, batch_size=4, verbose=0)

    def test_nan_input(self):
        view_a, view_b = two_views()
        view_a[3, 2] = np.nan
        # The ReLU maps NaN to 0 in the forward pass; the views are
        # checked themselves, so every path fails clearly.
        message = "`view_a` must not contain NaN or Inf"
        with self.assertRaisesRegex(tf.errors.InvalidArgumentError, message):
            self._compiled().fit(view_a, view_b, batch_size=16, verbose=0)
        model = self._compiled()
        model.run_eagerly = True
        with self.assertRaisesRegex(ValueError, message):
            model.train_on_batch(view_a, view_b)
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "must not contain NaN or Inf"
        ):
            self._compiled(
                augmenter=keras.layers.GaussianNoise(0.1)
            ).train_on_batch(view_a)

    def test_batch_size_one(self):
        view_a, view_b = two_views(batch_size=9)
        with self.assertRaisesRegex(ValueError, "Received: batch_size=1"):
            self._compiled().train_on_batch(view_a[:1], view_b[:1])
        with self.assertRaisesRegex(ValueError, "Received: batch_size=1"):
            self._compiled().fit(view_a, view_b, batch_size=1, verbose=0)
        # A last partial batch of one row fails clearly, not silently.
        with self.assertRaisesRegex(
            tf.errors.InvalidArgumentError, "drop_remainder"
        ):
            self._compiled().fit(
                view_a, view_b, batch_size=8, shuffle=False, verbose=0
            )

    @parameterized.parameters("mixed_float16", "mixed_bfloat16")
    def test_mixed_precision(self, policy):
        view_a, view_b = two_views(batch_size=32)
        self.addCleanup(keras.mixed_precision.set_global_policy, "float32")
        updates = {}
        for name, loss in (
            ("float32", losses.VICRegLoss()),
            (policy, losses.VICRegLoss()),
            (policy, losses.InvarianceSVMaxLoss()),
        ):
            keras.mixed_precision.set_global_policy(name)
            keras.utils.set_random_seed(0)
            model = build_model(loss=loss)
            # Plain SGD: an update that forgot to scale the loss (under
            # float16 loss scaling) would be 2 ** 15 times too small.
            model.compile(optimizer=keras.optimizers.SGD(1e-2))
            model((view_a, view_b))
            if name != "float32":
                self.assertEqual(model.encoder.compute_dtype, policy[6:])
            before = weights_of(model)
            history = model.fit(
                view_a, view_b, batch_size=8, epochs=2, verbose=0
            )
            for values in history.history.values():
                self.assertTrue(np.isfinite(values).all(), msg=name)
            after = weights_of(model)
            for weight in after:
                self.assertTrue(np.isfinite(weight).all(), msg=name)
            updates[name, loss.name] = max(
                float(np.max(np.abs(a - b)))
                for a, b in zip(after, before, strict=True)
            )
        keras.mixed_precision.set_global_policy("float32")
        # Same order of weight updates as float32 (float16's dynamic loss
        # scaling skips the first steps, whose gradients overflow).
        ratio = (
            updates[policy, "vicreg_loss"] / updates["float32", "vicreg_loss"]
        )
        self.assertGreater(ratio, 0.3)
        self.assertLess(ratio, 3.0)
        self.assertGreater(updates[policy, "invariance_svmax_loss"], 0.0)
