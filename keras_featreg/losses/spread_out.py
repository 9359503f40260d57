"""Spread-out loss (global orthogonal regularization), Zhang et al. 2017.

`SpreadOutLoss` was first named `SpreadOutRegularizer`; that name remains
an alias of the same class, and `.keras` files that saved it under
`"keras_featreg>SpreadOutRegularizer"` still load.
"""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.losses.triplet import FALLBACKS
from keras_featreg.losses.triplet import MINING
from keras_featreg.losses.triplet import triplet_negative_counts
from keras_featreg.ops.distances import scaled_gram
from keras_featreg.ops.distances import unscale
from keras_featreg.ops.pair_selection import random_negative_mask
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import check_finite_loss
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int
from keras_featreg.utils.validation import check_non_negative

NEGATIVES = ("random", "all", "triplet")


def spread_out_loss(
    labels,
    embeddings,
    negatives: str = "random",
    seed=None,
    mining: str = "hard",
    fallback: str = "closest",
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
    baseline on the non-triplet losses ("we pair every anchor with a random
    negative sample"); `"triplet"` uses the anchor-negative pairs of the
    triplets that `triplet_loss` mines with the same `mining` and
    `fallback` (one pair per triplet, `triplet_negative_counts`), as Zhang
    et al. and the paper do with a triplet loss; `"all"` uses every
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
        mining: String, `"hard"` or `"semihard"`: the triplets' mining, for
            `negatives="triplet"` (match the `TripletLoss`).
        fallback: String, `"closest"` or `"farthest"`: the semi-hard
            fallback, for `negatives="triplet"`.

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    check_choice("negatives", negatives, NEGATIVES)
    check_choice("mining", mining, MINING)
    check_choice("fallback", fallback, FALLBACKS)
    if seed is not None and not isinstance(seed, keras.random.SeedGenerator):
        check_int("seed", seed)
    labels, embeddings = as_labeled_batch(labels, embeddings)
    if negatives == "random":
        pairs = random_negative_mask(labels, seed=seed)
    elif negatives == "triplet":
        counts = triplet_negative_counts(labels, embeddings, mining, fallback)
        pairs = counts > 0
    else:
        _, pairs = label_masks(labels)
    # The Gram matrix scaled (no overflow on the diagonal or on pairs that
    # are not used); the dot products of the pairs scaled back.
    gram, scale = scaled_gram(embeddings)
    dots = unscale(tf.where(pairs, gram, tf.zeros_like(gram)), scale, 2)
    if negatives != "triplet":
        counts = tf.cast(pairs, dots.dtype)  # each pair once
    count = tf.maximum(tf.reduce_sum(counts), 1.0)
    first = tf.reduce_sum(counts * dots) / count
    second = tf.reduce_sum(counts * tf.square(dots)) / count
    dim = tf.cast(tf.shape(embeddings)[1], dots.dtype)
    loss = tf.square(first) + tf.nn.relu(second - 1.0 / dim)
    return check_finite_loss(tf.fill(tf.shape(labels), loss), embeddings)


@keras.saving.register_keras_serializable(package="keras_featreg")
class SpreadOutLoss(LabelLoss):
    """Spread-out (global orthogonal) regularization, as a loss.

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
        loss={"ranking": TripletLoss(), "spread": SpreadOutLoss()},
    )
    model.fit(x, {"ranking": labels, "spread": labels})
    ```

    With a triplet loss, pass `negatives="triplet"` and the triplet loss's
    `mining` (and `fallback`): the regularizer then reads the triplets' own
    anchor-negative pairs, as Zhang et al. do (e.g.
    `SpreadOutLoss(negatives="triplet", mining="semihard")` beside
    `TripletLoss(mining="semihard")`).

    See `spread_out_loss`. `SpreadOutRegularizer` is the former name of
    this class (an alias: the same class).

    `y_true`: integer labels, shape `(batch_size,)` or `(batch_size, 1)`;
    integer class ids of any int32/int64 value are compared exactly.
    `y_pred`: embeddings `(batch_size, dim)`, L2-normalized (the `1 / dim`
    target assumes unit vectors).

    Args:
        factor: Float, non-negative weight (`alpha` in the paper). Defaults
            to `1.0`.
        negatives: String, `"random"` (one random negative per anchor, as in
            the SVMax paper for the non-triplet losses), `"triplet"` (the
            negatives of the triplets a `TripletLoss` with the same `mining`
            and `fallback` mines: Zhang et al. and the paper with triplet
            loss) or `"all"` (every anchor-negative pair). Defaults to
            `"random"`.
        seed: Int or `None`, seed of the random negatives; draws differ from
            step to step but the sequence is reproducible. Defaults to
            `None`.
        mining: String, `"hard"` or `"semihard"`, the triplets' mining for
            `negatives="triplet"`. Defaults to `"hard"` (`TripletLoss`'s).
        fallback: String, `"closest"` or `"farthest"`, the semi-hard
            fallback for `negatives="triplet"`. Defaults to `"closest"`.
        name: String, name of the loss. Defaults to `"spread_out_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> loss = keras_featreg.losses.SpreadOutLoss(negatives="all")
    >>> value = loss(np.array([0, 0, 1, 1]), np.eye(4, 8, dtype="float32"))
    >>> round(float(value), 4)
    0.0

    Reference:
    - [Zhang et al., 2017](https://arxiv.org/abs/1708.06320)
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Sec. 4
    """

    def __init__(
        self,
        factor: float = 1.0,
        negatives: str = "random",
        seed: int | None = None,
        mining: str = "hard",
        fallback: str = "closest",
        name: str = "spread_out_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.factor = check_non_negative("factor", factor)
        self.negatives = check_choice("negatives", negatives, NEGATIVES)
        self.mining = check_choice("mining", mining, MINING)
        self.fallback = check_choice("fallback", fallback, FALLBACKS)
        self.seed = None if seed is None else check_int("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, y_true, y_pred):
        loss = spread_out_loss(
            self.exact_labels(y_true),
            y_pred,
            self.negatives,
            seed=self.seed_generator,
            mining=self.mining,
            fallback=self.fallback,
        )
        return self.factor * loss

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "factor": self.factor,
                "negatives": self.negatives,
                "seed": self.seed,
                "mining": self.mining,
                "fallback": self.fallback,
            }
        )
        return config


# The former name: the same class. Configs saved under it name the class
# "keras_featreg>SpreadOutRegularizer", which Keras looks up among the
# registered objects: register the alias there too.
SpreadOutRegularizer = SpreadOutLoss
keras.saving.get_custom_objects()["keras_featreg>SpreadOutRegularizer"] = (
    SpreadOutLoss
)
