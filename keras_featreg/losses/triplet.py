"""Triplet loss with batch-hard or semi-hard in-batch mining."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.distances import scaled_pairwise_distances
from keras_featreg.ops.distances import unscale
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import check_finite_loss
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import masked_max
from keras_featreg.ops.pairwise import masked_min
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_non_negative

MINING = ("hard", "semihard")
FALLBACKS = ("closest", "farthest")


def triplet_loss(
    labels,
    embeddings,
    margin: float = 0.2,
    mining: str = "hard",
    squared: bool = False,
    fallback: str = "closest",
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
      *farther* than the positive (`D_an > D_ap`); if no negative is
      farther, `fallback` decides: `"closest"` (the default, the hardest
      negative) or `"farthest"` (the easiest), the rule of FaceNet's
      TensorFlow implementation (`tf.contrib`/TF Addons
      `triplet_semihard_loss`, the SVMax code's `semi_hard_triplet.py`).
      Pairs whose anchor has no negative have no triplet. Memory is
      O(batch_size^3).

    The TensorFlow rule in full is `mining="semihard", squared=True,
    fallback="farthest"` (the SVMax official code and tf.contrib use squared
    distances; TF Addons' `distance_metric="squared-L2"`): it equals
    `triplet_semihard_loss` on every batch where each anchor has a
    negative. (On a single-class batch TensorFlow falls back to a distance
    of 0 and returns `mean(D_ap) + margin`; here the loss is 0.)

    The output spreads the mean over the valid triplets onto the anchors
    (`pair_mean_per_anchor`): `mean(out)` is the mean over valid triplets,
    anchors without one get 0 and a batch without any gives all zeros.

    Scale. The distances are compared (`D_ap - D_an`, and the semi-hard
    order) on a scaled copy and only the difference is scaled back
    (`scaled_pairwise_distances`), so squared distances of huge embeddings
    (beyond ~1e19 in float32, where `D**2` overflows) still give the exact
    loss when it is representable, e.g. 0 for a well-separated batch.

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        margin: Float, the margin `m`.
        mining: String, `"hard"` or `"semihard"`.
        squared: Bool, whether to use squared distances (as FaceNet).
        fallback: String, the semi-hard negative when none is farther than
            the positive: `"closest"` or `"farthest"` (TensorFlow's).

    Returns:
        Tensor of shape `(batch_size,)`.

    Raises:
        ValueError: invalid arguments, or (eagerly; in a graph an
            `InvalidArgumentError` at run time) a loss beyond the dtype's
            range.
    """
    margin, mining, squared, fallback = _check_arguments(
        margin, mining, squared, fallback
    )
    labels, embeddings = as_labeled_batch(labels, embeddings)
    # D = scale * d (D**2 = scale**2 * d when squared); compare d.
    d, scale = scaled_pairwise_distances(embeddings, squared=squared)
    power = 2 if squared else 1
    positive, negative = label_masks(labels)
    margin = tf.cast(margin, d.dtype)
    hardest_negative, has_negative = masked_min(d, negative, axis=1)
    if mining == "hard":
        hardest_positive, has_positive = masked_max(d, positive, axis=1)
        difference = unscale(hardest_positive - hardest_negative, scale, power)
        loss = pair_mean_per_anchor(
            tf.nn.relu(difference + margin),
            tf.logical_and(has_positive, has_negative),
        )
        return check_finite_loss(loss, embeddings)
    # Semi-hard: [a, p, n] candidates are negatives of a beyond D_ap.
    d_ap = d[:, :, None]
    d_an = d[:, None, :]
    farther = tf.logical_and(negative[:, None, :], d_an > d_ap)
    semihard, has_semihard = masked_min(
        tf.broadcast_to(d_an, tf.shape(farther)), farther, axis=2
    )
    if fallback == "farthest":
        fallback_negative, _ = masked_max(d, negative, axis=1)
    else:
        fallback_negative = hardest_negative
    chosen = tf.where(has_semihard, semihard, fallback_negative[:, None])
    difference = unscale(d - chosen, scale, power)
    loss = pair_mean_per_anchor(
        tf.nn.relu(difference + margin),
        tf.logical_and(positive, has_negative[:, None]),
    )
    return check_finite_loss(loss, embeddings)


def triplet_negative_counts(
    labels, embeddings, mining: str = "hard", fallback: str = "closest"
) -> tf.Tensor:
    """Counts of `triplet_loss`'s triplets per (anchor, negative) pair.

    ```python
    counts[a, n] = number of triplets (a, p, n) that triplet_loss mines
    ```

    The negatives `triplet_loss` picks with the same `mining` and
    `fallback`: batch hard, one per anchor that has a positive and a
    negative (its closest negative); semi-hard, one per anchor-positive
    pair. Squaring the distances does not change which negative is picked,
    so there is no `squared` argument. Equal distances go to the lower
    index. The spread-out regularizer (Zhang et al. 2017) reads its
    anchor-negative pairs here (`SpreadOutLoss(negatives="triplet")`).

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        mining: String, `"hard"` or `"semihard"`.
        fallback: String, `"closest"` or `"farthest"` (semi-hard only).

    Returns:
        Float tensor `(batch_size, batch_size)` of counts, without gradient.
    """
    mining = check_choice("mining", mining, MINING)
    fallback = check_choice("fallback", fallback, FALLBACKS)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    d, _ = scaled_pairwise_distances(embeddings)
    d = tf.stop_gradient(d)
    positive, negative = label_masks(labels)
    size = tf.shape(d)[0]
    largest = tf.fill(tf.shape(d), tf.constant(d.dtype.max, d.dtype))
    has_negative = tf.reduce_any(negative, axis=1)
    closest = tf.argmin(tf.where(negative, d, largest), axis=1)
    if mining == "hard":
        valid = tf.logical_and(tf.reduce_any(positive, axis=1), has_negative)
        chosen = tf.one_hot(closest, size, dtype=d.dtype)
        return chosen * tf.cast(valid, d.dtype)[:, None]
    if fallback == "farthest":
        fallback_index = tf.argmax(tf.where(negative, d, -largest), axis=1)
    else:
        fallback_index = closest
    d_an = tf.broadcast_to(d[:, None, :], [size, size, size])
    farther = tf.logical_and(negative[:, None, :], d_an > d[:, :, None])
    semihard = tf.argmin(
        tf.where(
            farther, d_an, tf.broadcast_to(largest[:, None, :], [size] * 3)
        ),
        axis=2,
    )
    chosen = tf.where(
        tf.reduce_any(farther, axis=2), semihard, fallback_index[:, None]
    )
    valid = tf.logical_and(positive, has_negative[:, None])
    chosen = tf.one_hot(chosen, size, dtype=d.dtype)
    return tf.reduce_sum(chosen * tf.cast(valid, d.dtype)[:, :, None], axis=1)


def _check_arguments(margin, mining, squared, fallback):
    return (
        check_non_negative("margin", margin),
        check_choice("mining", mining, MINING),
        check_bool("squared", squared),
        check_choice("fallback", fallback, FALLBACKS),
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

    Conventions. The defaults (batch hard; for `"semihard"`, the closest
    negative as fallback, plain distances) are this library's original
    behaviour, kept so that existing runs do not change. FaceNet's
    TensorFlow implementation, which the SVMax official code uses for its
    semi-hard triplet results, is
    `TripletLoss(mining="semihard", squared=True, fallback="farthest")`:
    squared distances, and the *farthest* negative when no semi-hard one
    exists.
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
        fallback: String, for `mining="semihard"`: the negative used when
            none is farther than the positive, `"closest"` or `"farthest"`
            (TensorFlow's rule). Defaults to `"closest"`.
        name: String, name of the loss. Defaults to `"triplet_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.TripletLoss(margin=0.2, mining="hard")
    >>> value = loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))
    >>> round(float(value), 4)
    0.2

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
        fallback: str = "closest",
        name: str = "triplet_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.margin, self.mining, self.squared, self.fallback = (
            _check_arguments(margin, mining, squared, fallback)
        )

    def call(self, y_true, y_pred):
        return triplet_loss(
            self.exact_labels(y_true),
            y_pred,
            self.margin,
            self.mining,
            self.squared,
            self.fallback,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "mining": self.mining,
                "squared": self.squared,
                "fallback": self.fallback,
            }
        )
        return config
