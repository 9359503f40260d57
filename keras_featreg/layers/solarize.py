"""PIL-style solarization with a fixed threshold."""

import tensorflow as tf
from keras import saving

from keras_featreg.layers.image_augmentation import PixelAugmentation
from keras_featreg.utils.validation import check_float


@saving.register_keras_serializable(package="keras_featreg")
class Solarize(PixelAugmentation):
    """Inverts the pixels at or above a threshold (PIL's `solarize`).

    ```python
    x = where(x >= threshold, high + low - x, x)  # (low, high) = value_range
    ```

    with `threshold` given on the `[0, 255]` scale and mapped linearly to
    `value_range` (PIL's default 128). Deterministic and always applied:
    wrap it in `keras_featreg.layers.RandomApply` for VICReg's 0.2.

    Args:
        threshold: Float in `[0, 255]`. Defaults to `128`.
        value_range: Pair `(low, high)`, the range of input pixel values.
            Defaults to `(0, 255)`.
        **kwargs: Base layer arguments (`name`, `dtype`, ...).

    Example:

    >>> import numpy as np
    >>> import keras_featreg
    >>> solarize = keras_featreg.layers.Solarize()
    >>> pixels = np.array([0, 127, 128, 255], "uint8").reshape(1, 2, 2, 1)
    >>> solarize(pixels).numpy().ravel().tolist()
    [0.0, 127.0, 127.0, 0.0]

    Reference:
    - [Grill et al., 2020](https://arxiv.org/abs/2006.07733), Table 6.
    """

    def __init__(
        self,
        threshold: float = 128.0,
        value_range: tuple = (0, 255),
        **kwargs,
    ) -> None:
        kwargs.pop("seed", None)  # deterministic: no seed in the config
        super().__init__(value_range=value_range, **kwargs)
        self.threshold = check_float(
            "threshold", threshold, minimum=0.0, maximum=255.0
        )

    def _augment(self, images, transformation):
        low, high = self.value_range
        images = tf.cast(images, tf.float32)
        threshold = low + self.threshold / 255.0 * (high - low)
        images = tf.where(images >= threshold, high + low - images, images)
        return tf.cast(images, self.compute_dtype)

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("seed")
        config["threshold"] = self.threshold
        return config
