"""Exact power-of-two rescaling that also reads subnormal inputs.

Scale-equivariant maths (singular values, L2 normalization) runs best on
`x / 2^e` with `2^e` near max|x|: dividing by a power of two rounds
nothing, and huge or tiny inputs then neither overflow nor underflow
intermediate products. TensorFlow's CPU kernels flush subnormal floats to
zero (|x| < 1.2e-38 in float32, 2.2e-308 in float64) whenever a float op
reads them, so `x / 2^e` computed with float ops turns a batch of
magnitude 1e-40 into zeros. Here the exponent and the subnormal entries are
read from the bits (integer ops, which nothing flushes), so a subnormal
batch is rescaled exactly as well.
"""

import math

import tensorflow as tf

_MAX = {tf.int32: 2**31 - 1, tf.int64: 2**63 - 1}
# max|x| at least this: flushing subnormal entries loses nothing at the
# dtype's precision (they are below 2^-26 resp. 2^-62 of the maximum).
_NORMAL_ENOUGH = {tf.float32: 2.0**-100, tf.float64: 2.0**-960}
# dtype: (integer type of the same width, mantissa bits, exponent bias)
_FORMATS = {
    tf.float32: (tf.int32, 23, 127),
    tf.float64: (tf.int64, 52, 1023),
}


def rescale(x: tf.Tensor, axis=None):
    """`(x / 2^e, 2^e)` with 2^e the power of two at or below max|x|.

    The maximum runs over `axis` (all entries by default; kept as a size-1
    axis otherwise). An all-zero slice gets 2^e = 1. `2^e` is a constant for
    the gradient (d(x / 2^e) / dx = 2^-e), and is flushed to zero in the
    output dtype when it is itself subnormal. Entries far below the maximum
    (by more than the dtype's normal range) may underflow to zero, as any
    rescaling of theirs would. float32 and float64 inputs are read exactly;
    other dtypes are rescaled with float ops.

    Args:
        x: Float tensor.
        axis: Integer or `None`, the axis of the maximum.

    Returns:
        `(scaled, scale)`: `scaled` like `x`, `scale` of `x`'s dtype, a
        scalar for `axis=None`.
    """
    x = tf.convert_to_tensor(x)
    keepdims = axis is not None
    largest = tf.stop_gradient(
        tf.reduce_max(tf.abs(x), axis=axis, keepdims=keepdims)
    )
    if x.dtype not in _FORMATS:
        positive = largest > 0
        largest = tf.where(positive, largest, tf.ones_like(largest))
        return _float_rescale(x, largest)
    # Common case, one pass: the maximum is far above the subnormal range,
    # so entries flushed to zero are below float precision relative to it.
    normal = largest >= _NORMAL_ENOUGH[x.dtype]
    if axis is None:
        return tf.cond(
            normal,
            lambda: _float_rescale(x, largest),
            lambda: _bit_rescale(x, axis),
        )
    fast = _float_rescale(x, tf.where(normal, largest, tf.ones_like(largest)))
    slow = _bit_rescale(x, axis)
    return (
        tf.where(normal, fast[0], slow[0]),
        tf.where(normal, fast[1], slow[1]),
    )


def _float_rescale(x, largest):
    """`rescale` by float ops, for a normal `largest` = max|x| > 0."""
    exponent = tf.math.floor(
        tf.math.log(tf.cast(largest, tf.float64)) / math.log(2.0)
    )
    scale = tf.cast(tf.pow(tf.constant(2.0, tf.float64), exponent), x.dtype)
    return x / scale, scale


def _bit_rescale(x, axis):
    """`rescale` reading the exponents and subnormal entries from the bits."""
    int_dtype, mantissa_bits, bias = _FORMATS[x.dtype]
    bits = tf.bitcast(tf.stop_gradient(x), int_dtype)
    magnitude = tf.bitwise.bitwise_and(
        bits, tf.constant(_MAX[int_dtype], int_dtype)
    )
    largest = tf.reduce_max(magnitude, axis=axis, keepdims=axis is not None)
    field = tf.bitwise.right_shift(largest, mantissa_bits)
    # Subnormal maximum: its exponent is that of the leading mantissa bit,
    # read from the (normal, exact) float of the mantissa.
    mantissa_float = tf.cast(largest, tf.float64)  # exact below 2^53
    leading = tf.bitwise.right_shift(
        tf.bitcast(mantissa_float, tf.int64), 52
    ) - tf.constant(1023, tf.int64)
    subnormal_exponent = tf.cast(leading, int_dtype) + (
        1 - bias - mantissa_bits
    )
    exponent = tf.where(field > 0, field - bias, subnormal_exponent)
    exponent = tf.where(largest > 0, exponent, tf.zeros_like(exponent))
    exponent = tf.clip_by_value(exponent, 1 - bias - mantissa_bits, bias - 1)
    exponent = tf.cast(exponent, tf.float64)
    # x * 2^-e for normal entries (exact unless it underflows), and the
    # subnormal entries rebuilt from their bits: m * 2^(1 - bias - mant - e).
    # 2^-e in two halves: 2^-e itself overflows when the batch is subnormal.
    half = tf.math.floor(-exponent / 2.0)
    two = tf.constant(2.0, tf.float64)
    normal = x * tf.cast(tf.pow(two, half), x.dtype)
    normal = normal * tf.cast(tf.pow(two, -exponent - half), x.dtype)
    entry_field = tf.bitwise.right_shift(magnitude, mantissa_bits)
    sub_factor = tf.pow(two, (1 - bias - mantissa_bits) - exponent)
    rebuilt = tf.cast(magnitude, x.dtype) * tf.cast(sub_factor, x.dtype)
    rebuilt = tf.where(bits < 0, -rebuilt, rebuilt)
    exact = tf.where(entry_field > 0, normal, rebuilt)
    # Forward: the exact values; gradient: that of x * 2^-e.
    scaled = normal + tf.stop_gradient(exact - normal)
    scale = tf.cast(tf.pow(two, exponent), x.dtype)
    return scaled, tf.stop_gradient(scale)
