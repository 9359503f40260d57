"""Which pairs a loss uses: random negatives, next-in-batch partners, pairs.

The selection rules of the papers' code (`keras_featreg.losses`): random
negatives for the spread-out term, one positive and one negative partner
per anchor in batch order (the official contrastive loss's balanced pairs),
and the N-pair batch layout (the first two samples of each class as anchor
and positive).
"""

import keras
import tensorflow as tf

from keras_featreg.ops.pairwise import label_masks


def random_negative_mask(labels, seed=None) -> tf.Tensor:
    """Pairs every anchor with one negative drawn uniformly from the batch.

    Draws iid uniform scores and keeps, per anchor, the highest-scoring
    negative (the argmax of iid scores is uniform over the candidates).

    Args:
        labels: Tensor, class ids of shape `(batch_size,)`.
        seed: `None`, an int, or a `keras.random.SeedGenerator` (a generator
            gives a fresh draw on every call, an int the same draw for the
            same batch size).

    Returns:
        Bool tensor of shape `(batch_size, batch_size)` with at most one
        True per row (none for an anchor without negatives).
    """
    _, negative = label_masks(labels)
    scores = keras.random.uniform(tf.shape(negative), seed=seed)
    scores = tf.where(negative, scores, -tf.ones_like(scores))
    chosen = tf.equal(
        tf.range(tf.shape(negative)[1], dtype=tf.int64)[None, :],
        tf.argmax(scores, axis=1)[:, None],
    )
    has_negative = tf.reduce_any(negative, axis=1, keepdims=True)
    return tf.logical_and(chosen, has_negative)


def next_in_batch_mask(candidates) -> tf.Tensor:
    """One partner per anchor: its first candidate in cyclic batch order.

    ```python
    partner[i] = first j in i + 1, i + 2, ..., b - 1, 0, ..., i - 1
                 with candidates[i, j]
    ```

    Deterministic (no seed): the batch order decides. With the positive
    mask this pairs each sample with the next sample of its class (wrapping
    around within the class); with the negative mask, with the next sample
    of another class.

    Args:
        candidates: Bool tensor of shape `(batch_size, batch_size)`.

    Returns:
        Bool tensor of the same shape with at most one True per row (none
        for an anchor without candidates).
    """
    candidates = tf.convert_to_tensor(candidates)
    size = tf.shape(candidates)[0]
    index = tf.range(size)
    offset = tf.math.floormod(index[None, :] - index[:, None], size)
    offset = tf.where(offset == 0, size, offset)  # the anchor itself last
    score = tf.where(candidates, offset, size + 1)
    chosen = tf.equal(
        index[None, :], tf.argmin(score, axis=1, output_type=tf.int32)[:, None]
    )
    return tf.logical_and(chosen, candidates)


def first_occurrence_pairs(labels):
    """Anchors and positives of a pair batch, by batch order.

    The reference N-pair and angular code receives `(anchors, positives)`:
    one anchor and one positive per class. From a labeled batch, the first
    sample of each class in batch order is its anchor and the second its
    positive: `[a_0, p_0, a_1, p_1, ...]` (P x 2 order) and
    `[a_0, a_1, ..., p_0, p_1, ...]` (the reference's concatenation) both
    work. Later samples of a class are neither.

    Args:
        labels: Tensor, class ids of shape `(batch_size,)`.

    Returns:
        `(is_anchor, partner)`: bool `(batch_size,)`, True for the first
        sample of each class that has a second one; bool
        `(batch_size, batch_size)`, `partner[i, j]` True when `i` is an
        anchor and `j` its positive (the second sample of its class).
        Column `j` of a positive is True in one row, that of its anchor.
    """
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    size = tf.shape(labels)[0]
    index = tf.range(size)
    before = index[None, :] < index[:, None]  # [i, j]: j comes before i
    # rank[i]: how many samples of i's class come before i.
    rank = tf.reduce_sum(tf.cast(tf.logical_and(same, before), tf.int32), 1)
    first, second = tf.equal(rank, 0), tf.equal(rank, 1)
    partner = tf.logical_and(
        tf.logical_and(same, first[:, None]), second[None, :]
    )
    is_anchor = tf.reduce_any(partner, axis=1)
    return is_anchor, partner


N_PAIR_NEGATIVES = ("all", "pair_positives")


def n_pair_masks(labels, negatives: str = "all"):
    """Positive and negative masks of the N-pair and angular losses.

    - `negatives="all"`: every sample is an anchor, every other same-class
      sample a positive, every other-class sample a negative (`label_masks`).
    - `negatives="pair_positives"`: Sohn's N-pair batch, as the reference
      code (`npairs_loss`, the SVMax `ranking/angular.py`): the first sample
      of each class (batch order) is an anchor, the second its positive
      (`first_occurrence_pairs`), and an anchor's negatives are the OTHER
      classes' positives only (N - 1 on a batch of N pairs).

    Returns:
        `(positive, negative)`, bool `(batch_size, batch_size)`.
    """
    positive, negative = label_masks(labels)
    if negatives == "pair_positives":
        is_anchor, positive = first_occurrence_pairs(labels)
        is_positive = tf.reduce_any(positive, axis=0)
        negative = tf.logical_and(
            negative,
            tf.logical_and(is_anchor[:, None], is_positive[None, :]),
        )
    return positive, negative
