"""Invariance plus SVMax: SVMax as the anti-collapse term of a two-view loss."""

import keras
import tensorflow as tf

from keras_featreg.losses.two_view import TwoViewLoss
from keras_featreg.ops import as_view_pair
from keras_featreg.ops import gather_batch
from keras_featreg.ops import l2_normalize
from keras_featreg.ops import svmax_penalty
from keras_featreg.ops.batch import in_replica_context
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_featreg")
class InvarianceSVMaxLoss(TwoViewLoss):
    """Pulls two views together; SVMax keeps the batch from collapsing.

    The SVMax paper's self-supervised recipe (appendix B.3, Eq. 19) in a
    two-view form: an invariance term that alone has the trivial solution
    (every input mapped to one point) plus SVMax as a generic prior against
    it, instead of a problem-specific repulsion term. Called as
    `loss(z_a, z_b)`:

    ```python
    z = l2_normalize(z)                        # normalize=True
    invariance[i] = sum_j (z_a[i, j] - z_b[i, j]) ** 2
    svmax = (P(z_a) + P(z_b)) / 2              # P = ops.svmax_penalty
    loss[i] = invariance_weight * invariance[i] + svmax
    ```

    With `normalize=True` (default) the invariance is the squared distance
    of unit vectors (in [0, 4]) and the bounded SVMax penalty
    `factor * exp((U - s_mu) / (U - L))` lies in [factor, e * factor], so
    the two terms have known ranges; with `normalize=False, bounded=False`
    it is Eq. 19 literally (`- factor * s_mu` on raw embeddings).

    The penalty is `keras_featreg.ops.svmax_penalty`; `terms(z_a, z_b)`
    returns the invariance and the views' mean s_mu (`TwoViewLoss`).

    Distributed training (`gather=True`, the default): inside
    `strategy.run` with several replicas SVMax (s_mu and its bounds) is
    computed on the global batch, gathered with gradient
    (`keras_featreg.ops.gather_batch`), and the invariance on each
    replica's own rows, so the loss and gradients equal a single-device run
    on the global batch. `gather=False` uses each replica's own batch (its
    own b in the bounds): the loss is the mean over replicas of the
    per-replica losses. On one device both are the same.

    Args:
        invariance_weight: Float >= 0. Defaults to `1.0`.
        factor: Float >= 0, SVMax's lambda. Defaults to `1.0`.
        bounded: Bool, bounded (Eq. 4) or unbounded (Eq. 1) SVMax.
            Defaults to `True`.
        normalize: Bool, L2-normalize the embeddings first. Defaults to
            `True`.
        gather: Bool, compute SVMax on the global batch under
            tf.distribute. Defaults to `True`.
        name: String, the loss name. Defaults to `"invariance_svmax_loss"`.
        **kwargs: `reduction`, `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.InvarianceSVMaxLoss(factor=1.0)
    >>> value = loss(keras.random.normal((32, 16), seed=1),
    ...              keras.random.normal((32, 16), seed=2))

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), App. B.3.
    """

    def __init__(
        self,
        invariance_weight: float = 1.0,
        factor: float = 1.0,
        bounded: bool = True,
        normalize: bool = True,
        gather: bool = True,
        name: str = "invariance_svmax_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.invariance_weight = check_non_negative(
            "invariance_weight", invariance_weight
        )
        self.factor = check_non_negative("factor", factor)
        self.bounded = check_bool("bounded", bounded)
        self.normalize = check_bool("normalize", normalize)
        self.gather = check_bool("gather", gather)

    term_names = ("invariance", "svmax_mean_singular_value")

    def values_and_terms(self, z_a, z_b, with_terms: bool = True):
        z_a, z_b = as_view_pair(z_a, z_b, min_batch_size=2)
        if self.normalize:  # once, for both terms
            z_a, z_b = l2_normalize(z_a), l2_normalize(z_b)
        invariance = tf.reduce_sum(tf.square(z_a - z_b), axis=-1)
        views = (z_a, z_b)
        if self.gather:  # the batch statistic of the global batch
            views = gather_batch(views)
        (penalty_a, s_a), (penalty_b, s_b) = (
            svmax_penalty(z, self.factor, self.bounded, normalize=False)
            for z in views
        )
        penalty = tf.cast((penalty_a + penalty_b) / 2.0, invariance.dtype)
        values = self.invariance_weight * invariance + penalty
        if not with_terms:
            return values, None
        if self.gather:
            invariance = gather_batch(invariance)
        terms = {
            "invariance": tf.reduce_mean(invariance),
            "svmax_mean_singular_value": (s_a + s_b) / 2.0,
        }
        if self.normalize and (self.gather or not in_replica_context()):
            # The first view's global s_mu, which TwoViewModel logs.
            terms["mean_singular_value"] = s_a
        return values, terms

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "invariance_weight": self.invariance_weight,
                "factor": self.factor,
                "bounded": self.bounded,
                "normalize": self.normalize,
                "gather": self.gather,
            }
        )
        return config
