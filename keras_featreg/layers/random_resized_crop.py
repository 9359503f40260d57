"""Random resized crop (torchvision rule) as a Keras preprocessing layer."""

import math

import keras
import tensorflow as tf

from keras_featreg.layers.image_augmentation import ImageAugmentation
from keras_featreg.layers.image_augmentation import check_range
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int

INTERPOLATIONS = ("bilinear", "nearest")
MAX_ATTEMPTS = 10


NUM_UNIFORMS = 2 * MAX_ATTEMPTS + 2


def sample_crop_boxes(height, width, scale, ratio, uniforms) -> tf.Tensor:
    """Turns uniform draws into torchvision `RandomResizedCrop` boxes.

    For each image, up to 10 attempts draw an area fraction
    `s ~ U(scale)` and a log-uniform aspect ratio `r = w / h`; the first
    attempt with `0 < w <= width` and `0 < h <= height`, where
    `w = round(sqrt(s * height * width * r))` and
    `h = round(sqrt(s * height * width / r))`, wins and its top-left corner
    is uniform over the valid integer positions. With no valid attempt,
    the box is the central crop with the aspect ratio clipped to `ratio`.

    Args:
        height: Int or scalar tensor, the image height in pixels.
        width: Int or scalar tensor, the image width in pixels.
        scale: Pair of floats, range of the crop's area fraction.
        ratio: Pair of floats, range of the crop's aspect ratio `w / h`.
        uniforms: Tensor `(batch, 22)` of `U[0, 1)` draws: columns 0-9 the
            area fractions, 10-19 the log aspect ratios, 20-21 the top and
            left offsets.

    Returns:
        Int32 tensor `(batch, 4)` of `(top, left, crop_height, crop_width)`.
    """
    uniforms = tf.cast(uniforms, tf.float64)
    height = tf.cast(height, tf.float64)
    width = tf.cast(width, tf.float64)
    n = MAX_ATTEMPTS
    fraction = scale[0] + uniforms[:, :n] * (scale[1] - scale[0])
    low, high = math.log(ratio[0]), math.log(ratio[1])
    aspect = tf.exp(low + uniforms[:, n : 2 * n] * (high - low))
    area = height * width * fraction
    crop_w = tf.round(tf.sqrt(area * aspect))
    crop_h = tf.round(tf.sqrt(area / aspect))
    valid = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
    # The first valid attempt (argmax returns the first maximum).
    first = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)
    found = tf.reduce_any(valid, axis=1)
    crop_w = tf.gather(crop_w, first, axis=1, batch_dims=1)
    crop_h = tf.gather(crop_h, first, axis=1, batch_dims=1)

    # Fallback: the central crop, aspect ratio clipped to `ratio`.
    in_ratio = width / height
    fallback_w = tf.where(
        in_ratio > ratio[1], tf.round(height * ratio[1]), width
    )
    fallback_h = tf.where(
        in_ratio < ratio[0], tf.round(width / ratio[0]), height
    )
    fallback_w = tf.clip_by_value(fallback_w, 1.0, width)
    fallback_h = tf.clip_by_value(fallback_h, 1.0, height)
    crop_w = tf.where(found, crop_w, fallback_w)
    crop_h = tf.where(found, crop_h, fallback_h)

    # torchvision's `randint(0, size - crop + 1)`; centred on fallback.
    top = tf.floor(uniforms[:, 2 * n] * (height - crop_h + 1.0))
    left = tf.floor(uniforms[:, 2 * n + 1] * (width - crop_w + 1.0))
    top = tf.where(found, top, tf.floor((height - crop_h) / 2.0))
    left = tf.where(found, left, tf.floor((width - crop_w) / 2.0))
    top = tf.minimum(top, height - crop_h)
    left = tf.minimum(left, width - crop_w)
    return tf.cast(tf.stack([top, left, crop_h, crop_w], axis=1), tf.int32)


def center_crop_boxes(batch_size, height, width, target_height, target_width):
    """The largest central box with the target aspect ratio, per image."""
    height = tf.cast(height, tf.float32)
    width = tf.cast(width, tf.float32)
    crop_h = tf.clip_by_value(
        tf.floor(width * target_height / target_width), 1.0, height
    )
    crop_w = tf.clip_by_value(
        tf.floor(height * target_width / target_height), 1.0, width
    )
    box = tf.stack(
        [
            tf.floor((height - crop_h) / 2.0),
            tf.floor((width - crop_w) / 2.0),
            crop_h,
            crop_w,
        ]
    )
    return tf.tile(tf.cast(box, tf.int32)[tf.newaxis], [batch_size, 1])


def crop_and_resize(images, boxes, size, interpolation="bilinear"):
    """Crops each image of `images` to its box and resizes to `size`.

    Pixel boxes `(top, left, crop_height, crop_width)` map their corner
    pixels onto the output's corner pixels (TensorFlow's
    `crop_and_resize` convention), so a box that covers an image of the
    output size reproduces it exactly. No antialiasing: a crop much larger
    than the output aliases.

    Args:
        images: Tensor `(batch, height, width, channels)`.
        boxes: Int tensor `(batch, 4)` of pixel boxes.
        size: Pair of ints, the output `(height, width)`.
        interpolation: `"bilinear"` or `"nearest"`.

    Returns:
        Float32 tensor `(batch, size[0], size[1], channels)`.
    """
    images = tf.convert_to_tensor(images)
    shape = tf.shape(images)
    boxes = tf.cast(boxes, tf.float32)
    top, left, crop_h, crop_w = tf.unstack(boxes, axis=1)
    # Normalized coordinates: pixel y sits at y / (height - 1).
    span_h = tf.maximum(tf.cast(shape[1], tf.float32) - 1.0, 1.0)
    span_w = tf.maximum(tf.cast(shape[2], tf.float32) - 1.0, 1.0)
    normalized = tf.stack(
        [
            top / span_h,
            left / span_w,
            (top + crop_h - 1.0) / span_h,
            (left + crop_w - 1.0) / span_w,
        ],
        axis=1,
    )
    outputs = tf.image.crop_and_resize(
        tf.cast(images, tf.float32),
        normalized,
        box_indices=tf.range(shape[0]),
        crop_size=size,
        method=interpolation,
    )
    return tf.ensure_shape(
        outputs, (images.shape[0], size[0], size[1], images.shape[-1])
    )


@keras.saving.register_keras_serializable(package="keras_featreg")
class RandomResizedCrop(ImageAugmentation):
    """Crops a random part of each image and resizes it (torchvision rule).

    The crop augmentation of SimCLR, BYOL and VICReg, with the sampling of
    `torchvision.transforms.RandomResizedCrop`: for each image, up to 10
    attempts draw an area fraction and an aspect ratio

    ```python
    s = uniform(*scale)                            # share of the image area
    r = exp(uniform(log(ratio[0]), log(ratio[1]))) # crop width / height
    w = round(sqrt(s * H * W * r)); h = round(sqrt(s * H * W / r))
    ```

    and the first attempt that fits (`0 < w <= W`, `0 < h <= H`) is placed
    uniformly at random; if none fits, the central crop with the aspect
    ratio clipped to `ratio` is used. The crop is then resized to
    `(height, width)`. Every image of a batch gets its own crop, and every
    call new ones.

    At inference (`training=False`) the layer is deterministic: it takes
    the largest central crop with the output's aspect ratio and resizes it
    (as `keras.layers.RandomCrop` does at inference), which is the identity
    on images that already have the output size.

    Notes: resizing is bilinear (or nearest) without antialiasing, through
    `tf.image.crop_and_resize` (corner pixels map onto corner pixels);
    VICReg resizes with PIL's bicubic filter. Outputs are float32 (the
    layer's compute dtype) in the input's value range: bilinear weights are
    convex, so no value leaves `[min(input), max(input)]`. Runs on the
    TensorFlow backend (TensorFlow ops): eagerly, in models and in
    `tf.data` (CPU, parallel `map`). Bounding boxes are not supported;
    segmentation masks passed in a dict are cropped with nearest
    interpolation.

    Args:
        height: Int >= 1, output height.
        width: Int >= 1, output width.
        scale: Pair of floats `0 < low <= high`, the range of the crop's
            share of the image area. Defaults to `(0.08, 1.0)`.
        ratio: Pair of floats `0 < low <= high`, the range of the crop's
            aspect ratio `width / height`, sampled log-uniformly. Defaults
            to `(3 / 4, 4 / 3)`.
        interpolation: `"bilinear"` or `"nearest"`. Defaults to
            `"bilinear"`.
        seed: Int or `None`, seed of the layer's random generator (two
            layers with the same seed draw the same crops). Defaults to
            `None`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Call arguments:
        data: Images `(batch, H, W, C)` or one image `(H, W, C)`, any
            numeric dtype (or a dict with `"images"`, and optionally
            `"labels"`, left unchanged, and `"segmentation_masks"`).
        training: Bool, random crops if `True`, the central crop if
            `False`. Defaults to `True`.

    Returns:
        Float tensor `(batch, height, width, C)` (or `(height, width, C)`).

    Example:

    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import keras_featreg
    >>> crop = keras_featreg.layers.RandomResizedCrop(24, 24, seed=0)
    >>> images = np.zeros((8, 32, 40, 3), "uint8")
    >>> tuple(crop(images).shape)
    (8, 24, 24, 3)
    >>> dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
    >>> dataset = dataset.map(crop, num_parallel_calls=tf.data.AUTOTUNE)
    >>> [tuple(batch.shape) for batch in dataset]
    [(4, 24, 24, 3), (4, 24, 24, 3)]

    Reference:
    - [Szegedy et al., 2015](https://arxiv.org/abs/1409.4842) (the crop)
    - [torchvision RandomResizedCrop](https://pytorch.org/vision/stable/generated/torchvision.transforms.RandomResizedCrop.html)
    """

    def __init__(
        self,
        height: int,
        width: int,
        scale: tuple = (0.08, 1.0),
        ratio: tuple = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bilinear",
        seed: int | None = None,
        data_format: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.height = check_int("height", height, minimum=1)
        self.width = check_int("width", width, minimum=1)
        self.scale = check_range("scale", scale)
        self.ratio = check_range("ratio", ratio)
        self.interpolation = check_choice(
            "interpolation", interpolation, INTERPOLATIONS
        )

    def _channels_last(self, images):
        if self.data_format == "channels_first":
            return tf.transpose(images, (0, 2, 3, 1))
        return images

    def get_random_transformation(self, data, training=True, seed=None):
        images = data["images"] if isinstance(data, dict) else data
        images = tf.convert_to_tensor(images)
        if images.shape.rank == 3:
            images = images[tf.newaxis]
        images = self._channels_last(images)
        shape = tf.shape(images)
        batch_size, height, width = shape[0], shape[1], shape[2]
        if not training:
            return center_crop_boxes(
                batch_size, height, width, self.height, self.width
            )
        uniforms = keras.random.uniform(
            (batch_size, NUM_UNIFORMS), seed=self._seed(seed)
        )
        return sample_crop_boxes(
            height, width, self.scale, self.ratio, uniforms
        )

    def _transform_images(self, images, transformation, interpolation):
        images = self._channels_last(tf.convert_to_tensor(images))
        outputs = crop_and_resize(
            images, transformation, (self.height, self.width), interpolation
        )
        if self.data_format == "channels_first":
            outputs = tf.transpose(outputs, (0, 3, 1, 2))
        return tf.cast(outputs, self.compute_dtype)

    def transform_images(self, images, transformation, training=True):
        # The crop also runs at inference (the central crop), unlike the
        # base class, which returns the images unchanged.
        return self._transform_images(
            images, transformation, self.interpolation
        )

    def transform_segmentation_masks(
        self, segmentation_masks, transformation, training=True
    ):
        return self._transform_images(
            segmentation_masks, transformation, "nearest"
        )

    def transform_bounding_boxes(
        self, bounding_boxes, transformation, training=True
    ):
        raise ValueError(
            "`RandomResizedCrop` does not support bounding boxes. Received: "
            "data keys including 'bounding_boxes'"
        )

    def compute_output_shape(self, input_shape, *args, **kwargs):
        shape = list(input_shape)
        if self.data_format == "channels_first":
            shape[-2], shape[-1] = self.height, self.width
        else:
            shape[-3], shape[-2] = self.height, self.width
        return tuple(shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "height": self.height,
                "width": self.width,
                "scale": self.scale,
                "ratio": self.ratio,
                "interpolation": self.interpolation,
                "seed": self.seed,
            }
        )
        return config
