"""Pairwise distances, similarities and label masks: the metric losses' maths.

Every metric-learning loss in `keras_featreg.losses` mines its pairs and
triplets inside the batch from the labels. The shared pieces live here:

- `as_labels`, `as_labeled_batch`: validate labels against the embedding
  batch (shape, batch size, exact integer ids) and the embeddings.
- `label_masks`: `positive[i, j]` (same label, `i != j`) and
  `negative[i, j]` (different labels), both `(batch_size, batch_size)` bool.
- `pairwise_distances`: Euclidean (or squared) distances through the Gram
  matrix, with a safe square root (zero gradient at zero distance).
- `pairwise_similarities`: dot products, or cosine similarities.
- `masked_max`, `masked_min`, `masked_logsumexp`, `log1p_sum_exp`:
  reductions over the mined entries only, finite (0) with zero gradient on
  rows that have none.
- `pair_mean_per_anchor`: turns pair (or anchor) values into per-anchor
  values whose batch mean is the mean over the valid pairs; this is how the
  losses return `(batch_size,)` for Keras' reduction and `sample_weight`.
- `random_negative_mask`: one random negative per anchor (seeded).

Precision. Euclidean distances go through the Gram matrix after centering
and rescaling the batch (see `pairwise_distances`), which keeps them
accurate on collapsed batches and finite on huge or tiny inputs.
"""

import keras
import tensorflow as tf

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.normalize import l2_normalize

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

    Returns:
        `(labels, embeddings)`: rank-1 labels and a float matrix.
    """
    embeddings = as_matrix(embeddings, name)
    labels = as_labels(labels, embeddings.shape[0])
    if labels.shape[0] is None or embeddings.shape[0] is None:
        tf.debugging.assert_equal(
            tf.shape(labels)[0],
            tf.shape(embeddings)[0],
            message=f"`labels` must have one entry per row of `{name}`",
        )
    return labels, embeddings


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


def safe_sqrt(x: tf.Tensor) -> tf.Tensor:
    """`sqrt(max(x, 0))` with gradient 0 (not inf) where `x <= 0`."""
    positive = x > 0
    safe_x = tf.where(positive, x, tf.ones_like(x))
    return tf.where(positive, tf.sqrt(safe_x), tf.zeros_like(x))


def pairwise_distances(x, y=None, squared: bool = False) -> tf.Tensor:
    """Euclidean distances between the rows of `x` and of `y`.

    ```python
    D[i, j] = ||x_i - y_j||_2   # or its square with squared=True
    ```

    Computed from the Gram matrix, `G_ii + G_jj - 2 G_ij`, clipped at 0;
    with `y=None` the diagonal is exactly 0. The square root is `safe_sqrt`:
    coincident points get distance 0 and gradient 0.

    Precision. The Gram form cancels catastrophically when the points are
    close relative to their norms; in float32 a collapsed batch (points
    within 1e-3 of a common center, the case embedding regularizers watch
    for) then gets distance errors as large as the distances. Distances are
    translation and scale invariant, so the rows are first centered on
    their mean and divided by the largest |entry| (both constants for the
    gradient: the result and its exact gradient do not change), and the
    squared norms are read from the Gram's own diagonal. On random tests
    this cut the float32 error on a collapsed batch from ~1e-2 to ~1e-8,
    and on duplicate rows from ~1e-3 to ~1e-5; huge inputs do not overflow
    the squares and tiny ones do not underflow them (the squared distances
    themselves still overflow float32 beyond ~1e19).

    Args:
        x: Float tensor of shape `(n, d)`.
        y: Float tensor of shape `(m, d)`, or `None` for `y = x`.
        squared: Bool, whether to return squared distances.

    Returns:
        Tensor of shape `(n, m)` in the dtype of `x`.
    """
    x = tf.convert_to_tensor(x)
    same = y is None
    y = x if same else tf.convert_to_tensor(y, dtype=x.dtype)
    both = x if same else tf.concat([x, y], axis=0)
    center = tf.stop_gradient(tf.reduce_mean(both, axis=0, keepdims=True))
    scale = tf.stop_gradient(tf.reduce_max(tf.abs(both - center)))
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    xs = (x - center) / scale
    if same:
        gram = tf.matmul(xs, xs, transpose_b=True)
        x_sq = y_sq = tf.linalg.diag_part(gram)
    else:
        ys = (y - center) / scale
        gram = tf.matmul(xs, ys, transpose_b=True)
        x_sq = tf.reduce_sum(tf.square(xs), axis=1)
        y_sq = tf.reduce_sum(tf.square(ys), axis=1)
    sq = tf.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * gram, 0.0)
    if same:
        # Not `set_diag`: its gradient builds a shape XLA cannot compile
        # when the batch size is dynamic.
        eye = tf.eye(tf.shape(sq)[0], dtype=tf.bool)
        sq = tf.where(eye, tf.zeros_like(sq), sq)
    if squared:
        return sq * tf.square(scale)
    return safe_sqrt(sq) * scale


def pairwise_similarities(x, y=None, normalize: bool = False) -> tf.Tensor:
    """Dot products (or cosine similarities) between rows of `x` and `y`.

    ```python
    S[i, j] = x_i . y_j                      # normalize=False
    S[i, j] = x_i . y_j / (|x_i| |y_j|)      # normalize=True (cosine)
    ```

    Args:
        x: Float tensor of shape `(n, d)`.
        y: Float tensor of shape `(m, d)`, or `None` for `y = x`.
        normalize: Bool, whether to L2-normalize the rows first (cosine
            similarity; all-zero rows give similarity 0). Defaults to `False`.

    Returns:
        Tensor of shape `(n, m)` in the dtype of `x`.
    """
    x = tf.convert_to_tensor(x)
    y = x if y is None else tf.convert_to_tensor(y, dtype=x.dtype)
    if normalize:
        x, y = l2_normalize(x), l2_normalize(y)
    return tf.matmul(x, y, transpose_b=True)


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


def log1p_sum_exp(x, mask, axis: int = -1) -> tf.Tensor:
    """`log(1 + sum(exp(x)))` over the entries where `mask` is True.

    The soft-plus of a masked log-sum-exp, computed stably: 0 (with zero
    gradient) on slices without a True entry.
    """
    x = tf.convert_to_tensor(x)
    mask = tf.broadcast_to(mask, tf.shape(x))
    x_safe = tf.where(mask, x, tf.zeros_like(x))
    largest, _ = masked_max(x_safe, mask, axis=axis)
    shift = tf.stop_gradient(tf.maximum(tf.expand_dims(largest, axis), 0.0))
    total = tf.reduce_sum(
        tf.where(mask, tf.exp(x_safe - shift), tf.zeros_like(x)),
        axis=axis,
        keepdims=True,
    )
    values = shift + tf.math.log(tf.exp(-shift) + total)
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
