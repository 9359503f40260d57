"""VICReg's variance, invariance and covariance terms.

Equal to the authors' reference code (facebookresearch/vicreg) on one
device:

```python
invariance = mean((z_a - z_b) ** 2)                       # F.mse_loss
std = sqrt(var(z, unbiased) + epsilon)                    # per dimension
variance = mean(relu(gamma - std))                        # one view
covariance = sum(offdiag(z_c^T z_c / (n - 1)) ** 2) / d   # one view
loss = 25 * invariance
     + 25 * (variance(z_a) + variance(z_b)) / 2          # averaged
     + 1 * (covariance(z_a) + covariance(z_b))            # summed
```

Where the paper and the code disagree we follow the code, because the
default weights (25, 25, 1) were tuned for it: the paper's invariance is
(1/n) sum_i ||z_i - z'_i||^2 (d times the code's mean over all entries),
and the paper's variance term sums the two views where the code averages
them.

Speed. The covariance term's d x d matrix costs O(b d^2) time and d^2
memory. When b < d we use

    ||offdiag(Z^T Z)||^2 = ||Z Z^T||_F^2 - sum_j (Z^T Z)_jj^2,

which needs only the b x b Gram, with a hand-written gradient
4 (Z Z^T Z - Z * diag(Z^T Z)) that reuses it. When b >= d the d x d matrix
is the smaller one; its diagonal is zeroed before squaring (no cancellation)
and the gradient 4 Z offdiag(Z^T Z) is hand-written too (one matmul instead
of autodiff's two). `vicreg_loss` validates and centers each view once and
skips terms whose weight is 0.
"""

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix
from keras_featreg.utils.validation import check_non_negative
from keras_featreg.utils.validation import check_positive


def _center(z: tf.Tensor) -> tf.Tensor:
    return z - tf.reduce_mean(z, axis=0, keepdims=True)


def _unbiased_denominator(z: tf.Tensor) -> tf.Tensor:
    # n - 1, floored at 1 so that a dynamic batch of 0 or 1 rows stays
    # finite; static b < 2 is an error.
    return tf.cast(tf.maximum(tf.shape(z)[0] - 1, 1), z.dtype)


def _defined(z: tf.Tensor, term: tf.Tensor) -> tf.Tensor:
    """`term` where the unbiased statistics exist (b >= 2), else 0.

    A batch of 0 or 1 rows (known only at run time: an empty replica, or a
    last partial batch of one) has no unbiased variance: its variance and
    covariance terms are defined as 0, with a zero gradient, so it adds
    nothing to the loss.
    """
    enough = tf.shape(z)[0] >= 2
    return tf.where(enough, term, tf.zeros_like(term))


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


def _offdiag_sum_of_squares(zc: tf.Tensor) -> tf.Tensor:
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


def _mean_square(difference: tf.Tensor) -> tf.Tensor:
    """mean(difference ** 2), 0 for an empty batch (not 0 / 0)."""
    total = tf.reduce_sum(tf.square(difference))
    size = tf.cast(tf.size(difference), difference.dtype)
    return tf.math.divide_no_nan(total, size)


def _views(z_a, z_b, min_batch_size: int):
    """Validates two views; `z_b` is cast to `z_a`'s compute dtype."""
    z_a = as_matrix(z_a, "z_a", min_batch_size=min_batch_size)
    z_b = as_matrix(z_b, "z_b", min_batch_size=min_batch_size)
    if (
        z_a.shape != z_b.shape
        and z_a.shape.is_fully_defined()
        and (z_b.shape.is_fully_defined())
    ):
        raise ValueError(
            "`z_a` and `z_b` must have the same shape. "
            f"Received: z_a.shape={z_a.shape}, z_b.shape={z_b.shape}"
        )
    features = (z_a.shape[1], z_b.shape[1])
    if None not in features and features[0] != features[1]:
        raise ValueError(
            "`z_a` and `z_b` must have the same number of features. "
            f"Received: z_a.shape={z_a.shape}, z_b.shape={z_b.shape}"
        )
    return z_a, tf.cast(z_b, z_a.dtype)


def _variance_term(zc, denominator, gamma, epsilon) -> tf.Tensor:
    variance = tf.reduce_sum(tf.square(zc), axis=0) / denominator
    std = tf.sqrt(variance + epsilon)
    hinge = tf.nn.relu(gamma - std)
    # TF's float32 reduction is off by ~2e-6 when the d values are equal
    # (a collapsed batch); the d-vector is cheap to reduce in float64.
    term = tf.cast(tf.reduce_mean(tf.cast(hinge, tf.float64)), zc.dtype)
    return _defined(zc, term)


def _covariance_term(zc, denominator) -> tf.Tensor:
    dim = tf.cast(tf.shape(zc)[1], zc.dtype)
    # Rounding can leave a tiny negative value from the Gram subtraction.
    offdiag = tf.nn.relu(_offdiag_sum_of_squares(zc))
    return _defined(zc, offdiag / (tf.square(denominator) * dim))


def vicreg_invariance(z_a, z_b) -> tf.Tensor:
    """Mean squared difference of two views' embeddings (VICReg's s(Z, Z')).

    ```python
    invariance = mean((z_a - z_b) ** 2)   # over batch and features
    ```

    Args:
        z_a: Float tensor `(batch_size, features)`, first view.
        z_b: Float tensor of the same shape, second view.

    Returns:
        Scalar, float32 (float64 for float64 inputs).

    Example:

    >>> z = keras.random.normal((8, 4))
    >>> float(keras_featreg.ops.vicreg_invariance(z, z))
    0.0

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 5.
    """
    z_a, z_b = _views(z_a, z_b, min_batch_size=1)
    return _mean_square(z_a - z_b)


def vicreg_variance(z, gamma: float = 1.0, epsilon: float = 1e-4) -> tf.Tensor:
    """VICReg's variance hinge on the per-dimension standard deviation.

    ```python
    std = sqrt(var(z, axis=0, unbiased) + epsilon)
    variance = mean(relu(gamma - std))
    ```

    A batch with fewer than 2 rows is an error when its size is static;
    when it is known only at run time (an empty replica under
    tf.distribute, a last partial batch of one) the term is 0, with a zero
    gradient: no unbiased variance exists.

    Args:
        z: Float tensor `(batch_size, features)` with batch_size >= 2.
        gamma: Float > 0, the target standard deviation. Defaults to `1.0`.
        epsilon: Float > 0, keeps the square root differentiable at zero
            variance. Defaults to `1e-4`.

    Returns:
        Scalar in [0, gamma], float32 (float64 for float64 inputs).

    Example:

    >>> z = keras.ops.ones((8, 4))  # collapsed: every row equal
    >>> round(float(keras_featreg.ops.vicreg_variance(z)), 2)
    0.99

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 1.
    """
    gamma = check_positive("gamma", gamma)
    epsilon = check_positive("epsilon", epsilon)
    z = as_matrix(z, "z", min_batch_size=2)
    return _variance_term(_center(z), _unbiased_denominator(z), gamma, epsilon)


def vicreg_covariance(z) -> tf.Tensor:
    """VICReg's covariance term: squared off-diagonal covariances over d.

    ```python
    cov = (z - mean(z))^T (z - mean(z)) / (n - 1)
    covariance = sum(offdiag(cov) ** 2) / d
    ```

    Uses the b x b Gram (no d x d matrix) when b < d and the d x d matrix
    otherwise, both with a hand-written gradient. Like `vicreg_variance`,
    0 for a batch of fewer than 2 rows known only at run time.

    Args:
        z: Float tensor `(batch_size, features)` with batch_size >= 2.

    Returns:
        Non-negative scalar, float32 (float64 for float64 inputs).

    Example:

    >>> z = keras.ops.eye(4)
    >>> float(keras_featreg.ops.vicreg_covariance(z)) > 0
    True

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 3-4.
    """
    z = as_matrix(z, "z", min_batch_size=2)
    return _covariance_term(_center(z), _unbiased_denominator(z))


def vicreg_loss(
    z_a,
    z_b,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    gamma: float = 1.0,
    epsilon: float = 1e-4,
) -> tf.Tensor:
    """The full two-view VICReg loss, as the authors' reference code.

    ```python
    loss = invariance_weight * invariance(z_a, z_b)
         + variance_weight * (variance(z_a) + variance(z_b)) / 2
         + covariance_weight * (covariance(z_a) + covariance(z_b))
    ```

    Each view is validated and centered once; terms whose weight is 0 are
    not computed.

    Args:
        z_a: Float tensor `(batch_size, features)`, first view's embeddings.
        z_b: Float tensor of the same shape, second view's.
        invariance_weight: Float >= 0, lambda. Defaults to `25.0`.
        variance_weight: Float >= 0, mu. Defaults to `25.0`.
        covariance_weight: Float >= 0, nu. Defaults to `1.0`.
        gamma: Float > 0, target standard deviation. Defaults to `1.0`.
        epsilon: Float > 0, variance stabilizer. Defaults to `1e-4`.

    Returns:
        Scalar, float32 (float64 for float64 inputs).

    Example:

    >>> z_a = keras.random.normal((16, 8), seed=1)
    >>> z_b = keras.random.normal((16, 8), seed=2)
    >>> loss = keras_featreg.ops.vicreg_loss(z_a, z_b)

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 6.
    """
    invariance_weight = check_non_negative(
        "invariance_weight", invariance_weight
    )
    variance_weight = check_non_negative("variance_weight", variance_weight)
    covariance_weight = check_non_negative(
        "covariance_weight", covariance_weight
    )
    gamma = check_positive("gamma", gamma)
    epsilon = check_positive("epsilon", epsilon)
    z_a, z_b = _views(z_a, z_b, min_batch_size=2)
    # Zero, but still connected to both views (zero, not None, gradients).
    loss = 0.0 * (tf.reduce_mean(z_a) + tf.reduce_mean(z_b))
    if invariance_weight:
        loss += invariance_weight * _mean_square(z_a - z_b)
    if variance_weight or covariance_weight:
        denominator = _unbiased_denominator(z_a)
        centered = (_center(z_a), _center(z_b))
        if variance_weight:
            loss += (variance_weight / 2.0) * tf.add_n(
                [
                    _variance_term(zc, denominator, gamma, epsilon)
                    for zc in centered
                ]
            )
        if covariance_weight:
            loss += covariance_weight * tf.add_n(
                [_covariance_term(zc, denominator) for zc in centered]
            )
    return loss


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
