"""LARS, the layer-wise adaptive SGD of VICReg, BYOL and Barlow Twins."""

import re

import keras
from keras import ops

from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_float


@keras.saving.register_keras_serializable(package="keras_featreg")
class LARS(keras.optimizers.Optimizer):
    """Layer-wise Adaptive Rate Scaling, as in facebookresearch/vicreg.

    For each variable `p` with gradient `g`:

    ```python
    if adapted(p):                      # not a bias or norm parameter
        g = g + weight_decay * p        # L2 decay, inside the trust ratio
        trust = eta * norm(p) / norm(g) # 1 if either norm is 0
        g = trust * g
    mu = momentum * mu + g
    p = p - learning_rate * mu
    ```

    `norm` is the Frobenius norm of the whole variable. With
    `exclude_bias_and_norm=True` (VICReg's `exclude_bias_and_norm`), 1-D
    variables (biases, normalization scales and offsets) are not adapted:
    no weight decay, no trust ratio, plain momentum SGD. Variables whose
    path (e.g. `"dense/kernel"`) matches a regex of
    `exclude_from_adaptation` are treated the same way. Keras'
    `exclude_from_weight_decay(...)` removes only the decay (the trust
    ratio stays). The weight decay is LARS's own, coupled to the gradient;
    Keras' decoupled `weight_decay` step of other optimizers is not run.

    Args:
        learning_rate: Float >= 0, a
            `keras.optimizers.schedules.LearningRateSchedule` (e.g.
            `keras_featreg.schedules.WarmupCosineDecay`) or a callable.
            Defaults to `0.001`.
        momentum: Float in `[0, 1]`. Defaults to `0.9`.
        weight_decay: Float >= 0, the L2 coefficient added to the gradient
            of adapted variables. Defaults to `1e-6` (VICReg).
        eta: Float > 0, the trust coefficient. Defaults to `0.001`.
        exclude_bias_and_norm: Bool, whether 1-D variables skip decay and
            adaptation. Defaults to `True`.
        exclude_from_adaptation: `None`, a string or a list of strings,
            regexes searched in variable paths; matches skip decay and
            adaptation. Defaults to `None`.
        **kwargs: Base optimizer arguments (`name`, `clipnorm`,
            `global_clipnorm`, `use_ema`, `loss_scale_factor`,
            `gradient_accumulation_steps`, ...).

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> schedule = keras_featreg.schedules.WarmupCosineDecay(
    ...     0.2, batch_size=2048, total_steps=62_500, warmup_steps=6_250)
    >>> optimizer = keras_featreg.optimizers.LARS(schedule)
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer=optimizer, loss="mse")

    Reference:
    - [You et al., 2017](https://arxiv.org/abs/1708.03888)
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Sec. 4.
    """

    def __init__(
        self,
        learning_rate=0.001,
        momentum: float = 0.9,
        weight_decay: float = 1e-6,
        eta: float = 0.001,
        exclude_bias_and_norm: bool = True,
        exclude_from_adaptation: str | list[str] | None = None,
        name: str = "lars",
        **kwargs,
    ) -> None:
        if isinstance(learning_rate, (int, float)):
            learning_rate = check_float(
                "learning_rate", learning_rate, minimum=0.0
            )
        weight_decay = check_float("weight_decay", weight_decay, minimum=0.0)
        # The base class would run its decoupled decay: keep it off there.
        super().__init__(
            learning_rate=learning_rate, weight_decay=None, name=name, **kwargs
        )
        self.weight_decay = weight_decay
        self.momentum = check_float(
            "momentum", momentum, minimum=0.0, maximum=1.0
        )
        self.eta = check_float(
            "eta", eta, minimum=0.0, allow_equal_minimum=False
        )
        self.exclude_bias_and_norm = check_bool(
            "exclude_bias_and_norm", exclude_bias_and_norm
        )
        if isinstance(exclude_from_adaptation, str):
            exclude_from_adaptation = [exclude_from_adaptation]
        if exclude_from_adaptation is not None:
            if not isinstance(exclude_from_adaptation, (list, tuple)) or not (
                all(isinstance(p, str) for p in exclude_from_adaptation)
            ):
                raise TypeError(
                    "`exclude_from_adaptation` must be None, a string or a "
                    "list of strings. Received: exclude_from_adaptation="
                    f"{exclude_from_adaptation!r}"
                )
            exclude_from_adaptation = list(exclude_from_adaptation)
            for pattern in exclude_from_adaptation:
                try:
                    re.compile(pattern)
                except re.error:
                    raise ValueError(
                        "`exclude_from_adaptation` must hold valid regexes. "
                        f"Received: exclude_from_adaptation={pattern!r}"
                    ) from None
        self.exclude_from_adaptation = exclude_from_adaptation

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")

    def _apply_weight_decay(self, variables):
        # LARS adds its decay to the gradient in `update_step`.
        return

    def adapts(self, variable) -> bool:
        """Whether `variable` gets weight decay and the trust ratio."""
        if self.exclude_bias_and_norm and len(variable.shape) <= 1:
            return False
        path = getattr(variable, "path", variable.name)
        return not any(
            re.search(pattern, path)
            for pattern in self.exclude_from_adaptation or ()
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        learning_rate = ops.cast(learning_rate, dtype)
        gradient = ops.cast(ops.convert_to_tensor(gradient), dtype)
        if self.adapts(variable):
            if self.weight_decay > 0 and self._use_weight_decay(variable):
                weight_decay = ops.cast(self.weight_decay, dtype)
                gradient = gradient + weight_decay * variable
            param_norm = _norm(variable)
            update_norm = _norm(gradient)
            usable = ops.logical_and(param_norm > 0, update_norm > 0)
            ratio = param_norm / ops.where(usable, update_norm, 1.0)
            trust = ops.where(usable, self.eta * ratio, 1.0)
            gradient = gradient * ops.cast(trust, dtype)
        momentum = self.momentums[self._get_variable_index(variable)]
        self.assign(
            momentum, ops.cast(self.momentum, dtype) * momentum + gradient
        )
        self.assign_sub(variable, learning_rate * momentum)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "weight_decay": self.weight_decay,
                "eta": self.eta,
                "exclude_bias_and_norm": self.exclude_bias_and_norm,
                "exclude_from_adaptation": self.exclude_from_adaptation,
            }
        )
        return config


def _norm(x):
    """Frobenius norm in float32 or wider, scaled so squares never overflow."""
    x = ops.convert_to_tensor(x)
    if keras.backend.standardize_dtype(x.dtype) in ("float16", "bfloat16"):
        x = ops.cast(x, "float32")
    scale = ops.max(ops.abs(x))
    safe = ops.where(scale > 0, scale, 1.0)
    return scale * ops.sqrt(ops.sum(ops.square(x / safe)))
