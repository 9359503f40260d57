import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from keras_featreg.distribute import get_strategy
from keras_featreg.optimizers import LARS
from keras_featreg.schedules import WarmupCosineDecay
from tests import helpers as testing


def numpy_lars(params, grads_per_step, lrs, momentum, wd, eta, adapted):
    """facebookresearch/vicreg's `LARS.step`, one parameter at a time."""
    params = [np.array(p, dtype=np.float64) for p in params]
    mus = [np.zeros_like(p) for p in params]
    for grads, lr in zip(grads_per_step, lrs, strict=True):
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            dp = np.array(g, dtype=np.float64)
            if adapted[i]:
                dp = dp + wd * p
                param_norm = np.linalg.norm(p)
                update_norm = np.linalg.norm(dp)
                q = 1.0
                if param_norm > 0 and update_norm > 0:
                    q = eta * param_norm / update_norm
                dp = dp * q
            mus[i] = momentum * mus[i] + dp
            params[i] = p - lr * mus[i]
    return params


def numpy_vicreg_lr(step, base_lr, batch_size, total, warmup, end=0.001):
    base_lr = base_lr * batch_size / 256
    if step < warmup:
        return base_lr * step / warmup
    q = 0.5 * (1 + np.cos(np.pi * (step - warmup) / (total - warmup)))
    return base_lr * q + base_lr * end * (1 - q)


def make_problem(seed=0, steps=4):
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(3, 4)).astype("float32")
    bias = rng.normal(size=(4,)).astype("float32")
    grads = [
        [
            rng.normal(size=(3, 4)).astype("float32"),
            rng.normal(size=(4,)).astype("float32"),
        ]
        for _ in range(steps)
    ]
    return kernel, bias, grads


def run_keras(optimizer, kernel, bias, grads):
    variables = [
        keras.Variable(kernel, name="kernel"),
        keras.Variable(bias, name="bias"),
    ]
    for step_grads in grads:
        optimizer.apply(step_grads, variables)
    return [v.numpy() for v in variables]


class LARSTest(testing.TestCase):
    @parameterized.parameters(
        (0.9, 1e-6, 0.001, True),
        (0.5, 0.1, 0.02, True),
        (0.0, 0.0, 0.001, True),
        (0.9, 0.05, 0.01, False),  # biases adapted too
    )
    def test_matches_numpy(self, momentum, wd, eta, exclude):
        kernel, bias, grads = make_problem()
        optimizer = LARS(
            0.5,
            momentum=momentum,
            weight_decay=wd,
            eta=eta,
            exclude_bias_and_norm=exclude,
        )
        result = run_keras(optimizer, kernel, bias, grads)
        expected = numpy_lars(
            [kernel, bias],
            grads,
            [0.5] * len(grads),
            momentum,
            wd,
            eta,
            adapted=[True, not exclude],
        )
        for actual, wanted in zip(result, expected, strict=True):
            self.assertAllClose(actual, wanted, rtol=1e-5, atol=1e-6)

    def test_with_schedule(self):
        kernel, bias, grads = make_problem(seed=1, steps=6)
        schedule = WarmupCosineDecay(
            0.3, batch_size=512, total_steps=6, warmup_steps=2
        )
        optimizer = LARS(schedule, weight_decay=0.01, eta=0.02)
        result = run_keras(optimizer, kernel, bias, grads)
        lrs = [numpy_vicreg_lr(t, 0.3, 512, 6, 2) for t in range(6)]
        self.assertEqual(lrs[0], 0.0)  # VICReg's first step does nothing
        expected = numpy_lars(
            [kernel, bias], grads, lrs, 0.9, 0.01, 0.02, [True, False]
        )
        for actual, wanted in zip(result, expected, strict=True):
            self.assertAllClose(actual, wanted, rtol=1e-5, atol=1e-6)

    def test_exclusions(self):
        kernel, bias, grads = make_problem(seed=2)
        by_name = LARS(0.1, weight_decay=0.1, exclude_from_adaptation="kern")
        result = run_keras(by_name, kernel, bias, grads)
        expected = numpy_lars(
            [kernel, bias], grads, [0.1] * 4, 0.9, 0.1, 0.001, [False, False]
        )
        self.assertAllClose(result[0], expected[0], rtol=1e-5)
        # Keras' exclude_from_weight_decay: no decay, trust ratio kept.
        no_decay = LARS(0.1, weight_decay=0.1)
        no_decay.exclude_from_weight_decay(var_names=["kernel"])
        result = run_keras(no_decay, kernel, bias, grads)
        expected = numpy_lars(
            [kernel, bias], grads, [0.1] * 4, 0.9, 0.0, 0.001, [True, False]
        )
        self.assertAllClose(result[0], expected[0], rtol=1e-5)

    def test_zero_norms_use_unit_trust(self):
        zeros = np.zeros((3, 4), "float32")
        grads = [[np.ones((3, 4), "float32")], [zeros]]
        variable = keras.Variable(zeros)
        LARS(0.1, momentum=0.9).apply(grads[0], [variable])
        # norm(p) = 0: trust 1, plain momentum SGD step.
        self.assertAllClose(variable, -0.1 * np.ones((3, 4)))
        # norm(g) = 0 (no decay): trust 1, nothing moves.
        LARS(0.1, momentum=0.0, weight_decay=0.0).apply(grads[1], [variable])
        self.assertAllClose(variable, -0.1 * np.ones((3, 4)))

    def test_degenerate_values_are_finite(self):
        for value, grad in [(1e30, 1e-30), (1e-30, 1e30), (0.0, 0.0)]:
            variable = keras.Variable(np.full((2, 3), value, "float32"))
            gradient = np.full((2, 3), grad, "float32")
            optimizer = LARS(0.1, weight_decay=1e-6)
            for _ in range(3):
                optimizer.apply([gradient], [variable])
            self.assertTrue(np.all(np.isfinite(variable.numpy())))

    def test_mixed_precision_fit(self):
        keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
            model.compile(optimizer=LARS(0.5), loss="mse")
            x = np.random.default_rng(0).normal(size=(8, 4))
            history = model.fit(x, x[:, :3], epochs=2, verbose=0)
            self.assertTrue(np.all(np.isfinite(history.history["loss"])))
        finally:
            keras.mixed_precision.set_global_policy("float32")

    def test_fit_reduces_loss(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(64, 5)).astype("float32")
        y = x @ rng.normal(size=(5, 2)).astype("float32")
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [
                keras.Input((5,)),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.BatchNormalization(),
                keras.layers.Dense(2),
            ]
        )
        model.compile(optimizer=LARS(1.0, eta=0.02), loss="mse")
        history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
        losses = history.history["loss"]
        self.assertTrue(np.all(np.isfinite(losses)))
        self.assertLess(losses[-1], losses[0])

    def test_mirrored_matches_single_device(self):
        rng = np.random.default_rng(0)
        x = rng.normal(size=(16, 5)).astype("float32")
        y = rng.normal(size=(16, 2)).astype("float32")

        def train(strategy):
            with strategy.scope():
                model = keras.Sequential(
                    [
                        keras.Input((5,)),
                        keras.layers.Dense(
                            2,
                            kernel_initializer=keras.initializers.GlorotUniform(
                                1
                            ),
                            bias_initializer="ones",
                        ),
                    ]
                )
                model.compile(
                    optimizer=LARS(0.5, weight_decay=0.01, eta=0.2),
                    loss="mse",
                )
            initial = model.get_weights()
            model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
            return initial, model.get_weights()

        initial, single = train(tf.distribute.get_strategy())
        _, mirrored = train(get_strategy("mirrored", ["CPU:0", "CPU:1"]))
        for before, a, b in zip(initial, single, mirrored, strict=True):
            self.assertGreater(np.max(np.abs(a - before)), 0.01)
            self.assertAllClose(a, b, atol=1e-5)

    def test_config(self):
        optimizer = LARS(
            0.3,
            momentum=0.8,
            weight_decay=1e-5,
            eta=0.01,
            exclude_bias_and_norm=False,
            exclude_from_adaptation=["bias", "gamma"],
            clipnorm=1.0,
        )
        self.run_class_serialization_test(optimizer)
        config = keras.optimizers.serialize(optimizer)
        revived = keras.optimizers.deserialize(config)
        self.assertIsInstance(revived, LARS)
        self.assertEqual(revived.get_config(), optimizer.get_config())
        schedule = WarmupCosineDecay(0.2, 256, 100, 10)
        with_schedule = LARS(schedule)
        revived = LARS.from_config(with_schedule.get_config())
        self.assertIsInstance(revived._learning_rate, WarmupCosineDecay)
        self.assertAllClose(revived._learning_rate(50), schedule(50))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(ValueError, "Received: momentum=-0.1"):
            LARS(momentum=-0.1)
        with self.assertRaisesRegex(ValueError, "Received: eta=0.0"):
            LARS(eta=0.0)
        with self.assertRaisesRegex(ValueError, "Received: weight_decay=-1"):
            LARS(weight_decay=-1)
        with self.assertRaisesRegex(ValueError, "Received: learning_rate=-1"):
            LARS(learning_rate=-1)
        with self.assertRaisesRegex(
            TypeError, "Received: exclude_from_adaptation=3"
        ):
            LARS(exclude_from_adaptation=3)
        with self.assertRaisesRegex(
            ValueError, r"Received: exclude_from_adaptation='\('"
        ):
            LARS(exclude_from_adaptation="(")
        with self.assertRaisesRegex(
            TypeError, "Received: exclude_bias_and_norm=1"
        ):
            LARS(exclude_bias_and_norm=1)
