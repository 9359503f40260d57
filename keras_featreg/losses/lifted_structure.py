"""Lifted structured loss (Oh Song et al. 2016) on a labeled batch."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.distances import pairwise_distances
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import check_finite_loss
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import masked_logsumexp
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.utils.validation import check_non_negative


def lifted_structure_loss(labels, embeddings, margin: float = 1.0) -> tf.Tensor:
    """Per-anchor share of the lifted structured loss.

    ```python
    J_ij = log(sum_{k in N_i} exp(m - D_ik) + sum_{l in N_j} exp(m - D_jl))
           + D_ij                                   # (i, j) a positive pair
    J = 1 / (2 |P|) * sum_{(i, j) in P} relu(J_ij)^2
    ```

    Eq. 4 of Oh Song et al. (2016) with Euclidean `D`; `N_i` are the
    negatives of `i`. The batch value `J` is distributed over the anchors
    (`pair_mean_per_anchor` of `relu(J_ij)^2 / 2` over ordered positive
    pairs): `out[i]` collects the terms of the pairs anchored at `i`, and
    `mean(out)` equals `J` exactly (`J_ij` is symmetric, so ordered and
    unordered pairs give the same mean). Pairs without negatives in the batch
    (a single-class batch) and anchors without a positive contribute 0. The
    log-sum-exp is evaluated stably (no overflow for large `m - D`).

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        margin: Float, the margin `m` (`alpha` in the paper).

    Returns:
        Tensor of shape `(batch_size,)`.

    Raises:
        ValueError: a negative or non-finite `margin`, or (eagerly; in a
            graph an `InvalidArgumentError` at run time) a loss beyond the
            dtype's range (`J_ij` beyond ~1e19 in float32).
    """
    margin = check_non_negative("margin", margin)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    distances = pairwise_distances(embeddings)
    positive, negative = label_masks(labels)
    lse, has_negative = masked_logsumexp(
        tf.cast(margin, distances.dtype) - distances, negative, axis=1
    )
    # log(exp(lse_i) + exp(lse_j)), stably.
    lse_i, lse_j = lse[:, None], lse[None, :]
    shift = tf.stop_gradient(tf.maximum(lse_i, lse_j))
    j = (
        shift
        + tf.math.log(tf.exp(lse_i - shift) + tf.exp(lse_j - shift))
        + distances
    )
    pair = 0.5 * tf.square(tf.nn.relu(j))
    loss = pair_mean_per_anchor(
        pair, tf.logical_and(positive, has_negative[:, None])
    )
    return check_finite_loss(loss, embeddings)


@keras.saving.register_keras_serializable(package="keras_featreg")
class LiftedStructureLoss(LabelLoss):
    """Lifted structured loss on the pairs mined from the batch labels.

    ```python
    J_ij = log(sum_{k in N_i} exp(m - D_ik) + sum_{l in N_j} exp(m - D_jl))
           + D_ij
    J = 1 / (2 |P|) * sum_{(i, j) in P} relu(J_ij)^2
    ```

    Oh Song et al. (2016), Eq. 4, Euclidean `D`, every positive pair of the
    batch against all its negatives. The per-sample output distributes `J`
    over the anchors, so the default reduction returns `J`; see
    `lifted_structure_loss`.

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`.

    Args:
        margin: Float, non-negative margin `m`. Defaults to `1.0`.
        name: String, name of the loss. Defaults to
            `"lifted_structure_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.LiftedStructureLoss(margin=1.0)
    >>> value = loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))
    >>> round(float(value), 4)
    2.8472

    Reference:
    - [Oh Song et al., 2016](https://arxiv.org/abs/1511.06452)
    """

    def __init__(
        self,
        margin: float = 1.0,
        name: str = "lifted_structure_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = check_non_negative("margin", margin)

    def call(self, y_true, y_pred):
        return lifted_structure_loss(
            self.exact_labels(y_true), y_pred, self.margin
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["margin"] = self.margin
        return config
