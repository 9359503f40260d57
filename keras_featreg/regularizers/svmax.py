"""SVMax: spreads an embedding batch by maximizing its mean singular value."""

import keras
import tensorflow as tf

from keras_featreg.ops import svmax_penalty
from keras_featreg.regularizers.batch_statistic import BatchStatisticRegularizer
from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_non_negative


@keras.saving.register_keras_serializable(package="keras_featreg")
class SVMaxRegularizer(BatchStatisticRegularizer):
    """Spreads embeddings by maximizing their mean singular value s_mu.

    SVMax is a batch statistic: it looks at the embedding batch as a whole
    (a b x d matrix) and rewards a large mean singular value, i.e. an
    embedding that uses all its dimensions. With the rows L2-normalized,
    s_mu lies in [L, U] (`keras_featreg.ops.svmax_bounds(b, d)`, with
    k = min(b, d): L = sqrt(b) / k for a collapsed, rank-1 batch and
    U = sqrt(b / k) for a uniform spread).

    ```python
    s_mu = mean(singular_values(l2_normalize(x, axis=-1)))  # normalize=True
    L, U = svmax_bounds(batch_size, dim)                    # of this batch
    penalty = factor * exp((U - s_mu) / (U - L))            # bounded=True
    penalty = -factor * s_mu                                # bounded=False
    ```

    The bounded form (paper Eq. 4) lies in [factor, e * factor] for unit
    rows whatever b and d are, which makes `factor` easy to tune; the
    bounds are those of the actual (dynamic) batch, so a smaller last batch
    is handled. When U == L (b = 1 or d = 1: one singular value, s_mu is
    fixed) the exponent is defined as 0 and the penalty is the constant
    `factor`, with zero gradient. The unbounded form (Eq. 1) is the one the
    paper uses on un-normalized embeddings (GAN, self-supervised).
    Rank > 2 inputs are flattened over all but the batch axis.

    What a direct call returns. `penalty(x)` returns the formula above.
    Keras >= 3.14 divides an `activity_regularizer`'s value by the batch
    size before `add_loss`; a batch statistic must not be rescaled, so
    `regularizer(x)` (`__call__`) returns `penalty(x) * batch_size`, and
    what lands in `model.losses` on the `activity_regularizer=` path is
    exactly the formula. `keras_featreg.layers.EmbeddingRegularization`
    adds `penalty(x)` directly, so both paths give the same loss. Use it on
    activations (embeddings), not as a `kernel_regularizer`: Keras does not
    divide weight penalties, so there it would be scaled by the kernel's
    first dimension.

    The maths is `keras_featreg.ops.svmax_penalty`; this class adds the
    Keras regularizer interface (`BatchStatisticRegularizer`).
    Computed in float32 (float64 for float64 input; float16/bfloat16 are
    cast to float32) and returned as float32, the loss dtype, also under
    mixed precision. Collapsed, all-zero (zero rows stay zero when
    normalizing) and b < d batches give finite values and gradients; a
    batch with no rows (an empty replica) gives 0. XLA (`jit_compile=True`)
    and `tf.distribute` strategies are supported: see `global_batch` and
    `keras_featreg.regularizers.BatchStatisticRegularizer`.

    Args:
        factor: Float, non-negative weight of the penalty (the paper's
            lambda). Defaults to `1.0`.
        bounded: Bool, whether to use the bounded, exponential form (Eq. 4)
            instead of `-factor * s_mu` (Eq. 1). Defaults to `True`.
        normalize: Bool, whether to L2-normalize the rows first, as the
            bounds assume. Defaults to `True`.
        global_batch: Bool, under a tf.distribute strategy with several
            replicas, compute s_mu (and b in the bounds) on the global
            batch, gathered from all replicas with gradient, so that
            training equals one device; `False` regularizes each replica's
            own rows. No effect on one device. Defaults to `True`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> regularizer = keras_featreg.regularizers.SVMaxRegularizer(factor=0.1)
    >>> layer = keras.layers.Dense(64, activity_regularizer=regularizer)
    >>> x = keras.random.normal((32, 8))
    >>> penalty = regularizer.penalty(layer(x))  # == sum(layer.losses)

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 1-4.
    """

    def __init__(
        self,
        factor: float = 1.0,
        bounded: bool = True,
        normalize: bool = True,
        global_batch: bool = True,
    ) -> None:
        self.factor = check_non_negative("factor", factor)
        self.bounded = check_bool("bounded", bounded)
        self.normalize = check_bool("normalize", normalize)
        self.global_batch = check_bool("global_batch", global_batch)

    def stats(self, x) -> dict:
        """The penalty and s_mu of one batch, from one decomposition.

        Args:
            x: Float tensor `(batch_size, ...)`, the embedding batch.

        Returns:
            Dict of float32 scalars: `"penalty"` (the formula, not scaled
            by the batch size) and `"mean_singular_value"` (s_mu of the
            normalized batch when `normalize=True`).
        """
        penalty, s_mu = svmax_penalty(
            x, self.factor, self.bounded, self.normalize
        )
        return {
            "penalty": tf.cast(penalty, tf.float32),
            "mean_singular_value": tf.cast(s_mu, tf.float32),
        }

    def get_config(self) -> dict:
        return {
            "factor": self.factor,
            "bounded": self.bounded,
            "normalize": self.normalize,
            "global_batch": self.global_batch,
        }
