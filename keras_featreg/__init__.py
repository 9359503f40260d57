"""keras-featreg: feature-embedding regularizers for Keras 3."""

from keras_featreg import ops
from keras_featreg.version import __version__
