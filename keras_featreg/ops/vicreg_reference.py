"""The reference code's VICReg formulation: the benchmarks' baselines.

facebookresearch/vicreg builds the full d x d covariance, masks its
diagonal and differentiates with autodiff. These functions do the same,
written independently of `keras_featreg.ops.vicreg` on purpose: the
benchmarks time the library against them, and the tests check that both
agree. The library never calls them.
"""

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix


def _center(z: tf.Tensor) -> tf.Tensor:
    return z - tf.reduce_mean(z, axis=0, keepdims=True)


def reference_vicreg_covariance(z) -> tf.Tensor:
    """The reference d x d formulation of `vicreg_covariance` (autodiff).

    Kept for benchmarks and tests: builds the full d x d covariance and
    masks its diagonal, as facebookresearch/vicreg does.
    """
    z = as_matrix(z, "z", min_batch_size=2)
    zc = _center(z)
    n = tf.cast(tf.shape(z)[0], z.dtype)
    dim = tf.shape(z)[1]
    cov = tf.matmul(zc, zc, transpose_a=True) / (n - 1.0)
    offdiag = cov * (1.0 - tf.eye(dim, dtype=z.dtype))
    return tf.reduce_sum(tf.square(offdiag)) / tf.cast(dim, z.dtype)


def reference_vicreg_loss(z_a, z_b) -> tf.Tensor:
    """The reference VICReg loss with the d x d covariance (25/25/1)."""
    z_a = as_matrix(z_a, "z_a", min_batch_size=2)
    z_b = as_matrix(z_b, "z_b", min_batch_size=2)
    invariance = tf.reduce_mean(tf.square(z_a - z_b))

    def std(z):
        zc = _center(z)
        n = tf.cast(tf.shape(z)[0], z.dtype)
        return tf.sqrt(tf.reduce_sum(tf.square(zc), axis=0) / (n - 1.0) + 1e-4)

    variance = (
        tf.reduce_mean(tf.nn.relu(1.0 - std(z_a))) / 2.0
        + tf.reduce_mean(tf.nn.relu(1.0 - std(z_b))) / 2.0
    )
    covariance = reference_vicreg_covariance(z_a) + reference_vicreg_covariance(
        z_b
    )
    return 25.0 * invariance + 25.0 * variance + 1.0 * covariance
