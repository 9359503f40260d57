"""Contrastive loss over all pairs, or balanced pairs, of a labeled batch."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.distances import pairwise_distances
from keras_featreg.ops.pair_selection import next_in_batch_mask
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import check_finite_loss
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_non_negative

PAIRS = ("all", "balanced")


def contrastive_loss(
    labels,
    embeddings,
    margin: float = 1.0,
    squared: bool = False,
    pairs: str = "all",
) -> tf.Tensor:
    """Per-anchor contrastive loss over every pair, or balanced pairs.

    ```python
    pair(x, y) = delta_xy * D_xy + (1 - delta_xy) * relu(margin - D_xy)
    pair(x, y) = delta_xy * D_xy**2 + (1 - delta_xy) * relu(margin - D_xy)**2
                                                          # squared=True
    out[i] = mean over the partners j of i of pair(i, j)
    ```

    `D` is the Euclidean distance and `delta_xy` is 1 for a same-class pair.

    Pairs. `pairs="all"` (the default): every `j != i` is a partner, and
    `mean(out)` is the mean over all `b(b - 1)` pairs of the batch (every
    anchor has the same `batch_size - 1` partners); on a P x K batch only
    `(K - 1) / (b - 1)` of them are positive (2 % at 36 x 4).
    `pairs="balanced"`: each anchor gets one positive and one negative
    partner, the first same-class and the first other-class sample after it
    in cyclic batch order (`next_in_batch_mask`: deterministic, no seed),
    so half the pairs are positive, as in the SVMax paper's setup (b = 144
    "divided into 72 positive and 72 negative pairs") and its official code
    (`ranking/contrastive.py`, fed fixed half-positive pairs). `mean(out)`
    is then the mean over these `2b` pairs (an anchor alone in its class
    has only its negative pair, one of a single-class batch only its
    positive). With `squared=True` this is the official `contrastive_loss`
    on those pairs, up to its `D = sqrt(|a - p|^2 + 1e-5)` (the `1e-5`
    moves the loss by less than 1e-5 for unit embeddings).
    A batch of one row gives 0.

    Variants: the default follows the SVMax paper (Eq. 6/17), which writes
    `D`; Hadsell et al. (2006) square both terms (and halve them, a constant
    factor we drop): `squared=True`.

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`, typically
            L2-normalized (the loss does not normalize).
        margin: Float, the margin `m` negatives are pushed beyond.
        squared: Bool, whether to square both terms (Hadsell et al.).
        pairs: String, `"all"` or `"balanced"` (see above).

    Returns:
        Tensor of shape `(batch_size,)`.

    Raises:
        ValueError: invalid arguments (`margin` negative or not finite,
            `pairs` unknown), or (eagerly; in a graph an
            `InvalidArgumentError` at run time) a loss beyond the dtype's
            range, e.g. squared distances of float32 rows beyond ~1e19.
    """
    margin, squared, pairs = _check_arguments(margin, squared, pairs)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    distances = pairwise_distances(embeddings)
    positive, negative = label_masks(labels)
    if pairs == "balanced":
        positive = next_in_batch_mask(positive)
        negative = next_in_batch_mask(negative)
    push = tf.nn.relu(tf.cast(margin, distances.dtype) - distances)
    pull = distances
    if squared:
        pull, push = tf.square(pull), tf.square(push)
    pair = tf.where(positive, pull, push)
    loss = pair_mean_per_anchor(pair, tf.logical_or(positive, negative))
    return check_finite_loss(loss, embeddings)


def _check_arguments(margin, squared, pairs):
    return (
        check_non_negative("margin", margin),
        check_bool("squared", squared),
        check_choice("pairs", pairs, PAIRS),
    )


@keras.saving.register_keras_serializable(package="keras_featreg")
class ContrastiveLoss(LabelLoss):
    """Contrastive loss on all pairs, or balanced pairs, of the batch.

    ```python
    pair(x, y) = delta_xy * D_xy + (1 - delta_xy) * relu(margin - D_xy)
    ```

    Over every pair of the batch, with Euclidean distance `D` and
    `delta_xy = 1` for same-class pairs (SVMax paper, Eq. 6/17). Each sample
    gets the mean over its `batch_size - 1` pairs, so the default reduction
    gives the mean over all pairs. `squared=True` squares both terms as in
    Hadsell et al. (2006). See `contrastive_loss`.

    Conventions. The defaults (`pairs="all"`, `squared=False`) are this
    library's original behaviour, kept as the default so that existing
    training runs and saved configs do not change; they follow the SVMax
    paper's Eq. 6 as written (unsquared `D`) over every pair of the batch.
    The paper's experiments and official code use
    `ContrastiveLoss(pairs="balanced", squared=True)`: half positive pairs
    and Hadsell's squared terms, mean over the pairs.

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, typically L2-normalized
    (e.g. by a final `keras.layers.UnitNormalization`); the loss does not
    normalize them.

    Args:
        margin: Float, non-negative margin `m` (the SVMax paper uses 1 with
            unit embeddings, where distances are at most 2). Defaults to
            `1.0`.
        squared: Bool, whether to square both terms (Hadsell et al.).
            Defaults to `False`.
        pairs: String, `"all"` (every pair of the batch) or `"balanced"`
            (per anchor, the next same-class and the next other-class
            sample in cyclic batch order: half the pairs positive, as the
            official code). Defaults to `"all"`.
        name: String, name of the loss. Defaults to `"contrastive_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> model = keras.Sequential(
    ...     [keras.layers.Dense(16), keras.layers.UnitNormalization()]
    ... )
    >>> model.compile(
    ...     optimizer="sgd", loss=keras_featreg.losses.ContrastiveLoss()
    ... )

    Reference:
    - [Hadsell et al., 2006](https://doi.org/10.1109/CVPR.2006.100)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 6 and 17
    """

    def __init__(
        self,
        margin: float = 1.0,
        squared: bool = False,
        pairs: str = "all",
        name: str = "contrastive_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.margin, self.squared, self.pairs = _check_arguments(
            margin, squared, pairs
        )

    def call(self, y_true, y_pred):
        return contrastive_loss(
            self.exact_labels(y_true),
            y_pred,
            self.margin,
            self.squared,
            self.pairs,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "squared": self.squared,
                "pairs": self.pairs,
            }
        )
        return config
