"""The sum of singular values under XLA: one route, fixed output shapes.

Under `tf.function(jit_compile=True)` (Keras' default for `fit` on a GPU)
the routes of `keras_featreg.ops.singular_values` cannot compile: their
branches return decompositions of different shapes, and XLA's own SVD is
~250x slower than TensorFlow's on a CPU. Here one route serves every
batch: the float64 Gram of the tall orientation, decomposed by XLA's
Jacobi eigensolver with a tight tolerance (`keras_featreg.ops.xla`), whose
forward pass returns the sum and U V^T (the gradient) together, shaped like
x, so that a batch size known only at run time (`None`) compiles too.
Values agree with the non-XLA routes to ~1e-9 (relative) and U V^T to
~1e-8, nearly collapsed batches included; for cond(x) > ~1e5 (singular
values of ~1e-6 * s_max that are not rounding noise) U V^T is accurate to
~1e-3. XLA drops the NaN/Inf input assertion: a non-finite batch gives a
NaN value and gradient instead of an error.
"""

import tensorflow as tf

from keras_featreg.ops.scaling import rescale
from keras_featreg.ops.spectral import branch
from keras_featreg.ops.spectral import direction
from keras_featreg.ops.spectral import gram
from keras_featreg.ops.spectral import is_tall
from keras_featreg.ops.spectral import singular_from_eigenvalues
from keras_featreg.ops.xla import self_adjoint_eig

# Tolerance of XLA's Jacobi eigensolver on the float64 Gram.
EPSILON = 1e-12
# Eigenvalues of the float64 Gram below this fraction of the largest, times
# k, are rounding noise: they are treated as zero.
NOISE = 1e-15


def _tall(scaled: tf.Tensor):
    """(sum of singular values, U V^T) of a tall matrix."""
    scaled64 = tf.cast(scaled, tf.float64)
    values, vectors = self_adjoint_eig(gram(scaled64), EPSILON)
    size = tf.cast(tf.size(values), tf.float64)
    noise = NOISE * size * tf.reduce_max(values)
    singular, _ = singular_from_eigenvalues(values, noise)
    values_kept = tf.where(values > noise, values, tf.zeros_like(values))
    uv = direction(scaled64, values_kept, vectors)
    return tf.reduce_sum(singular), tf.cast(uv, scaled.dtype)


@tf.custom_gradient
def singular_value_sum_xla(x: tf.Tensor):
    """Sum of singular values of a 2-D float32/float64 matrix, U V^T grad."""
    scaled, scale = rescale(x)

    def wide():
        total, uv = _tall(tf.transpose(scaled))
        return total, tf.transpose(uv)

    total, uv = branch(is_tall(scaled), lambda: _tall(scaled), wide)
    uv = tf.ensure_shape(uv, scaled.shape)
    # XLA compiles the input check away and its eigensolver turns NaN/Inf
    # into finite numbers: make such a batch's value and gradient NaN.
    finite = tf.reduce_all(tf.math.is_finite(scaled))
    nan = tf.constant(float("nan"), tf.float64)
    total = tf.where(finite, total, nan)
    uv = tf.where(finite, uv, tf.cast(nan, scaled.dtype))

    def grad(upstream):
        return tf.cast(upstream, scaled.dtype) * uv

    return tf.cast(total, scaled.dtype) * scale, grad
