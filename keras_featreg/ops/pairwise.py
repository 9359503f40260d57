"""Pairwise distances, similarities and label masks: the metric losses' maths.

Every metric-learning loss in `keras_featreg.losses` mines its pairs and
triplets inside the batch from the labels. The shared pieces live here:

- `as_labels`, `as_labeled_batch`: validate labels against the embedding
  batch (shape, batch size, exact integer ids) and the embeddings.
- `label_masks`: `positive[i, j]` (same label, `i != j`) and
  `negative[i, j]` (different labels), both `(batch_size, batch_size)` bool.
- `pairwise_distances`, `pairwise_similarities` (and their scale-safe
  forms): in `keras_featreg.ops.distances`, also importable from here.
- `check_finite_loss`: the losses' last step, a clear error (never NaN or
  Inf) when the loss itself is beyond the dtype's range.
- `masked_max`, `masked_min`, `masked_logsumexp`, `log1p_sum_exp`:
  reductions over the mined entries only, finite (0) with zero gradient on
  rows that have none.
- `pair_mean_per_anchor`: turns pair (or anchor) values into per-anchor
  values whose batch mean is the mean over the valid pairs; this is how the
  losses return `(batch_size,)` for Keras' reduction and `sample_weight`.
- `random_negative_mask`: one random negative per anchor (seeded).
- `next_in_batch_mask`: one partner per anchor, deterministic: the first
  candidate after the anchor in cyclic batch order.
- `first_occurrence_pairs`: splits a batch of pairs (two samples per class)
  into anchors and positives by batch order, as the reference N-pair code
  lays them out; `n_pair_masks` gives the N-pair and angular losses'
  positives and negatives under either convention.

Scale. The losses compute their distances and dot products with
`keras_featreg.ops.distances`, exact at any scale, and end with
`check_finite_loss`: un-normalized embeddings give the exact loss and
gradient whenever the loss is representable, and a clear error otherwise
(issue 13.1).
"""

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix

# The distances moved to `keras_featreg.ops.distances`; re-exported here,
# their former home.
from keras_featreg.ops.distances import pairwise_distances as pairwise_distances
from keras_featreg.ops.distances import (
    pairwise_similarities as pairwise_similarities,
)
from keras_featreg.ops.distances import safe_sqrt as safe_sqrt
from keras_featreg.ops.distances import unscale
from keras_featreg.ops.normalize import l2_normalize as l2_normalize

_FLOAT_MANTISSA_BITS = {
    tf.float16: 11,
    tf.bfloat16: 8,
    tf.float32: 24,
    tf.float64: 53,
}


def as_labels(labels, batch_size=None, name: str = "labels") -> tf.Tensor:
    """Validates integer class labels and flattens them to `(batch_size,)`.

    Labels may be integer tensors, or floating-point tensors holding integer
    values (`keras.losses.Loss.__call__` casts `y_true` to the loss dtype,
    float32 by default). Labels are compared in their own dtype, never cast,
    so integer labels of any size are exact. Floating-point labels must be
    integers of magnitude at most 2**p (p: the mantissa bits: 2**24 = 16777216
    for float32), beyond which distinct ids may have merged in the cast.

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)` or
            `(batch_size, 1)`.
        batch_size: Int or `None`, the embeddings' static batch size to match.
        name: String, the argument name used in error messages.

    Returns:
        A rank-1 tensor of the same dtype.

    Raises:
        TypeError: `labels` is neither integer nor floating point.
        ValueError: wrong rank/shape, a static length other than
            `batch_size`, or (eagerly) floating-point labels that are not
            finite integers within the exact range.
    """
    labels = tf.convert_to_tensor(labels)
    dtype = labels.dtype
    if not (dtype.is_integer or dtype.is_floating):
        raise TypeError(
            f"`{name}` must hold integer class ids (an integer or "
            f"floating-point tensor). Received: {name}.dtype={dtype.name}"
        )
    shape = labels.shape
    if shape.rank == 2 and shape[1] == 1:
        labels = tf.reshape(labels, [-1])
    elif shape.rank != 1:
        raise ValueError(
            f"`{name}` must have shape (batch_size,) or (batch_size, 1). "
            f"Received: {name}.shape={shape}"
        )
    length = labels.shape[0]
    if batch_size is not None and length is not None and length != batch_size:
        raise ValueError(
            f"`{name}` must have one entry per embedding row "
            f"({batch_size} rows). Received: {name}.shape={shape}"
        )
    if dtype.is_floating and tf.executing_eagerly():
        values = labels.numpy().astype("float64")
        limit = 2.0 ** _FLOAT_MANTISSA_BITS.get(dtype, 24)
        bad = ~(abs(values) <= limit) | (values != values.round())
        if bad.any():
            raise ValueError(
                f"`{name}` must be finite integers of magnitude <= {limit:.0f} "
                f"when given as {dtype.name} (larger ids are not exact in "
                f"{dtype.name}: pass integer labels to the functions, or use "
                f"a float64 loss dtype). "
                f"Received: {name}={values[bad][0].item()!r}"
            )
    return labels


def as_labeled_batch(labels, embeddings, name: str = "embeddings"):
    """Validates a `(labels, embeddings)` batch for the metric losses.

    `embeddings` goes through `as_matrix` (rank >= 2, no NaN/Inf, half
    precision cast to float32, flattened to `(batch_size, dim)`); `labels`
    through `as_labels`, against the embeddings' batch size. When either
    batch size is only known at run time, a graph assertion compares them.

    Eagerly, Inf values (and no NaN) get a message of their own: they are
    what a loss class receives for float64 embeddings beyond float32's
    range, as Keras casts `y_pred` to the loss `dtype` (float32 by default)
    before the loss sees it.

    Returns:
        `(labels, embeddings)`: rank-1 labels and a float matrix.
    """
    _check_no_infinity(embeddings, name)
    embeddings = as_matrix(embeddings, name)
    labels = as_labels(labels, embeddings.shape[0])
    if labels.shape[0] is None or embeddings.shape[0] is None:
        tf.debugging.assert_equal(
            tf.shape(labels)[0],
            tf.shape(embeddings)[0],
            message=f"`labels` must have one entry per row of `{name}`",
        )
    return labels, embeddings


def check_finite_loss(
    values, embeddings, name: str = "embeddings"
) -> tf.Tensor:
    """Returns the per-sample loss `values`, or says that they overflowed.

    The losses validate their (finite) embeddings first, so a non-finite
    value, or a non-finite sum over the batch (what Keras' reduction
    computes), means the loss is beyond the dtype's range: embeddings too
    large for it (un-normalized, or a diverging model). This raises a
    `ValueError` eagerly, and inside a graph an `InvalidArgumentError` at
    run time (the check is one reduction over `(batch_size,)` values; XLA
    compiles it away), instead of returning NaN or Inf.

    Args:
        values: Float tensor, the loss values.
        embeddings: Float tensor, the embeddings they come from.
        name: String, the embeddings' argument name in the message.

    Returns:
        `values`.
    """
    dtype = values.dtype
    advice = (
        "L2-normalize or rescale the embeddings"
        if dtype == tf.float64
        else "L2-normalize or rescale the embeddings, or compute the loss in "
        "float64"
    )
    message = (
        f"The loss overflows {dtype.name}: `{name}` are too large for it, "
        f"so its values (or their sum over the batch, which Keras' "
        f"reduction computes) exceed {dtype.name}'s largest value "
        f"({dtype.max:.3g}). {advice}."
    )
    finite = tf.math.is_finite(tf.reduce_sum(values))
    if tf.executing_eagerly():
        if not bool(finite):
            largest = float(tf.reduce_max(tf.abs(embeddings)))
            raise ValueError(
                f"{message} Received: {name} with max |value|={largest:.3g}"
            )
        return values
    largest = tf.reduce_max(tf.abs(embeddings))
    check = tf.debugging.Assert(
        finite, [message, f"Received: {name} with max |value|=", largest]
    )
    with tf.control_dependencies([check]):
        return tf.identity(values)


def _check_no_infinity(embeddings, name: str) -> None:
    """Raises for eager Inf values (NaN is `as_matrix`'s to report)."""
    if not tf.executing_eagerly():
        return  # inside a graph, `as_matrix`'s assertion reports it
    x = tf.convert_to_tensor(embeddings)
    if not x.dtype.is_floating:
        return
    infinite = int(tf.reduce_sum(tf.cast(tf.math.is_inf(x), tf.int32)))
    if infinite and not bool(tf.reduce_any(tf.math.is_nan(x))):
        raise ValueError(
            f"`{name}` must not contain NaN or Inf values. A loss class "
            f"receives Inf where float64 embeddings exceed float32's range "
            f"(~3.4e38): Keras casts `y_pred` to the loss `dtype` (float32 "
            f'by default) first; pass `dtype="float64"` to the loss to '
            f"keep them. Received: {name} with {infinite} non-finite "
            f"(infinite) entries"
        )


def label_masks(labels, remove_diagonal: bool = True):
    """Positive and negative pair masks from a label vector.

    Args:
        labels: Tensor, class ids of shape `(batch_size,)`.
        remove_diagonal: Bool, whether `positive[i, i]` is False (a sample
            is not its own positive). Defaults to `True`.

    Returns:
        `(positive, negative)`, bool tensors of shape
        `(batch_size, batch_size)`: `positive[i, j]` is
        `labels[i] == labels[j]` (and `i != j`), `negative[i, j]` is
        `labels[i] != labels[j]`.
    """
    labels = tf.reshape(tf.convert_to_tensor(labels), [-1])
    same = tf.equal(labels[:, None], labels[None, :])
    negative = tf.logical_not(same)
    if remove_diagonal:
        eye = tf.eye(tf.shape(labels)[0], dtype=tf.bool)
        same = tf.logical_and(same, tf.logical_not(eye))
    return same, negative


def masked_max(x, mask, axis: int = -1):
    """Max of `x` over the entries where `mask` is True.

    Returns:
        `(values, has_any)`: the maxima (0, with zero gradient, where a
        slice has no True entry) and a bool tensor saying which slices had
        one. Ties share the gradient.
    """
    x = tf.convert_to_tensor(x)
    mask = tf.broadcast_to(mask, tf.shape(x))
    has_any = tf.reduce_any(mask, axis=axis)
    lowest = tf.fill(tf.shape(x), tf.constant(x.dtype.min, x.dtype))
    values = tf.reduce_max(tf.where(mask, x, lowest), axis=axis)
    return tf.where(has_any, values, tf.zeros_like(values)), has_any


def masked_min(x, mask, axis: int = -1):
    """Min of `x` over the entries where `mask` is True; see `masked_max`."""
    values, has_any = masked_max(-tf.convert_to_tensor(x), mask, axis=axis)
    return -values, has_any


def masked_logsumexp(x, mask, axis: int = -1):
    """`log(sum(exp(x)))` over the entries where `mask` is True.

    Returns:
        `(values, has_any)`: 0 (zero gradient) on slices without a True
        entry, where the exact value would be `-inf`.
    """
    x = tf.convert_to_tensor(x)
    mask = tf.broadcast_to(mask, tf.shape(x))
    has_any = tf.reduce_any(mask, axis=axis, keepdims=True)
    x_safe = tf.where(mask, x, tf.zeros_like(x))
    shift, _ = masked_max(x_safe, mask, axis=axis)
    shift = tf.stop_gradient(tf.expand_dims(shift, axis))
    total = tf.reduce_sum(
        tf.where(mask, tf.exp(x_safe - shift), tf.zeros_like(x)),
        axis=axis,
        keepdims=True,
    )
    values = shift + tf.math.log(tf.where(has_any, total, tf.ones_like(total)))
    values = tf.where(has_any, values, tf.zeros_like(values))
    return tf.squeeze(values, axis), tf.squeeze(has_any, axis)


def log1p_sum_exp(x, mask, axis: int = -1, scale=None) -> tf.Tensor:
    """`log(1 + sum(exp(x)))` over the entries where `mask` is True.

    The soft-plus of a masked log-sum-exp, computed stably: 0 (with zero
    gradient) on slices without a True entry.

    With `scale` (from `scaled_gram`), the logits are `scale**2 * x` and
    `x` follows `scaled_gram`'s gradient convention: the result is exact
    wherever it is representable, even where `scale**2 * x` is not (huge
    embeddings: a hugely negative logit adds 0, a hugely positive one makes
    the result Inf).
    """
    x = tf.convert_to_tensor(x)
    mask = tf.broadcast_to(mask, tf.shape(x))
    x_safe = tf.where(mask, x, tf.zeros_like(x))
    largest, _ = masked_max(x_safe, mask, axis=axis)
    shift = tf.stop_gradient(tf.maximum(tf.expand_dims(largest, axis), 0.0))
    if scale is None:
        logits, shift_logit = x_safe - shift, shift
    else:  # the shift is taken on x, before scaling: no Inf - Inf
        logits = unscale(x_safe - shift, scale, 2)
        shift_logit = unscale(shift, scale, 2)
    total = tf.reduce_sum(
        tf.where(mask, tf.exp(logits), tf.zeros_like(x)),
        axis=axis,
        keepdims=True,
    )
    values = shift_logit + tf.math.log(tf.exp(-shift_logit) + total)
    return tf.squeeze(values, axis)


def pair_mean_per_anchor(values, mask) -> tf.Tensor:
    """Per-anchor values whose batch mean is the mean of `values` over `mask`.

    ```python
    out[i] = batch_size / sum(mask) * sum_j mask[i, j] * values[i, j]
    mean(out) = sum(mask * values) / sum(mask)
    ```

    With `(batch_size,)` inputs the sum over `j` is dropped (one unit per
    anchor). Anchors without a valid unit get 0, and a batch without any
    gives all zeros. This is how the losses return `(batch_size,)`: Keras'
    default `"sum_over_batch_size"` reduction then equals the reference
    implementations' mean over valid pairs or triplets, and
    `sample_weight` weights each anchor's share.

    Args:
        values: Float tensor of shape `(batch_size,)` or
            `(batch_size, batch_size)`.
        mask: Bool tensor of the same shape, the valid units.

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    values = tf.convert_to_tensor(values)
    mask = tf.broadcast_to(mask, tf.shape(values))
    masked = tf.where(mask, values, tf.zeros_like(values))
    count = tf.reduce_sum(tf.cast(mask, values.dtype))
    if values.shape.rank == 2:
        masked = tf.reduce_sum(masked, axis=1)
    batch_size = tf.cast(tf.shape(values)[0], values.dtype)
    return masked * (batch_size / tf.maximum(count, 1.0))
