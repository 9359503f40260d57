"""Row-wise L2 normalization that is exact at any scale and safe at zero."""

import tensorflow as tf

from keras_featreg.ops.scaling import rescale


def l2_normalize(x) -> tf.Tensor:
    """L2-normalizes the rows of a 2-D float matrix; zero rows stay zero.

    ```python
    out[i] = x[i] / ||x[i]||        # x[i] != 0
    out[i] = 0                      # x[i] == 0
    ```

    Each row is first divided by the power of two at or below its largest
    absolute entry (exactly, a constant for the gradient: normalization is
    scale invariant), so huge rows do not overflow and tiny rows (1e-30)
    still reach unit norm; subnormal rows (1e-40, which TensorFlow's CPU
    kernels flush to zero) are read from their bits and normalized too
    (`keras_featreg.ops.scaling`). The norm of the
    rescaled row is then >= 1 unless the row is zero, so `max(norm^2, 1)`
    leaves every non-zero row exact and keeps zero rows at zero with a
    finite gradient.

    Args:
        x: Float tensor `(n, d)`.

    Returns:
        Tensor of the same shape and dtype.

    Example:

    >>> import keras_featreg
    >>> x = keras_featreg.ops.l2_normalize([[3.0, 4.0], [0.0, 0.0]])
    >>> x.numpy().astype(float).round(4).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    x = tf.convert_to_tensor(x)
    scaled, _ = rescale(x, axis=1)
    squared_norm = tf.reduce_sum(tf.square(scaled), axis=1, keepdims=True)
    return scaled * tf.math.rsqrt(tf.maximum(squared_norm, 1.0))
