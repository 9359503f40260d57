"""Multi-class N-pair loss, generalized to any labeled batch."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import masked_logsumexp
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.ops.pairwise import pairwise_similarities
from keras_featreg.utils.validation import check_non_negative


def n_pair_loss(labels, embeddings, l2_penalty: float = 0.002) -> tf.Tensor:
    """Per-anchor multi-class N-pair loss with an L2 penalty.

    ```python
    pair(a, p) = log(1 + sum_{n: y_n != y_a} exp(a.n - a.p))
    out[i] = share of mean over (a, p) of pair(a, p)   # pair_mean_per_anchor
           + 0.5 * l2_penalty * ||x_i||^2
    ```

    Generalization. Sohn (2016) builds a batch of N pairs of distinct
    classes `{(a_i, p_i)}`; anchor `a_i` has the single positive `p_i` and
    the N - 1 negatives `p_j` (the other pairs' positives only). Here every
    sample is an anchor, every other same-class sample a positive, and every
    different-class sample a negative: on an N-pair batch each anchor sees
    2(N - 1) = batch_size - 2 negatives, as in the SVMax paper's Eq. 7-8
    (`|n| = b - 2`), and the loss is symmetric in anchors and positives.
    `mean(out)` is the mean over all (anchor, positive) pairs plus the
    penalty; a batch without positive pairs gives only the penalty.

    L2 penalty. Sohn regularizes the embedding norms (the loss assumes
    un-normalized embeddings, which it would otherwise grow without bound).
    We follow the reference TensorFlow `npairs_loss` (`reg_lambda=0.002`,
    penalty `0.25 * reg_lambda * (mean ||a||^2 + mean ||p||^2)`): per sample
    `0.5 * l2_penalty * ||x_i||^2`, whose batch mean is the same number on an
    N-pair batch. Set `l2_penalty=0` for L2-normalized embeddings, where it
    is a constant.

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        l2_penalty: Float, the weight `lambda` of the L2 penalty.

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    labels, embeddings = as_labeled_batch(labels, embeddings)
    similarities = pairwise_similarities(embeddings)
    positive, negative = label_masks(labels)
    # log(1 + sum_n exp(s_an - s_ap)) = softplus(logsumexp_n(s_an) - s_ap).
    negative_lse, has_negative = masked_logsumexp(
        similarities, negative, axis=1
    )
    pair = tf.nn.softplus(negative_lse[:, None] - similarities)
    pair = tf.where(has_negative[:, None], pair, tf.zeros_like(pair))
    loss = pair_mean_per_anchor(pair, positive)
    penalty = tf.reduce_sum(tf.square(embeddings), axis=1)
    return loss + tf.cast(0.5 * l2_penalty, loss.dtype) * penalty


@keras.saving.register_keras_serializable(package="keras_featreg")
class NPairLoss(LabelLoss):
    """Multi-class N-pair loss on pairs mined from the batch labels.

    ```python
    pair(a, p) = log(1 + sum_{n: y_n != y_a} exp(a.n - a.p))
    loss = mean over (a, p) of pair(a, p) + 0.5 * l2_penalty * mean ||x||^2
    ```

    Sohn (2016), generalized to any labeled batch: every sample is an
    anchor, every other same-class sample a positive, every different-class
    sample a negative (SVMax paper Eq. 7). On an N-pair batch (two samples
    per class) the penalty equals the reference `npairs_loss` one. See
    `n_pair_loss` for the details.

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, un-normalized in Sohn's setup.

    Args:
        l2_penalty: Float, non-negative weight `lambda` of the L2 penalty on
            the embeddings (Sohn's value). Defaults to `0.002`.
        name: String, name of the loss. Defaults to `"n_pair_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> loss = keras_featreg.losses.NPairLoss()
    >>> loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))

    Reference:
    - [Sohn, 2016](https://papers.nips.cc/paper/6200)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 7
    """

    def __init__(
        self, l2_penalty: float = 0.002, name: str = "n_pair_loss", **kwargs
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.l2_penalty = check_non_negative("l2_penalty", l2_penalty)

    def call(self, y_true, y_pred):
        return n_pair_loss(self.exact_labels(y_true), y_pred, self.l2_penalty)

    def get_config(self) -> dict:
        config = super().get_config()
        config["l2_penalty"] = self.l2_penalty
        return config
