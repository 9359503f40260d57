"""Deflation: the small singular pairs of a nearly collapsed batch, exactly.

Used by `keras_featreg.ops.singular_values` (routes 2 and 4, see there).
The float64 Gram m^T m of a batch with cond(m) > ~1e5 resolves its large
eigenpairs exactly but not its small ones (absolute errors ~1e-16
lambda_max). Projecting the large pairs out of m itself, y = m (I - W W^T),
leaves a matrix whose Gram has the small singular values' own scale, and
one more decomposition resolves them.
"""

import tensorflow as tf

from keras_featreg.ops.spectral import RCOND_FLOAT32
from keras_featreg.ops.spectral import gram

# Route 2 keeps the first decomposition's pairs with lambda at least this
# fraction of lambda_max (relative accuracy ~k * 1e-16 / 1e-8 <= 1e-5).
DEFLATION_SPLIT = 1e-8
# Route 2 drops singular values of y below this times sqrt(k) * s_max: the
# projection leaves rounding residuals of ~1e-16 sqrt(k) s_max in y.
DEFLATION_FLOOR = 1e-14
# Route 2 resolves singular values down to this times s_max to ~1e-8; a
# batch with singular values between the floor and this takes route 3.
DEFLATION_RESOLVED = 1e-10
# A batch whose top eigenvalue holds all but this fraction of trace(x^T x)
# deflates its power-iterated top direction first (one decomposition).
DOMINANCE = 1e-3
POWER_STEPS = 5
REFINE_STEPS = 3
# Below this lambda_min / lambda_max (cond(x) > 1e5) the float64 Gram's
# smallest eigenpairs lose more than ~1e-4 of accuracy: deflate (route 2).
# Route 2 falls back to the float64 SVD when the deflated Gram's own
# lambda_min / lambda_max (over the kept pairs) is below it.
RCOND_FLOAT64_GRAM = 1e-10
# Eigenvalues at most this fraction of the largest, times k, are rounding
# noise relative to their own decomposition.
NOISE_FLOAT64 = 1e-15
# The same for a float32 Gram (route 4).
NOISE_FLOAT32 = 1e-6


def power_step(m, vector):
    """One power iteration v <- m^T (m v) / ||v|| (on m, not m^T m)."""
    vector = vector / tf.maximum(tf.norm(vector), tf.cast(1e-30, m.dtype))
    return tf.matmul(m, tf.matmul(m, vector), transpose_a=True)


def dominant_direction(m64):
    """`(values, vectors, dominant)`: m^T m's top pair, if it dominates.

    Power iteration on m itself, from the column of m^T m with the largest
    diagonal entry: POWER_STEPS in the input's float32 (or float64), then
    REFINE_STEPS in float64. `dominant` says whether lambda_1 >= (1 -
    DOMINANCE) trace(m^T m): every other eigenvalue is then below
    DOMINANCE lambda_1, and each step shrinks the error of the direction
    by that factor, to float64 precision. `values` has one entry
    (||m v||^2), `vectors` is a k x 1 unit column.
    """
    m32 = tf.cast(m64, tf.float32)
    squares = tf.reduce_sum(tf.square(m64), axis=0)  # diag(m^T m)
    column = tf.gather(m32, tf.argmax(squares), axis=1)[:, None]
    vector = tf.matmul(m32, column, transpose_a=True)
    for _ in range(POWER_STEPS):
        vector = power_step(m32, vector)
    vector = tf.cast(vector, tf.float64)
    for _ in range(REFINE_STEPS):
        vector = power_step(m64, vector)
    vector = vector / tf.maximum(tf.norm(vector), 1e-300)
    value = tf.reduce_sum(tf.square(tf.matmul(m64, vector)))
    trace = tf.reduce_sum(squares)
    dominant = (trace > 0) & (trace - value <= DOMINANCE * value)
    return value[None], vector, dominant


def deflated(m64, big_values, big_vectors, float32_gram=False):
    """Routes 2 and 4: the pairs `big_*` (exact), then those of y.

    `big_values, big_vectors` are eigenpairs of m^T m with the largest
    eigenvalues (at least DEFLATION_SPLIT lambda_max). y = m (I - W_big
    W_big^T) is computed in float64; its Gram in float64, or, with
    `float32_gram` (route 4), in float32, which is exact enough when y is
    well conditioned (cond(y) <= 10, as route 0). Returns `(total, pairs,
    accurate)`: `pairs` is `(big_values, big_vectors, small_values,
    small_vectors, residual)`, with y as `residual` and y's eigenpairs
    (k, dropped ones with value 0).
    """
    largest = tf.reduce_max(big_values)
    size = tf.cast(tf.shape(m64)[1], tf.float64)
    residual = m64 - tf.matmul(
        tf.matmul(m64, big_vectors), big_vectors, transpose_b=True
    )
    if float32_gram:
        gram_residual = tf.cast(gram(tf.cast(residual, tf.float32)), tf.float64)
    else:
        gram_residual = gram(residual)
    small_values, small_vectors = tf.linalg.eigh(gram_residual)
    small_largest = small_values[-1]
    floor = DEFLATION_FLOOR**2 * size * largest
    if float32_gram:
        # The deflated directions leave float32 rounding (~1e-7 mu_max) in
        # y's Gram: drop that much, and accept only if exactly as many
        # eigenvalues as directions were deflated are dropped (a genuine
        # small singular value of y sends the batch to the float64 Gram).
        floor = tf.maximum(floor, NOISE_FLOAT32 * size * small_largest)
        kept = small_values > floor
        dropped = tf.reduce_sum(tf.cast(~kept, tf.int32))
        deflated_count = tf.size(big_values)
        resolved = RCOND_FLOAT32 * small_largest
    else:
        floor = tf.maximum(floor, NOISE_FLOAT64 * size * small_largest)
        kept = small_values > floor
        resolved = tf.maximum(
            RCOND_FLOAT64_GRAM * small_largest,
            DEFLATION_RESOLVED**2 * largest,
        )
    accurate = tf.reduce_all(~kept | (small_values >= resolved))
    if float32_gram:
        accurate = accurate & tf.equal(dropped, deflated_count)
    small_values = tf.where(kept, small_values, tf.zeros_like(small_values))
    total = tf.reduce_sum(tf.sqrt(big_values)) + tf.reduce_sum(
        tf.sqrt(small_values)
    )
    pairs = (big_values, big_vectors, small_values, small_vectors, residual)
    return total, pairs, accurate
