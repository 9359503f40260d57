"""Applies a layer to each image of a batch with a given probability."""

import keras
import tensorflow as tf

from keras_featreg.layers.image_augmentation import ImageAugmentation
from keras_featreg.utils.validation import check_float


@keras.saving.register_keras_serializable(package="keras_featreg")
class RandomApply(ImageAugmentation):
    """Applies `layer` to each image independently with probability `rate`.

    The `transforms.RandomApply` of torchvision, drawn per image rather than
    per batch:

    ```python
    apply = uniform(shape=(batch_size,)) < rate
    outputs = where(apply, layer(images), images)
    ```

    `layer` runs only on the selected images (gathered into one smaller
    batch, so `rate=0.1` costs about a tenth) and the others keep their
    input values (cast to the layer's compute dtype); `layer` must
    therefore keep the image shape: color, blur and flip augmentations, not
    crops (checked when the layer is built). Its own randomness, if any, is
    drawn as usual, per image for Keras' layers that draw per image.
    `rate=0` never calls `layer` and `rate=1` always does. At inference
    (`training=False`) the images pass through unchanged (cast).

    Works in `tf.data` pipelines (CPU, parallel `map`) when `layer` does,
    as Keras' own preprocessing layers do, and in models on the TensorFlow
    backend. Image tensors only (no dicts of labels or boxes).

    Args:
        layer: A `keras.layers.Layer` that maps images to images of the same
            shape, e.g. `keras.layers.RandomColorJitter(...)`.
        rate: Float in `[0, 1]`, the probability that an image is
            transformed. Defaults to `0.5`.
        seed: Int or `None`, seed of the per-image draws (the wrapped layer
            has its own seed). Defaults to `None`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        data: Images `(batch, H, W, C)` or one image `(H, W, C)`.
        training: Bool, whether to apply `layer` at all. Defaults to
            `True`.

    Returns:
        A float tensor of the input's shape.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import keras_featreg
    >>> jitter = keras.layers.RandomColorJitter(
    ...     value_range=(0, 255), brightness_factor=0.4
    ... )
    >>> augment = keras_featreg.layers.RandomApply(jitter, rate=0.8, seed=1)
    >>> images = np.full((8, 16, 16, 3), 100, "uint8")
    >>> dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
    >>> dataset = dataset.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    >>> [tuple(batch.shape) for batch in dataset]
    [(4, 16, 16, 3), (4, 16, 16, 3)]

    Reference:
    - [torchvision RandomApply](https://pytorch.org/vision/stable/generated/torchvision.transforms.RandomApply.html)
    """

    def __init__(
        self,
        layer: keras.layers.Layer,
        rate: float = 0.5,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(seed=seed, **kwargs)
        if not isinstance(layer, keras.layers.Layer):
            raise TypeError(
                "`layer` must be a `keras.layers.Layer` instance. "
                f"Received: layer={layer!r}"
            )
        self.layer = layer
        self.rate = check_float("rate", rate, minimum=0.0, maximum=1.0)

    def build(self, input_shape):
        if not self.layer.built:
            self.layer.build(input_shape)
        try:
            output_shape = self.layer.compute_output_shape(input_shape)
        except NotImplementedError:
            output_shape = input_shape
        self._check_shape(input_shape, output_shape)
        self.built = True

    def _check_shape(self, input_shape, output_shape):
        input_shape, output_shape = tuple(input_shape), tuple(output_shape)
        pairs = zip(output_shape, input_shape, strict=False)
        if len(output_shape) != len(input_shape) or any(
            a is not None and b is not None and a != b for a, b in pairs
        ):
            raise ValueError(
                "`RandomApply` needs a `layer` that keeps the image shape. "
                f"Received: layer={self.layer.name} mapping images.shape="
                f"{input_shape} to {output_shape}"
            )

    def call(self, data, training=True):
        if isinstance(data, dict):
            raise TypeError(
                "`RandomApply` takes image tensors only, not dicts of "
                f"images, labels or boxes. Received: data keys={list(data)}"
            )
        return super().call(data, training=training)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training or self.rate in (0.0, 1.0):
            return None
        shape = keras.ops.shape(data)
        batch_size = 1 if len(shape) == 3 else shape[0]
        draws = keras.random.uniform((batch_size,), seed=self._seed(seed))
        return draws < self.rate

    def transform_images(self, images, transformation, training=True):
        images = tf.cast(images, self.compute_dtype)
        if not training or self.rate == 0.0:
            return images
        if self.rate == 1.0:
            return self._apply(images)
        # Run `layer` on the selected images only (a cheap 10% blur costs
        # 10%), then put them back in place.
        selected = tf.cast(transformation, tf.int32)
        positions = tf.range(tf.shape(images)[0])
        kept, chosen = tf.dynamic_partition(images, selected, 2)
        kept_at, chosen_at = tf.dynamic_partition(positions, selected, 2)
        # Some layers (convolutions) reject an empty batch: skip it.
        chosen = tf.cond(
            tf.size(chosen_at) > 0, lambda: self._apply(chosen), lambda: chosen
        )
        outputs = tf.dynamic_stitch([kept_at, chosen_at], [kept, chosen])
        return tf.ensure_shape(outputs, images.shape)

    def _apply(self, images):
        outputs = tf.cast(self.layer(images, training=True), self.compute_dtype)
        self._check_shape(images.shape, outputs.shape)
        return outputs

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "layer": keras.layers.serialize(self.layer),
                "rate": self.rate,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["layer"] = keras.layers.deserialize(config["layer"])
        return cls(**config)
