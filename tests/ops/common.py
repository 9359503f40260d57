"""NumPy float64 re-derivations and degenerate batches for tests/ops."""

import numpy as np
import tensorflow as tf

# ------------------------------------------------------------- batches


def unit_rows(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def degenerate_batches(batch_size, dim, seed=0):
    """{name: float64 array (batch_size, dim)}, random and degenerate."""
    rng = np.random.default_rng(seed)
    shape = (batch_size, dim)
    base = rng.normal(size=(1, dim))
    random = rng.normal(size=shape)
    half = rng.normal(size=((batch_size + 1) // 2, dim))
    # Integer factors: the outer product is exact in float16 too, so the
    # batch stays exactly rank 1 after any cast.
    left = np.arange(1, batch_size + 1) % 7 + 1.0
    right = np.arange(dim) % 5 - 2.0
    right[0] = 3.0  # never all zero
    return {
        "random": random,
        "collapsed": np.repeat(base, batch_size, axis=0),
        "nearly_collapsed": base + 1e-3 * rng.normal(size=shape),
        "rank_1": np.outer(left, right),
        "all_zero": np.zeros(shape),
        "duplicate_rows": np.repeat(half, 2, axis=0)[:batch_size],
        "huge": 1e30 * random,
        "tiny": 1e-30 * random,
    }


# -------------------------------------------------- singular values


def numpy_singular_values(x):
    return np.linalg.svd(np.asarray(x, np.float64), compute_uv=False)


def numpy_mean_singular_value(x):
    """s_mu = sum of the min(b, d) singular values / min(b, d)."""
    singular = numpy_singular_values(x)
    return singular.sum() / min(np.shape(x))


def numpy_mean_singular_value_gradient(x, rtol=1e-10):
    """U_r V_r^T / k over the singular values above rtol * s_max.

    For a full-rank x this is the gradient of s_mu; for a rank-deficient x
    it is the minimum-norm subgradient.
    """
    x = np.asarray(x, np.float64)
    left, singular, right = np.linalg.svd(x, full_matrices=False)
    keep = singular > rtol * max(singular.max(), 1e-300)
    return left[:, keep] @ right[keep] / min(x.shape)


def numpy_rank(x, rtol=1e-10):
    singular = numpy_singular_values(x)
    return int(np.sum(singular > rtol * max(singular.max(), 1e-300)))


# ----------------------------------------------------------- VICReg
# The authors' reference code, written out (seeds/README.md): unbiased
# variance, std = sqrt(var + eps), the variance hinge averaged over the two
# views, the covariance term summed over the views and divided by d,
# invariance = mean over all entries.


def numpy_invariance(z_a, z_b):
    z_a = np.asarray(z_a, np.float64)
    z_b = np.asarray(z_b, np.float64)
    return np.mean((z_a - z_b) ** 2)


def numpy_variance(z, gamma=1.0, epsilon=1e-4):
    z = np.asarray(z, np.float64)
    n, d = z.shape
    hinges = []
    for j in range(d):
        column = z[:, j]
        var = np.sum((column - column.mean()) ** 2) / (n - 1)
        std = np.sqrt(var + epsilon)
        hinges.append(max(gamma - std, 0.0))
    return np.mean(hinges)


def numpy_covariance(z):
    z = np.asarray(z, np.float64)
    n, d = z.shape
    zc = z - z.mean(axis=0)
    total = 0.0
    for j in range(d):
        for k in range(d):
            if j != k:
                cov_jk = np.sum(zc[:, j] * zc[:, k]) / (n - 1)
                total += cov_jk**2
    return total / d


def numpy_vicreg_loss(
    z_a,
    z_b,
    invariance_weight=25.0,
    variance_weight=25.0,
    covariance_weight=1.0,
    gamma=1.0,
    epsilon=1e-4,
):
    return (
        invariance_weight * numpy_invariance(z_a, z_b)
        + variance_weight
        * (
            numpy_variance(z_a, gamma, epsilon)
            + numpy_variance(z_b, gamma, epsilon)
        )
        / 2.0
        + covariance_weight * (numpy_covariance(z_a) + numpy_covariance(z_b))
    )


# -------------------------------------------------------- gradients


def numerical_gradient(function, x, step=1e-6):
    """Central differences of a scalar NumPy function, float64."""
    x = np.array(x, np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += step
        minus[index] -= step
        grad[index] = (function(plus) - function(minus)) / (2.0 * step)
    return grad


def value_and_gradients(function, *inputs):
    """Runs `function(*tensors)` under a tape: (value, [gradients])."""
    tensors = [tf.convert_to_tensor(x) for x in inputs]
    with tf.GradientTape() as tape:
        for tensor in tensors:
            tape.watch(tensor)
        value = function(*tensors)
    return value, tape.gradient(value, tensors)


def relative_error(actual, expected):
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    scale = max(np.linalg.norm(expected), 1e-300)
    return np.linalg.norm(actual - expected) / scale
