"""Row-wise L2 normalization that is exact at any scale and safe at zero."""

import tensorflow as tf


def l2_normalize(x) -> tf.Tensor:
    """L2-normalizes the rows of a 2-D float matrix; zero rows stay zero.

    ```python
    out[i] = x[i] / ||x[i]||        # x[i] != 0
    out[i] = 0                      # x[i] == 0
    ```

    Each row is first divided by its largest absolute entry (a constant for
    the gradient: normalization is scale invariant), so huge rows do not
    overflow and tiny rows (1e-30) still reach unit norm. The norm of the
    rescaled row is then >= 1 unless the row is zero, so `max(norm^2, 1)`
    leaves every non-zero row exact and keeps zero rows at zero with a
    finite gradient.

    Args:
        x: Float tensor `(n, d)`.

    Returns:
        Tensor of the same shape and dtype.

    Example:

    >>> keras_featreg.ops.l2_normalize([[3.0, 4.0], [0.0, 0.0]])
    [[0.6, 0.8], [0.0, 0.0]]
    """
    x = tf.convert_to_tensor(x)
    scale = tf.stop_gradient(tf.reduce_max(tf.abs(x), axis=1, keepdims=True))
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    scaled = x / scale
    squared_norm = tf.reduce_sum(tf.square(scaled), axis=1, keepdims=True)
    return scaled * tf.math.rsqrt(tf.maximum(squared_norm, 1.0))
