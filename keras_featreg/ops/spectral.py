"""Small pieces shared by the routes of `keras_featreg.ops.singular_values`.

All of them work on a tall matrix m (b >= d, or x^T when b < d), whose
k x k Gram matrix m^T m = V S^2 V^T gives the singular values S and the
gradient direction U V^T = m V S^-1 V^T of the sum of singular values.
"""

import tensorflow as tf

# Routes 0 and 4 keep a float32 Gram when lambda_min / lambda_max is at
# least this (cond <= 10); measured in benchmarks/bench_ops.py.
RCOND_FLOAT32 = 1e-2

# Shapes with min(b, d) / max(b, d) above this start at the float64 Gram:
# an i.i.d. batch of that shape already has cond(x) > RCOND_FLOAT32 ** -0.5.
ASPECT_FLOAT32 = (
    (RCOND_FLOAT32**-0.5 - 1.0) / (RCOND_FLOAT32**-0.5 + 1.0)
) ** 2
# Near-square float32 batches with k >= this try route 5 before the float64
# Gram: on 2 quiet cores TF's float32 SVD outruns its float64 eigh there
# (512 x 512: the float64 Gram route took 0.86x the reference's time).
SVD_MIN_SIZE = 256


def branch(predicate, true_fn, false_fn):
    """`tf.cond`, or a plain `if` when the predicate is known while tracing."""
    if isinstance(predicate, bool):
        return true_fn() if predicate else false_fn()
    return tf.cond(predicate, true_fn, false_fn)


def is_tall(x: tf.Tensor):
    """b >= d: a Python bool for static shapes, a boolean tensor otherwise."""
    rows, cols = x.shape
    if rows is not None and cols is not None:
        return rows >= cols
    return tf.shape(x)[0] >= tf.shape(x)[1]


def oriented(x: tf.Tensor, tall):
    """x if b >= d, else x^T: the routes only ever see tall matrices.

    With a dynamic shape this is one `tf.cond` whose output has unknown
    dimensions. Branching later on `tall` instead (x^T x vs x x^T) would put
    both orientations of one tensor into the graph, and Grappler's symbolic
    shape inference then unifies b with d across the branch not taken.
    """
    return branch(tall, lambda: x, lambda: tf.transpose(x))


def gram(m: tf.Tensor) -> tf.Tensor:
    """m^T m, the k x k Gram matrix of a tall matrix m."""
    return tf.matmul(m, m, transpose_a=True)


def singular_from_eigenvalues(eigenvalues, threshold):
    """(sqrt(lambda), 1 / sqrt(lambda)) with eigenvalues <= threshold as 0."""
    keep = eigenvalues > threshold
    safe = tf.where(keep, eigenvalues, tf.ones_like(eigenvalues))
    singular = tf.where(keep, tf.sqrt(safe), tf.zeros_like(safe))
    inverse = tf.where(keep, tf.math.rsqrt(safe), tf.zeros_like(safe))
    return singular, inverse


def direction(m, values, vectors):
    """U V^T = m P of a tall m, P = W diag(1/s) W^T.

    `vectors` (k x n) holds eigenvectors W of m^T m as columns, `values`
    (n) their eigenvalues; those <= 0 (dropped or all-zero) get 1/s = 0.
    """
    _, inverse = singular_from_eigenvalues(values, 0.0)
    projector = tf.matmul(vectors * inverse, vectors, transpose_b=True)
    return tf.matmul(m, projector)


def far_from_square(x: tf.Tensor):
    """k / max(b, d) <= ASPECT_FLOAT32: route 0 can pass for this shape."""
    rows, cols = x.shape
    if rows is not None and cols is not None:
        return min(rows, cols) <= ASPECT_FLOAT32 * max(rows, cols)
    shape = tf.cast(tf.shape(x), tf.float32)
    return tf.reduce_min(shape) <= ASPECT_FLOAT32 * tf.reduce_max(shape)


def large(x: tf.Tensor):
    """k >= SVD_MIN_SIZE: near-square float32 batches try route 5 first."""
    rows, cols = x.shape
    if rows is not None and cols is not None:
        return min(rows, cols) >= SVD_MIN_SIZE
    return tf.reduce_min(tf.shape(x)) >= SVD_MIN_SIZE
