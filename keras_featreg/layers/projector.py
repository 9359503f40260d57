"""VICReg's projector (expander): Dense-BN-ReLU blocks, last Dense no bias."""

import keras

from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_int


def build_projector(
    widths=(8192, 8192, 8192),
    synchronized: bool = False,
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

    Args:
        widths: Sequence of positive ints, the layer widths; the last is the
            embedding dimension. Defaults to `(8192, 8192, 8192)`.
        synchronized: Bool, use `BatchNormalization(synchronized=True)`
            (statistics over all replicas, as the reference's SyncBN) under
            tf.distribute. Defaults to `False`.
        name: String, the model name. Defaults to `"projector"`.

    Returns:
        A `keras.Sequential`.

    Example:

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
    layers = []
    for i, width in enumerate(widths[:-1]):
        layers += [
            keras.layers.Dense(width, name=f"dense_{i}"),
            keras.layers.BatchNormalization(
                synchronized=synchronized, name=f"batch_norm_{i}"
            ),
            keras.layers.ReLU(name=f"relu_{i}"),
        ]
    layers.append(
        keras.layers.Dense(
            widths[-1], use_bias=False, name=f"dense_{len(widths) - 1}"
        )
    )
    return keras.Sequential(layers, name=name)
