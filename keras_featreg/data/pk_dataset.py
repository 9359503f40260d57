"""A `tf.data` pipeline of P x K batches for `model.fit`."""

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_featreg.data.pk_sampler import PKSampler
from keras_featreg.utils.validation import check_bool


def dataset_to_arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, ...]:
    """Reads a finite dataset of `(image, label)` pairs into memory.

    Args:
        dataset: `tf.data.Dataset` of unbatched `(image, label)` tuples.
            Images are either scalar strings (encoded files, kept as
            bytes, the cheap way for big datasets) or arrays of one common
            shape.

    Returns:
        `(images, labels)`: a 1-D object array of `bytes` or a stacked
        array, and a 1-D label array.

    Example:

    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import keras_featreg
    >>> dataset = tf.data.Dataset.from_tensor_slices(
    ...     (np.zeros((6, 4, 4, 1), "uint8"), np.arange(6) % 3))
    >>> images, labels = keras_featreg.data.dataset_to_arrays(dataset)
    >>> images.shape, labels.tolist()
    ((6, 4, 4, 1), [0, 1, 2, 0, 1, 2])
    """
    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise TypeError(
            "`dataset` must yield `(image, label)` tuples (e.g. "
            "`tfds.load(..., as_supervised=True)`). "
            f"Received: dataset.element_spec={spec}"
        )
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        raise ValueError(
            f"`dataset` must not be empty. Received: dataset={dataset}"
        )
    if spec[0].dtype == tf.string:
        array = np.empty(len(images), dtype=object)
        array[:] = images
    else:
        shapes = {np.shape(image) for image in images}
        if len(shapes) > 1:
            raise ValueError(
                "`dataset` images must share one shape to be stacked in "
                "memory; resize them first, or keep them encoded (scalar "
                "strings) and decode them in `preprocess`. Received: "
                f"image shapes={sorted(shapes)[:3]}..."
            )
        array = np.stack(images)
    return array, np.asarray(labels)


def pk_dataset(
    images,
    labels,
    p: int,
    k: int,
    seed: int | None = None,
    preprocess: Callable[[tf.Tensor], tf.Tensor] | None = None,
    repeat: bool = True,
    small_classes: str = "replace",
) -> tf.data.Dataset:
    """Batches of `p` classes x `k` instances, for `model.fit`.

    The images stay in memory (on the CPU) and each batch is gathered by
    index from a `PKSampler` epoch, so only the `p * k` images of a batch
    are ever decoded or preprocessed: keep big datasets encoded
    (`load_retrieval_encoded`) and decode in `preprocess`. Every batch has
    exactly `p * k` examples laid out class by class (rows `j * k` to
    `j * k + k - 1` share a class); see `PKSampler` for the epoch order and
    for classes with fewer than `k` instances.

    Args:
        images: Array or tensor with one example per row (pixels, or
            scalar encoded strings), or a `tf.data.Dataset` of
            `(image, label)` pairs, read once into memory with
            `dataset_to_arrays` (then `labels` must be `None`).
        labels: 1-D array of class ids, or `None` with a dataset.
        p: Int, distinct classes per batch.
        k: Int, instances per class in a batch.
        seed: Int or `None`, seed of the sampler. Defaults to `None`.
        preprocess: Callable or `None`, applied to each image (not batch)
            in parallel, e.g. `retrieval_preprocess(224, training=True)`;
            must return one fixed shape. Defaults to `None` (images as
            stored).
        repeat: Bool, `True` for an endless stream of reshuffled epochs
            (pass `steps_per_epoch=PKSampler(labels, p, k).steps_per_epoch`
            to `fit`), `False` for a single epoch of known cardinality.
            Defaults to `True`.
        small_classes: `"replace"` or `"skip"`, see `PKSampler`. Defaults
            to `"replace"`.

    Returns:
        A prefetched `tf.data.Dataset` of `(images, labels)` batches with
        a static batch dimension `p * k`.

    Example:

    >>> import keras_featreg
    >>> images, labels = keras_featreg.data.load_mnist_5k()
    >>> (x, y), _ = keras_featreg.data.zero_shot_split(images, labels)
    >>> train = keras_featreg.data.pk_dataset(x, y, p=5, k=24, seed=0)
    >>> steps = keras_featreg.data.PKSampler(y, 5, 24).steps_per_epoch
    >>> steps  # P x K batches in one pass over the 2,500 training images
    21
    >>> model = keras_featreg.models.build_embedding_model((28, 28, 1))
    >>> model.compile(optimizer="sgd", loss=keras_featreg.losses.TripletLoss())
    >>> history = model.fit(train, epochs=1, steps_per_epoch=2, verbose=0)

    Reference:
    - [Hermans et al., 2017](https://arxiv.org/abs/1703.07737).
    """
    repeat = check_bool("repeat", repeat)
    if isinstance(images, tf.data.Dataset):
        if labels is not None:
            raise ValueError(
                "`labels` must be `None` when `images` is a "
                "`tf.data.Dataset` of `(image, label)` pairs. "
                f"Received: labels={type(labels).__name__}"
            )
        images, labels = dataset_to_arrays(images)
    if labels is None:
        raise ValueError(
            "`labels` is required when `images` is an array. "
            "Received: labels=None"
        )
    labels = np.asarray(labels)
    sampler = PKSampler(labels, p, k, seed=seed, small_classes=small_classes)
    if len(images) != labels.shape[0]:
        raise ValueError(
            "`images` and `labels` must have the same length "
            f"({labels.shape[0]}). Received: len(images)={len(images)}"
        )
    if preprocess is not None and not callable(preprocess):
        raise TypeError(
            f"`preprocess` must be callable or None. "
            f"Received: preprocess={preprocess!r}"
        )
    with tf.device("/CPU:0"):
        images = tf.convert_to_tensor(images)
        labels = tf.convert_to_tensor(labels)

    steps, batch_size = sampler.steps_per_epoch, sampler.batch_size

    def epoch_indices(index):
        indices = tf.numpy_function(
            sampler.epoch, [index], tf.int64, stateful=False
        )
        return tf.ensure_shape(indices, (steps, batch_size))

    epochs = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
    indices = epochs.map(epoch_indices).unbatch()
    if preprocess is None:
        dataset = indices.map(
            lambda batch: (tf.gather(images, batch), tf.gather(labels, batch)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        dataset = (
            indices.unbatch()
            .map(
                lambda i: (preprocess(tf.gather(images, i)), labels[i]),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            .batch(batch_size, drop_remainder=True)
        )
    if not repeat:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(steps))
    return dataset.prefetch(tf.data.AUTOTUNE)
