"""Embedding networks: backbone -> Dense(d) -> L2 normalization (-> SVMax)."""

import keras

from keras_featreg.utils.validation import check_bool
from keras_featreg.utils.validation import check_choice
from keras_featreg.utils.validation import check_int

BACKBONES = {
    "small_cnn": None,
    "resnet50": keras.applications.ResNet50,
    "mobilenetv2": keras.applications.MobileNetV2,
    "inception_v3": keras.applications.InceptionV3,
}


def _small_cnn(inputs: keras.KerasTensor) -> keras.KerasTensor:
    """Two conv blocks and a hidden layer: the paper's MNIST-scale network."""
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for filters in (32, 64):
        x = keras.layers.Conv2D(
            filters, 3, padding="same", activation="relu", name=f"conv{filters}"
        )(x)
        x = keras.layers.MaxPooling2D(name=f"pool{filters}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.layers.Dense(256, activation="relu", name="hidden")(x)


def build_embedding_model(
    input_shape: tuple,
    backbone: str = "small_cnn",
    embedding_dim: int = 128,
    normalize: bool = True,
    regularizer=None,
    weights: str | None = None,
    name: str = "embedding_model",
) -> keras.Model:
    """Builds `backbone -> Dense(embedding_dim) -> L2-normalize`.

    The SVMax paper's retrieval networks: an (ImageNet) backbone, a linear
    embedding head of dimension d = 128 and L2 normalization onto the unit
    sphere. A regularizer (e.g. `SVMaxRegularizer`) is applied to the final
    normalized embedding through `keras_featreg.layers.EmbeddingRegularization`,
    so the penalty lands in `model.losses` exactly as documented.

    Args:
        input_shape: Tuple, image shape `(height, width, channels)`.
        backbone: String, one of `"small_cnn"` (uint8 images in [0, 255]; the
            default, for MNIST-scale data), `"resnet50"`, `"mobilenetv2"`,
            `"inception_v3"` (keras.applications, global average pooled; feed
            images preprocessed for that network). Defaults to `"small_cnn"`.
        embedding_dim: Int, d. Defaults to `128`.
        normalize: Bool, L2-normalize the embedding. Defaults to `True`.
        regularizer: Optional regularizer (instance, name or config) on the
            final embedding. Defaults to `None`.
        weights: Optional backbone weights for keras.applications backbones
            (`"imagenet"` downloads them). Defaults to `None` (random init).
        name: String, the model name.

    Returns:
        A functional `keras.Model` from images to embeddings.

    Example:

    >>> import keras_featreg
    >>> model = keras_featreg.models.build_embedding_model(
    ...     (28, 28, 1),
    ...     regularizer=keras_featreg.regularizers.SVMaxRegularizer(0.1),
    ... )

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Sec. 4.1.
    """
    from keras_featreg.layers import EmbeddingRegularization

    check_choice("backbone", backbone, BACKBONES)
    embedding_dim = check_int("embedding_dim", embedding_dim, minimum=1)
    check_bool("normalize", normalize)
    inputs = keras.Input(shape=input_shape, name="images")
    if backbone == "small_cnn":
        features = _small_cnn(inputs)
    else:
        network = BACKBONES[backbone](
            include_top=False,
            weights=weights,
            input_shape=input_shape,
            pooling="avg",
        )
        features = network(inputs)
    x = keras.layers.Dense(embedding_dim, name="embedding")(features)
    if normalize:
        x = keras.layers.UnitNormalization(name="l2_normalize")(x)
    if regularizer is not None:
        x = EmbeddingRegularization(regularizer, name="regularization")(x)
    return keras.Model(inputs, x, name=name)
