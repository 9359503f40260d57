"""The layer that holds the Proxy Anchor proxies (Kim et al. 2020).

Keras 3 trains only the variables its model tracks: `Model.fit` updates
`model.trainable_variables`, collected from the model's layers and their
attributes. A `keras.losses.Loss` is not tracked (the compiled loss exposes
metric variables only), so a loss that owned the proxies would never train
them. The proxies therefore live in a layer, `ProxyAnchor`, placed at the
end of the training model: it outputs the cosine similarities between the
embeddings and its proxies, and `keras_featreg.losses.ProxyAnchorLoss`
turns those and the labels into the loss. `fit` trains the proxies with the
rest of the model, they are saved with it, and under a `tf.distribute`
strategy they are mirrored like any weight. For retrieval, use the
sub-model that stops before the layer.
"""

import keras
import tensorflow as tf

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.pairwise import pairwise_similarities
from keras_featreg.utils.validation import check_int


@keras.saving.register_keras_serializable(package="keras_featreg")
class ProxyAnchor(keras.layers.Layer):
    """Holds one trainable proxy per class; outputs cosine similarities.

    ```python
    outputs[i, c] = cos(inputs[i], proxies[c])     # (batch_size, num_classes)
    ```

    The training head for `keras_featreg.losses.ProxyAnchorLoss`: the
    proxies are weights of the model, so `fit` trains them and saving keeps
    them. Computes in float32 (or float64) whatever the dtype policy, and
    does not autocast.

    Kim et al. train the proxies with 100x the backbone's learning rate
    (PyTorch param groups in their `train.py`: AdamW, by default lr 1e-4
    and 1e-2 for the proxies). Keras optimizers use one rate for all
    variables; for that recipe, wrap the optimizer as
    `keras_featreg.optimizers.LearningRateMultiplier(optimizer,
    {"proxies": 100.0})` (the weight's path ends in `/proxies`).

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

    >>> import numpy as np
    >>> import keras_featreg
    >>> head = keras_featreg.layers.ProxyAnchor(num_classes=10)
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
