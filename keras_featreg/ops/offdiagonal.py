"""The sum of squared off-diagonal entries of Z^T Z, cheaply.

VICReg's covariance term needs ||offdiag(Z^T Z)||^2 of a centered batch Z
(b x d). The d x d matrix costs O(b d^2) time and d^2 memory. When b < d
we use

    ||offdiag(Z^T Z)||^2 = ||Z Z^T||_F^2 - sum_j (Z^T Z)_jj^2,

which needs only the b x b Gram, with a hand-written gradient
4 (Z Z^T Z - Z * diag(Z^T Z)) that reuses it. When b >= d the d x d matrix
is the smaller one; its diagonal is zeroed before squaring (no cancellation)
and the gradient 4 Z offdiag(Z^T Z) is hand-written too (one matmul instead
of autodiff's two). A static shape picks the route when tracing; a dynamic
one with `tf.cond`.
"""

import tensorflow as tf


@tf.custom_gradient
def _offdiag_sum_of_squares_gram(zc: tf.Tensor):
    """||offdiag(zc^T zc)||^2 through the b x b Gram (for b < d)."""
    gram = tf.matmul(zc, zc, transpose_b=True)
    column_sq = tf.reduce_sum(tf.square(zc), axis=0)
    value = tf.reduce_sum(tf.square(gram)) - tf.reduce_sum(tf.square(column_sq))

    def grad(upstream):
        return (4.0 * upstream) * (tf.matmul(gram, zc) - zc * column_sq)

    return value, grad


@tf.custom_gradient
def _offdiag_sum_of_squares_dxd(zc: tf.Tensor):
    """||offdiag(zc^T zc)||^2 through the d x d matrix (for b >= d)."""
    cross = tf.matmul(zc, zc, transpose_a=True)
    offdiag = tf.linalg.set_diag(cross, tf.zeros_like(cross[0]))
    value = tf.reduce_sum(tf.square(offdiag))

    def grad(upstream):
        return (4.0 * upstream) * tf.matmul(zc, offdiag)

    return value, grad


def offdiag_sum_of_squares(zc: tf.Tensor) -> tf.Tensor:
    """||offdiag(zc^T zc)||^2 by the cheaper route, with its gradient.

    Args:
        zc: Float tensor `(batch_size, features)` (VICReg: centered).

    Returns:
        Scalar of `zc`'s dtype.
    """
    batch_size, dim = zc.shape
    if batch_size is not None and dim is not None:  # static: pick now
        if batch_size < dim:
            return _offdiag_sum_of_squares_gram(zc)
        return _offdiag_sum_of_squares_dxd(zc)
    return tf.cond(
        tf.shape(zc)[0] < tf.shape(zc)[1],
        lambda: _offdiag_sum_of_squares_gram(zc),
        lambda: _offdiag_sum_of_squares_dxd(zc),
    )
