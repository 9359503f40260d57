"""Distributed training: global-batch gathers, strategies, multi-worker loop.

See docs/distributed.md: what is computed on the global batch, how to launch
workers (`python -m keras_featreg.distribute.launch`), what was verified.
"""

from keras_featreg.distribute.gather import gather_batch
from keras_featreg.distribute.gather import in_replica_context
from keras_featreg.distribute.gather import local_rows
from keras_featreg.distribute.gather import num_replicas_in_sync
from keras_featreg.distribute.gather import replica_offset
from keras_featreg.distribute.strategy import STRATEGIES
from keras_featreg.distribute.strategy import get_strategy
from keras_featreg.distribute.strategy import is_chief
from keras_featreg.distribute.strategy import task_info
from keras_featreg.distribute.trainer import DistributedTrainer
from keras_featreg.distribute.trainer import split_global_batches
from keras_featreg.distribute.trainer import train_multi_worker
