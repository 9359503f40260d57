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

    >>> import keras
    >>> import keras_featreg
    >>> schedule = keras_featreg.schedules.ConstantThenPolynomialDecay(
    ...     0.01, total_steps=5000)
    >>> optimizer = keras.optimizers.SGD(schedule, momentum=0.9)
    >>> [round(float(schedule(step)), 6) for step in (0, 2500, 3750, 5000)]
    [0.01, 0.01, 0.005, 0.0]

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


@keras.saving.register_keras_serializable(package="keras_featreg")
class WarmupCosineDecay(keras.optimizers.schedules.CosineDecay):
    """Linear warm-up, then cosine decay (VICReg's `adjust_learning_rate`).

    ```python
    peak = base_learning_rate * batch_size / reference_batch_size
    lr(t) = peak * t / warmup_steps                      t < warmup_steps
    q = 0.5 * (1 + cos(pi * (t - warmup) / (total - warmup)))
    lr(t) = peak * q + end_factor * peak * (1 - q)       otherwise
    ```

    The learning rate starts at 0, reaches `peak` at `warmup_steps` and
    `end_factor * peak` at `total_steps`, where it stays (VICReg never goes
    past `total_steps`; here the progress is clipped at 1). VICReg uses
    `base_learning_rate=0.2`, batch size 2048, 10 warm-up epochs and
    `end_factor=0.001`, with LARS (`main_vicreg.py`).

    This is Keras' own schedule, parameterized as VICReg is:
    `keras.optimizers.schedules.CosineDecay(0.0, total_steps - warmup_steps,
    alpha=end_factor, warmup_target=peak, warmup_steps=warmup_steps)` is the
    same formula (`peak * ((1 - alpha) * q + alpha)`); this subclass only
    adds the batch-size scaling of `peak`, the argument checks and a config
    in VICReg's terms.

    Args:
        base_learning_rate: Float > 0, the rate per `reference_batch_size`
            examples.
        batch_size: Int >= 1, the global batch size.
        total_steps: Int >= 1, the step at which the decay ends.
        warmup_steps: Int in `[0, total_steps)`, the warm-up length.
        end_factor: Float in `[0, 1]`, the final rate as a share of `peak`.
            Defaults to `0.001`.
        reference_batch_size: Int >= 1, the batch size of
            `base_learning_rate`. Defaults to `256`.

    Example:

    >>> import keras_featreg
    >>> schedule = keras_featreg.schedules.WarmupCosineDecay(
    ...     0.2, batch_size=2048, total_steps=62_500, warmup_steps=6_250)
    >>> optimizer = keras_featreg.optimizers.LARS(schedule)
    >>> round(float(schedule(6_250)), 4)  # peak = 0.2 * 2048 / 256
    1.6

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906)
    - [Loshchilov & Hutter, 2017](https://arxiv.org/abs/1608.03983)
    """

    def __init__(
        self,
        base_learning_rate: float,
        batch_size: int,
        total_steps: int,
        warmup_steps: int,
        end_factor: float = 0.001,
        reference_batch_size: int = 256,
    ) -> None:
        base_learning_rate = check_positive(
            "base_learning_rate", base_learning_rate
        )
        batch_size = check_int("batch_size", batch_size, minimum=1)
        total_steps = check_int("total_steps", total_steps, minimum=1)
        warmup_steps = check_int("warmup_steps", warmup_steps, minimum=0)
        if warmup_steps >= total_steps:
            raise ValueError(
                f"`warmup_steps` must be < total_steps={total_steps}. "
                f"Received: warmup_steps={warmup_steps}"
            )
        end_factor = check_float(
            "end_factor", end_factor, minimum=0.0, maximum=1.0
        )
        reference_batch_size = check_int(
            "reference_batch_size", reference_batch_size, minimum=1
        )
        super().__init__(
            initial_learning_rate=0.0,
            decay_steps=total_steps - warmup_steps,
            alpha=end_factor,
            name="WarmupCosineDecay",
            warmup_target=base_learning_rate
            * batch_size
            / reference_batch_size,
            warmup_steps=warmup_steps,
        )
        self.base_learning_rate = base_learning_rate
        self.batch_size = batch_size
        self.total_steps = total_steps
        self.end_factor = end_factor
        self.reference_batch_size = reference_batch_size

    @property
    def peak_learning_rate(self) -> float:
        """`base_learning_rate * batch_size / reference_batch_size`."""
        return self.warmup_target

    def get_config(self) -> dict:
        return {
            "base_learning_rate": self.base_learning_rate,
            "batch_size": self.batch_size,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "end_factor": self.end_factor,
            "reference_batch_size": self.reference_batch_size,
        }
