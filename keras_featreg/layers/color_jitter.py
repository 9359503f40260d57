"""torchvision's ColorJitter as a per-image Keras layer."""

import tensorflow as tf
from keras import saving

from keras_featreg.layers.image_augmentation import PixelAugmentation
from keras_featreg.utils.validation import check_float

# torchvision's (and tf.image's) luma weights of `rgb_to_grayscale`.
LUMA = (0.2989, 0.587, 0.114)


def _grayscale(images) -> tf.Tensor:
    """Luma `(..., 1)` of RGB images (torchvision's weights)."""
    return tf.reduce_sum(images * LUMA, axis=-1, keepdims=True)


def _blend(images, other, factor) -> tf.Tensor:
    """torchvision's `_blend` on `[0, 1]` images."""
    return tf.clip_by_value(factor * images + (1.0 - factor) * other, 0.0, 1.0)


def adjust_brightness(images, factor) -> tf.Tensor:
    """`clip(factor * x, 0, 1)`; `factor` broadcasts per image."""
    return _blend(images, 0.0, factor)


def adjust_contrast(images, factor) -> tf.Tensor:
    """Blends each image with the mean of its grayscale version."""
    gray = _grayscale(images) if images.shape[-1] == 3 else images
    mean = tf.reduce_mean(gray, axis=(1, 2, 3), keepdims=True)
    return _blend(images, mean, factor)


def adjust_saturation(images, factor) -> tf.Tensor:
    """Blends each RGB image with its grayscale version."""
    return _blend(images, _grayscale(images), factor)


def adjust_hue(images, shift) -> tf.Tensor:
    """Rotates the hue of RGB images by `shift` turns (in `[-0.5, 0.5]`)."""
    hsv = tf.image.rgb_to_hsv(images)
    hue = tf.math.floormod(hsv[..., :1] + shift, 1.0)
    return tf.image.hsv_to_rgb(tf.concat([hue, hsv[..., 1:]], axis=-1))


@saving.register_keras_serializable(package="keras_featreg")
class ColorJitter(PixelAugmentation):
    """torchvision's `ColorJitter`: brightness, contrast, saturation, hue.

    On images scaled to `[0, 1]`, each image draws its own factors and its
    own order of the four operations (a random permutation, as torchvision):

    ```python
    brightness: x = clip(b * x, 0, 1)                    b ~ U(1 -/+ brightness)
    contrast:   x = clip(c * x + (1 - c) * mean(gray(x)))  c ~ U(1 -/+ contrast)
    saturation: x = clip(s * x + (1 - s) * gray(x))      s ~ U(1 -/+ saturation)
    hue:        H = (H + h) mod 1 in HSV                 h ~ U(-hue, hue)
    ```

    with `gray` the luma `0.2989 R + 0.587 G + 0.114 B` and factor ranges
    clipped at 0. A 0 argument skips its operation. One-channel images get
    brightness and contrast only (saturation and hue are identities on
    gray, as in torchvision). Outputs are float, in `value_range`.

    Args:
        brightness: Float >= 0. Defaults to `0.4`.
        contrast: Float >= 0. Defaults to `0.4`.
        saturation: Float >= 0. Defaults to `0.2`.
        hue: Float in `[0, 0.5]`, in turns of the color wheel. Defaults to
            `0.1`.
        value_range: Pair `(low, high)`, the range of input pixel values.
            Defaults to `(0, 255)`.
        seed: Int or `None`. Defaults to `None`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> jitter = keras_featreg.layers.ColorJitter(seed=0)
    >>> images = jitter(np.full((8, 32, 32, 3), 100, "uint8"))
    >>> tuple(images.shape), images.dtype.name
    ((8, 32, 32, 3), 'float32')

    Reference:
    - [torchvision ColorJitter](https://pytorch.org/vision/stable/generated/torchvision.transforms.ColorJitter.html)
    """

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.2,
        hue: float = 0.1,
        value_range: tuple = (0, 255),
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.brightness = check_float("brightness", brightness, minimum=0.0)
        self.contrast = check_float("contrast", contrast, minimum=0.0)
        self.saturation = check_float("saturation", saturation, minimum=0.0)
        self.hue = check_float("hue", hue, minimum=0.0, maximum=0.5)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        batch_size = self._batch_size(data)
        # Columns: 4 factors (brightness, contrast, saturation, hue), then 4
        # keys whose argsort is the per-image order of the operations.
        draws = self._uniform((batch_size, 8), 0.0, 1.0, seed)
        lows = tf.constant(
            [
                max(0.0, 1.0 - self.brightness),
                max(0.0, 1.0 - self.contrast),
                max(0.0, 1.0 - self.saturation),
                -self.hue,
            ]
        )
        highs = tf.constant(
            [
                1.0 + self.brightness,
                1.0 + self.contrast,
                1.0 + self.saturation,
                self.hue,
            ]
        )
        factors = lows + draws[:, :4] * (highs - lows)
        order = tf.argsort(draws[:, 4:], axis=1, stable=True)
        return {"factors": factors, "order": tf.cast(order, tf.int32)}

    def _augment(self, images, transformation):
        images = self._to_unit(images)
        factors = transformation["factors"][:, tf.newaxis, tf.newaxis, :]
        order = transformation["order"]
        operations = [
            adjust_brightness if self.brightness > 0 else None,
            adjust_contrast if self.contrast > 0 else None,
        ]
        if images.shape[-1] == 3:  # saturation and hue: RGB only
            operations += [
                adjust_saturation if self.saturation > 0 else None,
                adjust_hue if self.hue > 0 else None,
            ]
        else:
            operations += [None, None]
        # At each of the 4 steps, split the batch by the operation each image
        # does at that step, so every image runs each operation once.
        positions = tf.range(tf.shape(images)[0])
        for step in range(4):
            parts = tf.dynamic_partition(images, order[:, step], 4)
            part_factors = tf.dynamic_partition(factors, order[:, step], 4)
            part_positions = tf.dynamic_partition(positions, order[:, step], 4)
            for index, operation in enumerate(operations):
                if operation is not None:
                    factor = part_factors[index][..., index : index + 1]
                    parts[index] = operation(parts[index], factor)
            images = tf.ensure_shape(
                tf.dynamic_stitch(part_positions, parts), images.shape
            )
        return self._from_unit(images)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "brightness": self.brightness,
                "contrast": self.contrast,
                "saturation": self.saturation,
                "hue": self.hue,
            }
        )
        return config
