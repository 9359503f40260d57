"""Streaming mean singular value of the embedding batches."""

import keras
import tensorflow as tf

from keras_featreg.ops import as_matrix
from keras_featreg.ops import l2_normalize
from keras_featreg.ops import mean_singular_value
from keras_featreg.utils.validation import check_bool


@keras.saving.register_keras_serializable(package="keras_featreg")
class MeanSingularValue(keras.metrics.Metric):
    """Mean singular value s_mu of `y_pred`, averaged over batches.

    ```python
    s_mu(batch) = mean(singular_values(l2_normalize(y_pred, axis=-1)))
    result = mean over the batches seen of s_mu(batch)
    ```

    A batch statistic, so `y_true` and `sample_weight` are ignored, and the
    value depends on the batch size: for unit rows it lies in
    `keras_featreg.ops.svmax_bounds(batch_size, dim)` (L = sqrt(b) / k for
    a collapsed batch, U = sqrt(b / k) for a uniform spread, k = min(b, d)).
    Rank > 2 predictions are flattened over all but the batch axis. Under
    tf.distribute each replica's batch counts as one batch (a replica that
    receives no rows is skipped). Works under XLA (`jit_compile=True`).

    Args:
        normalize: Bool, whether to L2-normalize the rows first (zero rows
            stay zero). Defaults to `True`.
        name: String, name of the metric. Defaults to
            `"mean_singular_value"`.
        dtype: Dtype of the metric's state and result. Defaults to `None`
            (`keras.backend.floatx()`).

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    >>> model.compile(
    ...     optimizer="adam",
    ...     loss=keras_featreg.losses.TripletLoss(),
    ...     metrics=[keras_featreg.metrics.MeanSingularValue()],
    ... )

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Fig. 3.
    """

    def __init__(
        self,
        normalize: bool = True,
        name: str = "mean_singular_value",
        dtype=None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self.normalize = check_bool("normalize", normalize)
        self.total = self.add_variable((), "zeros", self.dtype, name="total")
        self.count = self.add_variable((), "zeros", self.dtype, name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        del y_true, sample_weight  # a batch statistic: labels do not apply
        x = as_matrix(y_pred, "y_pred")
        if self.normalize:
            x = l2_normalize(x)
        s_mu = tf.stop_gradient(mean_singular_value(x))
        # A batch with no rows (an empty replica) is not a batch: skipped.
        has_rows = tf.cast(tf.shape(x)[0] > 0, self.dtype)
        self.total.assign_add(tf.cast(s_mu, self.dtype) * has_rows)
        self.count.assign_add(has_rows)

    def result(self):
        return keras.ops.divide_no_nan(self.total, self.count)

    def get_config(self) -> dict:
        config = super().get_config()
        config["normalize"] = self.normalize
        return config
