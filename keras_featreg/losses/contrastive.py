"""Contrastive loss over all pairs of a labeled batch."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.ops.pairwise import pairwise_distances
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_non_negative


def contrastive_loss(
    labels, embeddings, margin: float = 1.0, squared: bool = False
) -> tf.Tensor:
    """Per-anchor contrastive loss over every pair of the batch.

    ```python
    pair(x, y) = delta_xy * D_xy + (1 - delta_xy) * relu(margin - D_xy)
    pair(x, y) = delta_xy * D_xy**2 + (1 - delta_xy) * relu(margin - D_xy)**2
                                                          # squared=True
    out[i] = mean over j != i of pair(i, j)
    ```

    `D` is the Euclidean distance and `delta_xy` is 1 for a same-class pair.
    `mean(out)` is the mean over all pairs of the batch (every anchor has the
    same `batch_size - 1` partners). A batch of one row gives 0.

    Variants: the default follows the SVMax paper (Eq. 6/17), which writes
    `D`; Hadsell et al. (2006) square both terms (and halve them, a constant
    factor we drop): `squared=True`.

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`, typically
            L2-normalized (the loss does not normalize).
        margin: Float, the margin `m` negatives are pushed beyond.
        squared: Bool, whether to square both terms (Hadsell et al.).

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    labels, embeddings = as_labeled_batch(labels, embeddings)
    distances = pairwise_distances(embeddings)
    positive, negative = label_masks(labels)
    push = tf.nn.relu(tf.cast(margin, distances.dtype) - distances)
    pull = distances
    if squared:
        pull, push = tf.square(pull), tf.square(push)
    pair = tf.where(positive, pull, push)
    return pair_mean_per_anchor(pair, tf.logical_or(positive, negative))


@keras.saving.register_keras_serializable(package="keras_featreg")
class ContrastiveLoss(LabelLoss):
    """Contrastive loss on all pairs mined from the batch labels.

    ```python
    pair(x, y) = delta_xy * D_xy + (1 - delta_xy) * relu(margin - D_xy)
    ```

    Over every pair of the batch, with Euclidean distance `D` and
    `delta_xy = 1` for same-class pairs (SVMax paper, Eq. 6/17). Each sample
    gets the mean over its `batch_size - 1` pairs, so the default reduction
    gives the mean over all pairs. `squared=True` squares both terms as in
    Hadsell et al. (2006). See `contrastive_loss`.

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
        name: String, name of the loss. Defaults to `"contrastive_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

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
        name: str = "contrastive_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = check_non_negative("margin", margin)
        self.squared = check_bool("squared", squared)

    def call(self, y_true, y_pred):
        return contrastive_loss(
            self.exact_labels(y_true), y_pred, self.margin, self.squared
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"margin": self.margin, "squared": self.squared})
        return config
