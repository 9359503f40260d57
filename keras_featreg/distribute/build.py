"""Creates every variable `fit` creates before its first step, publicly.

Keras' `fit` first builds the model, its compiled loss and metrics and its
optimizer from one symbolic batch, with a private `keras.Model` method.
A training loop of its own (`DistributedTrainer`) needs the same before it
restores a checkpoint or traces `train_step` inside `strategy.run`, where
no variable may be created. `build_for_training` does it with public API
only: a `keras.Operation` called on `keras.KerasTensor`s runs its `call`
symbolically (Keras' shape inference, which creates the variables of
everything it calls and initializes them afterwards, also under a
tf.distribute strategy), here the model and its `compute_loss` and
`compute_metrics`, as `fit` does; then the optimizer is built.
"""

import inspect

import keras
import tensorflow as tf


class _TrainingCall(keras.Operation):
    """The model and its compiled loss and metrics on one batch."""

    def __init__(self, model: keras.Model) -> None:
        super().__init__(name="build_for_training")
        self.model = model
        parameters = inspect.signature(model.compute_loss).parameters
        self.loss_kwargs = (
            {"training": False} if "training" in parameters else {}
        )

    def call(self, data):
        model = self.model
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = model(x, training=False)
        if model.loss is not None:  # a compiled loss
            model.compute_loss(
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                **self.loss_kwargs,
            )
        model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
        return y_pred


def build_for_training(model: keras.Model, element_spec) -> None:
    """Builds `model`, its compiled loss and metrics, and its optimizer.

    Call it inside the model's strategy scope. Only shapes and dtypes are
    used: nothing is computed on data and no state changes but the
    creation of the missing variables (no metric update, no random draw).

    Args:
        model: A compiled `keras.Model`.
        element_spec: The `tf.data` element spec of a batch, `(x, y)` or
            `(x, y, sample_weight)` as `fit` unpacks it (or `x` alone).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import keras_featreg
    >>> x = np.zeros((8, 4), "float32")
    >>> dataset = tf.data.Dataset.from_tensor_slices((x, x)).batch(4)
    >>> strategy = keras_featreg.distribute.get_strategy("default")
    >>> with strategy.scope():
    ...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    ...     model.compile(optimizer="sgd", loss="mse")
    ...     keras_featreg.distribute.build_for_training(
    ...         model, dataset.element_spec
    ...     )
    >>> len(model.optimizer.variables) > 0
    True
    """
    data = tf.nest.map_structure(
        lambda spec: keras.KerasTensor(spec.shape, dtype=spec.dtype.name),
        element_spec,
    )
    _TrainingCall(model)(data)
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
