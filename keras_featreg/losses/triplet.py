"""Triplet loss with batch-hard or semi-hard in-batch mining."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import masked_max
from keras_featreg.ops.pairwise import masked_min
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.ops.pairwise import pairwise_distances
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_non_negative

MINING = ("hard", "semihard")


def triplet_loss(
    labels,
    embeddings,
    margin: float = 0.2,
    mining: str = "hard",
    squared: bool = False,
) -> tf.Tensor:
    """Per-anchor triplet loss with in-batch mining.

    ```python
    triplet(a, p, n) = relu(D_ap - D_an + margin)
    ```

    `D` is the Euclidean distance (its square with `squared=True`).

    - `mining="hard"` (batch hard, Hermans et al. 2017): one triplet per
      anchor, its farthest positive and its closest negative. Anchors
      without a positive or without a negative have no triplet.
    - `mining="semihard"` (Schroff et al. 2015): one triplet per
      anchor-positive pair `(a, p)`, whose negative is the closest one
      *farther* than the positive (`D_an > D_ap`); if no negative is farther,
      the closest negative (the hardest). Pairs whose anchor has no
      negative have no triplet. (TensorFlow Addons' `TripletSemiHardLoss`
      falls back to the *farthest* negative instead; we follow the
      "hardest negative" rule of the issue. Memory is O(batch_size^3).)

    The output spreads the mean over the valid triplets onto the anchors
    (`pair_mean_per_anchor`): `mean(out)` is the mean over valid triplets,
    anchors without one get 0 and a batch without any gives all zeros.

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        margin: Float, the margin `m`.
        mining: String, `"hard"` or `"semihard"`.
        squared: Bool, whether to use squared distances (as FaceNet).

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    check_choice("mining", mining, MINING)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    distances = pairwise_distances(embeddings, squared=squared)
    positive, negative = label_masks(labels)
    margin = tf.cast(margin, distances.dtype)
    hardest_negative, has_negative = masked_min(distances, negative, axis=1)
    if mining == "hard":
        hardest_positive, has_positive = masked_max(distances, positive, axis=1)
        loss = tf.nn.relu(hardest_positive - hardest_negative + margin)
        return pair_mean_per_anchor(
            loss, tf.logical_and(has_positive, has_negative)
        )
    # Semi-hard: [a, p, n] candidates are negatives of a beyond D_ap.
    d_ap = distances[:, :, None]
    d_an = distances[:, None, :]
    farther = tf.logical_and(negative[:, None, :], d_an > d_ap)
    semihard, has_semihard = masked_min(
        tf.broadcast_to(d_an, tf.shape(farther)), farther, axis=2
    )
    chosen = tf.where(has_semihard, semihard, hardest_negative[:, None])
    loss = tf.nn.relu(distances - chosen + margin)
    return pair_mean_per_anchor(
        loss, tf.logical_and(positive, has_negative[:, None])
    )


@keras.saving.register_keras_serializable(package="keras_featreg")
class TripletLoss(LabelLoss):
    """Triplet loss on triplets mined from the batch labels.

    ```python
    triplet(a, p, n) = relu(D_ap - D_an + margin)
    ```

    SVMax paper Eq. 5, Euclidean `D`. By default batch-hard mining
    (Hermans et al. 2017: per anchor, the farthest positive and the closest
    negative); `mining="semihard"` uses FaceNet's semi-hard negatives
    (Schroff et al. 2015: per anchor-positive pair, the closest negative
    farther than the positive, else the closest negative). The default
    reduction gives the mean over the valid triplets; see `triplet_loss`.
    Use P x K batches (P classes, K >= 2 samples each) so that every anchor
    has a positive.

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, typically L2-normalized.

    Args:
        margin: Float, non-negative margin `m`. Defaults to `0.2`.
        mining: String, `"hard"` (batch hard) or `"semihard"`. Defaults to
            `"hard"`.
        squared: Bool, whether to use squared Euclidean distances (as
            FaceNet; Hermans et al. found plain distances more stable).
            Defaults to `False`.
        name: String, name of the loss. Defaults to `"triplet_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> loss = keras_featreg.losses.TripletLoss(margin=0.2, mining="hard")
    >>> loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))

    Reference:
    - [Hermans et al., 2017](https://arxiv.org/abs/1703.07737)
    - [Schroff et al., 2015](https://arxiv.org/abs/1503.03832)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 5
    """

    def __init__(
        self,
        margin: float = 0.2,
        mining: str = "hard",
        squared: bool = False,
        name: str = "triplet_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = check_non_negative("margin", margin)
        self.mining = check_choice("mining", mining, MINING)
        self.squared = check_bool("squared", squared)

    def call(self, y_true, y_pred):
        return triplet_loss(
            self.exact_labels(y_true),
            y_pred,
            self.margin,
            self.mining,
            self.squared,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "mining": self.mining,
                "squared": self.squared,
            }
        )
        return config
