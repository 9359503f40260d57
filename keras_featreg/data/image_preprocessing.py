"""Decode, crop and normalize images for ImageNet-pretrained backbones."""

from collections.abc import Callable

import tensorflow as tf

from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int

NORMALIZATIONS = ("torch", "caffe", "tf", "none")
_MEAN_RGB = (0.485, 0.456, 0.406)
_STD_RGB = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def normalize_image(image, normalization: str = "torch") -> tf.Tensor:
    """Maps RGB pixel values in `[0, 255]` to a backbone's input range.

    The modes are those of `keras.applications.imagenet_utils`
    `preprocess_input(mode=...)`, written in TensorFlow ops so they run
    inside `tf.data`:

    ```python
    "torch": (image / 255 - mean) / std   # ImageNet mean/std, RGB
    "caffe": image[..., ::-1] - mean_bgr  # BGR, zero-centred (ResNet50)
    "tf":    image / 127.5 - 1            # [-1, 1] (MobileNet, Inception)
    "none":  image                        # [0, 255] (EfficientNet, ...)
    ```

    Args:
        image: Tensor `(..., 3)` of RGB values in `[0, 255]`.
        normalization: String, one of `"torch"`, `"caffe"`, `"tf"`,
            `"none"`. Defaults to `"torch"`.

    Returns:
        A float32 tensor of the same shape.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> image = np.full((2, 2, 3), 255, "uint8")
    >>> x = keras_featreg.data.normalize_image(image, "tf")
    >>> x.numpy().max().item(), x.dtype.name
    (1.0, 'float32')
    """
    check_choice("normalization", normalization, NORMALIZATIONS)
    image = tf.cast(image, tf.float32)
    if normalization == "torch":
        return (image / 255.0 - _MEAN_RGB) / _STD_RGB
    if normalization == "caffe":
        return image[..., ::-1] - _CAFFE_MEAN_BGR
    if normalization == "tf":
        return image / 127.5 - 1.0
    return image


def _to_rgb(image) -> tf.Tensor:
    """Decodes an encoded image (or takes a pixel array) as uint8 RGB."""
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.string:
        image = tf.io.decode_image(image, channels=3, expand_animations=False)
    elif image.shape.rank == 2:
        image = image[..., tf.newaxis]
    if image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    return image


def _random_resized_crop(image, size: int) -> tf.Tensor:
    """Random crop of 8-100% of the area, aspect 3/4-4/3, resized.

    TensorFlow's sampler with an antialiased resize, for one decoded image
    of any size (retrieval photos are often 500 pixels and more). The
    augmentation layer `keras_featreg.layers.RandomResizedCrop` follows
    torchvision's sampling rule exactly but resizes without antialiasing;
    it is the one for batches of small images (the VICReg views).
    """
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.zeros((1, 0, 4)),
        area_range=(0.08, 1.0),
        aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, crop_size)
    return tf.image.resize(image, (size, size), antialias=True)


def _resize_center_crop(image, size: int) -> tf.Tensor:
    """Resizes the shorter side to `size * 256 / 224`, crops the centre."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    short_side = round(size * 256 / 224)
    scale = short_side / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), size)
    image = tf.image.resize(image, new_shape, antialias=True)
    top = (new_shape[0] - size) // 2
    left = (new_shape[1] - size) // 2
    return image[top : top + size, left : left + size, :]


def retrieval_preprocess(
    image_size: int = 224,
    training: bool = False,
    normalization: str = "torch",
) -> Callable[[tf.Tensor], tf.Tensor]:
    """Returns the per-image preprocessing of the retrieval benchmarks.

    The returned function takes one image, either encoded (a scalar
    `tf.string`, JPEG/PNG/...) or decoded (`(height, width, channels)`
    pixels in `[0, 255]`), makes it RGB and returns a float32
    `(image_size, image_size, 3)` tensor:

    - `training=True`: random resized crop (8-100% of the area, aspect
      ratio 3/4-4/3, torchvision's `RandomResizedCrop` defaults) to
      `image_size`, then a random horizontal flip.
    - `training=False`: resize the shorter side to
      `round(image_size * 256 / 224)` (256 for 224), then center crop
      `image_size`.

    Then `normalize_image(image, normalization)`; pick the mode of the
    backbone: `"caffe"` for `keras.applications` ResNet50/VGG, `"tf"` for
    MobileNetV2/InceptionV3, `"torch"` for DenseNet and ImageNet mean/std
    conventions, `"none"` for models that rescale inside (EfficientNet,
    ConvNeXt).

    Args:
        image_size: Int, output height and width. Defaults to `224`.
        training: Bool, whether to apply the random training augmentation.
            Defaults to `False`.
        normalization: String, one of `"torch"`, `"caffe"`, `"tf"`,
            `"none"` (see `normalize_image`). Defaults to `"torch"`.

    Returns:
        A function `image -> float32 (image_size, image_size, 3)`, usable in
        `tf.data.Dataset.map` and as `pk_dataset(..., preprocess=...)`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> preprocess = keras_featreg.data.retrieval_preprocess(32, True)
    >>> images = np.zeros((40, 48, 40, 3), "uint8")
    >>> labels = np.repeat(np.arange(10), 4)
    >>> dataset = keras_featreg.data.pk_dataset(
    ...     images, labels, p=4, k=2, preprocess=preprocess)
    >>> x, y = next(iter(dataset))
    >>> tuple(x.shape), tuple(y.shape)
    ((8, 32, 32, 3), (8,))
    """
    image_size = check_int("image_size", image_size, minimum=1)
    training = check_bool("training", training)
    check_choice("normalization", normalization, NORMALIZATIONS)

    def preprocess(image) -> tf.Tensor:
        image = tf.cast(_to_rgb(image), tf.float32)
        if training:
            image = _random_resized_crop(image, image_size)
            image = tf.image.random_flip_left_right(image)
        else:
            image = _resize_center_crop(image, image_size)
        image = tf.ensure_shape(image, (image_size, image_size, 3))
        return normalize_image(image, normalization)

    return preprocess
