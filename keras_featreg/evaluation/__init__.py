"""keras_featreg.evaluation: whole-test-set evaluation (NumPy, bounded memory).

Retrieval (Recall@k, MAP@R, R-precision), clustering (k-means + NMI) and
collapse diagnostics, computed on a whole embedding set after training.
Importing this package does not import TensorFlow: the functions that need
it (the linear probe, `encode`, the collapse report) import it when called.
"""

from keras_featreg.evaluation.clustering import kmeans
from keras_featreg.evaluation.clustering import nmi
from keras_featreg.evaluation.clustering import normalized_mutual_information
from keras_featreg.evaluation.collapse import embedding_collapse_report
from keras_featreg.evaluation.linear_probe import knn_accuracy
from keras_featreg.evaluation.linear_probe import linear_probe_accuracy
from keras_featreg.evaluation.map_at_r import map_at_r
from keras_featreg.evaluation.map_at_r import r_precision
from keras_featreg.evaluation.modes import angular_uniformity
from keras_featreg.evaluation.modes import mode_coverage
from keras_featreg.evaluation.retrieval import nearest_neighbors
from keras_featreg.evaluation.retrieval import recall_at_k
