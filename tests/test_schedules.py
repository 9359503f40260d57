import math

import keras
import numpy as np
from absl.testing import parameterized

from keras_featreg.schedules import ConstantThenPolynomialDecay
from keras_featreg.schedules import WarmupCosineDecay
from tests import helpers as testing


def numpy_schedule(step, initial, total, hold_fraction, end, power):
    hold = int(total * hold_fraction)
    if step < hold:
        return initial
    progress = min((step - hold) / max(total - hold, 1), 1.0)
    return (initial - end) * (1.0 - progress) ** power + end


class ConstantThenPolynomialDecayTest(testing.TestCase):
    def test_matches_formula(self):
        schedule = ConstantThenPolynomialDecay(0.01, total_steps=100, power=2.0)
        for step in [0, 10, 49, 50, 51, 75, 99, 100, 150]:
            expected = numpy_schedule(step, 0.01, 100, 0.5, 1e-7, 2.0)
            self.assertAllClose(schedule(step), expected, rtol=1e-5)

    def test_holds_then_reaches_end(self):
        schedule = ConstantThenPolynomialDecay(0.1, total_steps=10)
        self.assertAllClose(schedule(4), 0.1)
        self.assertAllClose(schedule(10), 1e-7)
        self.assertAllClose(schedule(1000), 1e-7)

    def test_config_and_optimizer_round_trip(self):
        schedule = ConstantThenPolynomialDecay(0.01, total_steps=50)
        self.run_class_serialization_test(schedule)
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
        restored = keras.optimizers.SGD.from_config(optimizer.get_config())
        self.assertAllClose(restored.learning_rate, 0.01)
        config = keras.optimizers.schedules.serialize(schedule)
        again = keras.optimizers.schedules.deserialize(config)
        self.assertIsInstance(again, ConstantThenPolynomialDecay)
        self.assertAllClose(again(np.int64(30)), schedule(np.int64(30)))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(
            ValueError, "Received: initial_learning_rate=-0.1"
        ):
            ConstantThenPolynomialDecay(-0.1, total_steps=10)
        with self.assertRaisesRegex(ValueError, "Received: total_steps=0"):
            ConstantThenPolynomialDecay(0.1, total_steps=0)
        with self.assertRaisesRegex(ValueError, "Received: hold_fraction=1.0"):
            ConstantThenPolynomialDecay(0.1, total_steps=10, hold_fraction=1.0)


def numpy_warmup_cosine(step, base_lr, batch_size, total, warmup, end=0.001):
    """facebookresearch/vicreg's `adjust_learning_rate` (steps <= total)."""
    base_lr = base_lr * batch_size / 256
    if step < warmup:
        return base_lr * step / warmup
    step -= warmup
    total -= warmup
    q = 0.5 * (1 + math.cos(math.pi * step / total))
    end_lr = base_lr * end
    return base_lr * q + end_lr * (1 - q)


class WarmupCosineDecayTest(testing.TestCase):
    @parameterized.parameters(
        (0.2, 2048, 1000, 100, 0.001),
        (0.3, 256, 50, 0, 0.001),
        (1.0, 64, 10, 9, 0.5),
    )
    def test_matches_vicreg(self, base_lr, batch_size, total, warmup, end):
        schedule = WarmupCosineDecay(
            base_lr, batch_size, total, warmup, end_factor=end
        )
        steps = sorted({0, 1, warmup - 1, warmup, warmup + 1, total // 2})
        for step in [s for s in steps if 0 <= s] + [total - 1, total]:
            expected = numpy_warmup_cosine(
                step, base_lr, batch_size, total, warmup, end
            )
            self.assertAllClose(schedule(step), expected, rtol=1e-5)

    @parameterized.parameters((1000, 100, 0.001), (50, 0, 0.01), (10, 9, 0.5))
    def test_is_keras_cosine_decay_with_warmup(self, total, warmup, end):
        schedule = WarmupCosineDecay(0.2, 2048, total, warmup, end_factor=end)
        self.assertIsInstance(schedule, keras.optimizers.schedules.CosineDecay)
        keras_schedule = keras.optimizers.schedules.CosineDecay(
            0.0,
            decay_steps=total - warmup,
            alpha=end,
            warmup_target=0.2 * 2048 / 256,
            warmup_steps=warmup,
        )
        for step in range(0, 2 * total + 1, max(total // 50, 1)):
            self.assertAllClose(
                schedule(step), keras_schedule(step), atol=0, rtol=0
            )

    def test_shape_of_the_schedule(self):
        schedule = WarmupCosineDecay(0.2, 512, total_steps=100, warmup_steps=10)
        self.assertAllClose(schedule.peak_learning_rate, 0.4)
        self.assertAllClose(schedule(0), 0.0)
        self.assertAllClose(schedule(10), 0.4)
        self.assertAllClose(schedule(100), 0.4e-3)
        self.assertAllClose(schedule(10_000), 0.4e-3)  # clipped past total
        values = np.array([float(schedule(t)) for t in range(101)])
        self.assertTrue(np.all(np.diff(values[:11]) > 0))
        self.assertTrue(np.all(np.diff(values[10:]) < 0))
        custom = WarmupCosineDecay(
            0.1, 100, 10, 2, end_factor=0.0, reference_batch_size=100
        )
        self.assertAllClose(custom(10), 0.0)
        self.assertAllClose(custom(2), 0.1)

    def test_config_and_optimizer_round_trip(self):
        schedule = WarmupCosineDecay(0.2, 1024, 500, 50, 0.01, 128)
        self.run_class_serialization_test(schedule)
        optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
        restored = keras.optimizers.SGD.from_config(optimizer.get_config())
        self.assertIsInstance(restored._learning_rate, WarmupCosineDecay)
        config = keras.optimizers.schedules.serialize(schedule)
        again = keras.optimizers.schedules.deserialize(config)
        self.assertIsInstance(again, WarmupCosineDecay)
        self.assertAllClose(again(np.int64(300)), schedule(np.int64(300)))

    def test_invalid_arguments(self):
        with self.assertRaisesRegex(
            ValueError, "Received: base_learning_rate=0.0"
        ):
            WarmupCosineDecay(0.0, 256, 10, 1)
        with self.assertRaisesRegex(ValueError, "Received: batch_size=0"):
            WarmupCosineDecay(0.1, 0, 10, 1)
        with self.assertRaisesRegex(ValueError, "Received: total_steps=0"):
            WarmupCosineDecay(0.1, 256, 0, 0)
        with self.assertRaisesRegex(ValueError, "Received: warmup_steps=10"):
            WarmupCosineDecay(0.1, 256, 10, 10)
        with self.assertRaisesRegex(ValueError, "Received: warmup_steps=-1"):
            WarmupCosineDecay(0.1, 256, 10, -1)
        with self.assertRaisesRegex(ValueError, "Received: end_factor=2.0"):
            WarmupCosineDecay(0.1, 256, 10, 1, end_factor=2.0)
        with self.assertRaisesRegex(
            ValueError, "Received: reference_batch_size=0"
        ):
            WarmupCosineDecay(0.1, 256, 10, 1, reference_batch_size=0)
        with self.assertRaisesRegex(TypeError, "Received: total_steps=10.5"):
            WarmupCosineDecay(0.1, 256, 10.5, 1)
