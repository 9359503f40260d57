"""Angular loss (N-pair form) on a labeled batch."""

import math

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.distances import scaled_gram
from keras_featreg.ops.pair_selection import N_PAIR_NEGATIVES
from keras_featreg.ops.pair_selection import n_pair_masks
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import check_finite_loss
from keras_featreg.ops.pairwise import log1p_sum_exp
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_float


def _check_alpha(alpha) -> float:
    alpha = check_float("alpha", alpha, minimum=0.0, allow_equal_minimum=False)
    if alpha >= 90.0:
        raise ValueError(
            f"`alpha` must be an angle in degrees in (0, 90). "
            f"Received: alpha={alpha}"
        )
    return alpha


def angular_loss(
    labels, embeddings, alpha: float = 45.0, negatives: str = "all"
) -> tf.Tensor:
    """Per-anchor angular loss, N-pair form (Wang et al. 2017).

    ```python
    f(a, p, n) = 4 tan^2(alpha) (a + p).n - 2 (1 + tan^2(alpha)) a.p
    pair(a, p) = log(1 + sum_{n: y_n != y_a} exp(f(a, p, n)))
    ```

    As in the SVMax paper's Eq. 9-10 (dot products; the loss does not
    normalize). Every sample is an anchor and every other same-class sample
    a positive, as in `n_pair_loss`; `mean(out)` is the mean over all
    (anchor, positive) pairs (`pair_mean_per_anchor`), anchors without a
    positive get 0 (`negatives="all"`, the default). With
    `negatives="pair_positives"` the pairs and negatives are Sohn's, as the
    official SVMax code (`ranking/angular.py`): per class the first sample
    (batch order) is the anchor and the second its positive, and the
    negatives are the other pairs' positives (`n_pair_masks`); on a batch
    of two samples per class this equals the reference `angular_loss` (its
    softmax cross-entropy with one-hot targets), without its optional L2
    term. Wang et al. also add the N-pair loss (weight 2) to it;
    combine `NPairLoss` and `AngularLoss` in `compile` for that. Memory is
    O(batch_size^3).

    Bounds. For unit embeddings the SVMax paper's Eq. 11 bounds `f` by
    `[-10 tan^2 - 2, 6 tan^2 - 2]`. The lower bound is right, the upper one
    is not: with `c = a.p`, `max_n f = 4 tan^2 sqrt(2 + 2c) - 2 (1 + tan^2) c`,
    which peaks at `4 tan^4 / (1 + tan^2) + 2 (1 + tan^2)` (6, not 4, at 45
    degrees: `a.p = -1/2`, `n` along `a + p`).

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        alpha: Float, the angle bound in degrees, in (0, 90).
        negatives: String, `"all"` or `"pair_positives"` (see
            `n_pair_loss`).

    Returns:
        Tensor of shape `(batch_size,)`.

    Raises:
        ValueError: an invalid `alpha`, or (eagerly; in a graph an
            `InvalidArgumentError` at run time) a loss beyond the dtype's
            range (un-normalized float32 embeddings of norm ~1e19 and more,
            unless every `f` is hugely negative).
    """
    alpha = _check_alpha(alpha)
    check_choice("negatives", negatives, N_PAIR_NEGATIVES)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    # Dot products s = scale**2 * g, kept as g: f stays finite on huge
    # embeddings until the loss itself overflows.
    g, scale = scaled_gram(embeddings)
    positive, negative = n_pair_masks(labels, negatives)
    tan_sq = math.tan(math.radians(alpha)) ** 2
    # f[a, p, n] = 4 tan^2 (s_an + s_pn) - 2 (1 + tan^2) s_ap.
    f = 4.0 * tan_sq * (g[:, None, :] + g[None, :, :]) - (
        2.0 * (1.0 + tan_sq) * g[:, :, None]
    )
    pair = log1p_sum_exp(f, negative[:, None, :], axis=2, scale=scale)
    return check_finite_loss(pair_mean_per_anchor(pair, positive), embeddings)


@keras.saving.register_keras_serializable(package="keras_featreg")
class AngularLoss(LabelLoss):
    """Angular loss on pairs mined from the batch labels.

    ```python
    f(a, p, n) = 4 tan^2(alpha) (a + p).n - 2 (1 + tan^2(alpha)) a.p
    loss = mean over (a, p) of log(1 + sum_{n: y_n != y_a} exp(f(a, p, n)))
    ```

    Wang et al. (2017), N-pair form; SVMax paper appendix Eq. 9-10. The
    bounds there assume L2-normalized embeddings. See `angular_loss`.

    Conventions. The default, `negatives="all"`, keeps this library's
    original behaviour (every sample an anchor, every other-class sample a
    negative). The official code behind the paper's tables
    (`ranking/angular.py`) uses Sohn's N-pair batch:
    `AngularLoss(negatives="pair_positives")`, on batches of two samples
    per class (first of each class the anchor, second the positive, the
    other pairs' positives the negatives).

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, typically L2-normalized.

    Args:
        alpha: Float, the angle bound in degrees, in (0, 90) (the SVMax paper
            uses 45, where tan(alpha) = 1). Defaults to `45.0`.
        negatives: String, `"all"` or `"pair_positives"` (see above).
            Defaults to `"all"`.
        name: String, name of the loss. Defaults to `"angular_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.AngularLoss(alpha=45.0)
    >>> value = loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))
    >>> round(float(value), 4)
    1.0986

    Reference:
    - [Wang et al., 2017](https://arxiv.org/abs/1708.01682)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 9-10
    """

    def __init__(
        self,
        alpha: float = 45.0,
        negatives: str = "all",
        name: str = "angular_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha = _check_alpha(alpha)
        self.negatives = check_choice("negatives", negatives, N_PAIR_NEGATIVES)

    def call(self, y_true, y_pred):
        return angular_loss(
            self.exact_labels(y_true), y_pred, self.alpha, self.negatives
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config["alpha"] = self.alpha
        config["negatives"] = self.negatives
        return config
