"""Base class of regularizers whose penalty is a statistic of the batch."""

import keras
import tensorflow as tf


class BatchStatisticRegularizer(keras.regularizers.Regularizer):
    """A penalty on a whole batch, safe from Keras' batch-size division.

    Keras >= 3.14 divides an `activity_regularizer`'s value by the batch size
    before `add_loss`. A batch statistic (SVMax, VICReg's terms) must not be
    rescaled, so `__call__` returns `penalty(x) * batch_size` and what lands
    in `model.losses` is exactly `penalty(x)`.
    `keras_featreg.layers.EmbeddingRegularization` adds `penalty(x)` itself.

    Subclasses implement `stats(x)`, a dict of float32 scalars with at least
    `"penalty"` (the documented formula).
    """

    def stats(self, x) -> dict:
        raise TypeError(
            f"{type(self).__name__} must implement `stats(x)`. "
            f"Received: regularizer={self!r}"
        )

    def penalty(self, x) -> tf.Tensor:
        """The documented formula on batch `x`: a float32 scalar."""
        return self.stats(x)["penalty"]

    def __call__(self, x) -> tf.Tensor:
        # Keras divides an activity penalty by the batch size: undo it.
        batch_size = tf.cast(tf.shape(x)[0], tf.float32)
        return self.penalty(x) * batch_size
