"""Turns an embedding batch into a 2-D float matrix, or says why it can't."""

import math

import tensorflow as tf


def compute_dtype(dtype: tf.DType) -> tf.DType:
    """float64 stays float64; half precision and float32 compute in float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def as_matrix(x, name: str = "x", min_batch_size: int = 1) -> tf.Tensor:
    """Validates a batch and flattens it to `(batch_size, features)`.

    Half-precision inputs are cast to float32 (the maths needs its range);
    float32 and float64 are kept. Rank > 2 inputs are flattened over all
    but the batch axis.

    Raises:
        TypeError: `x` is not floating point.
        ValueError: `x` has rank < 2, a zero-size axis, fewer than
            `min_batch_size` rows (when the batch size is static), or NaN/Inf
            values (checked eagerly; inside a graph the check raises
            `InvalidArgumentError` at run time).
    """
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(
            f"`{name}` must be a floating-point tensor. "
            f"Received: {name}.dtype={x.dtype.name}"
        )
    rank = x.shape.rank
    if rank is None or rank < 2:
        raise ValueError(
            f"`{name}` must have rank >= 2: (batch_size, features, ...). "
            f"Received: {name}.shape={x.shape}"
        )
    if any(dim == 0 for dim in x.shape):
        raise ValueError(
            f"`{name}` must not have a zero-size axis. "
            f"Received: {name}.shape={x.shape}"
        )
    batch_size = x.shape[0]
    if batch_size is not None and batch_size < min_batch_size:
        raise ValueError(
            f"`{name}` needs at least {min_batch_size} rows. "
            f"Received: {name}.shape={x.shape}"
        )
    if rank > 2:
        features = x.shape[1:].num_elements()
        if features is None:
            features = tf.reduce_prod(tf.shape(x)[1:])
        x = tf.reshape(x, tf.stack([tf.shape(x)[0], features]))
    x = tf.cast(x, compute_dtype(x.dtype))
    if tf.executing_eagerly():
        bad = int(tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int32)))
        if bad:
            raise ValueError(
                f"`{name}` must not contain NaN or Inf values. "
                f"Received: {name} with {bad} non-finite entries"
            )
        return x
    # One fused pass (is_finite + reduce_all) is ~5x cheaper than
    # `check_numerics`, which would also re-check the gradient.
    check = tf.debugging.Assert(
        tf.reduce_all(tf.math.is_finite(x)),
        [
            f"`{name}` must not contain NaN or Inf values. "
            f"Received: {name} with non-finite entries"
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(x)


def power_of_two_scale(x: tf.Tensor) -> tf.Tensor:
    """A power of two near max|x| (1 for an all-zero `x`), not differentiated.

    Dividing by a power of two is exact, so scale-equivariant maths can run
    on `x / scale` with entries of order 1: huge or tiny inputs then neither
    overflow nor underflow intermediate products, and no rounding perturbs
    ill-conditioned batches.
    """
    largest = tf.cast(tf.stop_gradient(tf.reduce_max(tf.abs(x))), tf.float64)
    exponent = tf.math.floor(tf.math.log(largest) / math.log(2.0))
    scale = tf.pow(tf.constant(2.0, tf.float64), exponent)
    scale = tf.where(largest > 0, scale, tf.ones_like(scale))
    return tf.cast(scale, x.dtype)
