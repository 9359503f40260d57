"""Proxy Anchor loss (Kim et al. 2020) and the layer that holds the proxies.

Keras 3 trains only the variables its model tracks: `Model.fit` updates
`model.trainable_variables`, collected from the model's layers and their
attributes. A `keras.losses.Loss` is not tracked (the compiled loss exposes
metric variables only), so a loss that owned the proxies would never train
them. The proxies therefore live in a layer, `ProxyAnchor`, placed at the
end of the training model: it outputs the cosine similarities between the
embeddings and its proxies, and `ProxyAnchorLoss` turns those and the labels
into the loss. `fit` trains the proxies with the rest of the model, they are
saved with it, and under a `tf.distribute` strategy they are mirrored like
any weight. For retrieval, use the sub-model that stops before the layer.

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
backbone; Keras optimizers use one rate for all variables, so that is not
reproduced here.
"""

import keras
import tensorflow as tf

from keras_featreg.losses.labels import LabelLoss
from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.pairwise import as_labels
from keras_featreg.ops.pairwise import log1p_sum_exp
from keras_featreg.ops.pairwise import pairwise_similarities
from keras_featreg.utils.validation import check_int
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
class ProxyAnchor(keras.layers.Layer):
    """Holds one trainable proxy per class; outputs cosine similarities.

    ```python
    outputs[i, c] = cos(inputs[i], proxies[c])     # (batch_size, num_classes)
    ```

    The training head for `ProxyAnchorLoss`: the proxies are weights of the
    model, so `fit` trains them and saving keeps them. Computes in float32
    (or float64) whatever the dtype policy, and does not autocast.

    Args:
        num_classes: Int, number of classes (proxies).
        proxy_initializer: Initializer for the proxies. Defaults to the
            paper's Kaiming normal: `VarianceScaling(scale=2, mode="fan_in",
            distribution="untruncated_normal")` on the `(num_classes, dim)`
            matrix, i.e. std `sqrt(2 / num_classes)` as PyTorch's
            `kaiming_normal_(mode="fan_out")` in the authors' code.
        **kwargs: Base layer keyword arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: Embeddings of shape `(batch_size, dim)`.

    Returns:
        Cosine similarities of shape `(batch_size, num_classes)`.

    Example:

    >>> head = keras_featreg.losses.ProxyAnchor(num_classes=10)
    >>> head(np.ones((4, 8), "float32")).shape
    TensorShape([4, 10])

    Reference:
    - [Kim et al., 2020](https://arxiv.org/abs/2003.13911)
    """

    def __init__(
        self, num_classes: int, proxy_initializer=None, **kwargs
    ) -> None:
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_classes = check_int("num_classes", num_classes, minimum=1)
        if proxy_initializer is None:
            proxy_initializer = keras.initializers.VarianceScaling(
                scale=2.0, mode="fan_in", distribution="untruncated_normal"
            )
        self.proxy_initializer = keras.initializers.get(proxy_initializer)

    def build(self, input_shape) -> None:
        dim = input_shape[-1]
        if dim is None or len(input_shape) != 2:
            raise ValueError(
                "`ProxyAnchor` needs inputs of shape (batch_size, dim) with a "
                f"known dim. Received: input_shape={input_shape}"
            )
        self.proxies = self.add_weight(
            shape=(self.num_classes, dim),
            initializer=self.proxy_initializer,
            dtype="float32",
            name="proxies",
        )

    def call(self, inputs):
        embeddings = as_matrix(inputs, "inputs")
        proxies = tf.cast(self.proxies.value, embeddings.dtype)
        return pairwise_similarities(embeddings, proxies, normalize=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "proxy_initializer": keras.initializers.serialize(
                    self.proxy_initializer
                ),
            }
        )
        return config


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
    `ProxyAnchor` layer at the end of the model (a loss cannot own weights
    that `fit` trains; see the module docstring). The loss is a batch value,
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

    >>> inputs = keras.Input((8,))
    >>> embeddings = keras.layers.Dense(4)(inputs)
    >>> head = keras_featreg.losses.ProxyAnchor(num_classes=3)
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
