"""Checkpoints of a multi-worker run: every worker saves, the chief keeps.

tf.distribute needs every worker to take part in a save (the variables'
values are synchronized through collectives), but only one copy must land
in the shared directory: the chief writes there, every other worker writes
to a scratch directory of its own, which it deletes right after.
"""

import os
import shutil

import tensorflow as tf

from keras_featreg.distribute.strategy import is_chief


class WorkerCheckpoints:
    """`tf.train.CheckpointManager` for a run on one or several workers.

    Args:
        strategy: The `tf.distribute.Strategy` of the run.
        directory: The checkpoint directory, shared by all workers (a
            shared file system or a bucket).
        max_to_keep: Int, checkpoints kept.
        **objects: What to save, as for `tf.train.Checkpoint` (e.g.
            `model=..., optimizer=..., step=...`).
    """

    def __init__(
        self,
        strategy: tf.distribute.Strategy,
        directory: str,
        max_to_keep: int,
        **objects,
    ) -> None:
        self.strategy = strategy
        self.directory = directory
        self.max_to_keep = max_to_keep
        self.checkpoint = tf.train.Checkpoint(**objects)
        self._manager = None

    def _this_workers_manager(self) -> tf.train.CheckpointManager:
        if self._manager is None:
            directory = self.directory
            if not is_chief(self.strategy):
                resolver = self.strategy.cluster_resolver
                directory = os.path.join(
                    self.directory,
                    f".scratch_{resolver.task_type}_{resolver.task_id}",
                )
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, directory, max_to_keep=self.max_to_keep
            )
        return self._manager

    def latest(self) -> str | None:
        """The path of the latest checkpoint in `directory`, or `None`."""
        return tf.train.latest_checkpoint(self.directory)

    def restore(self, path: str) -> None:
        """Restores `path`; every saved value must find its variable."""
        self.checkpoint.restore(path).assert_consumed()

    def save(self, step) -> str | None:
        """Saves (every worker must call it); the chief's path, else `None`."""
        manager = self._this_workers_manager()
        path = manager.save(checkpoint_number=step)
        if not is_chief(self.strategy):
            shutil.rmtree(manager.directory, ignore_errors=True)
            self._manager = None
            return None
        return path
