"""Proxy Anchor loss (Kim et al. 2020), on the similarities of `ProxyAnchor`.

The proxies are weights of the model: they live in the layer
`keras_featreg.layers.ProxyAnchor` (see `keras_featreg.layers.proxy_anchor`
for why a loss cannot own them), which outputs the cosine similarities
between the embeddings and its proxies; `ProxyAnchorLoss` turns those and
the labels into the loss. `ProxyAnchor` stays importable from here and
from `keras_featreg.losses`.

```python
inputs = keras.Input((784,))
embeddings = keras.layers.Dense(64)(inputs)
encoder = keras.Model(inputs, embeddings)              # for retrieval
similarities = ProxyAnchor(num_classes=10)(embeddings)
model = keras.Model(inputs, similarities)              # for training
model.compile(optimizer="adam", loss=ProxyAnchorLoss())
model.fit(x, labels)
```

Kim et al. train the proxies with a 100x larger learning rate than the
backbone. Keras optimizers use one rate for all variables; wrap yours in
`keras_featreg.optimizers.LearningRateMultiplier(optimizer, {"proxies":
100.0})` to reproduce it.
"""

import keras
import tensorflow as tf

from keras_featreg.layers.proxy_anchor import ProxyAnchor
from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.pairwise import as_labels
from keras_featreg.ops.pairwise import log1p_sum_exp
from keras_featreg.ops.pairwise import pairwise_similarities
from keras_featreg.utils.validation import check_non_negative
from keras_featreg.utils.validation import check_positive


def _check_class_range(labels: tf.Tensor, num_classes) -> None:
    if num_classes is None or not tf.executing_eagerly():
        return
    values = labels.numpy()
    bad = (values < 0) | (values >= num_classes)
    if bad.any():
        raise ValueError(
            f"`labels` must be class indices in [0, {num_classes}) (one "
            f"proxy per class). Received: labels={values[bad][0].item()!r}"
        )


def proxy_anchor_loss_from_similarities(
    labels, similarities, margin: float = 0.1, alpha: float = 32.0
) -> tf.Tensor:
    """Proxy Anchor loss from embedding-proxy cosine similarities.

    ```python
    pos = mean_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x,p) - margin)))
    neg = mean_{p in P} log(1 + sum_{x in X_p-} exp(alpha (s(x,p) + margin)))
    out[i] = pos + neg                     # the batch value, for every sample
    ```

    `P` are all `num_classes` proxies, `P+` the proxies of the classes
    present in the batch, `X_p+` the samples of class `p` and `X_p-` the
    others (Kim et al. 2020, Eq. 4; the authors' code divides `neg` by the
    number of classes, as here). The terms are sums over samples inside a
    log, so they do not split into per-sample parts: the batch value is
    broadcast onto every sample, and the default reduction returns it.
    The log(1 + sum exp) terms are evaluated stably. In a graph, labels
    outside `[0, num_classes)` are not checked: such a sample counts as a
    negative for every proxy.

    Args:
        labels: Tensor, class ids in `[0, num_classes)`, shape
            `(batch_size,)`.
        similarities: Float tensor of shape `(batch_size, num_classes)`,
            the cosine similarities `s(x, p)` (the `ProxyAnchor` output).
        margin: Float, the margin `delta`.
        alpha: Float, the scale `alpha`.

    Returns:
        Tensor of shape `(batch_size,)`.
    """
    similarities = as_matrix(similarities, "similarities")
    labels = as_labels(labels, similarities.shape[0])
    num_classes = similarities.shape[1]
    _check_class_range(labels, num_classes)
    classes = tf.range(tf.shape(similarities)[1], dtype=labels.dtype)
    member = tf.equal(labels[:, None], classes[None, :])
    margin = tf.cast(margin, similarities.dtype)
    alpha = tf.cast(alpha, similarities.dtype)
    pos = log1p_sum_exp(-alpha * (similarities - margin), member, axis=0)
    neg = log1p_sum_exp(
        alpha * (similarities + margin), tf.logical_not(member), axis=0
    )
    num_present = tf.reduce_sum(
        tf.cast(tf.reduce_any(member, axis=0), similarities.dtype)
    )
    num_proxies = tf.cast(tf.shape(similarities)[1], similarities.dtype)
    loss = tf.reduce_sum(pos) / tf.maximum(num_present, 1.0) + (
        tf.reduce_sum(neg) / num_proxies
    )
    return tf.fill(tf.shape(labels), loss)


def proxy_anchor_loss(
    labels, embeddings, proxies, margin: float = 0.1, alpha: float = 32.0
) -> tf.Tensor:
    """Proxy Anchor loss of `embeddings` against `proxies`.

    `proxy_anchor_loss_from_similarities` of the cosine similarities
    between the rows of `embeddings` `(batch_size, dim)` and of `proxies`
    `(num_classes, dim)`. Returns shape `(batch_size,)`, the batch value
    broadcast onto every sample.
    """
    embeddings = as_matrix(embeddings, "embeddings")
    proxies = tf.cast(as_matrix(proxies, "proxies"), embeddings.dtype)
    similarities = pairwise_similarities(embeddings, proxies, normalize=True)
    return proxy_anchor_loss_from_similarities(
        labels, similarities, margin, alpha
    )


@keras.saving.register_keras_serializable(package="keras_featreg")
class ProxyAnchorLoss(LabelLoss):
    """Proxy Anchor loss on the similarities output by `ProxyAnchor`.

    ```python
    pos = mean_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x,p) - margin)))
    neg = mean_{p in P} log(1 + sum_{x in X_p-} exp(alpha (s(x,p) + margin)))
    loss = pos + neg
    ```

    Kim et al. (2020), with cosine similarity `s`; see
    `proxy_anchor_loss_from_similarities`. The proxies are the weights of a
    `keras_featreg.layers.ProxyAnchor` layer at the end of the model (a loss
    cannot own weights that `fit` trains). The loss is a batch value,
    broadcast onto every sample.

    `y_true`: integer labels in `[0, num_classes)`, shape `(batch_size,)` or
    `(batch_size, 1)`; integer class ids of any int32/int64 value are
    compared exactly.
    `y_pred`: cosine similarities `(batch_size, num_classes)` from
    `ProxyAnchor`.

    Args:
        margin: Float, non-negative margin `delta`. Defaults to `0.1`.
        alpha: Float, positive scale `alpha`. Defaults to `32.0`.
        name: String, name of the loss. Defaults to `"proxy_anchor_loss"`.
        **kwargs: `reduction` and `dtype`, passed to `keras.losses.Loss`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> inputs = keras.Input((8,))
    >>> embeddings = keras.layers.Dense(4)(inputs)
    >>> head = keras_featreg.layers.ProxyAnchor(num_classes=3)
    >>> model = keras.Model(inputs, head(embeddings))
    >>> model.compile(
    ...     optimizer="adam", loss=keras_featreg.losses.ProxyAnchorLoss()
    ... )

    Reference:
    - [Kim et al., 2020](https://arxiv.org/abs/2003.13911)
    """

    def __init__(
        self,
        margin: float = 0.1,
        alpha: float = 32.0,
        name: str = "proxy_anchor_loss",
        **kwargs,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.margin = check_non_negative("margin", margin)
        self.alpha = check_positive("alpha", alpha)

    def call(self, y_true, y_pred):
        return proxy_anchor_loss_from_similarities(
            self.exact_labels(y_true), y_pred, self.margin, self.alpha
        )

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"margin": self.margin, "alpha": self.alpha})
        return config


__all__ = [
    "ProxyAnchor",
    "ProxyAnchorLoss",
    "proxy_anchor_loss",
    "proxy_anchor_loss_from_similarities",
]
