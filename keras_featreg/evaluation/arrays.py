"""Input checks and small array helpers shared by the evaluation functions.

NumPy only: `keras_featreg.evaluation`'s retrieval and clustering do not
need TensorFlow.

Scale. Rankings, k-NN votes and k-means clusterings do not change when all
embeddings are multiplied by the same positive number, but float32 (the
precision of the searches) cannot hold the squares of embeddings of scale
1e-25 (they underflow) or 1e25 (they overflow). `as_scaled_embeddings`
divides such embeddings by a power of two near their largest |value|, in
their own precision, before casting them to float32: exact, and results
equal to those at scale 1.
"""

import math

import numpy as np

# Largest |value| left unscaled: squares and dot products of values within
# [2**-30, 2**30] stay far from float32's limits (~1e-38, ~3e38).
_SAFE_EXPONENT = 30


def _as_real_matrix(embeddings, name: str) -> np.ndarray:
    """`embeddings` as a real `(n, features)` array, in its own dtype."""
    x = np.asarray(embeddings)
    if x.dtype == bool or not (
        np.issubdtype(x.dtype, np.floating)
        or np.issubdtype(x.dtype, np.integer)
    ):
        raise TypeError(
            f"`{name}` must hold real numbers. Received: {name}.dtype={x.dtype}"
        )
    if x.ndim < 2:
        raise ValueError(
            f"`{name}` must have shape (num_samples, features). "
            f"Received: {name}.shape={x.shape}"
        )
    if x.shape[0] == 0 or x[0].size == 0:
        raise ValueError(
            f"`{name}` must not be empty. Received: {name}.shape={x.shape}"
        )
    return x.reshape(x.shape[0], -1)


def _check_finite(x: np.ndarray, name: str, note: str = "") -> None:
    if not np.isfinite(x).all():
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"`{name}` must not contain NaN or Inf values{note}. "
            f"Received: {name} with {bad} non-finite entries"
        )


def as_embeddings(embeddings, name: str = "embeddings") -> np.ndarray:
    """Validates embeddings; returns a C-contiguous float32 `(n, d)` array.

    The values are kept as given (a linear probe's features keep their
    scale); scale-invariant evaluations use `as_scaled_embeddings`.

    Raises:
        TypeError: non-numeric (or boolean, or complex) values.
        ValueError: rank < 2, no samples or features, NaN/Inf values, or
            values whose squares overflow float32.
    """
    x = _as_real_matrix(embeddings, name)
    x = np.ascontiguousarray(x, np.float32)
    _check_finite(x, name, " (or values beyond float32)")
    if not np.isfinite(squared_norms(x)).all():
        raise ValueError(
            f"`{name}` is too large: squared norms overflow float32; rescale "
            f"it. Received: {name} with max |value|={np.abs(x).max()}"
        )
    return x


def as_scaled_embeddings(
    embeddings, name: str = "embeddings"
) -> tuple[np.ndarray, float]:
    """Validates embeddings; returns float32 `(x / scale, scale)`.

    For scale-invariant evaluations (rankings, votes, clusterings).
    `scale` is 1 when the largest |value| lies in `[2**-30, 2**30]`, else a
    power of two near it; the division is done in the input's precision
    (float64 stays float64 until the cast), so float64 embeddings of any
    finite scale are evaluated as at scale 1.

    Returns:
        `(x, scale)`: a C-contiguous float32 `(n, d)` array whose largest
        |value| is at most `2**30`, and a Python float.

    Raises:
        TypeError: non-numeric (or boolean, or complex) values.
        ValueError: rank < 2, no samples or features, or NaN/Inf values.
    """
    x = _as_real_matrix(embeddings, name)
    if np.issubdtype(x.dtype, np.floating):
        _check_finite(x, name)
    largest = float(np.max(np.abs(x)))
    scale = 1.0
    if largest > 0 and not (
        2.0**-_SAFE_EXPONENT <= largest <= 2.0**_SAFE_EXPONENT
    ):
        scale = 2.0 ** math.floor(math.log2(largest))
    if scale == 1.0:
        return np.ascontiguousarray(x, np.float32), scale
    scaled = np.empty(x.shape, np.float32)
    np.divide(x, scale, out=scaled, casting="unsafe")  # exact, then rounded
    return scaled, scale


def as_labels(labels, num_samples: int, name: str = "labels") -> np.ndarray:
    """Validates labels: shape `(num_samples,)` (or `(num_samples, 1)`)."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.shape != (num_samples,):
        raise ValueError(
            f"`{name}` must have shape ({num_samples},): one label per "
            f"embedding. Received: {name}.shape={labels.shape}"
        )
    return labels


def squared_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def l2_normalize(x: np.ndarray, epsilon: float = 1e-12) -> np.ndarray:
    """Rows scaled to unit norm; all-zero rows stay zero.

    Each row is first multiplied by a power of two that brings its largest
    |value| into [0.5, 1) (exact), so rows of any scale (1e-30, 1e30)
    reach unit norm; rows of ordinary scale give the same bits as dividing
    by their norm directly.
    """
    _, exponents = np.frexp(np.max(np.abs(x), axis=1))
    x = np.ldexp(x, -exponents[:, None])
    norms = np.sqrt(squared_norms(x))[:, None]
    return (x / np.maximum(norms, epsilon)).astype(np.float32, copy=False)


def import_faiss():
    """Imports the optional faiss package or says how to install it."""
    try:
        import faiss
    except ImportError as error:
        raise ImportError(
            '`backend="faiss"` needs the optional faiss package: '
            "`pip install faiss-cpu`. Received: backend='faiss'"
        ) from error
    return faiss
