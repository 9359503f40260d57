"""Angular loss (N-pair form) on a labeled batch."""

import math

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import log1p_sum_exp
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.ops.pairwise import pairwise_similarities
from keras_featreg.utils.validation import check_float


def _check_alpha(alpha) -> float:
    alpha = check_float("alpha", alpha, minimum=0.0, allow_equal_minimum=False)
    if alpha >= 90.0:
        raise ValueError(
            f"`alpha` must be an angle in degrees in (0, 90). "
            f"Received: alpha={alpha}"
        )
    return alpha


def angular_loss(labels, embeddings, alpha: float = 45.0) -> tf.Tensor:
    """Per-anchor angular loss, N-pair form (Wang et al. 2017).

    ```python
    f(a, p, n) = 4 tan^2(alpha) (a + p).n - 2 (1 + tan^2(alpha)) a.p
    pair(a, p) = log(1 + sum_{n: y_n != y_a} exp(f(a, p, n)))
    ```

    As in the SVMax paper's Eq. 9-10 (dot products; the loss does not
    normalize). Every sample is an anchor and every other same-class sample
    a positive, as in `n_pair_loss`; `mean(out)` is the mean over all
    (anchor, positive) pairs (`pair_mean_per_anchor`), anchors without a
    positive get 0. Wang et al. also add the N-pair loss (weight 2) to it;
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

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    alpha = _check_alpha(alpha)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    s = pairwise_similarities(embeddings)
    positive, negative = label_masks(labels)
    tan_sq = math.tan(math.radians(alpha)) ** 2
    # f[a, p, n] = 4 tan^2 (s_an + s_pn) - 2 (1 + tan^2) s_ap.
    f = 4.0 * tan_sq * (s[:, None, :] + s[None, :, :]) - (
        2.0 * (1.0 + tan_sq) * s[:, :, None]
    )
    pair = log1p_sum_exp(f, negative[:, None, :], axis=2)
    return pair_mean_per_anchor(pair, positive)


@keras.saving.register_keras_serializable(package="keras_featreg")
class AngularLoss(LabelLoss):
    """Angular loss on pairs mined from the batch labels.

    ```python
    f(a, p, n) = 4 tan^2(alpha) (a + p).n - 2 (1 + tan^2(alpha)) a.p
    loss = mean over (a, p) of log(1 + sum_{n: y_n != y_a} exp(f(a, p, n)))
    ```

    Wang et al. (2017), N-pair form; SVMax paper appendix Eq. 9-10. The
    bounds there assume L2-normalized embeddings. See `angular_loss`.

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, typically L2-normalized.

    Args:
        alpha: Float, the angle bound in degrees, in (0, 90) (the SVMax paper
            uses 45, where tan(alpha) = 1). Defaults to `45.0`.
        name: String, name of the loss. Defaults to `"angular_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> loss = keras_featreg.losses.AngularLoss(alpha=45.0)
    >>> loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))

    Reference:
    - [Wang et al., 2017](https://arxiv.org/abs/1708.01682)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 9-10
    """

    def __init__(
        self, alpha: float = 45.0, name: str = "angular_loss", **kwargs
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.alpha = _check_alpha(alpha)

    def call(self, y_true, y_pred):
        return angular_loss(self.exact_labels(y_true), y_pred, self.alpha)

    def get_config(self) -> dict:
        config = super().get_config()
        config["alpha"] = self.alpha
        return config
