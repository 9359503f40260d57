import keras
import numpy as np
from keras.src import testing

from keras_featreg.schedules import ConstantThenPolynomialDecay


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
