"""The VICReg two-view augmentation recipe: a layer pipeline and tf.data.

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

(view 1 | view 2). This module holds the recipe: `vicreg_augmenter` (one
view as a `keras.layers.Pipeline`) and `two_view_dataset` (the `tf.data`
pipeline of view pairs). The augmentation layers themselves live in
`keras_featreg.layers`: Keras 3.15 has no layer with torchvision's
semantics for five of the steps (`keras.layers.RandomColorJitter` shifts
brightness additively, maps its saturation factor differently and uses one
order; `RandomGaussianBlur` draws one anisotropic sigma per batch;
`Solarization` draws its threshold; nothing applies a layer per image with
a probability or crops with torchvision's rule), so `RandomResizedCrop`,
`RandomApply`, `ColorJitter`, `GaussianBlur` and `Solarize` are ours.
`keras_featreg.data.augmentations.ColorJitter`, `.GaussianBlur` and
`.Solarize` remain importable from here as aliases of those layers.
"""

import numpy as np
import tensorflow as tf
from keras import layers as keras_layers

from keras_featreg.layers.color_jitter import LUMA
from keras_featreg.layers.color_jitter import ColorJitter
from keras_featreg.layers.gaussian_blur import GaussianBlur
from keras_featreg.layers.image_augmentation import check_value_range
from keras_featreg.layers.random_apply import RandomApply
from keras_featreg.layers.random_resized_crop import RandomResizedCrop
from keras_featreg.layers.solarize import Solarize
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_float
from keras_featreg.utils.validation import check_int

__all__ = [
    "ColorJitter",
    "GaussianBlur",
    "Solarize",
    "two_view_dataset",
    "vicreg_augmenter",
]

AUGMENTATION_NORMALIZATIONS = ("torch", "tf", "none")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet statistics of a luma channel, for 1-channel images.
GRAY_MEAN = float(np.dot(LUMA, IMAGENET_MEAN))
GRAY_STD = float(np.dot(LUMA, IMAGENET_STD))
VIEW_RATES = {1: (1.0, 0.0), 2: (0.1, 0.2)}  # (blur, solarize) per view


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

    >>> import numpy as np
    >>> import keras_featreg
    >>> augment = keras_featreg.data.vicreg_augmenter(24, view=2, seed=0)
    >>> images = np.zeros((4, 32, 32, 3), "uint8")
    >>> views = augment(images)
    >>> tuple(views.shape), views.dtype.name
    ((4, 24, 24, 3), 'float32')

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
    value_range = check_value_range(value_range)
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


def _too_few_images(dataset, batch_size, drop_remainder) -> str | None:
    """The reason the pipeline would yield no batch at all, else `None`.

    Known when the number of images is (arrays, and datasets of known
    cardinality); an empty `images` fails at once.
    """
    num_images = int(dataset.cardinality())
    if num_images < 0:  # infinite or unknown
        return None
    if num_images == 0:
        raise ValueError(
            "`images` must contain at least one image. "
            "Received: images.cardinality()=0"
        )
    if drop_remainder and num_images < batch_size:
        return (
            f"`two_view_dataset` got {num_images} images, fewer than "
            "`batch_size`, so with `drop_remainder=True` it yields no batch "
            "at all. Pass a `batch_size` of at most the number of images, "
            "or `drop_remainder=False` to keep the partial batch. "
            f"Received: batch_size={batch_size}"
        )
    return None


def _fail_when_iterated(dataset, message) -> tf.data.Dataset:
    """A dataset like `dataset` (same `element_spec`) whose iteration fails.

    Iterating it (e.g. in `fit`, which would otherwise train on zero batches
    and return `{}`) raises `tf.errors.InvalidArgumentError` with `message`.
    Building it does not fail, so a pipeline can still be built and
    inspected (`element_spec`) before the data is complete.
    """
    specs = dataset.element_spec

    def fail(index):
        check = tf.debugging.Assert(tf.constant(False), [message])
        with tf.control_dependencies([check]):
            unknown = tf.cast(index * 0, tf.int32)

            def zeros(spec):
                shape = [unknown if d is None else d for d in spec.shape]
                return tf.ensure_shape(tf.zeros(shape, spec.dtype), spec.shape)

            return tf.nest.map_structure(zeros, specs)

    return tf.data.Dataset.range(1).map(fail)


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
            statistics want full batches). With `True`, fewer images than
            `batch_size` (when their number is known) give a dataset that
            fails when iterated (`fit` raises) rather than an empty one;
            pass `False` to keep them as one partial batch. Defaults to
            `True`.
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

    >>> import keras
    >>> import keras_featreg
    >>> images, _ = keras_featreg.data.load_digits()
    >>> dataset = keras_featreg.data.two_view_dataset(
    ...     images, batch_size=256, image_size=8, seed=0)
    >>> view_a, view_b = next(iter(dataset))
    >>> tuple(view_a.shape), tuple(view_b.shape)
    ((256, 8, 8, 1), (256, 8, 8, 1))
    >>> encoder = keras.Sequential(
    ...     [keras.Input((8, 8, 1)), keras.layers.Flatten(),
    ...      keras.layers.Dense(32)])
    >>> model = keras_featreg.models.TwoViewModel(
    ...     encoder, keras_featreg.layers.build_projector((32, 32)),
    ...     loss=keras_featreg.losses.VICRegLoss())
    >>> model.compile(optimizer="adam")
    >>> history = model.fit(dataset.take(2), epochs=1, verbose=0)

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
    too_few = _too_few_images(dataset, batch_size, drop_remainder)
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
    if too_few is not None:
        return _fail_when_iterated(dataset, too_few)
    return dataset.prefetch(tf.data.AUTOTUNE)
