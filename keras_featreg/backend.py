"""What this package needs, checked at import: TensorFlow, installed, as
the Keras backend."""

import importlib.util

REQUIRED_BACKEND = "tensorflow"


def check_tensorflow() -> None:
    """Raises `ImportError` unless TensorFlow is installed.

    `pip install keras-featreg` brings no TensorFlow, so that the user
    chooses one build: the `cpu` extra (`tensorflow-cpu` on x86-64,
    `tensorflow` elsewhere) or the `gpu` extra (`tensorflow[and-cuda]`),
    or a TensorFlow installed before. Without one, `import keras` fails
    with an error that does not say what to install; this check runs
    first and says it.

    Example:

    >>> import keras_featreg
    >>> keras_featreg.backend.check_tensorflow()
    """
    try:
        spec = importlib.util.find_spec("tensorflow")
    except ValueError:  # Imported already, by other means than a finder.
        return
    # A `tensorflow/` left without its `__init__.py` (a namespace package,
    # e.g. after uninstalling one of two TensorFlow distributions) is not
    # an installed TensorFlow either.
    if spec is None or spec.origin is None:
        raise ImportError(
            "keras_featreg needs TensorFlow (its Keras backend), and no "
            "TensorFlow is installed: `pip install keras-featreg` brings "
            "none, so that you choose the build. Install one with "
            '`pip install "keras-featreg[cpu]"` (CPU) or '
            '`pip install "keras-featreg[gpu]"` (Linux, NVIDIA GPU); from a '
            'clone, `pip install -e ".[cpu]"` or `pip install -e ".[gpu]"`. '
            f"Received: importlib.util.find_spec('tensorflow')={spec!r}"
        )


def check_backend(backend: str | None = None) -> None:
    """Raises `ImportError` unless Keras runs on the TensorFlow backend.

    keras_featreg's ops, custom gradients, data pipelines and models are
    written with TensorFlow (`tf.custom_gradient`, `tf.data`,
    `tf.distribute`), so Keras must use its TensorFlow backend. Keras picks
    the backend once, when it is first imported, from the `KERAS_BACKEND`
    environment variable or `~/.keras/keras.json`.

    Args:
        backend: Optional string, the backend name to check. Defaults to
            `None` (`keras.backend.backend()`).

    Example:

    >>> import keras_featreg
    >>> keras_featreg.backend.check_backend("tensorflow")
    >>> keras_featreg.backend.check_backend("jax")
    Traceback (most recent call last):
    ...
    ImportError: keras_featreg requires the 'tensorflow' Keras backend, ...
    """
    import keras  # After check_tensorflow(): Keras imports TensorFlow.

    found = keras.backend.backend() if backend is None else backend
    if found != REQUIRED_BACKEND:
        raise ImportError(
            f"keras_featreg requires the {REQUIRED_BACKEND!r} Keras backend, "
            f"but Keras is running on the {found!r} backend. Set the "
            f"environment variable KERAS_BACKEND={REQUIRED_BACKEND} (or "
            f'"backend": "{REQUIRED_BACKEND}" in ~/.keras/keras.json) before '
            "Keras is first imported. Received: "
            f"keras.backend.backend()={found!r}"
        )


# Run when `keras_featreg` is imported (its first import): fail here, with
# a clear message, not inside `import keras` or deep inside `fit`.
check_tensorflow()
check_backend()
