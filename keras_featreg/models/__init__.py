"""Example models: embedding networks for the papers' experiments."""

from keras_featreg.models.embedding import BACKBONES
from keras_featreg.models.embedding import build_embedding_model
from keras_featreg.models.two_view import TwoViewModel
