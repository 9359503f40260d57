"""The maths, once: pure functions on tensors (no Keras objects)."""

from keras_featreg.ops.batch import as_matrix
from keras_featreg.ops.bounds import svmax_bounds
from keras_featreg.ops.normalize import l2_normalize
from keras_featreg.ops.pairwise import as_labeled_batch
from keras_featreg.ops.pairwise import as_labels
from keras_featreg.ops.pairwise import label_masks
from keras_featreg.ops.pairwise import log1p_sum_exp
from keras_featreg.ops.pairwise import masked_logsumexp
from keras_featreg.ops.pairwise import masked_max
from keras_featreg.ops.pairwise import masked_min
from keras_featreg.ops.pairwise import pair_mean_per_anchor
from keras_featreg.ops.pairwise import pairwise_distances
from keras_featreg.ops.pairwise import pairwise_similarities
from keras_featreg.ops.pairwise import random_negative_mask
from keras_featreg.ops.pairwise import safe_sqrt
from keras_featreg.ops.singular_values import mean_singular_value
from keras_featreg.ops.singular_values import reference_mean_singular_value
from keras_featreg.ops.vicreg import reference_vicreg_covariance
from keras_featreg.ops.vicreg import reference_vicreg_loss
from keras_featreg.ops.vicreg import vicreg_covariance
from keras_featreg.ops.vicreg import vicreg_invariance
from keras_featreg.ops.vicreg import vicreg_loss
from keras_featreg.ops.vicreg import vicreg_variance
