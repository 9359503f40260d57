"""Spread-out (global orthogonal) regularization, Zhang et al. 2017."""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import pairwise_similarities
from keras_featreg.ops.pairwise import random_negative_mask
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int
from keras_featreg.utils.validation import check_non_negative

NEGATIVES = ("random", "all")


def spread_out_loss(
    labels, embeddings, negatives: str = "random", seed=None
) -> tf.Tensor:
    """Global orthogonal regularization on anchor-negative pairs.

    ```python
    M1 = mean over pairs (a, n) of a.n
    M2 = mean over pairs (a, n) of (a.n)^2
    loss = M1^2 + relu(M2 - 1 / dim)            # for every sample
    ```

    Zhang et al. (2017), Eq. 7: for L2-normalized descriptors spread
    uniformly over the sphere, `a.n` has mean 0 and second moment `1 / dim`;
    the term pulls the non-matching pairs' statistics towards those. The
    loss does not normalize.

    Pairs. `negatives="random"` pairs every anchor with one negative drawn
    uniformly from the batch, as the SVMax paper does for its spread-out
    baseline (Zhang et al. use each triplet's negative); `"all"` uses every
    anchor-negative pair (deterministic, lower variance). Anchors without a
    negative (a single-class batch) have no pair; without any pair the loss
    is 0.

    The means are batch statistics, so the batch value is broadcast onto
    every sample (the default reduction returns it).

    Args:
        labels: Tensor, integer class ids of shape `(batch_size,)`.
        embeddings: Float tensor of shape `(batch_size, dim)`.
        negatives: String, `"random"` or `"all"`.
        seed: `None`, an int or a `keras.random.SeedGenerator`, for
            `negatives="random"` (an int gives the same draw on every call
            with the same batch size, a generator a fresh one).

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    check_choice("negatives", negatives, NEGATIVES)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    if negatives == "random":
        pairs = random_negative_mask(labels, seed=seed)
    else:
        _, pairs = label_masks(labels)
    similarities = pairwise_similarities(embeddings)
    dots = tf.where(pairs, similarities, tf.zeros_like(similarities))
    count = tf.maximum(tf.reduce_sum(tf.cast(pairs, dots.dtype)), 1.0)
    first = tf.reduce_sum(dots) / count
    second = tf.reduce_sum(tf.square(dots)) / count
    dim = tf.cast(tf.shape(embeddings)[1], dots.dtype)
    loss = tf.square(first) + tf.nn.relu(second - 1.0 / dim)
    return tf.fill(tf.shape(labels), loss)


@keras.saving.register_keras_serializable(package="keras_featreg")
class SpreadOutRegularizer(LabelLoss):
    """Spread-out regularizer (global orthogonal regularization) as a loss.

    ```python
    loss = factor * (M1^2 + relu(M2 - 1 / dim))
    ```

    `M1` and `M2` are the mean and the second moment of the dot products
    `a.n` over anchor-negative pairs (Zhang et al. 2017; the SVMax paper's
    baseline with `factor = 1` ("alpha")). It is a `keras.losses.Loss`, not a
    `keras.regularizers.Regularizer`: it must know which pairs are negatives,
    so it needs the labels, which only a loss receives. To add it to a
    ranking loss, give the model the embedding twice as outputs:

    ```python
    model = keras.Model(inputs, {"ranking": z, "spread": z})
    model.compile(
        optimizer="sgd",
        loss={"ranking": TripletLoss(), "spread": SpreadOutRegularizer()},
    )
    model.fit(x, {"ranking": labels, "spread": labels})
    ```

    See `spread_out_loss`.

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, L2-normalized (the `1 / dim`
    target assumes unit vectors).

    Args:
        factor: Float, non-negative weight (`alpha` in the paper). Defaults
            to `1.0`.
        negatives: String, `"random"` (one random negative per anchor, as in
            the SVMax paper) or `"all"` (every anchor-negative pair).
            Defaults to `"random"`.
        seed: Int or `None`, seed of the random negatives; draws differ from
            step to step but the sequence is reproducible. Defaults to
            `None`.
        name: String, name of the loss. Defaults to
            `"spread_out_regularizer"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> loss = keras_featreg.losses.SpreadOutRegularizer(negatives="all")
    >>> loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))

    Reference:
    - [Zhang et al., 2017](https://arxiv.org/abs/1708.06320)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Sec. 4
    """

    def __init__(
        self,
        factor: float = 1.0,
        negatives: str = "random",
        seed: int | None = None,
        name: str = "spread_out_regularizer",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.factor = check_non_negative("factor", factor)
        self.negatives = check_choice("negatives", negatives, NEGATIVES)
        self.seed = None if seed is None else check_int("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, y_true, y_pred):
        loss = spread_out_loss(
            self.exact_labels(y_true),
            y_pred,
            self.negatives,
            seed=self.seed_generator,
        )
        return self.factor * loss

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "factor": self.factor,
                "negatives": self.negatives,
                "seed": self.seed,
            }
        )
        return config
