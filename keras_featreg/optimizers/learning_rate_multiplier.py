"""Per-variable-group learning rates: PyTorch param groups, the Keras way."""

import math
import numbers

import keras


@keras.saving.register_keras_serializable(package="keras_featreg")
class LearningRateMultiplier(keras.optimizers.Optimizer):
    """Trains some variables with `multiplier x` the learning rate.

    Keras 3 optimizers use one learning rate for all variables. This
    wrapper gives each group of variables selected by `multipliers` its own
    copy of `optimizer` (same class and config, own slots, own step count)
    whose learning rate is, at every step, `multiplier *` the learning rate
    of `optimizer` (a float, a schedule, or a value that `ReduceLROnPlateau`
    or `LearningRateScheduler` sets on `model.optimizer.learning_rate`).
    The other variables are trained by `optimizer` itself. The effect is
    PyTorch's param groups `{"params": ..., "lr": lr * multiplier}`, e.g.
    Proxy Anchor's proxies trained at 100x the backbone's rate, with
    AdamW's decoupled decay taken at the group's rate, as `torch.optim`
    does. A variable joins the group of the first key (in order) that is a
    substring of its path (e.g. `"proxy_anchor/proxies"`); a key that
    matches no trainable variable raises a `ValueError` at `build`.

    Note: multiplying the *gradients* by 100 is not the same for Adam,
    AdamW or RMSprop: their step `m / (sqrt(v) + epsilon)` does not change
    when the gradient is scaled (up to `epsilon`), so the proxies would
    move at the backbone's rate. It matches only for plain SGD without
    weight decay.

    Clipping and the other base arguments of `optimizer` apply per group.
    Settings outside `get_config` (`exclude_from_weight_decay`) are not
    copied to the groups.

    Args:
        optimizer: A `keras.optimizers.Optimizer` (or its name or config),
            the optimizer and learning rate of the other variables.
        multipliers: Dict mapping variable-path substrings to positive
            floats, the learning-rate factor of each group, e.g.
            `{"proxies": 100.0}`.
        name: String, the optimizer name. Defaults to
            `"learning_rate_multiplier"`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> inputs = keras.Input((8,))
    >>> embeddings = keras.layers.Dense(4)(inputs)
    >>> head = keras_featreg.layers.ProxyAnchor(num_classes=3)(embeddings)
    >>> model = keras.Model(inputs, head)
    >>> optimizer = keras_featreg.optimizers.LearningRateMultiplier(
    ...     keras.optimizers.AdamW(1e-4, weight_decay=1e-4),
    ...     multipliers={"proxies": 100.0},
    ... )
    >>> model.compile(optimizer, keras_featreg.losses.ProxyAnchorLoss())

    Reference:
    - [Kim et al., 2020](https://arxiv.org/abs/2003.13911); their `train.py`.
    """

    def __init__(
        self,
        optimizer,
        multipliers: dict,
        name: str = "learning_rate_multiplier",
    ) -> None:
        super().__init__(learning_rate=0.0, name=name)
        if isinstance(optimizer, (str, dict)):
            optimizer = keras.optimizers.get(optimizer)
        if not isinstance(optimizer, keras.optimizers.Optimizer) or isinstance(
            optimizer, (keras.optimizers.LossScaleOptimizer, type(self))
        ):
            raise TypeError(
                "`optimizer` must be a plain `keras.optimizers.Optimizer` "
                f"(not a wrapper). Received: optimizer={optimizer!r}"
            )
        if not (
            isinstance(multipliers, dict)
            and multipliers
            and all(_valid(k, v) for k, v in multipliers.items())
        ):
            raise ValueError(
                "`multipliers` must be a non-empty dict of non-empty "
                "variable-path substrings to finite floats > 0. "
                f"Received: multipliers={multipliers!r}"
            )
        self.optimizer = optimizer
        self.multipliers = {k: float(v) for k, v in multipliers.items()}
        config = optimizer.get_config()
        self.group_optimizers = [
            type(optimizer).from_config(
                {
                    **config,
                    "name": f"{optimizer.name}_group{i}",
                    "learning_rate": self._scaled_learning_rate(factor),
                }
            )
            for i, factor in enumerate(self.multipliers.values())
        ]

    def _scaled_learning_rate(self, factor):
        # Read at every step: follows schedules and callbacks of `optimizer`.
        return lambda: self.optimizer.learning_rate * factor

    def _split(self, variables, grads=None):
        """`(optimizer, variables, grads)`: the groups, then `optimizer`."""
        optimizers = [*self.group_optimizers, self.optimizer]
        parts = [(o, [], []) for o in optimizers]
        grads = [None] * len(variables) if grads is None else list(grads)
        for variable, grad in zip(variables, grads, strict=True):
            path = getattr(variable, "path", variable.name)
            keys = [i for i, k in enumerate(self.multipliers) if k in path]
            _, group_variables, group_grads = parts[(keys or [-1])[0]]
            group_variables.append(variable)
            group_grads.append(grad)
        return parts

    def build(self, var_list) -> None:
        if self.built:
            return
        parts = self._split(list(var_list))
        keys = zip(self.multipliers, parts[:-1], strict=True)
        if unmatched := [key for key, part in keys if not part[1]]:
            raise ValueError(
                f"`multipliers` keys {unmatched} match no trainable variable "
                f"path. Received: multipliers={self.multipliers!r}"
            )
        for optimizer, variables, _ in parts:
            if variables:
                optimizer.build(variables)
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is None:
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        self.build(trainable_variables)
        # Groups first: a schedule then reads the same step count in all.
        parts = self._split(trainable_variables, grads)
        for optimizer, variables, group_grads in parts:
            if variables:
                optimizer.apply(group_grads, variables)
            elif optimizer is self.optimizer:
                optimizer.iterations.assign_add(1)  # keeps schedules going

    def finalize_variable_values(self, var_list) -> None:
        for optimizer, variables, _ in self._split(list(var_list)):
            if variables:
                optimizer.finalize_variable_values(variables)

    def scale_loss(self, loss):
        return self.optimizer.scale_loss(loss)

    @property
    def variables(self) -> list:
        optimizers = [self.optimizer, *self.group_optimizers]
        return self._variables + [v for o in optimizers for v in o.variables]

    def save_own_variables(self, store) -> None:
        pass  # `optimizer` and `group_optimizers` save their own.

    def load_own_variables(self, store) -> None:
        pass

    @property
    def learning_rate(self):
        return self.optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.optimizer.learning_rate = learning_rate

    @property
    def iterations(self):
        return self.optimizer.iterations

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "optimizer": keras.optimizers.serialize(self.optimizer),
            "multipliers": dict(self.multipliers),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["optimizer"] = keras.optimizers.deserialize(
            config["optimizer"], custom_objects=custom_objects
        )
        return cls(**config)


def _valid(key, value) -> bool:
    if not isinstance(key, str) or isinstance(value, bool) or not key:
        return False
    return isinstance(value, numbers.Real) and 0 < value < math.inf
