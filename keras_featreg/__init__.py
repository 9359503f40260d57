"""keras-featreg: feature-embedding regularizers for Keras 3."""

# First: checks that Keras runs on the TensorFlow backend.
from keras_featreg import backend
from keras_featreg import callbacks
from keras_featreg import data
from keras_featreg import distribute
from keras_featreg import evaluation
from keras_featreg import layers
from keras_featreg import losses
from keras_featreg import metrics
from keras_featreg import models
from keras_featreg import ops
from keras_featreg import optimizers
from keras_featreg import regularizers
from keras_featreg import schedules
from keras_featreg.version import __version__
