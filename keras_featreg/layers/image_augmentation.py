"""Base class of the per-image augmentation layers (ColorJitter, ...)."""

import numpy as np
import tensorflow as tf
from keras import random as keras_random

# Keras exports no public base class for its image augmentation layers; this
# is the one `keras.layers.RandomCrop` and friends subclass (Keras >= 3.6).
from keras.src.layers.preprocessing.image_preprocessing.base_image_preprocessing_layer import (  # noqa: E501
    BaseImagePreprocessingLayer,
)

from keras_featreg.layers.random_resized_crop import check_range
from keras_featreg.utils.validation import check_int


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


class ImageAugmentation(BaseImagePreprocessingLayer):
    """Per-image augmentations on channels-last batches in `value_range`."""

    _USE_BASE_FACTOR = False

    def __init__(self, value_range=(0, 255), seed=None, **kwargs):
        super().__init__(**kwargs)
        if self.data_format != "channels_last":
            raise ValueError(
                f"`{type(self).__name__}` supports channels_last images "
                f"only. Received: data_format={self.data_format!r}"
            )
        self.value_range = check_value_range(value_range)
        self.seed = check_seed(seed)
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
        # Subclasses define the augmentation of a float batch.
        raise TypeError(
            f"{type(self).__name__} must override `_augment`. "
            f"Received: layer={self.name}"
        )

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
