"""VICReg's single-view terms (variance and covariance) as a regularizer."""

import keras
import tensorflow as tf

from keras_featreg.ops import vicreg_covariance
from keras_featreg.ops import vicreg_variance
from keras_featreg.regularizers.batch_statistic import BatchStatisticRegularizer
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

    Like `SVMaxRegularizer`, this is a batch statistic. `penalty(x)`
    returns the formula; `regularizer(x)` (`__call__`) returns
    `penalty(x) * batch_size`, because Keras >= 3.14 divides an
    `activity_regularizer`'s value by the batch size: what lands in
    `model.losses` on the `activity_regularizer=` path is exactly the
    formula, the same value `keras_featreg.layers.EmbeddingRegularization`
    adds. Use it on activations, not as a `kernel_regularizer` (there Keras
    does not divide, and the value would be scaled by the kernel's first
    dimension).

    The batch needs at least 2 rows (an error when the batch size is
    static; a dynamic batch of one row gives variance gamma - sqrt(epsilon)
    and covariance 0). Rank > 2 inputs are flattened over all but the batch
    axis. Computed in float32 (float64 for float64 input) and returned as
    float32, also under mixed precision.

    Args:
        variance_weight: Float >= 0, weight of the variance hinge (mu).
            Defaults to `25.0`.
        covariance_weight: Float >= 0, weight of the covariance term (nu).
            Defaults to `1.0`.
        gamma: Float > 0, the target standard deviation per dimension.
            Defaults to `1.0`.
        epsilon: Float > 0, keeps the square root differentiable at zero
            variance. Defaults to `1e-4`.

    Example:

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
    ) -> None:
        self.variance_weight = check_non_negative(
            "variance_weight", variance_weight
        )
        self.covariance_weight = check_non_negative(
            "covariance_weight", covariance_weight
        )
        self.gamma = check_positive("gamma", gamma)
        self.epsilon = check_positive("epsilon", epsilon)

    def stats(self, x) -> dict:
        """The penalty and its two terms on one batch.

        Args:
            x: Float tensor `(batch_size, ...)`, the embedding batch.

        Returns:
            Dict of float32 scalars: `"penalty"` (the formula, not scaled
            by the batch size), `"variance"` and `"covariance"` (the
            unweighted terms).
        """
        variance = tf.cast(
            vicreg_variance(x, self.gamma, self.epsilon), tf.float32
        )
        covariance = tf.cast(vicreg_covariance(x), tf.float32)
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
        }
