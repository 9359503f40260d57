"""Pairwise distances and dot products, exact at any scale.

- `pairwise_distances`: Euclidean (or squared) distances through the Gram
  matrix, with a safe square root (zero gradient at zero distance),
  accurate on collapsed batches and finite on huge or tiny inputs.
- `pairwise_similarities`: dot products, or cosine similarities.
- `scaled_pairwise_distances`, `scaled_gram`, `unscale`: distances and dot
  products as order-1 values and a power-of-two scale, for losses whose
  distances or dot products overflow where the loss itself does not
  (un-normalized float32 rows of norm beyond ~1e19: their dot products
  exceed float32). The losses take differences on the order-1 values and
  scale only the result back, so they return the exact loss and gradient
  whenever the loss is representable (issue 13.1).

Dividing by a power of two is exact: wherever nothing overflows or
underflows, the scaled route gives the plain route's values bit for bit.
"""

import tensorflow as tf

from keras_featreg.ops.batch import power_of_two_scale
from keras_featreg.ops.normalize import l2_normalize


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
    their mean and divided by a power of two near the largest |entry|
    (constants for the gradient: the result and its exact gradient do not
    change), and the squared norms are read from the Gram's own diagonal.
    On random tests this cut the float32 error on a collapsed batch from
    ~1e-2 to ~1e-8, and on duplicate rows from ~1e-3 to ~1e-5. Huge inputs
    (up to float32's largest value) and tiny ones neither overflow nor
    underflow on the way; only a result beyond the dtype's range is Inf
    (squared distances of float32 rows beyond ~1e19). See
    `scaled_pairwise_distances`.

    Args:
        x: Float tensor of shape `(n, d)`.
        y: Float tensor of shape `(m, d)`, or `None` for `y = x`.
        squared: Bool, whether to return squared distances.

    Returns:
        Tensor of shape `(n, m)` in the dtype of `x`.
    """
    distances, scale = scaled_pairwise_distances(x, y, squared=squared)
    return unscale(distances, scale, 2 if squared else 1)


def scaled_pairwise_distances(
    x, y=None, squared: bool = False
) -> tuple[tf.Tensor, tf.Tensor]:
    """Pairwise distances as `(d, scale)`: `D = scale * d` at any scale.

    `scale` is a power of two near the spread of the rows (a constant for
    the gradient) and `d` is of order 1, so `d` neither overflows nor
    underflows where `D` would; with `squared=True`, `D**2 = scale**2 * d`.
    Losses that compare distances (`D_ap - D_an`) can subtract them as `d`
    and scale the difference (`unscale(d_ap - d_an, scale, power)`), which
    is finite whenever the difference is, even when `D` itself is not.

    Gradient convention. `d` carries the gradient of `D` (`D**2`), not its
    own: backpropagating into `d` the gradient of a loss with respect to
    the distances gives the loss's exact gradient with respect to `x`, and
    no intermediate gradient is `scale` times larger than that result (so
    none overflows where the result does not). Use `d` only through
    `unscale` of linear combinations of its entries (sums, differences, a
    constant factor), or under `tf.stop_gradient` (comparisons, shifts,
    masks); `pairwise_distances` is `unscale(d, scale, 1 or 2)`.

    Args:
        x: Float tensor of shape `(n, d)`.
        y: Float tensor of shape `(m, d)`, or `None` for `y = x`.
        squared: Bool, whether `d` holds squared distances.

    Returns:
        `(d, scale)`: a tensor of shape `(n, m)` in the dtype of `x` and a
        scalar of the same dtype.
    """
    x = tf.convert_to_tensor(x)
    same = y is None
    y = x if same else tf.convert_to_tensor(y, dtype=x.dtype)
    both = x if same else tf.concat([x, y], axis=0)
    # Two exact power-of-two steps: the first keeps the mean from
    # overflowing, the second brings the centered rows to order 1.
    prescale = power_of_two_scale(both)
    center = tf.stop_gradient(
        tf.reduce_mean(both / prescale, axis=0, keepdims=True)
    )
    spread = power_of_two_scale(both / prescale - center)
    scale = prescale * spread
    # Value (x / prescale - center) / spread; gradient `scale` times
    # d(value)/dx for squared distances (d = D**2 / scale**2), 1 times it
    # for distances (d = D / scale): see the gradient convention above.
    gradient = scale if squared else tf.ones_like(scale)

    def rescale(rows):
        value = (rows / prescale - center) / spread
        return _with_gradient(rows, tf.stop_gradient(value), gradient)

    xs = rescale(x)
    if same:
        gram = tf.matmul(xs, xs, transpose_b=True)
        x_sq = y_sq = tf.linalg.diag_part(gram)
    else:
        ys = rescale(y)
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
        return sq, scale
    return safe_sqrt(sq), scale


def scaled_gram(x) -> tuple[tf.Tensor, tf.Tensor]:
    """The Gram matrix (dot products) as `(g, scale)`: `x x^T = scale**2 g`.

    `scale` is a power of two near `max |x|` (a constant for the gradient),
    so `g`'s entries are of order 1 (at most `4 * dim`) at any scale of `x`:
    huge embeddings (1e20 in float32, whose dot products overflow) and tiny
    ones keep their Gram matrix. Dividing by a power of two is exact, so
    `unscale(g, scale, 2)` equals `x x^T` bit for bit wherever that is
    representable.

    Gradient convention: as `scaled_pairwise_distances`; `g` carries the
    gradient of the dot products `x x^T`. Use it only through `unscale` of
    linear combinations of its entries, or under `tf.stop_gradient`.

    Args:
        x: Float tensor of shape `(n, d)`.

    Returns:
        `(g, scale)`: a tensor of shape `(n, n)` in the dtype of `x` and a
        scalar of the same dtype.
    """
    x = tf.convert_to_tensor(x)
    scale = power_of_two_scale(x)
    # Value x / scale; gradient `scale` (d(x x^T)/dx = scale * dg/d(x/s)).
    y = _with_gradient(x, tf.stop_gradient(x / scale), scale)
    return tf.matmul(y, y, transpose_b=True), scale


def unscale(values, scale, power: int) -> tf.Tensor:
    """`scale**power * values`, passing the gradient through unchanged.

    The scale is applied one factor at a time (`scale**2` alone may
    overflow where the product does not). The gradient is the identity:
    with `scaled_gram` and `scaled_pairwise_distances` the gradients of
    their scaled outputs already are those of the unscaled quantities.

    Args:
        values: Float tensor, linear in a scaled output.
        scale: Float scalar, its `scale`.
        power: Int, 1 (distances) or 2 (squared distances, dot products).

    Returns:
        Tensor of the shape and dtype of `values`.
    """
    result = values
    for _ in range(power):
        result = scale * result
    return _with_gradient(values, tf.stop_gradient(result), 1.0)


def _with_gradient(x, value, gradient):
    """`value` in the forward pass; `gradient * upstream` to `x` backwards.

    `x - stop_gradient(x)` is exactly 0 for finite `x`, so the value is
    `value` bit for bit.
    """
    return value + (x - tf.stop_gradient(x)) * gradient


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
