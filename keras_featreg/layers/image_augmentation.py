"""Base classes of the image augmentation layers, on public Keras API.

`ImageAugmentation` follows the protocol of Keras' own image preprocessing
layers (`keras.layers.RandomCrop` and friends): a layer draws one
`transformation` per call with `get_random_transformation(data, training,
seed)` and applies it with `transform_images(images, transformation,
training)` (and `transform_labels`, `transform_segmentation_masks`, ...
for dict inputs). Keras exports no base class for those layers, so this
one is built on `keras.layers.Layer` only; it runs on the TensorFlow
backend, eagerly, in models and in `tf.data` pipelines (CPU, parallel
`map`), and sets `supports_jit = False` (TensorFlow image ops and
per-image partitions that XLA does not compile).

`PixelAugmentation` adds a `value_range` for the pixel-value
augmentations (`ColorJitter`, `GaussianBlur`, `Solarize`): channels-last
images, identities at inference.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_featreg.utils.validation import check_int

DATA_FORMATS = ("channels_first", "channels_last")


def check_range(name: str, value, minimum: float = 0.0) -> tuple:
    """Returns `value` as a `(low, high)` float pair, `minimum < low <= high`.

    Shared by the augmentation layers for `scale=(0.08, 1.0)`-like args.
    """
    message = (
        f"`{name}` must be a pair `(low, high)` of finite numbers with "
        f"{minimum} < low <= high. Received: {name}={value!r}"
    )
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(message)
    try:
        low, high = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(message)
    if not minimum < low <= high:
        raise ValueError(message)
    return low, high


def check_value_range(value_range) -> tuple:
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


def check_seed(seed):
    return None if seed is None else check_int("seed", seed)


def check_data_format(data_format) -> str:
    """`keras.config.image_data_format()` for `None`, else validated."""
    if data_format is None:
        return keras.config.image_data_format()
    standardized = str(data_format).lower()
    if standardized not in DATA_FORMATS:
        raise ValueError(
            "The `data_format` argument must be one of "
            f"{set(DATA_FORMATS)}. Received: data_format={data_format}"
        )
    return standardized


class ImageAugmentation(keras.layers.Layer):
    """Random image augmentation: one transformation drawn per call.

    Subclasses define `get_random_transformation(data, training=True,
    seed=None)` (the random draws, or `None`), `transform_images(images,
    transformation, training=True)` on a batch `(B, H, W, C)`, and
    `compute_output_shape`. `call` takes a batch, one image `(H, W, C)`
    (transformed as a batch of one) or a dict with `"images"` and
    optionally `"labels"`, `"segmentation_masks"` and `"bounding_boxes"`
    (`transform_labels`, `transform_segmentation_masks`,
    `transform_bounding_boxes`; labels and boxes pass unchanged unless
    a subclass says otherwise).

    Args:
        seed: Int or `None`, seed of the layer's `keras.random.SeedGenerator`
            (`self.generator`). Defaults to `None`.
        data_format: `"channels_last"` or `"channels_first"`. Defaults to
            `keras.config.image_data_format()`.
        bounding_box_format: String or `None`, kept in the config (Keras'
            argument of the same name). Defaults to `None`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self, seed=None, data_format=None, bounding_box_format=None, **kwargs
    ):
        super().__init__(**kwargs)
        self.seed = check_seed(seed)
        self.generator = keras.random.SeedGenerator(self.seed)
        self.data_format = check_data_format(data_format)
        self.bounding_box_format = bounding_box_format
        self.supports_jit = False

    def _seed(self, seed):
        """`seed` if given, else the layer's generator (advanced per draw)."""
        return self.generator if seed is None else seed

    def get_random_transformation(self, data, training=True, seed=None):
        return None

    def transform_images(self, images, transformation, training=True):
        raise NotImplementedError(
            f"{type(self).__name__} must override `transform_images`."
        )

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

    def _call_transform(
        self, transform, values, transformation, training, batched
    ):
        values = tf.convert_to_tensor(values)
        if batched:
            return transform(values, transformation, training=training)
        outputs = transform(
            values[tf.newaxis], transformation, training=training
        )
        return outputs[0]

    def call(self, data, training=True):
        images = data["images"] if isinstance(data, dict) else data
        rank = len(images.shape)
        if rank not in (3, 4):
            raise ValueError(
                "Expected image tensor to have rank 3 (single image) "
                f"or 4 (batch of images). Received: data.shape={images.shape}"
            )
        batched = rank == 4
        transformation = self.get_random_transformation(data, training=training)
        if not isinstance(data, dict):
            return self._call_transform(
                self.transform_images, data, transformation, training, batched
            )
        outputs = dict(data)
        outputs["images"] = self._call_transform(
            self.transform_images, images, transformation, training, batched
        )
        if "labels" in data:
            outputs["labels"] = self.transform_labels(
                data["labels"], transformation, training=training
            )
        if "segmentation_masks" in data:
            outputs["segmentation_masks"] = self._call_transform(
                self.transform_segmentation_masks,
                data["segmentation_masks"],
                transformation,
                training,
                batched,
            )
        if "bounding_boxes" in data:
            outputs["bounding_boxes"] = self.transform_bounding_boxes(
                data["bounding_boxes"], transformation, training=training
            )
        return outputs

    def get_config(self) -> dict:
        config = super().get_config()
        config["data_format"] = self.data_format
        if self.bounding_box_format is not None:
            config["bounding_box_format"] = self.bounding_box_format
        return config


class PixelAugmentation(ImageAugmentation):
    """Per-image pixel-value augmentation of channels-last images.

    Images of any numeric dtype in `value_range` become float images (the
    compute dtype) in `value_range`; at inference (`training=False`) they
    are only cast. Subclasses define `_augment(images, transformation)` on
    a batch.

    Args:
        value_range: Pair `(low, high)`, the range of input pixel values.
            Defaults to `(0, 255)`.
        seed: Int or `None`. Defaults to `None`.
        **kwargs: `ImageAugmentation` and base layer arguments.
    """

    def __init__(self, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if self.data_format != "channels_last":
            raise ValueError(
                f"`{type(self).__name__}` supports channels_last images "
                f"only. Received: data_format={self.data_format!r}"
            )
        self.value_range = check_value_range(value_range)

    def _batch_size(self, data):
        images = data["images"] if isinstance(data, dict) else data
        images = tf.convert_to_tensor(images)
        return 1 if images.shape.rank == 3 else tf.shape(images)[0]

    def _uniform(self, shape, low, high, seed):
        return keras.random.uniform(shape, low, high, seed=self._seed(seed))

    def _to_unit(self, images):
        low, high = self.value_range
        return (tf.cast(images, tf.float32) - low) / (high - low)

    def _from_unit(self, images):
        low, high = self.value_range
        images = images * (high - low) + low
        return tf.cast(images, self.compute_dtype)

    def _augment(self, images, transformation):
        raise NotImplementedError(
            f"{type(self).__name__} must override `_augment`."
        )

    def transform_images(self, images, transformation, training=True):
        if not training:
            return tf.cast(images, self.compute_dtype)
        images = tf.convert_to_tensor(images)
        return self._augment(images, transformation)

    def compute_output_shape(self, input_shape, *args, **kwargs):
        return input_shape

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"value_range": self.value_range, "seed": self.seed})
        return config
