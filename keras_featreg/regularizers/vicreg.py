"""VICReg's single-view terms (variance and covariance) as a regularizer."""

import keras
import tensorflow as tf

from keras_featreg.ops import as_matrix
from keras_featreg.ops import vicreg_terms
from keras_featreg.regularizers.batch_statistic import BatchStatisticRegularizer
from keras_featreg.regularizers.batch_statistic import warn_once
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_non_negative
from keras_featreg.utils.validation import check_positive


@keras.saving.register_keras_serializable(package="keras_featreg")
class VICRegRegularizer(BatchStatisticRegularizer):
    """Keeps every embedding dimension alive and the dimensions decorrelated.

    The single-view part of VICReg, usable on any embedding batch (no
    second view, no invariance term):

    ```python
    std = sqrt(var(x, axis=0, unbiased) + epsilon)        # per dimension
    variance = mean(relu(gamma - std))
    cov = (x - mean(x))^T (x - mean(x)) / (batch_size - 1)
    covariance = sum(offdiag(cov) ** 2) / dim
    penalty = variance_weight * variance + covariance_weight * covariance
    ```

    The terms are those of `keras_featreg.ops.vicreg_terms` on one view
    (`z_b=None`). Like `SVMaxRegularizer`, this is a batch statistic.
    `penalty(x)` returns the formula; `regularizer(x)` (`__call__`) returns
    `penalty(x) * batch_size`, because Keras >= 3.14 divides an
    `activity_regularizer`'s value by the batch size: what lands in
    `model.losses` on the `activity_regularizer=` path is exactly the
    formula, the same value `keras_featreg.layers.EmbeddingRegularization`
    adds. Use it on activations, not as a `kernel_regularizer` (there Keras
    does not divide, and the value would be scaled by the kernel's first
    dimension).

    A batch of fewer than 2 rows has no unbiased variance: it adds 0 to
    the loss (a one-time warning when its size is static, e.g. a last
    partial batch of one; an empty replica under tf.distribute adds 0
    silently). Rank > 2 inputs are flattened over all but the batch axis.
    XLA (`jit_compile=True`) and tf.distribute strategies are supported
    (see `global_batch`). Computed in float32 (float64 for float64 input)
    and returned as float32, also under mixed precision.

    Args:
        variance_weight: Float >= 0, weight of the variance hinge (mu).
            Defaults to `25.0`.
        covariance_weight: Float >= 0, weight of the covariance term (nu).
            Defaults to `1.0`.
        gamma: Float > 0, the target standard deviation per dimension.
            Defaults to `1.0`.
        epsilon: Float > 0, keeps the square root differentiable at zero
            variance. Defaults to `1e-4`.
        global_batch: Bool, under a tf.distribute strategy with several
            replicas, compute the statistics on the global batch, gathered
            from all replicas with gradient (as the VICReg reference code
            does), so that training equals one device; `False` uses each
            replica's own rows. No effect on one device. Defaults to `True`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> regularizer = keras_featreg.regularizers.VICRegRegularizer()
    >>> layer = keras.layers.Dense(64, activity_regularizer=regularizer)

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 1-4.
    """

    def __init__(
        self,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        gamma: float = 1.0,
        epsilon: float = 1e-4,
        global_batch: bool = True,
    ) -> None:
        self.variance_weight = check_non_negative(
            "variance_weight", variance_weight
        )
        self.covariance_weight = check_non_negative(
            "covariance_weight", covariance_weight
        )
        self.gamma = check_positive("gamma", gamma)
        self.epsilon = check_positive("epsilon", epsilon)
        self.global_batch = check_bool("global_batch", global_batch)

    def stats(self, x) -> dict:
        """The penalty and its two terms on one batch.

        Args:
            x: Float tensor `(batch_size, ...)`, the embedding batch.

        Returns:
            Dict of float32 scalars: `"penalty"` (the formula, not scaled
            by the batch size), `"variance"` and `"covariance"` (the
            unweighted terms).
        """
        x = as_matrix(x, "x")
        if x.shape[0] is not None and x.shape[0] < 2:
            # A last partial batch of one row: no unbiased variance. Adding
            # nothing beats ending the user's training.
            warn_once(
                self,
                "VICRegRegularizer needs at least 2 rows per batch; a batch "
                "of 1 row adds nothing to the loss (batch with "
                "`drop_remainder=True` to avoid it). "
                f"Received: x.shape={x.shape}",
            )
            zero = tf.zeros((), tf.float32) * tf.cast(
                tf.reduce_sum(x), tf.float32
            )
            return {"penalty": zero, "variance": zero, "covariance": zero}
        terms = vicreg_terms(x, gamma=self.gamma, epsilon=self.epsilon)
        variance = tf.cast(terms.variance, tf.float32)
        covariance = tf.cast(terms.covariance, tf.float32)
        penalty = (
            self.variance_weight * variance
            + self.covariance_weight * covariance
        )
        return {
            "penalty": penalty,
            "variance": variance,
            "covariance": covariance,
        }

    def get_config(self) -> dict:
        return {
            "variance_weight": self.variance_weight,
            "covariance_weight": self.covariance_weight,
            "gamma": self.gamma,
            "epsilon": self.epsilon,
            "global_batch": self.global_batch,
        }
