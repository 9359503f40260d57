"""keras_featreg.layers."""

from keras_featreg.layers.color_jitter import ColorJitter
from keras_featreg.layers.embedding_regularization import (
    EmbeddingRegularization,
)
from keras_featreg.layers.gaussian_blur import GaussianBlur
from keras_featreg.layers.projector import build_projector
from keras_featreg.layers.proxy_anchor import ProxyAnchor
from keras_featreg.layers.random_apply import RandomApply
from keras_featreg.layers.random_resized_crop import RandomResizedCrop
from keras_featreg.layers.solarize import Solarize
