"""keras_featreg.layers."""

from keras_featreg.layers.embedding_regularization import (
    EmbeddingRegularization,
)
from keras_featreg.layers.projector import build_projector
from keras_featreg.losses.proxy_anchor import ProxyAnchor
