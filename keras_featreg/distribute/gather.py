"""Cross-replica gathers (moved to `keras_featreg.ops.batch`).

The batch ops live beside the other batch ops, in `keras_featreg.ops.batch`
(see its docstring for the gradient); these names stay importable from
here and from `keras_featreg.distribute`.
"""

from keras_featreg.ops.batch import gather_batch
from keras_featreg.ops.batch import in_replica_context
from keras_featreg.ops.batch import local_rows
from keras_featreg.ops.batch import num_replicas_in_sync
from keras_featreg.ops.batch import replica_offset

__all__ = [
    "gather_batch",
    "in_replica_context",
    "local_rows",
    "num_replicas_in_sync",
    "replica_offset",
]
