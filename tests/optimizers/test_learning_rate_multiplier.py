import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.distribute import get_strategy
from keras_featreg.layers import ProxyAnchor
from keras_featreg.losses import ProxyAnchorLoss
from keras_featreg.optimizers import LARS
from keras_featreg.optimizers import LearningRateMultiplier
from tests import helpers as testing


def numpy_sgd(param, grads, lr):
    param = np.array(param, dtype=np.float64)
    for grad in grads:
        param = param - lr * grad
    return param


def numpy_adam(param, grads, lr, weight_decay=0.0, b1=0.9, b2=0.999):
    """Keras' Adam (epsilon after the bias correction); AdamW decays first."""
    param = np.array(param, dtype=np.float64)
    m = np.zeros_like(param)
    v = np.zeros_like(param)
    for t, grad in enumerate(grads, start=1):
        param = param - lr * weight_decay * param
        m = b1 * m + (1 - b1) * grad
        v = b2 * v + (1 - b2) * np.square(grad)
        alpha = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
        param = param - alpha * m / (np.sqrt(v) + 1e-7)
    return param


def proxy_model(seed=0, num_classes=3):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    embeddings = keras.layers.Dense(4, name="embedding")(inputs)
    outputs = ProxyAnchor(num_classes, name="proxy_anchor")(embeddings)
    return keras.Model(inputs, outputs)


def proxy_data(n=16):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 6)).astype("float32"), np.arange(n) % 3


class LearningRateMultiplierTest(testing.TestCase):
    @parameterized.named_parameters(
        ("sgd", "sgd", 1),
        ("adam", "adam", 1),
        ("adamw_three_steps", "adamw", 3),
    )
    def test_matches_numpy(self, name, steps):
        rng = np.random.default_rng(0)
        kernel = rng.normal(size=(3, 4))
        proxies = rng.normal(size=(2, 4))
        grads = [(rng.normal(size=(3, 4)), rng.normal(size=(2, 4)))] * steps
        lr, wd = 0.001, 0.01
        base = {
            "sgd": keras.optimizers.SGD(lr),
            "adam": keras.optimizers.Adam(lr),
            "adamw": keras.optimizers.AdamW(lr, weight_decay=wd),
        }[name]
        optimizer = LearningRateMultiplier(base, {"proxies": 100.0})
        variables = [
            keras.Variable(kernel.astype("float32"), name="kernel"),
            keras.Variable(proxies.astype("float32"), name="proxies"),
        ]
        for grad in grads:
            optimizer.apply([g.astype("float32") for g in grad], variables)
        kernel_grads, proxy_grads = zip(*grads, strict=True)
        if name == "sgd":
            expected = [
                numpy_sgd(kernel, kernel_grads, lr),
                numpy_sgd(proxies, proxy_grads, 100 * lr),
            ]
        else:
            decay = wd if name == "adamw" else 0.0
            expected = [
                numpy_adam(kernel, kernel_grads, lr, decay),
                numpy_adam(proxies, proxy_grads, 100 * lr, decay),
            ]
        self.assertAllClose(variables[0], expected[0], atol=1e-6)
        self.assertAllClose(variables[1], expected[1], atol=1e-5)
        self.assertEqual(int(optimizer.iterations), steps)

    def test_gradient_multiplier_is_not_equivalent_for_adam(self):
        grad = np.random.default_rng(0).normal(size=(4,))
        scaled_grad = numpy_adam(np.zeros(4), [100 * grad], 1e-3)
        scaled_lr = numpy_adam(np.zeros(4), [grad], 1e-1)
        self.assertAllClose(scaled_grad, numpy_adam(np.zeros(4), [grad], 1e-3))
        self.assertNotAllClose(scaled_grad, scaled_lr)

    def test_follows_schedule_and_learning_rate_changes(self):
        schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 1, 0.5)
        optimizer = LearningRateMultiplier(
            keras.optimizers.SGD(schedule), {"proxies": 10.0}
        )
        kernel = keras.Variable(np.zeros(2, "float32"), name="kernel")
        proxies = keras.Variable(np.zeros(2, "float32"), name="proxies")
        ones = np.ones(2, "float32")
        for _ in range(3):  # lr = 0.1, 0.05, 0.025
            optimizer.apply([ones, ones], [kernel, proxies])
        self.assertAllClose(kernel, -0.175 * ones)
        self.assertAllClose(proxies, -1.75 * ones)
        constant = LearningRateMultiplier("sgd", {"proxies": 10.0})
        constant.learning_rate = 0.5  # as ReduceLROnPlateau does
        self.assertAllClose(constant.optimizer.learning_rate, 0.5)
        self.assertAllClose(constant.group_optimizers[0].learning_rate, 5.0)

    def test_fit_matches_separate_optimizers(self):
        self.check_fit_matches_separate_optimizers(jit_compile=False)

    @pytest.mark.slow
    def test_fit_with_xla_matches_separate_optimizers(self):
        self.check_fit_matches_separate_optimizers(jit_compile=True)

    def check_fit_matches_separate_optimizers(self, jit_compile):
        x, y = proxy_data()
        model = proxy_model()
        optimizer = LearningRateMultiplier(
            keras.optimizers.Adam(1e-3), {"proxies": 100.0}
        )
        model.compile(optimizer, ProxyAnchorLoss(), jit_compile=jit_compile)
        model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        self.assertEqual(model.jit_compile, jit_compile)

        reference = proxy_model()
        backbone = keras.optimizers.Adam(1e-3)
        head = keras.optimizers.Adam(1e-1)
        loss_fn = ProxyAnchorLoss()
        for _ in range(2):
            for start in (0, 8):
                with tf.GradientTape() as tape:
                    batch = x[start : start + 8]
                    loss = loss_fn(y[start : start + 8], reference(batch))
                weights = reference.trainable_variables
                grads = tape.gradient(loss, weights)
                backbone.apply(grads[:2], weights[:2])
                head.apply(grads[2:], weights[2:])
        self.assertEqual(
            reference.trainable_variables[2].path, "proxy_anchor/proxies"
        )
        for a, b in zip(model.weights, reference.weights, strict=True):
            self.assertAllClose(a, b, atol=1e-5)
        self.assertEqual(int(optimizer.iterations), 4)

    def test_save_and_load_compiled_model(self):
        x, y = proxy_data()
        model = proxy_model()
        optimizer = LearningRateMultiplier(
            keras.optimizers.AdamW(1e-3, weight_decay=1e-4),
            {"proxies": 100.0},
        )
        model.compile(optimizer, ProxyAnchorLoss())
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        path = os.path.join(self.get_temp_dir(), "model.keras")
        model.save(path)
        loaded = keras.saving.load_model(path)
        self.assertIsInstance(loaded.optimizer, LearningRateMultiplier)
        self.assertEqual(loaded.optimizer.get_config(), optimizer.get_config())
        for a, b in zip(
            optimizer.variables, loaded.optimizer.variables, strict=True
        ):
            self.assertAllClose(a, b)
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        loaded.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        for a, b in zip(model.weights, loaded.weights, strict=True):
            self.assertAllClose(a, b, atol=1e-6)

    def test_config(self):
        optimizer = LearningRateMultiplier(
            LARS(0.2, momentum=0.8), {"proxies": 100.0, "bias": 2}
        )
        revived = self.run_class_serialization_test(optimizer)
        self.assertIsInstance(revived.optimizer, LARS)
        self.assertEqual(revived.multipliers, {"proxies": 100.0, "bias": 2.0})
        self.assertAllClose(revived.learning_rate, 0.2)

    def test_invalid_arguments(self):
        for multipliers in (
            {},
            {"": 2.0},
            {"proxies": 0.0},
            {"proxies": -1.0},
            {"proxies": float("nan")},
            {"proxies": True},
            ["proxies"],
        ):
            with self.assertRaisesRegex(
                ValueError,
                "Received: multipliers=" + re.escape(repr(multipliers)),
            ):
                LearningRateMultiplier("adam", multipliers)
        with self.assertRaisesRegex(TypeError, "Received: optimizer=3"):
            LearningRateMultiplier(3, {"proxies": 2.0})
        with self.assertRaisesRegex(TypeError, "Received: optimizer="):
            LearningRateMultiplier(
                keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD()),
                {"proxies": 2.0},
            )
        optimizer = LearningRateMultiplier("sgd", {"proxy": 100.0})
        with self.assertRaisesRegex(
            ValueError, r"\['proxy'\] match no .* Received: multipliers="
        ):
            optimizer.build([keras.Variable(np.zeros(2), name="kernel")])

    @pytest.mark.slow
    def test_mirrored_matches_single_device(self):
        x, y = proxy_data()

        y = x[:, :2] * 2.0  # a per-sample loss: same on 1 or 2 replicas

        def train(strategy):
            with strategy.scope():
                keras.utils.set_random_seed(0)
                model = keras.Sequential(
                    [
                        keras.Input((6,)),
                        keras.layers.Dense(4, name="body"),
                        keras.layers.Dense(2, name="proxies"),
                    ]
                )
                optimizer = LearningRateMultiplier(
                    keras.optimizers.Adam(1e-3), {"proxies": 100.0}
                )
                model.compile(optimizer, "mse")
            model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
            return model.get_weights()

        single = train(tf.distribute.get_strategy())
        mirrored = train(get_strategy("mirrored", ["CPU:0", "CPU:1"]))
        for a, b in zip(single, mirrored, strict=True):
            self.assertAllClose(a, b, atol=1e-5)
