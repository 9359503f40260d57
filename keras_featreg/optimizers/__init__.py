"""keras_featreg.optimizers."""

from keras_featreg.optimizers.lars import LARS
from keras_featreg.optimizers.learning_rate_multiplier import (
    LearningRateMultiplier,
)
