"""VICReg's projector (expander): Dense-BN-ReLU blocks, last Dense no bias."""

import keras

from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_float
from keras_featreg.utils.validation import check_int
from keras_featreg.utils.validation import check_positive


def build_projector(
    widths=(8192, 8192, 8192),
    synchronized: bool = False,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    name: str = "projector",
) -> keras.Sequential:
    """Builds VICReg's projector: (Dense, BatchNorm, ReLU) x (n-1), Dense.

    ```python
    for width in widths[:-1]:
        x = relu(batch_norm(dense(width)(x)))
    z = dense(widths[-1], use_bias=False)(x)
    ```

    The VICReg reference uses 8192-8192-8192 on a ResNet-50 for ImageNet;
    small examples use e.g. (512, 512, 512).

    BatchNorm. The defaults follow the reference (PyTorch `BatchNorm1d`:
    running-statistics momentum 0.1, epsilon 1e-5), i.e. Keras
    `momentum=0.9` (Keras weighs the old moving average, PyTorch the new
    batch) and `epsilon=1e-5`, not Keras' own defaults (0.99, 1e-3). Pass
    `momentum=0.99, epsilon=1e-3` for the Keras defaults (this function's
    behaviour before 0.9/1e-5 became the default).

    Args:
        widths: Sequence of positive ints, the layer widths; the last is the
            embedding dimension. Defaults to `(8192, 8192, 8192)`.
        synchronized: Bool, use `BatchNormalization(synchronized=True)`
            (statistics over all replicas, as the reference's SyncBN) under
            tf.distribute. Defaults to `False`.
        momentum: Float in [0, 1], the BatchNorm moving-average momentum in
            Keras terms (`1 - ` PyTorch's). Defaults to `0.9` (PyTorch's
            0.1, as the reference).
        epsilon: Float, positive, added to the BatchNorm variance. Defaults
            to `1e-5` (PyTorch's, as the reference).
        name: String, the model name. Defaults to `"projector"`.

    Returns:
        A `keras.Sequential`.

    Example:

    >>> import keras_featreg
    >>> projector = keras_featreg.layers.build_projector((512, 512, 512))

    Reference:
    - [Bardes et al., 2022](https://arxiv.org/abs/2105.04906), Sec. 4.2.
    """
    widths = list(widths) if not isinstance(widths, int) else [widths]
    if not widths:
        raise ValueError(
            "`widths` must name at least one layer. Received: widths=[]"
        )
    for width in widths:
        check_int("widths", width, minimum=1)
    check_bool("synchronized", synchronized)
    momentum = check_float("momentum", momentum, minimum=0.0, maximum=1.0)
    epsilon = check_positive("epsilon", epsilon)
    layers = []
    for i, width in enumerate(widths[:-1]):
        layers += [
            keras.layers.Dense(width, name=f"dense_{i}"),
            keras.layers.BatchNormalization(
                momentum=momentum,
                epsilon=epsilon,
                synchronized=synchronized,
                name=f"batch_norm_{i}",
            ),
            keras.layers.ReLU(name=f"relu_{i}"),
        ]
    layers.append(
        keras.layers.Dense(
            widths[-1], use_bias=False, name=f"dense_{len(widths) - 1}"
        )
    )
    return keras.Sequential(layers, name=name)
