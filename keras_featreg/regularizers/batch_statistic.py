"""The interface of regularizers whose penalty is a statistic of the batch."""

import abc
import warnings

import keras
import tensorflow as tf

from keras_featreg.ops.batch import gather_batch
from keras_featreg.ops.batch import in_replica_context


class BatchStatisticRegularizer(keras.regularizers.Regularizer, abc.ABC):
    """A penalty on a whole batch: unscaled, and global under tf.distribute.

    The one interface the library relies on for batch regularizers
    (`SVMaxRegularizer`, `VICRegRegularizer`): `EmbeddingRegularization` and
    `RegularizedLoss` test `isinstance(regularizer,
    BatchStatisticRegularizer)` and use the methods below; any other
    regularizer (Keras' own, `"l2"`) is called as `regularizer(x)`.

    A subclass implements:

    - `stats(x)`: a dict of float32 scalars of batch `x`, with at least
      `"penalty"` (the documented formula, not scaled by the batch size)
      and the statistics it is made of (e.g. `"mean_singular_value"`),
      defined (finite, zero gradient) on a batch with no rows. The maths
      lives in `keras_featreg.ops` (`svmax_penalty`, `vicreg_terms`).
    - `global_batch`: a bool attribute (see below).
    - `get_config()`.

    It inherits `penalty(x)` (that formula), `contribution_stats(x)` and
    `contribution(x)` (what a layer adds) and `__call__` (the
    `activity_regularizer=` path).

    What a layer adds: `contribution(x)`. On one device it is `penalty(x)`.
    Inside `strategy.run` with R replicas (a `MirroredStrategy` `fit`):

    - `global_batch=True`: every replica gathers the global batch of B
      rows (`keras_featreg.ops.gather_batch`, with gradient) and adds
      `penalty(global batch) * R * b / B`, b its own rows. Keras divides
      each replica's losses by R and sums the replicas' gradients, and the
      gather's gradient sums the replicas' upstream gradients, so training
      equals one device on the global batch, also when the replicas hold
      different numbers of rows (an empty replica adds 0). The `loss` Keras
      reports is then the penalty itself when the rows are split evenly.
    - `global_batch=False`: each replica adds `penalty(its own rows)` (0
      for an empty replica): the mean over replicas of per-replica
      penalties, a different regularizer from the single-device one.

    Keras >= 3.14 divides an `activity_regularizer`'s value by the batch
    size before `add_loss`. A batch statistic must not be rescaled, so
    `__call__` returns `contribution(x) * batch_size` and what lands in
    `model.losses` is exactly `contribution(x)` (Keras' division by an
    empty replica's 0 rows gives 0, which is that replica's contribution).
    `keras_featreg.layers.EmbeddingRegularization` adds `contribution(x)`.
    """

    global_batch: bool = False

    @abc.abstractmethod
    def stats(self, x) -> dict:
        """The penalty and its statistics on batch `x` (float32 scalars)."""

    def penalty(self, x) -> tf.Tensor:
        """The documented formula on batch `x`: a float32 scalar."""
        return self.stats(x)["penalty"]

    def contribution_stats(self, x) -> dict:
        """`stats` of the batch a replica regularizes, and its weighted share.

        Returns `stats(batch)` (batch: the global batch with
        `global_batch=True` under several replicas, else `x`) plus
        `"contribution"`, the value a replica adds to its losses.
        """
        x = tf.convert_to_tensor(x)
        if not (in_replica_context() and self.global_batch):
            stats = dict(self.stats(x))
            stats["contribution"] = stats["penalty"]
            return stats
        gathered = gather_batch(x)
        stats = dict(self.stats(gathered))
        replicas = tf.distribute.get_replica_context().num_replicas_in_sync
        local = tf.cast(tf.shape(x)[0], tf.float32)
        total = tf.cast(tf.shape(gathered)[0], tf.float32)
        share = tf.math.divide_no_nan(replicas * local, total)
        stats["contribution"] = stats["penalty"] * share
        return stats

    def contribution(self, x) -> tf.Tensor:
        """What a layer adds for batch `x`: `penalty(x)` on one device."""
        return self.contribution_stats(x)["contribution"]

    def __call__(self, x) -> tf.Tensor:
        # Keras divides an activity penalty by the batch size: undo it.
        batch_size = tf.cast(tf.shape(x)[0], tf.float32)
        return self.contribution(x) * batch_size


def warn_once(owner, message: str) -> None:
    """Warns once per object (a regularizer, a layer)."""
    if not getattr(owner, "_keras_featreg_warned", False):
        owner._keras_featreg_warned = True
        warnings.warn(message, stacklevel=3)
