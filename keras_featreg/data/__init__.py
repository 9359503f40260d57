"""Datasets and samplers for metric learning.

Offline defaults (`load_mnist_5k`, `load_digits`), zero-shot class splits,
P x K class-balanced batches (`PKSampler`, `pk_dataset`) and the SVMax
paper's retrieval benchmarks through tensorflow-datasets.
"""

from keras_featreg.data.augmentations import two_view_dataset
from keras_featreg.data.augmentations import vicreg_augmenter
from keras_featreg.data.image_preprocessing import normalize_image
from keras_featreg.data.image_preprocessing import retrieval_preprocess
from keras_featreg.data.offline import load_digits
from keras_featreg.data.offline import load_mnist_5k
from keras_featreg.data.pk_dataset import dataset_to_arrays
from keras_featreg.data.pk_dataset import pk_dataset
from keras_featreg.data.pk_sampler import PKSampler
from keras_featreg.data.retrieval import RETRIEVAL_DATASETS
from keras_featreg.data.retrieval import RetrievalDatasetInfo
from keras_featreg.data.retrieval import get_retrieval_dataset_info
from keras_featreg.data.retrieval import load_retrieval_dataset
from keras_featreg.data.retrieval import load_retrieval_encoded
from keras_featreg.data.splits import split_by_class
from keras_featreg.data.splits import zero_shot_split
