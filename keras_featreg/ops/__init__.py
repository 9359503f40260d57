"""The maths, once: pure functions on tensors (no Keras objects)."""

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.bounds import svmax_bounds
from keras_featreg.ops.singular_values import mean_singular_value
from keras_featreg.ops.singular_values import reference_mean_singular_value
from keras_featreg.ops.vicreg import reference_vicreg_covariance
from keras_featreg.ops.vicreg import reference_vicreg_loss
from keras_featreg.ops.vicreg import vicreg_covariance
from keras_featreg.ops.vicreg import vicreg_invariance
from keras_featreg.ops.vicreg import vicreg_loss
from keras_featreg.ops.vicreg import vicreg_variance
