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

Speed. The covariance term uses the b x b Gram (no d x d matrix) when
b < d, both routes with a hand-written gradient
(`keras_featreg.ops.offdiagonal`).

One home. Each term is computed in one function (`_invariance`,
`_variance_term`, `_covariance_term`) and `vicreg_terms` returns the three;
`vicreg_loss`, `keras_featreg.losses.VICRegLoss` and
`keras_featreg.regularizers.VICRegRegularizer` are weighted sums of it.
`vicreg_terms` validates and centers each view once and skips terms whose
weight is 0. `reference_vicreg_loss` and `reference_vicreg_covariance`
(`keras_featreg.ops.vicreg_reference`) are the benchmarks' baselines.
"""

from typing import NamedTuple

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.batch import as_view_pair
from keras_featreg.ops.batch import gather_batch
from keras_featreg.ops.offdiagonal import offdiag_sum_of_squares
from keras_featreg.utils.validation import check_bool
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


class VICRegTerms(NamedTuple):
    """VICReg's three unweighted terms (`keras_featreg.ops.vicreg_terms`)."""

    invariance: tf.Tensor  # (batch_size,): mean_j (z_a - z_b)[i, j] ** 2
    variance: tf.Tensor  # scalar: (v(z_a) + v(z_b)) / 2
    covariance: tf.Tensor  # scalar: c(z_a) + c(z_b)


TERM_NAMES = VICRegTerms._fields


def _invariance(z_a, z_b) -> tf.Tensor:
    """Per row: mean_j (z_a[i, j] - z_b[i, j]) ** 2, shape `(batch_size,)`."""
    return tf.reduce_mean(tf.square(z_a - z_b), axis=-1)


def _batch_mean(per_row: tf.Tensor) -> tf.Tensor:
    """mean over the rows, 0 for an empty batch (not 0 / 0)."""
    size = tf.cast(tf.size(per_row), per_row.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(per_row), size)


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
    offdiag = tf.nn.relu(offdiag_sum_of_squares(zc))
    return _defined(zc, offdiag / (tf.square(denominator) * dim))


def _check_skip(skip) -> frozenset:
    if isinstance(skip, str) or not all(name in TERM_NAMES for name in skip):
        raise ValueError(
            f"`skip` must be a tuple of names among {TERM_NAMES}. "
            f"Received: skip={skip!r}"
        )
    return frozenset(skip)


def _terms(z_a, z_b, gamma, epsilon, gather, skip) -> VICRegTerms:
    """`vicreg_terms` of validated views (`z_b` may be `None`)."""
    views = (z_a,) if z_b is None else (z_a, z_b)
    local_views = views

    def zero():
        # 0, still connected to the views (zero, not None, gradients):
        # 0 * x is 0 for any finite x, also for a batch with no rows.
        return tf.add_n([tf.reduce_sum(0.0 * z) for z in local_views])

    if z_b is None or "invariance" in skip:
        invariance = tf.zeros(tf.shape(z_a)[:1], z_a.dtype) + zero()
    else:
        invariance = _invariance(z_a, z_b)
    if gather:  # the batch statistics of the global batch
        views = gather_batch(views)
    if {"variance", "covariance"} <= skip:
        return VICRegTerms(invariance, zero(), zero())
    denominator = _unbiased_denominator(views[0])
    centered = [_center(z) for z in views]
    if "variance" in skip:
        variance = zero()
    else:
        variance = tf.add_n(
            [_variance_term(zc, denominator, gamma, epsilon) for zc in centered]
        ) / float(len(views))
    if "covariance" in skip:
        covariance = zero()
    else:
        covariance = tf.add_n(
            [_covariance_term(zc, denominator) for zc in centered]
        )
    return VICRegTerms(invariance, variance, covariance)


def vicreg_terms(
    z_a,
    z_b=None,
    gamma: float = 1.0,
    epsilon: float = 1e-4,
    gather: bool = False,
    skip: tuple = (),
) -> VICRegTerms:
    """VICReg's three unweighted terms: the one place they are computed.

    ```python
    invariance[i] = mean_j (z_a[i, j] - z_b[i, j]) ** 2   # per row
    variance = (v(z_a) + v(z_b)) / 2      # v(z) = mean(relu(gamma - std(z)))
    covariance = c(z_a) + c(z_b)          # c(z) = sum(offdiag(cov(z))^2) / d
    ```

    with `std = sqrt(unbiased var + epsilon)`. Every VICReg quantity of the
    library is a weighted sum of these terms: `vicreg_loss` (mean of the
    invariance), `keras_featreg.losses.VICRegLoss` (per-row invariance plus
    the batch terms) and `keras_featreg.regularizers.VICRegRegularizer`
    (one view: `z_b=None`, the variance and covariance of `z_a`, the
    invariance 0).

    A batch with fewer than 2 rows is an error when its size is static;
    when it is known only at run time (an empty replica under
    tf.distribute, a last partial batch of one) the variance and covariance
    are 0, with a zero gradient: no unbiased variance exists. The
    covariance uses the b x b Gram (no d x d matrix) when b < d and the
    d x d matrix otherwise, both with a hand-written gradient.

    Args:
        z_a: Float tensor `(batch_size, features)`, first view's embeddings.
        z_b: Float tensor of the same shape, second view's; or `None` (one
            view). Defaults to `None`.
        gamma: Float > 0, target standard deviation. Defaults to `1.0`.
        epsilon: Float > 0, variance stabilizer. Defaults to `1e-4`.
        gather: Bool, compute the variance and covariance on the global
            batch inside `strategy.run` (`gather_batch`, with gradient); the
            invariance stays per local row. Defaults to `False`.
        skip: Tuple of term names not to compute (returned as 0, with zero
            gradients), e.g. those whose weight is 0. Defaults to `()`.

    Returns:
        `VICRegTerms(invariance, variance, covariance)`: the invariance per
        row `(batch_size,)`, the others scalars; float32 (float64 for
        float64 inputs).

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> z_a = keras.random.normal((16, 8), seed=1)
    >>> z_b = keras.random.normal((16, 8), seed=2)
    >>> terms = keras_featreg.ops.vicreg_terms(z_a, z_b)
    >>> tuple(terms.invariance.shape)
    (16,)

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 1-6.
    """
    gamma = check_positive("gamma", gamma)
    epsilon = check_positive("epsilon", epsilon)
    gather = check_bool("gather", gather)
    skip = _check_skip(skip)
    if z_b is None:
        z_a = as_matrix(z_a, "z_a", min_batch_size=2)
    else:
        z_a, z_b = as_view_pair(z_a, z_b, min_batch_size=2)
    return _terms(z_a, z_b, gamma, epsilon, gather, skip)


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

    >>> import keras
    >>> import keras_featreg
    >>> z = keras.random.normal((8, 4))
    >>> float(keras_featreg.ops.vicreg_invariance(z, z))
    0.0

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 5.
    """
    z_a, z_b = as_view_pair(z_a, z_b, min_batch_size=1)
    return _batch_mean(_invariance(z_a, z_b))


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

    >>> import keras
    >>> import keras_featreg
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

    >>> import keras
    >>> import keras_featreg
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

    A weighted sum of `vicreg_terms`:

    ```python
    loss = invariance_weight * mean(invariance(z_a, z_b))
         + variance_weight * (variance(z_a) + variance(z_b)) / 2
         + covariance_weight * (covariance(z_a) + covariance(z_b))
    ```

    Each view is validated and centered once; terms whose weight is 0 are
    not computed (`skip`).

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

    >>> import keras
    >>> import keras_featreg
    >>> z_a = keras.random.normal((16, 8), seed=1)
    >>> z_b = keras.random.normal((16, 8), seed=2)
    >>> loss = keras_featreg.ops.vicreg_loss(z_a, z_b)

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Eq. 6.
    """
    weights = (
        check_non_negative("invariance_weight", invariance_weight),
        check_non_negative("variance_weight", variance_weight),
        check_non_negative("covariance_weight", covariance_weight),
    )
    skip = tuple(
        name
        for name, weight in zip(TERM_NAMES, weights, strict=True)
        if not weight
    )
    terms = vicreg_terms(z_a, z_b, gamma, epsilon, skip=skip)
    return (
        weights[0] * _batch_mean(terms.invariance)
        + weights[1] * terms.variance
        + weights[2] * terms.covariance
    )
