"""SVMax's penalty on a batch's mean singular value (Taha et al., 2021).

```python
s_mu = mean(singular_values(l2_normalize(x, axis=-1)))  # normalize=True
L, U = svmax_bounds(batch_size, dim)                    # of this batch
penalty = factor * exp((U - s_mu) / (U - L))            # bounded=True
penalty = -factor * s_mu                                # bounded=False
```

The one place the penalty is computed: `SVMaxRegularizer`,
`InvarianceSVMaxLoss`, `RegularizedLoss` (through the regularizer) and
`EmbeddingRegularization` (likewise) call `svmax_penalty`.
"""

import tensorflow as tf

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.bounds import svmax_bounds
from keras_featreg.ops.normalize import l2_normalize
from keras_featreg.ops.singular_values import mean_singular_value
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_non_negative


def svmax_penalty(
    x, factor: float = 1.0, bounded: bool = True, normalize: bool = True
) -> tuple[tf.Tensor, tf.Tensor]:
    """SVMax's penalty of one batch, and its mean singular value s_mu.

    ```python
    s_mu = mean(singular_values(l2_normalize(x, axis=-1)))  # normalize=True
    L, U = svmax_bounds(batch_size, dim)                    # of this batch
    penalty = factor * exp((U - s_mu) / (U - L))            # bounded=True
    penalty = -factor * s_mu                                # bounded=False
    ```

    The bounded form (Eq. 4) lies in [factor, e * factor] for unit rows
    whatever b and d are; the bounds are those of the actual (dynamic)
    batch. When U == L (b = 1 or d = 1: one singular value, s_mu is fixed)
    the exponent is defined as 0 and the penalty is the constant `factor`,
    with zero gradient. The unbounded form (Eq. 1) is the one the paper
    uses on un-normalized embeddings. A batch with no rows (an empty
    replica) has penalty 0. Rank > 2 inputs are flattened over all but the
    batch axis. One singular value decomposition.

    Args:
        x: Float tensor `(batch_size, ...)`, the embedding batch.
        factor: Float >= 0, the paper's lambda. Defaults to `1.0`.
        bounded: Bool, the bounded form (Eq. 4) instead of
            `-factor * s_mu` (Eq. 1). Defaults to `True`.
        normalize: Bool, L2-normalize the rows first (zero rows stay zero),
            as the bounds assume. Defaults to `True`.

    Returns:
        `(penalty, s_mu)`: scalars, float32 (float64 for float64 input;
        half precision computes in float32); s_mu is that of the normalized
        rows when `normalize=True`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> x = keras.random.normal((32, 8), seed=1)
    >>> penalty, s_mu = keras_featreg.ops.svmax_penalty(x, factor=0.1)

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 1-4.
    """
    factor = check_non_negative("factor", factor)
    check_bool("bounded", bounded)
    check_bool("normalize", normalize)
    x = as_matrix(x, "x")
    if normalize:
        x = l2_normalize(x)
    s_mu = mean_singular_value(x)
    if bounded:
        # The bounds of b >= 1 rows: a batch with no rows has penalty 0.
        rows = tf.maximum(tf.shape(x)[0], 1)
        lower, upper = svmax_bounds(rows, tf.shape(x)[1])
        lower = tf.cast(lower, s_mu.dtype)
        upper = tf.cast(upper, s_mu.dtype)
        spread = upper - lower
        has_range = spread > 0
        safe_spread = tf.where(has_range, spread, tf.ones_like(spread))
        exponent = tf.where(
            has_range, (upper - s_mu) / safe_spread, tf.zeros_like(s_mu)
        )
        penalty = factor * tf.exp(exponent)
    else:
        penalty = -factor * s_mu
    # A batch with no rows (an empty replica) adds nothing.
    has_rows = tf.shape(x)[0] > 0
    penalty = tf.where(has_rows, penalty, tf.zeros_like(penalty))
    return penalty, s_mu
