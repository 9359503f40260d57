"""The VICReg two-view augmentation recipe as Keras layers and tf.data.

VICReg (Bardes et al., 2022, `augmentations.py` of facebookresearch/vicreg)
augments each image twice with torchvision transforms:

```python
RandomResizedCrop(224, scale=(0.08, 1.0))       # bicubic there
RandomHorizontalFlip(p=0.5)
RandomApply([ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8)
RandomGrayscale(p=0.2)
GaussianBlur(p=1.0 | 0.1)                       # sigma ~ U(0.1, 2.0), PIL
Solarization(p=0.0 | 0.2)                       # PIL solarize, threshold 128
Normalize(ImageNet mean, std)
```

(view 1 | view 2). Keras 3.15 has no layer with torchvision's semantics for
three of them (`keras.layers.RandomColorJitter` shifts brightness
additively, maps its saturation factor differently and uses one order;
`RandomGaussianBlur` draws one anisotropic sigma per batch;
`Solarization` draws its threshold), so this module defines `ColorJitter`,
`GaussianBlur` and `Solarize` with torchvision's formulas, drawn per image.
They take channels-last images (a batch or one image) of any numeric dtype
in `value_range`, return float (the compute dtype), are identities at
inference (`training=False`) and run eagerly, in models and in `tf.data`.
"""

import numpy as np
import tensorflow as tf
from keras import layers as keras_layers
from keras import random as keras_random
from keras import saving

# Keras exports no public base class for its image augmentation layers; this
# is the one `keras.layers.RandomCrop` and friends subclass (Keras >= 3.6).
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_featreg.layers.random_apply import RandomApply
from keras_featreg.layers.random_resized_crop import RandomResizedCrop
from keras_featreg.layers.random_resized_crop import check_range
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_float
from keras_featreg.utils.validation import check_int

AUGMENTATION_NORMALIZATIONS = ("torch", "tf", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's (and tf.image's) luma weights of `rgb_to_grayscale`.
LUMA = (0.2989, 0.587, 0.114)
# ImageNet statistics of a luma channel, for 1-channel images.
GRAY_MEAN = float(np.dot(LUMA, IMAGENET_MEAN))
GRAY_STD = float(np.dot(LUMA, IMAGENET_STD))
VIEW_RATES = {1: (1.0, 0.0), 2: (0.1, 0.2)}  # (blur, solarize) per view


def _check_value_range(value_range) -> tuple:
    message = (
        "`value_range` must be a pair `(low, high)` of finite numbers with "
        f"low < high. Received: value_range={value_range!r}"
    )
    try:
        low, high = check_range("value_range", value_range, minimum=-np.inf)
    except ValueError:
        raise ValueError(message) from None
    if low == high:
        raise ValueError(message)
    return low, high


def _check_seed(seed):
    return None if seed is None else check_int("seed", seed)


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


class _ImageAugmentation(BaseImagePreprocessingLayer):
    """Per-image augmentations on channels-last batches in `value_range`."""

    _USE_BASE_FACTOR = False

    def __init__(self, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        if self.data_format != "channels_last":
            raise ValueError(
                f"`{type(self).__name__}` supports channels_last images "
                f"only. Received: data_format={self.data_format!r}"
            )
        self.value_range = _check_value_range(value_range)
        self.seed = _check_seed(seed)
        self.generator = keras_random.SeedGenerator(self.seed)
        self.supports_jit = False

    def _batch_size(self, data):
        images = data["images"] if isinstance(data, dict) else data
        images = tf.convert_to_tensor(images)
        return 1 if images.shape.rank == 3 else tf.shape(images)[0]

    def _uniform(self, shape, low, high, seed):
        if seed is None:
            seed = self._get_seed_generator(self.backend._backend)
        draws = self.backend.random.uniform(shape, low, high, seed=seed)
        return tf.convert_to_tensor(draws)

    def _to_unit(self, images):
        low, high = self.value_range
        return (tf.cast(images, tf.float32) - low) / (high - low)

    def _from_unit(self, images):
        low, high = self.value_range
        images = images * (high - low) + low
        return tf.cast(images, self.compute_dtype)

    def _augment(self, images, transformation):
        raise NotImplementedError

    def transform_images(self, images, transformation, training=True):
        if not training:
            return tf.cast(images, self.compute_dtype)
        images = tf.convert_to_tensor(images)
        return self._augment(images, transformation)

    def transform_labels(self, labels, transformation, training=True):
        return labels

    def transform_bounding_boxes(
        self, bounding_boxes, transformation, training=True
    ):
        return bounding_boxes

    def transform_segmentation_masks(
        self, segmentation_masks, transformation, training=True
    ):
        return segmentation_masks

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"value_range": self.value_range, "seed": self.seed})
        return config


@saving.register_keras_serializable(package="keras_featreg")
class ColorJitter(_ImageAugmentation):
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

    >>> jitter = keras_featreg.data.augmentations.ColorJitter(seed=0)
    >>> images = jitter(np.zeros((8, 32, 32, 3), "uint8"))

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
class GaussianBlur(_ImageAugmentation):
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

    >>> blur = keras_featreg.data.augmentations.GaussianBlur(seed=0)
    >>> images = blur(np.zeros((8, 32, 32, 3), "uint8"))

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


@saving.register_keras_serializable(package="keras_featreg")
class Solarize(_ImageAugmentation):
    """Inverts the pixels at or above a threshold (PIL's `solarize`).

    ```python
    x = where(x >= threshold, high + low - x, x)  # (low, high) = value_range
    ```

    with `threshold` given on the `[0, 255]` scale and mapped linearly to
    `value_range` (PIL's default 128). Deterministic and always applied:
    wrap it in `keras_featreg.layers.RandomApply` for VICReg's 0.2.

    Args:
        threshold: Float in `[0, 255]`. Defaults to `128`.
        value_range: Pair `(low, high)`, the range of input pixel values.
            Defaults to `(0, 255)`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> solarize = keras_featreg.data.augmentations.Solarize()
    >>> images = solarize(np.zeros((8, 32, 32, 3), "uint8"))

    Reference:
    - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Table 6.
    """

    def __init__(
        self,
        threshold: float = 128.0,
        value_range: tuple = (0, 255),
        **kwargs,
    ) -> None:
        kwargs.pop("seed", None)  # deterministic: no seed in the config
        super().__init__(value_range=value_range, **kwargs)
        self.threshold = check_float(
            "threshold", threshold, minimum=0.0, maximum=255.0
        )

    def _augment(self, images, transformation):
        low, high = self.value_range
        images = tf.cast(images, tf.float32)
        threshold = low + self.threshold / 255.0 * (high - low)
        images = tf.where(images >= threshold, high + low - images, images)
        return tf.cast(images, self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("seed")
        config["threshold"] = self.threshold
        return config


def _normalization_layer(normalization, channels, value_range):
    """`Rescaling` to `[-1, 1]` ("tf") or ImageNet-standardized ("torch")."""
    low, high = value_range
    span = high - low
    if normalization == "tf":
        return keras_layers.Rescaling(2.0 / span, -2.0 * low / span - 1.0)
    if channels == 3:
        mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    else:
        mean, std = np.array([GRAY_MEAN]), np.array([GRAY_STD])
    # ((x - low) / span - mean) / std, as x * scale + offset.
    scale = 1.0 / (span * std)
    offset = -(low / span + mean) / std
    return keras_layers.Rescaling(scale.tolist(), offset.tolist())


def vicreg_augmenter(
    image_size,
    view: int = 1,
    *,
    channels: int = 3,
    value_range: tuple = (0, 255),
    normalization: str = "torch",
    scale: tuple = (0.08, 1.0),
    blur_sigma: tuple = (0.1, 2.0),
    blur_rate: float | None = None,
    solarize_rate: float | None = None,
    seed: int | None = None,
) -> keras_layers.Pipeline:
    """Builds VICReg's augmentation of one view as a `keras.layers.Pipeline`.

    ```python
    RandomResizedCrop(image_size, scale)  # bilinear, per image
    RandomFlip("horizontal")              # p = 0.5
    RandomApply(ColorJitter(0.4, 0.4, 0.2, 0.1), rate=0.8)
    RandomGrayscale(0.2)                  # RGB only
    RandomApply(GaussianBlur(blur_sigma), rate=1.0 | 0.1)   # view 1 | 2
    RandomApply(Solarize(), rate=0.0 | 0.2)                 # view 1 | 2
    normalization                         # float32 output
    ```

    Every draw is per image. One-channel images (digits) stay one channel:
    grayscale is skipped and the color jitter applies brightness and
    contrast only. `normalization="torch"` maps `value_range` to `[0, 1]`
    and standardizes with the ImageNet mean/std (1 channel: their luma
    averages, 0.459 and 0.226), `"tf"` maps to `[-1, 1]`, `"none"` keeps
    `value_range`. `blur_sigma` is in pixels of the output; VICReg's
    `(0.1, 2.0)` is meant for 224 x 224, so scale it down for small images
    if the blur is too strong. The pipeline works eagerly, in a model and
    in `tf.data` (CPU, parallel `map`) on batches or single images.

    Args:
        image_size: Int or pair of ints, the output `(height, width)`.
        view: 1 or 2, which of VICReg's two views (blur and solarization
            rates). Defaults to `1`.
        channels: 1 or 3, the channels of the images. Defaults to `3`.
        value_range: Pair `(low, high)` of the input pixel values. Defaults
            to `(0, 255)`.
        normalization: `"torch"`, `"tf"` or `"none"`. Defaults to
            `"torch"`.
        scale: Pair, the crop's range of area fractions. Defaults to
            `(0.08, 1.0)`.
        blur_sigma: Pair, the blur's range of standard deviations in pixels.
            Defaults to `(0.1, 2.0)`.
        blur_rate: Float in `[0, 1]` or `None` (the view's: 1.0 or 0.1).
            Defaults to `None`.
        solarize_rate: Float in `[0, 1]` or `None` (the view's: 0.0 or
            0.2). Defaults to `None`.
        seed: Int or `None`; each layer gets its own seed derived from
            `(seed, view)`. Defaults to `None`.

    Returns:
        A `keras.layers.Pipeline` mapping images to float32 images of size
        `image_size` (serializable; call it with `training=True`, the
        default).

    Example:

    >>> augment = keras_featreg.data.vicreg_augmenter(96, view=2, seed=0)
    >>> views = augment(images)  # (batch, 96, 96, 3) float32

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906) and its
      code, `augmentations.py` of facebookresearch/vicreg.
    """
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        height = check_int("image_size", image_size[0], minimum=1)
        width = check_int("image_size", image_size[1], minimum=1)
    else:
        height = width = check_int("image_size", image_size, minimum=1)
    check_choice("view", view, VIEW_RATES)
    check_choice("channels", channels, (1, 3))
    value_range = _check_value_range(value_range)
    check_choice("normalization", normalization, AUGMENTATION_NORMALIZATIONS)
    default_blur, default_solarize = VIEW_RATES[view]
    if blur_rate is None:
        blur_rate = default_blur
    if solarize_rate is None:
        solarize_rate = default_solarize
    blur_rate = check_float("blur_rate", blur_rate, minimum=0.0, maximum=1.0)
    solarize_rate = check_float(
        "solarize_rate", solarize_rate, minimum=0.0, maximum=1.0
    )
    if seed is None:
        seeds = [None] * 8
    else:
        sequence = np.random.SeedSequence([check_int("seed", seed), view])
        seeds = [int(s) % 2**31 for s in sequence.generate_state(8)]

    pipeline = [
        RandomResizedCrop(height, width, scale=scale, seed=seeds[0]),
        keras_layers.RandomFlip("horizontal", seed=seeds[1]),
        RandomApply(
            ColorJitter(0.4, 0.4, 0.2, 0.1, value_range, seed=seeds[2]),
            rate=0.8,
            seed=seeds[3],
        ),
    ]
    if channels == 3:
        pipeline.append(keras_layers.RandomGrayscale(0.2, seed=seeds[4]))
    pipeline += [
        RandomApply(
            GaussianBlur(blur_sigma, value_range, seed=seeds[5]),
            rate=blur_rate,
            seed=seeds[6],
        ),
        RandomApply(
            Solarize(value_range=value_range),
            rate=solarize_rate,
            seed=seeds[7],
        ),
    ]
    if normalization != "none":
        pipeline.append(
            _normalization_layer(normalization, channels, value_range)
        )
    return keras_layers.Pipeline(pipeline, name=f"vicreg_view_{view}")


def two_view_dataset(
    images,
    batch_size: int,
    image_size,
    seed: int | None = None,
    *,
    shuffle: bool = True,
    shuffle_buffer: int = 10_000,
    drop_remainder: bool = True,
    value_range: tuple = (0, 255),
    normalization: str = "torch",
    blur_sigma: tuple = (0.1, 2.0),
    num_parallel_calls: int = tf.data.AUTOTUNE,
) -> tf.data.Dataset:
    """A `tf.data` pipeline of VICReg view pairs `(view_a, view_b)`.

    Each image is augmented twice, by `vicreg_augmenter(view=1)` and
    `vicreg_augmenter(view=2)`; elements are `(view_a, view_b)` float32
    batches, the input of `TwoViewModel.fit`. Images of one size (arrays)
    are batched first and augmented a batch at a time (vectorized, per-image
    draws); images of varying sizes (a dataset with unknown height/width)
    are augmented one at a time, then batched. The augmentation runs on the
    CPU in `num_parallel_calls` parallel maps, followed by `prefetch`.

    `seed` fixes the shuffle order and the layers' seeds, but parallel
    maps draw from shared generators in scheduling order, so augmentations
    are repeatable only with `num_parallel_calls=1`.

    Args:
        images: Array `(n, H, W)` or `(n, H, W, C)` with C in {1, 3}, or a
            `tf.data.Dataset` of single images `(H, W, C)`.
        batch_size: Int >= 1.
        image_size: Int or pair of ints, the views' `(height, width)`.
        seed: Int or `None`. Defaults to `None`.
        shuffle: Bool, reshuffle each epoch. Defaults to `True`.
        shuffle_buffer: Int >= 1. Defaults to `10_000`.
        drop_remainder: Bool, drop the last partial batch (VICReg's
            statistics want full batches). Defaults to `True`.
        value_range: Pair, the range of input pixel values. Defaults to
            `(0, 255)`.
        normalization: `"torch"`, `"tf"` or `"none"`. Defaults to
            `"torch"`.
        blur_sigma: Pair, the blur's sigma range in pixels. Defaults to
            `(0.1, 2.0)`.
        num_parallel_calls: Int or `tf.data.AUTOTUNE`. Defaults to
            `tf.data.AUTOTUNE`.

    Returns:
        A `tf.data.Dataset` of `(view_a, view_b)` float32 batches.

    Example:

    >>> images, _ = keras_featreg.data.load_digits()
    >>> dataset = keras_featreg.data.two_view_dataset(
    ...     images, batch_size=256, image_size=8, seed=0)
    >>> model.fit(dataset, epochs=10)

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906) and its
      code, `augmentations.py` of facebookresearch/vicreg.
    """
    batch_size = check_int("batch_size", batch_size, minimum=1)
    shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, minimum=1)
    if isinstance(images, tf.data.Dataset):
        dataset = images
        spec = dataset.element_spec
        if not isinstance(spec, tf.TensorSpec) or spec.shape.rank != 3:
            raise ValueError(
                "`images` must be a dataset of single images "
                f"(H, W, C). Received: images.element_spec={spec}"
            )
        shape = spec.shape
    else:
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[..., np.newaxis]
        if images.ndim != 4 or len(images) == 0:
            raise ValueError(
                "`images` must be a non-empty array (n, H, W) or "
                f"(n, H, W, C). Received: images.shape={images.shape}"
            )
        shape = tf.TensorShape(images.shape[1:])
        dataset = tf.data.Dataset.from_tensor_slices(images)
    channels = shape[-1]
    if channels not in (1, 3):
        raise ValueError(
            "`images` must have 1 or 3 channels. "
            f"Received: images.shape[-1]={channels}"
        )
    kwargs = {
        "channels": channels,
        "value_range": value_range,
        "normalization": normalization,
        "blur_sigma": blur_sigma,
        "seed": seed,
    }
    augment_a = vicreg_augmenter(image_size, view=1, **kwargs)
    augment_b = vicreg_augmenter(image_size, view=2, **kwargs)

    def augment(batch):
        return augment_a(batch), augment_b(batch)

    if shuffle:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    if shape.is_fully_defined():
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        dataset = dataset.map(augment, num_parallel_calls=num_parallel_calls)
    else:
        dataset = dataset.map(augment, num_parallel_calls=num_parallel_calls)
        dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)
