"""Distributed training: strategies, the multi-worker loop, global batches.

The cross-replica gathers (`gather_batch`, `local_rows`, ...) live beside
the other batch ops in `keras_featreg.ops.batch` and are re-exported here.

See docs/distributed.md: what is computed on the global batch, how to launch
workers (`python -m keras_featreg.distribute.launch`), what was verified.
"""

from keras_featreg.distribute.build import build_for_training
from keras_featreg.distribute.data import split_global_batches
from keras_featreg.distribute.strategy import STRATEGIES
from keras_featreg.distribute.strategy import get_strategy
from keras_featreg.distribute.strategy import is_chief
from keras_featreg.distribute.strategy import task_info
from keras_featreg.distribute.trainer import DistributedTrainer
from keras_featreg.distribute.trainer import train_multi_worker
from keras_featreg.ops.batch import gather_batch
from keras_featreg.ops.batch import in_replica_context
from keras_featreg.ops.batch import local_rows
from keras_featreg.ops.batch import num_replicas_in_sync
from keras_featreg.ops.batch import replica_offset
