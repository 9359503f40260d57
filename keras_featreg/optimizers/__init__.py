"""keras_featreg.optimizers."""

from keras_featreg.optimizers.lars import LARS
