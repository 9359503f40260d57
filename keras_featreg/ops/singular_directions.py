"""U V^T of each `mean_singular_value` route, from what its forward kept.

The custom gradient of `keras_featreg.ops.singular_values` (d sum(s) / dx
= U V^T) assembles U V^T from the decomposition its forward pass chose
(`ROUTES` there); each route's assembly is one function here.
"""

import tensorflow as tf

from keras_featreg.ops.spectral import direction
from keras_featreg.ops.spectral import far_from_square
from keras_featreg.ops.spectral import large
from keras_featreg.ops.spectral import singular_from_eigenvalues


def route_directions(route, x, scaled, slots) -> tf.Tensor:
    """U V^T of the tall `scaled` (x or x^T), in x's dtype, for `route`.

    `slots` is `(values64, vectors64, *deflated64, left64, right64, left32,
    right32)` as `_decompose` in `keras_featreg.ops.singular_values`
    returns them.
    """
    values64, vectors64, *deflated64, left64, right64, left32, right32 = slots

    def gram_float32():
        # P in float64, applied to the float32 batch in float32.
        _, inverse = singular_from_eigenvalues(values64, 0.0)
        projector = tf.matmul(vectors64 * inverse, vectors64, transpose_b=True)
        return tf.matmul(scaled, tf.cast(projector, x.dtype))

    def gram_float64():
        m64 = tf.cast(scaled, tf.float64)
        return tf.cast(direction(m64, values64, vectors64), x.dtype)

    def deflated_float64():
        # U V^T = m P_big + y P_small: the small pairs' directions come
        # from y, which holds no trace of the big singular directions
        # (m z_i would carry s_max times z_i's rounding in them).
        big_values, big_vectors, small_values, small_vectors, y = deflated64
        m64 = tf.cast(scaled, tf.float64)
        big = tf.matmul(m64, big_vectors) * tf.math.rsqrt(big_values)
        uv = tf.matmul(big, big_vectors, transpose_b=True)
        uv += direction(y, small_values, small_vectors)
        return tf.cast(uv, x.dtype)

    def svd_float64():
        return tf.cast(tf.matmul(left64, right64), x.dtype)

    def deflated_float32():
        # Route 4: the small pairs' part in float32, as computed.
        big_values, big_vectors, small_values, small_vectors, y = deflated64
        m64 = tf.cast(scaled, tf.float64)
        big = tf.matmul(m64, big_vectors) * tf.math.rsqrt(big_values)
        uv = tf.matmul(big, big_vectors, transpose_b=True)
        _, inverse = singular_from_eigenvalues(small_values, 0.0)
        projector = tf.matmul(
            small_vectors * inverse, small_vectors, transpose_b=True
        )
        small = tf.matmul(
            tf.cast(y, tf.float32), tf.cast(projector, tf.float32)
        )
        return tf.cast(uv, x.dtype) + tf.cast(small, x.dtype)

    def svd_float32():
        return tf.matmul(left32, right32)

    def deflated_svd_float32():
        # Route 6: the deflated direction in float64, y's pairs as
        # decomposed, in float32.
        big_values, big_vectors, *_ = deflated64
        m64 = tf.cast(scaled, tf.float64)
        big = tf.matmul(m64, big_vectors) * tf.math.rsqrt(big_values)
        uv = tf.matmul(big, big_vectors, transpose_b=True)
        return tf.cast(uv, x.dtype) + tf.matmul(left32, right32)

    branches = [
        gram_float32,
        gram_float64,
        deflated_float64,
        svd_float64,
        deflated_float32,
        svd_float32,
        deflated_svd_float32,
    ]
    # Stand-ins for the routes that cannot fire for a static shape (their
    # slots are empty there).
    far = far_from_square(x)
    if x.dtype == tf.float64 or far is False:
        branches[0] = gram_float64
        branches[4] = deflated_float64
    if x.dtype == tf.float64 or large(x) is False or far is True:
        branches[5] = branches[6] = gram_float64
    return tf.switch_case(route, branches)
