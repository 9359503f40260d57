"""A pass-through layer that adds an embedding regularizer to the loss."""

import keras
import tensorflow as tf

from keras_featreg.ops import as_matrix
from keras_featreg.ops import l2_normalize
from keras_featreg.ops import mean_singular_value
from keras_featreg.regularizers.batch_statistic import BatchStatisticRegularizer
from keras_featreg.regularizers.svmax import SVMaxRegularizer
from keras_featreg.utils.validation import check_choice


@keras.saving.register_keras_serializable(package="keras_featreg")
class EmbeddingRegularization(keras.layers.Layer):
    """Adds a regularizer's value on the batch to the model loss.

    Returns its input unchanged (same values and dtype: the layer does not
    autocast, so a float32 embedding stays float32 under mixed precision)
    and calls `add_loss` with the regularizer's value on the batch:

    ```python
    features = flatten(inputs)          # or global avg/max pooling
    loss = regularizer.contribution(features)  # keras_featreg regularizers
    loss = regularizer(features)               # any other regularizer
    ```

    For the batch-statistic regularizers of this package
    (`SVMaxRegularizer`, `VICRegRegularizer`) the added value on one device
    is `penalty(x)`, the documented formula: the same value that lands in
    `model.losses` on the `activity_regularizer=` path. Under a
    tf.distribute strategy with several replicas it is, by default
    (`global_batch=True`), each replica's share of the penalty of the
    global batch, so that training equals one device (see
    `keras_featreg.regularizers.BatchStatisticRegularizer`). Any
    other regularizer (Keras' own, e.g. `"l2"` or
    `keras.regularizers.L2(0.01)`) is called as `regularizer(features)` and
    its value is added undivided, unlike the `activity_regularizer=` path,
    where Keras >= 3.14 divides it by the batch size.

    Conv feature maps (rank > 2): `pooling=None` flattens all but the
    batch axis; `"avg"`/`"max"` first take the global mean/max over the
    spatial axes (all but the first and the last), giving
    `(batch_size, channels)`. The regularizer always sees a float32 (or
    float64) matrix; half-precision inputs are cast first.

    For logging, two non-trainable float32 scalars hold the values of the
    last training batch (`training=True`, as in `fit`): `last_penalty`
    (the added loss) and `last_mean_singular_value` (s_mu of the
    L2-normalized features; taken from the regularizer's `stats()` when it
    is a normalizing `SVMaxRegularizer`, otherwise computed separately with
    no gradient). Inference (`predict`, `evaluate`, an exported SavedModel)
    leaves them alone and still adds the loss, as Keras does for activity
    regularizers. Under tf.distribute each replica writes its own copy (no
    synchronization inside the forward pass); reading them outside
    `strategy.run` gives the mean over replicas, which for
    `last_penalty` is the global batch's penalty.

    Why these two and not a metric: they serve one purpose the other ways
    to log s_mu do not, the state of this layer's regularizer on the batch
    it trained on, inside the model (one value per regularized layer,
    saved with its weights, readable by a callback without a forward pass).
    `keras_featreg.metrics.MeanSingularValue` averages the s_mu of the
    model's outputs over an epoch (compiled metrics see outputs only, not
    an inner layer's features), and `CollapseMonitor`
    (`keras_featreg.callbacks`) measures a fixed probe batch at the end of
    epochs.

    Args:
        regularizer: A `keras.regularizers.Regularizer` instance, or a
            string or config dict understood by `keras.regularizers.get`.
        pooling: `None`, `"avg"` or `"max"`: how rank > 2 inputs become a
            `(batch_size, features)` matrix. Defaults to `None` (flatten).
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Float tensor `(batch_size, ...)`, the embedding batch.
        training: Bool, whether to update `last_penalty` and
            `last_mean_singular_value`. Defaults to `None` (no update).

    Returns:
        `inputs`, unchanged.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> regularizer = keras_featreg.regularizers.SVMaxRegularizer(0.1)
    >>> inputs = keras.Input((32,))
    >>> embeddings = keras.layers.Dense(16)(inputs)
    >>> outputs = keras_featreg.layers.EmbeddingRegularization(regularizer)(
    ...     embeddings
    ... )
    >>> model = keras.Model(inputs, outputs)

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770)
    """

    def __init__(self, regularizer, pooling: str | None = None, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if regularizer is None:
            raise ValueError(
                "`regularizer` is required. Received: regularizer=None"
            )
        self.regularizer = keras.regularizers.get(regularizer)
        if pooling is not None:
            check_choice("pooling", pooling, ("avg", "max"))
        self.pooling = pooling
        self.supports_masking = True
        # Written in the forward pass: ON_READ, so that a replica writes its
        # own copy without a cross-replica synchronization (one inside the
        # forward pass made replicas read each other's `add_loss` values
        # and train with wrong gradients); reading them outside a replica
        # gives the mean over replicas.
        self.last_penalty = self._logged_scalar("last_penalty")
        self.last_mean_singular_value = self._logged_scalar(
            "last_mean_singular_value"
        )
        self._build_at_init()

    def _logged_scalar(self, name: str) -> keras.Variable:
        return keras.Variable(
            initializer="zeros",
            shape=(),
            dtype="float32",
            trainable=False,
            autocast=False,
            aggregation="mean",
            synchronization="on_read",
            name=name,
        )

    def _features(self, inputs) -> tf.Tensor:
        x = tf.convert_to_tensor(inputs)
        if x.dtype in (tf.float16, tf.bfloat16):
            x = tf.cast(x, tf.float32)
        rank = x.shape.rank
        if self.pooling is not None and rank is not None and rank > 2:
            axes = list(range(1, rank - 1))
            if self.pooling == "avg":
                x = tf.reduce_mean(x, axis=axes)
            else:
                x = tf.reduce_max(x, axis=axes)
        return as_matrix(x, "inputs")

    def call(self, inputs, training=None):
        features = self._features(inputs)
        regularizer = self.regularizer
        s_mu = None
        if isinstance(regularizer, BatchStatisticRegularizer):
            stats = regularizer.contribution_stats(features)
            loss = stats["contribution"]
            if isinstance(regularizer, SVMaxRegularizer) and (
                regularizer.normalize
            ):
                s_mu = stats["mean_singular_value"]
        else:
            loss = regularizer(features)
        loss = tf.cast(loss, tf.float32)
        self.add_loss(loss)
        if training:
            if s_mu is None:
                s_mu = mean_singular_value(
                    l2_normalize(tf.stop_gradient(features))
                )
            self.last_penalty.assign(loss)
            self.last_mean_singular_value.assign(tf.cast(s_mu, tf.float32))
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs, **kwargs):
        return keras.KerasTensor(inputs.shape, dtype=inputs.dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "regularizer": keras.regularizers.serialize(self.regularizer),
                "pooling": self.pooling,
            }
        )
        return config
