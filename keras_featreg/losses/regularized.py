"""A per-sample loss plus a batch regularizer, both on the global batch."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops import gather_batch
from keras_featreg.ops import local_rows
from keras_featreg.ops.batch import in_replica_context
from keras_featreg.regularizers.batch_statistic import BatchStatisticRegularizer
from keras_featreg.utils.validation import check_bool


def _penalty(regularizer, embeddings) -> tf.Tensor:
    """The regularizer's penalty of one batch, as the formula documents it.

    A `BatchStatisticRegularizer` (`SVMaxRegularizer`, `VICRegRegularizer`)
    gives `penalty(x)`: its `__call__` multiplies that by the batch size,
    which Keras' activity regularization path divides out again. Any other
    regularizer is called.
    """
    if isinstance(regularizer, BatchStatisticRegularizer):
        return regularizer.penalty(embeddings)
    return regularizer(embeddings)


@keras.saving.register_keras_serializable(package="keras_featreg")
class RegularizedLoss(LabelLoss):
    """A metric-learning loss plus SVMax (or any batch regularizer).

    ```python
    out[i] = loss(y_true, y_pred)[i] + regularizer.penalty(y_pred)
    ```

    The regularizer's penalty is a batch statistic, broadcast onto every
    sample, so the default reduction gives `mean(loss) + penalty`, the SVMax
    paper's objective (e.g. Eq. 5 + Eq. 4 for a triplet loss). The
    regularizer paths (`activity_regularizer=`, `EmbeddingRegularization`)
    also regularize the global batch under several replicas (their
    `global_batch` argument); this loss also mines the wrapped loss on it.

    Global batch. Inside `strategy.run` with several replicas (a
    `MirroredStrategy` `fit`, or `keras_featreg.distribute.DistributedTrainer`
    under any strategy):

    - `gather=True` (default): the regularizer sees the global batch, the
      embeddings of all replicas gathered with gradient
      (`keras_featreg.ops.gather_batch`): s_mu, and the bounds L and
      U with the global b.
    - `gather_loss` (default: as `gather`): the wrapped loss mines its
      pairs, triplets (hard negatives included) or proxies' sums over the
      global batch; each replica keeps the per-sample values of its own
      rows. Each replica then computes the global `b x b` distances (memory
      `O(b^2)`, `O(b^3)` for semi-hard mining, with the global `b`); set
      `gather_loss=False` to mine within each replica's batch and still
      regularize the global one.

    With both, training equals a single-device run on the global batch (to
    float32 rounding, for a global batch divisible by the number of
    replicas). Without a strategy, or with one replica, both flags change
    nothing.

    `y_true`: what the wrapped loss takes (integer labels for the
    metric-learning losses; integer class ids of any int32/int64 value
    reach it, and are gathered, exactly). `y_pred`: embeddings
    `(batch_size, dim)`.
    The wrapped loss must return per-sample values `(batch_size,)` (every
    loss of `keras_featreg.losses` does); its own `reduction` and `dtype`
    are not used, this loss's are.

    Args:
        loss: A `keras.losses.Loss` (instance, name or config) returning
            per-sample values, e.g. `keras_featreg.losses.TripletLoss()`.
        regularizer: Optional batch regularizer of the embeddings (instance,
            name or config), e.g.
            `keras_featreg.regularizers.SVMaxRegularizer(factor=0.1)`.
            Defaults to `None` (the loss alone, e.g. only to mine globally).
        gather: Bool, compute the regularizer on the global batch.
            Defaults to `True`.
        gather_loss: Bool or `None`, mine the wrapped loss on the global
            batch. Defaults to `None` (the value of `gather`).
        name: String, the loss name. Defaults to `"regularized_loss"`.
        **kwargs: `reduction`, `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.RegularizedLoss(
    ...     keras_featreg.losses.TripletLoss(margin=0.2),
    ...     keras_featreg.regularizers.SVMaxRegularizer(factor=0.1),
    ... )
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(optimizer="adam", loss=loss)

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 4-8.
    """

    def __init__(
        self,
        loss,
        regularizer=None,
        gather: bool = True,
        gather_loss: bool | None = None,
        name: str = "regularized_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        if not (isinstance(loss, (str, dict)) or callable(loss)):
            raise TypeError(
                "`loss` must be a keras.losses.Loss returning per-sample "
                f"values. Received: loss={loss!r}"
            )
        self.loss = keras.losses.get(loss)
        if regularizer is not None and not (
            isinstance(regularizer, (str, dict)) or callable(regularizer)
        ):
            raise TypeError(
                "`regularizer` must be a keras.regularizers.Regularizer or "
                f"None. Received: regularizer={regularizer!r}"
            )
        self.regularizer = (
            None if regularizer is None else keras.regularizers.get(regularizer)
        )
        self.gather = check_bool("gather", gather)
        if gather_loss is None:
            gather_loss = self.gather
        self.gather_loss = check_bool("gather_loss", gather_loss)

    def _per_sample(self, y_true, y_pred):
        inner = self.loss
        values = (
            inner.call(y_true, y_pred)
            if isinstance(inner, keras.losses.Loss)
            else inner(y_true, y_pred)
        )
        values = tf.convert_to_tensor(values)
        if values.shape.rank != 1:
            raise ValueError(
                "The wrapped loss must return per-sample values of shape "
                f"(batch_size,). Received: loss output shape={values.shape}"
            )
        return values

    def uses_exact_labels(self) -> bool:
        # Integer labels stay exact when the wrapped loss compares them.
        inner = self.loss
        return isinstance(inner, LabelLoss) and inner.uses_exact_labels()

    def call(self, y_true, y_pred):
        y_true = self.exact_labels(y_true)
        distributed = in_replica_context()
        embeddings = y_pred
        if self.gather_loss and distributed:
            labels, embeddings = gather_batch((y_true, y_pred))
            values = self._per_sample(labels, embeddings)
            values = local_rows(values, tf.shape(y_pred)[0])
        else:
            values = self._per_sample(y_true, y_pred)
        if self.regularizer is None:
            return values
        if not self.gather:
            embeddings = y_pred
        elif distributed and not self.gather_loss:
            embeddings = gather_batch(y_pred)
        penalty = _penalty(self.regularizer, embeddings)
        return values + tf.cast(penalty, values.dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "loss": keras.losses.serialize(self.loss),
                "regularizer": (
                    None
                    if self.regularizer is None
                    else keras.regularizers.serialize(self.regularizer)
                ),
                "gather": self.gather,
                "gather_loss": self.gather_loss,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["loss"] = keras.losses.deserialize(config["loss"])
        if config.get("regularizer") is not None:
            config["regularizer"] = keras.regularizers.deserialize(
                config["regularizer"]
            )
        return cls(**config)
