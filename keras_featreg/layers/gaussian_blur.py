"""Gaussian blur with one random isotropic sigma per image."""

import numpy as np
import tensorflow as tf
from keras import saving

from keras_featreg.layers.image_augmentation import PixelAugmentation
from keras_featreg.layers.image_augmentation import check_range


def gaussian_blur(images, sigma, radius: int) -> tf.Tensor:
    """Blurs each image with its own isotropic Gaussian, symmetric padding.

    A separable depthwise convolution with the batch folded into the
    channels, so each image gets its own kernel
    `exp(-t**2 / (2 * sigma**2))`, `t = -radius..radius`, normalized.

    Args:
        images: Float tensor `(batch, height, width, channels)`.
        sigma: Float tensor `(batch,)`, standard deviations in pixels.
        radius: Int >= 0, kernel half-width (size `2 * radius + 1`), at
            most the height and the width.

    Returns:
        A float32 tensor like `images`.
    """
    images = tf.cast(images, tf.float32)
    offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
    sigma = tf.cast(sigma, tf.float32)[:, tf.newaxis]
    kernel = tf.exp(-0.5 * tf.square(offsets / sigma))
    kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)
    batch, height, width, channels = tf.unstack(tf.shape(images))
    # (B, H, W, C) -> (1, H, W, B * C): one depthwise channel per image
    # and channel, with the image's kernel repeated over its channels.
    folded = tf.transpose(images, (1, 2, 0, 3))
    folded = tf.reshape(folded, (1, height, width, batch * channels))
    kernel = tf.repeat(tf.transpose(kernel), channels, axis=1)  # (K, B*C)
    padding = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    # Edge pixels mirrored (`abc|cba`); allows radius == height.
    folded = tf.pad(folded, padding, mode="SYMMETRIC")
    strides = [1, 1, 1, 1]
    vertical = kernel[:, tf.newaxis, :, tf.newaxis]
    horizontal = kernel[tf.newaxis, :, :, tf.newaxis]
    folded = tf.nn.depthwise_conv2d(folded, vertical, strides, "VALID")
    folded = tf.nn.depthwise_conv2d(folded, horizontal, strides, "VALID")
    folded = tf.reshape(folded, (height, width, batch, channels))
    return tf.ensure_shape(tf.transpose(folded, (2, 0, 1, 3)), images.shape)


@saving.register_keras_serializable(package="keras_featreg")
class GaussianBlur(PixelAugmentation):
    """Gaussian blur with a random standard deviation per image.

    VICReg's `GaussianBlur`: each image is blurred with an isotropic
    Gaussian of standard deviation `sigma ~ U(*sigma_range)` pixels (PIL's
    `ImageFilter.GaussianBlur(radius=sigma)`), here a separable kernel of
    half-width `ceil(3 * sigma_range[1])` (at most `min(H, W)`) with
    mirrored edges. Always applies: wrap it in
    `keras_featreg.layers.RandomApply` for a probability. Output values stay
    in the input's range (convex weights).

    Args:
        sigma_range: Pair `0 < low <= high`, in pixels. Defaults to
            `(0.1, 2.0)`, VICReg's range for 224 x 224 crops.
        value_range: Pair `(low, high)`, the range of input pixel values
            (kept in the config; blurring does not depend on it). Defaults
            to `(0, 255)`.
        seed: Int or `None`. Defaults to `None`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> blur = keras_featreg.layers.GaussianBlur(seed=0)
    >>> images = blur(np.full((8, 32, 32, 3), 100, "uint8"))
    >>> np.allclose(images, 100.0)  # a constant image stays constant
    True

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906) and its
      code, `augmentations.py` of facebookresearch/vicreg.
    """

    def __init__(
        self,
        sigma_range: tuple = (0.1, 2.0),
        value_range: tuple = (0, 255),
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(value_range=value_range, seed=seed, **kwargs)
        self.sigma_range = check_range("sigma_range", sigma_range)

    def get_random_transformation(self, data, training=True, seed=None):
        if not training:
            return None
        batch_size = self._batch_size(data)
        return self._uniform((batch_size,), *self.sigma_range, seed)

    def _augment(self, images, transformation):
        images = tf.cast(images, tf.float32)
        radius = int(np.ceil(3.0 * self.sigma_range[1]))
        height, width = images.shape[1], images.shape[2]
        if height is None or width is None:
            raise ValueError(
                "`GaussianBlur` needs a static image height and width. "
                f"Received: images.shape={images.shape}"
            )
        radius = min(radius, height, width)
        # Convolutions reject an empty batch (RandomApply may select none).
        images = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: gaussian_blur(images, transformation, radius),
            lambda: images,
        )
        return tf.cast(images, self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config["sigma_range"] = self.sigma_range
        return config
