"""keras_featreg.layers."""

from keras_featreg.layers.embedding_regularization import (
    EmbeddingRegularization,
)
