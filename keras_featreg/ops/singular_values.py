"""The mean singular value s_mu of an embedding batch, fast and exact.

`tf.linalg.svd(x, compute_uv=False)` is the reference formulation: its
gradient runs a second full SVD. Here one eigendecomposition of the smaller
Gram matrix serves both passes:

- x (b x d) = U S V^T, k = min(b, d). If b >= d, G = x^T x = V S^2 V^T;
  otherwise G = x x^T = U S^2 U^T. Both are k x k.
- sum(s) = sum(sqrt(eig(G))), and d sum(s) / dx = U V^T, which is
  x P (b >= d) or P x (b < d) with P = W diag(1/s) W^T from the same
  eigenvectors W: the custom gradient reuses P and never decomposes again.

Precision. Forming the Gram squares the condition number: in float32 the
small singular values of a nearly collapsed batch (the case SVMax exists for)
lose 0.1-1 %. The graph therefore decides per batch: it decomposes the
float32 Gram and keeps the result only if the eigenvalues are well
separated from zero (lambda_min >= RCOND_FLOAT32 * lambda_max); otherwise it
recomputes the Gram and its eigendecomposition in float64, where the route is
exact to float32 output precision. Only when even the float64 Gram cannot
resolve the smallest singular vectors (cond(x) > 1e5, e.g. a square, nearly
collapsed batch) does it fall back to one float64 SVD with vectors, which
still serves both passes. Eigenvalues below the float64 noise floor
(rank-deficient batches) count as exact zeros: their singular pairs are
dropped from P, which gives the minimum-norm subgradient U_r V_r^T and keeps
the gradient finite on collapsed, rank-1 and all-zero batches.

Scale. s_mu is positively homogeneous (s_mu(c x) = c s_mu(x)) and its
gradient is scale invariant, so x is divided by max|x| first: huge or tiny
inputs neither overflow nor underflow the Gram.
"""

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix

# Keep the float32 Gram when lambda_min / lambda_max is at least this
# (cond(x) <= 10); measured in benchmarks/bench_ops.py.
RCOND_FLOAT32 = 1e-2
# Eigenvalues of the float64 Gram below this fraction of the largest, times
# k, are rounding noise: they are treated as zero.
_NOISE_FLOAT64 = 1e-15
# Below this lambda_min / lambda_max (cond(x) > 1e5) the float64 Gram's
# eigenvectors lose more than ~1e-4 of accuracy: take a float64 SVD instead.
RCOND_FLOAT64_GRAM = 1e-10
_EPS_FLOAT64 = 2.220446049250313e-16


def _spectrum(x: tf.Tensor):
    """Eigen-decomposes the smaller Gram of `x`: (eigenvalues, eigenvectors)."""
    tall = tf.shape(x)[0] >= tf.shape(x)[1]
    gram = tf.cond(
        tall,
        lambda: tf.matmul(x, x, transpose_a=True),
        lambda: tf.matmul(x, x, transpose_b=True),
    )
    return tf.linalg.eigh(gram)


def _sum_and_projector(eigenvalues, eigenvectors, noise):
    """Sum of the singular values and P = W diag(1/s) W^T (float64)."""
    eigenvalues = tf.cast(eigenvalues, tf.float64)
    eigenvectors = tf.cast(eigenvectors, tf.float64)
    k = tf.cast(tf.size(eigenvalues), tf.float64)
    largest = tf.reduce_max(eigenvalues)
    keep = eigenvalues > noise * k * largest
    safe = tf.where(keep, eigenvalues, tf.ones_like(eigenvalues))
    singular = tf.where(keep, tf.sqrt(safe), tf.zeros_like(safe))
    inverse = tf.where(keep, tf.math.rsqrt(safe), tf.zeros_like(safe))
    projector = tf.matmul(
        eigenvectors * inverse, eigenvectors, transpose_b=True
    )
    return tf.reduce_sum(singular), projector


def _svd_route(x: tf.Tensor):
    """Full float64 SVD: for batches too ill-conditioned for the Gram."""
    singular, left, right = tf.linalg.svd(tf.cast(x, tf.float64))
    largest = tf.reduce_max(singular)
    size = tf.cast(tf.reduce_max(tf.shape(x)), tf.float64)
    keep = singular > size * _EPS_FLOAT64 * largest
    singular = tf.where(keep, singular, tf.zeros_like(singular))
    left = left * tf.cast(keep, tf.float64)
    return tf.reduce_sum(singular), left, tf.transpose(right)


def _empty() -> tf.Tensor:
    return tf.zeros((0, 0), tf.float64)


@tf.custom_gradient
def _singular_value_sum(x: tf.Tensor):
    """Sum of singular values of a 2-D float32/float64 matrix, with U V^T grad.

    Three routes, chosen in the graph from the batch's conditioning:
    0: float32 Gram; 1: float64 Gram; 2: float64 SVD (the Gram's
    eigenvectors are too inaccurate for the gradient).
    """
    scale = tf.stop_gradient(tf.reduce_max(tf.abs(x)))
    scale = tf.where(scale > 0, scale, tf.ones_like(scale))
    scaled = x / scale

    def float64_routes():
        values, vectors = _spectrum(tf.cast(scaled, tf.float64))
        size = tf.cast(tf.size(values), tf.float64)
        kept = values > _NOISE_FLOAT64 * size * values[-1]
        smallest_kept = tf.reduce_min(tf.where(kept, values, values[-1]))
        accurate = smallest_kept >= RCOND_FLOAT64_GRAM * values[-1]

        def gram64():
            total, projector = _sum_and_projector(
                values, vectors, _NOISE_FLOAT64
            )
            return total, projector, _empty(), _empty(), tf.constant(1)

        def svd64():
            total, left, right = _svd_route(scaled)
            return total, _empty(), left, right, tf.constant(2)

        return tf.cond(accurate, gram64, svd64)

    if x.dtype == tf.float64:
        total, projector, left, right, route = float64_routes()
    else:
        values, vectors = _spectrum(scaled)
        well_conditioned = values[0] >= RCOND_FLOAT32 * values[-1]

        def float32_route():
            # No eigenvalue is near zero here, so nothing is dropped.
            total, projector = _sum_and_projector(values, vectors, 0.0)
            return total, projector, _empty(), _empty(), tf.constant(0)

        total, projector, left, right, route = tf.cond(
            well_conditioned, float32_route, float64_routes
        )

    def grad(upstream):
        tall = tf.shape(x)[0] >= tf.shape(x)[1]

        def product(matrix, p):
            return tf.cond(
                tall,
                lambda: tf.matmul(matrix, p),
                lambda: tf.matmul(p, matrix),
            )

        def gram_float32():
            return product(scaled, tf.cast(projector, x.dtype))

        def gram_float64():
            return tf.cast(
                product(tf.cast(scaled, tf.float64), projector), x.dtype
            )

        def svd_float64():
            return tf.cast(tf.matmul(left, right), x.dtype)

        direction = tf.switch_case(
            route, [gram_float32, gram_float64, svd_float64]
        )
        return tf.cast(upstream, x.dtype) * direction

    return tf.cast(total, x.dtype) * scale, grad


def mean_singular_value(x) -> tf.Tensor:
    """Mean singular value s_mu of a batch of embeddings.

    ```python
    s_mu = sum(singular_values(x)) / min(batch_size, features)
    ```

    The mean runs over the min(b, d) singular values a b x d matrix has, so
    it is defined for b < d as well (SVMax paper, appendix B.2). No
    normalization happens inside: L2-normalize the rows first for the bounds
    of `svmax_bounds` to apply.

    Computed from one eigendecomposition of the smaller Gram matrix, in
    float32 when the batch is well conditioned and in float64 otherwise
    (decided in the graph), with a custom gradient U V^T / k that reuses the
    decomposition. Exact to float32 precision on collapsed batches too;
    finite gradients on rank-deficient and all-zero batches (the
    minimum-norm subgradient).

    Args:
        x: Float tensor `(batch_size, features)`; rank > 2 is flattened over
            all but the batch axis. float16/bfloat16 compute in float32.

    Returns:
        Scalar s_mu, float64 for float64 input and float32 otherwise.

    Example:

    >>> x = keras.ops.eye(3)
    >>> float(keras_featreg.ops.mean_singular_value(x))
    1.0

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 1.
    """
    x = as_matrix(x, "x")
    k = tf.cast(tf.minimum(tf.shape(x)[0], tf.shape(x)[1]), x.dtype)
    return _singular_value_sum(x) / k


def reference_mean_singular_value(x) -> tf.Tensor:
    """The reference formulation: `mean(tf.linalg.svd(x, compute_uv=False))`.

    What the SVMax authors' code computes; its gradient runs a second SVD.
    Kept for benchmarks and tests.
    """
    x = as_matrix(x, "x")
    return tf.reduce_mean(tf.linalg.svd(x, compute_uv=False))
