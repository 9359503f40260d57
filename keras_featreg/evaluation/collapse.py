"""Post-training collapse diagnostic on a whole embedding set.

TensorFlow (through `keras_featreg.ops`) is imported when the report runs,
not with this module: `keras_featreg.evaluation` imports without it.
"""

from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_positive

# Unit-norm rows spread uniformly over d dimensions have a per-dimension
# std of about 1 / sqrt(d): 0.088 at d = 128, 0.044 at d = 512, 0.011 at
# d = 8192. 1e-3 is an order of magnitude below that up to d ~ 10^4 and far
# above float32 rounding noise (~1e-7), so it counts only dimensions that
# are (nearly) constant over the whole set: dead or always-on units.
DEFAULT_STD_THRESHOLD = 1e-3


def embedding_collapse_report(
    embeddings,
    std_threshold: float = DEFAULT_STD_THRESHOLD,
    normalize: bool = True,
) -> dict:
    """How collapsed an embedding set is: s_mu against its bounds, dead dims.

    The SVMax paper's post-training diagnostic (Fig. 6 and 15): the mean
    singular value of the whole (L2-normalized) embedding set of N samples
    in d dimensions, placed between its bounds, plus VICReg's view of
    collapse, the per-dimension standard deviation.

    ```python
    e = l2_normalize(embeddings, axis=-1)         # normalize=True
    s_mu = mean(singular_values(e))
    L, U = svmax_bounds(N, d)                     # k = min(N, d)
    position = (s_mu - L) / (U - L)               # 0 collapsed, 1 uniform
    std = std(e, axis=0)                          # population std, per dim
    collapsed_dimensions = sum(std < std_threshold)
    ```

    When U == L (N = 1 or d = 1) `position` is defined as 1.0, matching
    the regularizer's zero exponent. With `normalize=False` the bounds and
    the default threshold assume unit-norm rows, so read them with care.
    Runs eagerly (it returns Python numbers); a 60,000 x 512 set needs one
    512 x 512 eigendecomposition.

    Args:
        embeddings: Float array or tensor `(num_samples, dim)` (rank > 2
            is flattened over all but the first axis).
        std_threshold: Float > 0, a dimension whose standard deviation over
            the set is below this counts as collapsed. Defaults to `1e-3`
            (unit-norm rows spread uniformly have std ~ 1 / sqrt(d), 0.044
            at d = 512).
        normalize: Bool, whether to L2-normalize the rows first (zero rows
            stay zero). Defaults to `True`.

    Returns:
        Dict of Python numbers: `num_samples`, `dim` (ints),
        `mean_singular_value`, `lower_bound`, `upper_bound`, `position`
        (floats), `collapsed_dimensions` (int), `min_std`, `mean_std`
        (floats).

    Raises:
        ValueError: `embeddings` is empty, has rank < 2 or contains NaN/Inf.
        TypeError: `embeddings` is not floating point.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> rng = np.random.default_rng(0)
    >>> embeddings = rng.normal(size=(256, 1)) * np.ones((1, 16))  # rank 1
    >>> report = keras_featreg.evaluation.embedding_collapse_report(
    ...     embeddings
    ... )
    >>> round(report["position"], 4), report["collapsed_dimensions"]  # at L
    (0.0, 0)

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Fig. 6, 15.
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Sec. 3.1.
    """
    import tensorflow as tf

    from keras_featreg.ops import as_matrix
    from keras_featreg.ops import l2_normalize
    from keras_featreg.ops import mean_singular_value
    from keras_featreg.ops import svmax_bounds

    std_threshold = check_positive("std_threshold", std_threshold)
    normalize = check_bool("normalize", normalize)
    x = as_matrix(embeddings, "embeddings")
    if normalize:
        x = l2_normalize(x)
    num_samples, dim = (int(n) for n in x.shape)
    s_mu = float(mean_singular_value(x))
    lower, upper = svmax_bounds(num_samples, dim)
    position = (s_mu - lower) / (upper - lower) if upper > lower else 1.0
    std = tf.math.reduce_std(x, axis=0)
    return {
        "num_samples": num_samples,
        "dim": dim,
        "mean_singular_value": s_mu,
        "lower_bound": lower,
        "upper_bound": upper,
        "position": position,
        "collapsed_dimensions": int(
            tf.reduce_sum(tf.cast(std < std_threshold, tf.int32))
        ),
        "min_std": float(tf.reduce_min(std)),
        "mean_std": float(tf.reduce_mean(std)),
    }
