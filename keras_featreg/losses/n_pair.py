"""Multi-class N-pair loss, generalized to any labeled batch."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.distances import scaled_gram
from keras_featreg.ops.distances import unscale
from keras_featreg.ops.pair_selection import N_PAIR_NEGATIVES
from keras_featreg.ops.pair_selection import n_pair_masks
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import check_finite_loss
from keras_featreg.ops.pairwise import masked_max
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_non_negative


def n_pair_loss(
    labels, embeddings, l2_penalty: float = 0.002, negatives: str = "all"
) -> tf.Tensor:
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
    penalty; a batch without positive pairs gives only the penalty. This is
    `negatives="all"`, the default (the original behaviour of this
    library, and the paper's Eq. 7-8 as written).

    Sohn's convention, `negatives="pair_positives"`: as the reference code
    (tf.contrib `npairs_loss`, the SVMax `ranking/npair.py`), which takes
    the anchors and the positives as two tensors. The first sample of each
    class in batch order is its anchor, the second its positive
    (`[a_0, p_0, a_1, p_1, ...]` or `[a_0, a_1, ..., p_0, p_1, ...]`); an
    anchor's negatives are the other pairs' positives (N - 1), and
    `mean(out)` is the mean over the anchors: on a batch of N pairs of
    distinct classes this equals `npairs_loss(labels, anchors, positives)`
    (its softmax cross-entropy with one-hot targets is `pair(a_i, p_i)`).
    A third or later sample of a class takes no part in the pair terms (it
    still gets the L2 penalty).

    L2 penalty. Sohn regularizes the embedding norms (the loss assumes
    un-normalized embeddings, which it would otherwise grow without bound).
    We follow the reference TensorFlow `npairs_loss` (`reg_lambda=0.002`,
    penalty `0.25 * reg_lambda * (mean ||a||^2 + mean ||p||^2)`): per sample
    `0.5 * l2_penalty * ||x_i||^2`, whose batch mean is the same number on an
    N-pair batch. Set `l2_penalty=0` for L2-normalized embeddings, where it
    is a constant.

    Scale. The dot products `s = x x^T` are kept as `g = s / scale**2`
    (`scaled_gram`): every difference is taken on `g` and only then scaled
    back, so un-normalized embeddings whose dot products overflow (norms
    beyond ~1e19 in float32) still give the exact loss and gradient when
    the loss is representable (e.g. well-separated classes, whose pair
    terms vanish, plus the penalty).

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        l2_penalty: Float, the non-negative weight `lambda` of the L2
            penalty.
        negatives: String, `"all"` (every other-class sample) or
            `"pair_positives"` (the other pairs' positives, as Sohn and the
            reference code).

    Returns:
        Tensor of shape `(batch_size,)`.

    Raises:
        ValueError: a negative or non-finite `l2_penalty`, or (eagerly; in
            a graph an `InvalidArgumentError` at run time) a loss beyond
            the dtype's range.
    """
    l2_penalty = check_non_negative("l2_penalty", l2_penalty)
    check_choice("negatives", negatives, N_PAIR_NEGATIVES)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    g, scale = scaled_gram(embeddings)  # s = scale**2 * g
    positive, negative = n_pair_masks(labels, negatives)
    # pair(a, p) = log(1 + sum_n exp(s_an - s_ap))
    #            = softplus(logsumexp_n(s_an - m_a) + (m_a - s_ap)),
    # with m_a the largest s_an: both terms stay finite when s does not.
    largest, has_negative = masked_max(g, negative, axis=1)
    shift = tf.stop_gradient(largest[:, None])
    below = tf.where(negative, g - shift, tf.zeros_like(g))  # <= 0
    exps = tf.where(
        negative, tf.exp(unscale(below, scale, 2)), tf.zeros_like(g)
    )
    total = tf.reduce_sum(exps, axis=1, keepdims=True)
    has_negative = has_negative[:, None]
    log_total = tf.math.log(tf.where(has_negative, total, tf.ones_like(total)))
    valid = tf.logical_and(positive, has_negative)
    logits = unscale(tf.where(valid, shift - g, tf.zeros_like(g)), scale, 2)
    pair = tf.where(
        valid, tf.nn.softplus(logits + log_total), tf.zeros_like(logits)
    )
    loss = pair_mean_per_anchor(pair, positive)
    # 0.5 * l2_penalty * ||x_i||^2, the factor applied before the scale.
    penalty = unscale(0.5 * l2_penalty * tf.linalg.diag_part(g), scale, 2)
    return check_finite_loss(loss + penalty, embeddings)


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

    Conventions. The default, `negatives="all"`, keeps this library's
    original behaviour (every other-class sample is a negative: `b - 2` on
    an N-pair batch, the paper's Eq. 7-8 as written). Sohn (2016) and the
    official code behind the paper's tables use
    `NPairLoss(negatives="pair_positives")`: on a batch of two samples per
    class, the first of each class (batch order) is the anchor, the second
    the positive, and the negatives are the other pairs' positives only;
    it then equals the reference `npairs_loss`.

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, un-normalized in Sohn's setup.

    Args:
        l2_penalty: Float, non-negative weight `lambda` of the L2 penalty on
            the embeddings (Sohn's value). Defaults to `0.002`.
        negatives: String, `"all"` or `"pair_positives"` (see above).
            Defaults to `"all"`.
        name: String, name of the loss. Defaults to `"n_pair_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.NPairLoss()
    >>> value = loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))
    >>> round(float(value), 4)
    1.0996

    Reference:
    - [Sohn, 2016](https://papers.nips.cc/paper/6200)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 7
    """

    def __init__(
        self,
        l2_penalty: float = 0.002,
        negatives: str = "all",
        name: str = "n_pair_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.l2_penalty = check_non_negative("l2_penalty", l2_penalty)
        self.negatives = check_choice("negatives", negatives, N_PAIR_NEGATIVES)

    def call(self, y_true, y_pred):
        return n_pair_loss(
            self.exact_labels(y_true), y_pred, self.l2_penalty, self.negatives
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["l2_penalty"] = self.l2_penalty
        config["negatives"] = self.negatives
        return config
