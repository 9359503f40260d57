"""keras_featreg.metrics."""

from keras_featreg.metrics.mean_singular_value import MeanSingularValue
