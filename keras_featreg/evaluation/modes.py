"""Mode coverage of generated samples and angular uniformity of 2-D points.

Two whole-set diagnostics for the SVMax paper's toy experiments: how many
modes of a Gaussian mixture a GAN generator covers (Sec. 4.2, Fig. 5) and
how evenly embeddings on the 2-D unit circle spread (Sec. 4.3, Fig. 7).
Both take NumPy arrays (or anything `np.asarray` accepts) and return Python
numbers.
"""

import math

import numpy as np

from keras_featreg.utils.validation import check_float
from keras_featreg.utils.validation import check_int
from keras_featreg.utils.validation import check_positive


def _as_points(value, name: str, dim: int | None = None) -> np.ndarray:
    """`value` as a finite float64 `(n, d)` array with n >= 1."""
    array = np.asarray(value)
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.floating)
        or np.issubdtype(array.dtype, np.integer)
    ):
        raise TypeError(
            f"`{name}` must hold real numbers. Received: "
            f"{name}.dtype={array.dtype}"
        )
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(
            f"`{name}` must be a non-empty 2-D array (num_points, dim). "
            f"Received: {name}.shape={array.shape}"
        )
    if dim is not None and array.shape[1] != dim:
        raise ValueError(
            f"`{name}` must have {dim} columns. "
            f"Received: {name}.shape={array.shape}"
        )
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise ValueError(
            f"`{name}` must not contain NaN or Inf. "
            f"Received: {name} with {int(np.sum(~np.isfinite(array)))} "
            "non-finite values"
        )
    return array


def mode_coverage(
    samples,
    centers,
    std: float,
    num_sigma: float = 3.0,
    min_share: float = 0.01,
) -> dict:
    """Modes of a Gaussian mixture covered by samples, and sample quality.

    The usual mixture-of-Gaussians GAN metrics (VEEGAN, Srivastava et al.
    2017; PacGAN, Lin et al. 2018): a sample is *high quality* if it lies
    within `num_sigma` standard deviations of its nearest mode; a mode is
    *covered* if enough high-quality samples fall on it. Papers differ on
    "enough" (one sample, or a fixed count); here it is a share of all
    samples, `min_share`, and at least one sample.

    ```python
    nearest = argmin_k |x_i - c_k|                 # per sample
    good_i = |x_i - c_nearest| <= num_sigma * std
    counts[k] = sum_i good_i * (nearest_i == k)
    covered = sum_k (counts[k] >= max(1, min_share * n))
    high_quality_share = sum_i good_i / n
    ```

    With the SVMax paper's ring (8 modes, std 0.02) and 2,500 samples, the
    default `min_share=0.01` asks for 25 samples per mode, 8 % of a mode's
    fair share (12.5 %). Distances are Euclidean in float64; a sample at
    the same distance from two modes goes to the lower index.

    Args:
        samples: Array-like of real numbers `(num_samples, dim)`.
        centers: Array-like of real numbers `(num_modes, dim)`, the mode
            means.
        std: Float > 0, the standard deviation of each (isotropic) mode.
        num_sigma: Float > 0, the radius of a mode in standard deviations.
            Defaults to `3.0`.
        min_share: Float in `[0, 1]`, the share of all samples a mode needs
            to count as covered (0 means one sample is enough). Defaults to
            `0.01`.

    Returns:
        Dict: `modes_covered` (int), `num_modes` (int),
        `high_quality_share` (float in [0, 1]), `counts` (list of ints,
        high-quality samples per mode) and `min_count` (int, the count a
        mode needed).

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> angles = 2 * np.pi * np.arange(8) / 8
    >>> centers = 2.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    >>> samples = centers[np.arange(2500) % 8]
    >>> keras_featreg.evaluation.mode_coverage(samples, centers, std=0.02)[
    ...     "modes_covered"
    ... ]
    8

    Reference:
    - [Srivastava et al., 2017](https://arxiv.org/abs/1705.07761), Sec. 5.1.
    - [Metz et al., 2017](https://arxiv.org/abs/1611.02163), Sec. 3.1.
    """
    std = check_positive("std", std)
    num_sigma = check_positive("num_sigma", num_sigma)
    min_share = check_float("min_share", min_share, minimum=0.0, maximum=1.0)
    centers = _as_points(centers, "centers")
    samples = _as_points(samples, "samples", dim=centers.shape[1])
    num_samples, num_modes = samples.shape[0], centers.shape[0]

    distances = np.linalg.norm(
        samples[:, np.newaxis, :] - centers[np.newaxis, :, :], axis=-1
    )
    nearest = np.argmin(distances, axis=1)
    good = distances[np.arange(num_samples), nearest] <= num_sigma * std
    counts = np.bincount(nearest[good], minlength=num_modes)
    # A small tolerance keeps e.g. 0.01 * 2500 = 25.000000000000004 at 25.
    min_count = max(1, math.ceil(min_share * num_samples - 1e-9))
    return {
        "modes_covered": int(np.sum(counts >= min_count)),
        "num_modes": int(num_modes),
        "high_quality_share": float(np.mean(good)),
        "counts": [int(count) for count in counts],
        "min_count": int(min_count),
    }


def angular_uniformity(embeddings_2d, bins: int = 36) -> float:
    """How evenly 2-D points spread over angles: 1 uniform, 0 one direction.

    The normalized Shannon entropy of the histogram of the points' angles
    over `bins` equal sectors of the circle:

    ```python
    theta = atan2(y, x)                      # in [-pi, pi]
    p = histogram(theta, bins, [-pi, pi]) / n
    uniformity = -sum(p * log(p)) / log(bins)   # 0 log 0 = 0
    ```

    Only the direction of each point matters (the norm is ignored, so the
    embeddings need not be normalized); an all-zero row has angle 0.
    Points all in one sector give 0, one point per sector (or any equal
    split over all sectors) gives 1. A finite sample of a uniform
    distribution lands slightly below 1: about `1 - (bins - 1) /
    (2 n ln(bins))` for n points (0.99 for n = 500, bins = 36). Entropy,
    unlike the mean resultant length of circular statistics, also tells
    two antipodal clusters (0.19 with 36 bins) from a uniform spread.

    Args:
        embeddings_2d: Array-like of real numbers `(num_points, 2)`.
        bins: Int >= 2, the number of angular sectors. Defaults to `36`
            (10 degrees each).

    Returns:
        Float in `[0, 1]`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> angles = (np.arange(360) + 0.5) * 2 * np.pi / 360
    >>> points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    >>> keras_featreg.evaluation.angular_uniformity(points)
    1.0

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Fig. 7.
    """
    bins = check_int("bins", bins, minimum=2)
    points = _as_points(embeddings_2d, "embeddings_2d", dim=2)
    angles = np.arctan2(points[:, 1], points[:, 0])
    counts, _ = np.histogram(angles, bins=bins, range=(-np.pi, np.pi))
    shares = counts[counts > 0] / points.shape[0]
    entropy = -np.sum(shares * np.log(shares))
    return float(np.clip(entropy / math.log(bins), 0.0, 1.0))
