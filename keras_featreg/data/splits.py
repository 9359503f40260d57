"""Zero-shot (disjoint-class) train/test splits for retrieval.

Metric-learning benchmarks train on some classes and test retrieval on
unseen ones: the first half of the sorted class ids trains, the second half
tests (CUB-200-2011: 100/100, Cars196: 98/98, Stanford Online Products:
11,318/11,316; digits: 0-4 / 5-9). Labels keep their original ids.
"""

import numpy as np

from keras_featreg.utils.validation import check_int


def _as_labels(images, labels) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise ValueError(
            "`labels` must be a non-empty 1-D array. "
            f"Received: labels.shape={labels.shape}"
        )
    if len(images) != labels.shape[0]:
        raise ValueError(
            "`images` and `labels` must have the same length. "
            f"Received: len(images)={len(images)}"
        )
    return labels


def split_by_class(images, labels, train_classes) -> tuple[tuple, tuple]:
    """Splits `(images, labels)` into disjoint-class train and test sets.

    Examples whose label is in `train_classes` go to the train set; all
    others go to the test set. Order within each set is preserved.

    Args:
        images: Array (or anything indexable by a boolean NumPy mask) with
            one example per row.
        labels: 1-D array of class ids, one per row of `images`.
        train_classes: Iterable of class ids for training. Each must occur
            in `labels`, and at least one class must be left for testing.

    Returns:
        `((train_images, train_labels), (test_images, test_labels))`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> images, labels = keras_featreg.data.load_digits()
    >>> (x_train, y_train), (x_test, y_test) = (
    ...     keras_featreg.data.split_by_class(images, labels, [0, 1, 2]))
    >>> np.unique(y_train).tolist(), np.unique(y_test).tolist()
    ([0, 1, 2], [3, 4, 5, 6, 7, 8, 9])
    """
    labels = _as_labels(images, labels)
    train_classes = np.unique(np.asarray(list(train_classes)))
    classes = np.unique(labels)
    missing = np.setdiff1d(train_classes, classes)
    if train_classes.size == 0 or missing.size:
        raise ValueError(
            "`train_classes` must be a non-empty subset of the classes in "
            f"`labels` ({classes.tolist()}). "
            f"Received: train_classes={train_classes.tolist()}"
        )
    if train_classes.size == classes.size:
        raise ValueError(
            "`train_classes` must leave at least one class for testing. "
            f"Received: train_classes={train_classes.tolist()}"
        )
    mask = np.isin(labels, train_classes)
    images_array = np.asarray(images) if isinstance(images, list) else images
    return (
        (images_array[mask], labels[mask]),
        (images_array[~mask], labels[~mask]),
    )


def zero_shot_split(
    images, labels, num_train_classes: int | None = None
) -> tuple[tuple, tuple]:
    """Trains on the first classes, tests on the rest (the paper protocol).

    The sorted distinct class ids are cut in two: the first
    `num_train_classes` form the train set, the others the test set.

    Args:
        images: Array with one example per row.
        labels: 1-D array of class ids, one per row of `images`, with at
            least 2 distinct classes.
        num_train_classes: Int, number of classes used for training, in
            `[1, num_classes - 1]`. Defaults to `None`: half the classes,
            rounded down (digits 0-4 train, 5-9 test).

    Returns:
        `((train_images, train_labels), (test_images, test_labels))`.

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> images, labels = keras_featreg.data.load_mnist_5k()
    >>> (x_train, y_train), (x_test, y_test) = (
    ...     keras_featreg.data.zero_shot_split(images, labels))
    >>> np.unique(y_train).tolist(), np.unique(y_test).tolist()
    ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])

    Reference:
    - [Oh Song et al., 2016](https://arxiv.org/abs/1511.06452).
    """
    labels = _as_labels(images, labels)
    classes = np.unique(labels)
    if classes.size < 2:
        raise ValueError(
            "`zero_shot_split` needs at least 2 distinct classes in `labels` "
            "(one to train on and one to test on); one class cannot be "
            f"split. Received: np.unique(labels)={classes.tolist()}"
        )
    if num_train_classes is None:
        num_train_classes = classes.size // 2
    num_train_classes = check_int(
        "num_train_classes", num_train_classes, minimum=1
    )
    if num_train_classes >= classes.size:
        raise ValueError(
            "`num_train_classes` must be smaller than the number of classes "
            f"({classes.size}). Received: num_train_classes="
            f"{num_train_classes}"
        )
    return split_by_class(images, labels, classes[:num_train_classes])
