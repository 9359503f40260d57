"""keras_featreg.regularizers: batch-statistic embedding regularizers."""

from keras_featreg.regularizers.batch_statistic import BatchStatisticRegularizer
from keras_featreg.regularizers.svmax import SVMaxRegularizer
from keras_featreg.regularizers.vicreg import VICRegRegularizer
