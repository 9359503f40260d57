"""Learning-rate schedules of the papers' training recipes."""

import keras
from keras import ops

from keras_featreg.utils.validation import check_float
from keras_featreg.utils.validation import check_int
from keras_featreg.utils.validation import check_positive


@keras.saving.register_keras_serializable(package="keras_featreg")
class ConstantThenPolynomialDecay(
    keras.optimizers.schedules.LearningRateSchedule
):
    """Constant learning rate, then polynomial decay (SVMax paper, Sec. 4.1).

    ```python
    lr(t) = initial_learning_rate                                  t < hold
    lr(t) = (initial - end) * (1 - (t - hold) / (total - hold)) ** power + end
    ```

    The SVMax retrieval experiments hold the learning rate for K/2 iterations
    and decay it polynomially to 1e-7 at iteration K; the paper does not give
    the power, so it defaults to linear (`power=1.0`).

    Args:
        initial_learning_rate: Float > 0.
        total_steps: Int K >= 1, the step at which `end_learning_rate` is
            reached (and kept).
        hold_fraction: Float in [0, 1), share of `total_steps` at the initial
            rate. Defaults to `0.5`.
        end_learning_rate: Float >= 0. Defaults to `1e-7`.
        power: Float > 0. Defaults to `1.0`.

    Example:

    >>> schedule = ConstantThenPolynomialDecay(0.01, total_steps=5000)
    >>> optimizer = keras.optimizers.SGD(schedule, momentum=0.9)

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Sec. 4.1.
    """

    def __init__(
        self,
        initial_learning_rate: float,
        total_steps: int,
        hold_fraction: float = 0.5,
        end_learning_rate: float = 1e-7,
        power: float = 1.0,
    ) -> None:
        self.initial_learning_rate = check_positive(
            "initial_learning_rate", initial_learning_rate
        )
        self.total_steps = check_int("total_steps", total_steps, minimum=1)
        self.hold_fraction = check_float(
            "hold_fraction", hold_fraction, minimum=0.0, maximum=0.999999
        )
        self.end_learning_rate = check_float(
            "end_learning_rate", end_learning_rate, minimum=0.0
        )
        self.power = check_positive("power", power)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        hold = float(int(self.total_steps * self.hold_fraction))
        span = max(float(self.total_steps) - hold, 1.0)
        progress = ops.clip((step - hold) / span, 0.0, 1.0)
        decay = ops.power(1.0 - progress, self.power)
        return (
            self.initial_learning_rate - self.end_learning_rate
        ) * decay + self.end_learning_rate

    def get_config(self) -> dict:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "total_steps": self.total_steps,
            "hold_fraction": self.hold_fraction,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
        }
