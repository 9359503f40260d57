"""VICReg's two-view loss as a `keras.losses.Loss`."""

import keras
import tensorflow as tf

from keras_featreg.losses.two_view import TwoViewLoss
from keras_featreg.ops import gather_batch
from keras_featreg.ops import vicreg_terms
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_non_negative
from keras_featreg.utils.validation import check_positive


@keras.saving.register_keras_serializable(package="keras_featreg")
class VICRegLoss(TwoViewLoss):
    """VICReg: invariance, variance and covariance of two views' embeddings.

    Called as `loss(z_a, z_b)` (the first view's embeddings take the place
    of `y_true`). Equal to the authors' reference code on one device:

    ```python
    invariance = mean((z_a - z_b) ** 2)                   # F.mse_loss
    variance = (v(z_a) + v(z_b)) / 2   # v(z) = mean(relu(gamma - std(z)))
    covariance = c(z_a) + c(z_b)       # c(z) = sum(offdiag(cov(z))^2) / d
    loss = invariance_weight * invariance
         + variance_weight * variance + covariance_weight * covariance
    ```

    with `std = sqrt(unbiased var + epsilon)`. Where the paper and the code
    disagree we follow the code, for which the default weights were tuned:
    the paper's invariance sums over features (d times the code's mean)
    and the paper's variance term sums the two views (the code averages).

    A weighted sum of `keras_featreg.ops.vicreg_terms`, which `terms(z_a,
    z_b)` returns unweighted (`TwoViewLoss` interface).

    Per-sample output: `call` returns, for each row i,
    `invariance_weight * mean_j (z_a[i, j] - z_b[i, j]) ** 2` plus the
    batch-level variance and covariance terms, so Keras' default reduction
    (the mean over the batch) gives exactly the loss above, and
    `sample_weight` and tf.distribute's replica scaling apply. The
    covariance uses the b x b Gram (no d x d matrix) when b < d
    (`keras_featreg.ops.vicreg_covariance`). Computed in float32 (float64
    for float64 input), also under mixed precision.

    Distributed training (`gather=True`, the default): inside
    `strategy.run` with several replicas the variance and covariance are
    computed on the global batch, the embeddings of all replicas gathered
    with gradient (`keras_featreg.ops.gather_batch`), and the
    invariance on each replica's own rows, as the reference code does
    (`FullGatherLayer`). The training loss and gradients then equal a
    single-device run on the global batch. `gather=False` computes every
    term on the replica's own batch (the loss is the mean over replicas of
    the per-replica losses). On one device both are the same.

    Args:
        invariance_weight: Float >= 0, lambda. Defaults to `25.0`.
        variance_weight: Float >= 0, mu. Defaults to `25.0`.
        covariance_weight: Float >= 0, nu. Defaults to `1.0`.
        gamma: Float > 0, target standard deviation. Defaults to `1.0`.
        epsilon: Float > 0, variance stabilizer. Defaults to `1e-4`.
        gather: Bool, compute the variance and covariance on the global
            batch under tf.distribute. Defaults to `True`.
        name: String, the loss name. Defaults to `"vicreg_loss"`.
        **kwargs: `reduction`, `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.VICRegLoss()
    >>> z_a = keras.random.normal((32, 16), seed=1)
    >>> z_b = keras.random.normal((32, 16), seed=2)
    >>> value = loss(z_a, z_b)

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 6;
      facebookresearch/vicreg, main_vicreg.py.
    """

    def __init__(
        self,
        invariance_weight: float = 25.0,
        variance_weight: float = 25.0,
        covariance_weight: float = 1.0,
        gamma: float = 1.0,
        epsilon: float = 1e-4,
        gather: bool = True,
        name: str = "vicreg_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.invariance_weight = check_non_negative(
            "invariance_weight", invariance_weight
        )
        self.variance_weight = check_non_negative(
            "variance_weight", variance_weight
        )
        self.covariance_weight = check_non_negative(
            "covariance_weight", covariance_weight
        )
        self.gamma = check_positive("gamma", gamma)
        self.epsilon = check_positive("epsilon", epsilon)
        self.gather = check_bool("gather", gather)

    term_names = ("invariance", "variance", "covariance")

    def values_and_terms(self, z_a, z_b, with_terms: bool = True):
        terms = vicreg_terms(
            z_a, z_b, self.gamma, self.epsilon, gather=self.gather
        )
        spread = (
            self.variance_weight * terms.variance
            + self.covariance_weight * terms.covariance
        )
        values = self.invariance_weight * terms.invariance + spread
        if not with_terms:
            return values, None
        invariance = terms.invariance  # per local row
        if self.gather:
            invariance = gather_batch(invariance)
        return values, {
            "invariance": tf.reduce_mean(invariance),
            "variance": terms.variance,
            "covariance": terms.covariance,
        }

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "invariance_weight": self.invariance_weight,
                "variance_weight": self.variance_weight,
                "covariance_weight": self.covariance_weight,
                "gamma": self.gamma,
                "epsilon": self.epsilon,
                "gather": self.gather,
            }
        )
        return config
