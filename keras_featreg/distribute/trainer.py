"""A training loop over `strategy.run` for multi-worker (and any) strategy.

Keras 3 `fit` fails under `tf.distribute.MultiWorkerMirroredStrategy`
(keras-team/keras#20585). `DistributedTrainer` runs the model's own
`train_step` (so the same models, compiled losses and metrics, and
`TwoViewModel`'s custom step) inside `strategy.run`, feeds it a distributed
dataset, sums the gradients across all workers' replicas as `fit` does, and
checkpoints with `tf.train.CheckpointManager` so that a restarted job resumes
at the last saved step, on the same data, with the same weights.
"""

import time
from collections.abc import Callable

import keras
import tensorflow as tf

from keras_featreg.distribute.build import build_for_training
from keras_featreg.distribute.checkpoint import WorkerCheckpoints
from keras_featreg.distribute.data import distribute_dataset
from keras_featreg.distribute.data import element_spec
from keras_featreg.distribute.data import resolve_steps_per_epoch
from keras_featreg.distribute.data import split_global_batches
from keras_featreg.distribute.strategy import get_strategy
from keras_featreg.distribute.strategy import is_chief
from keras_featreg.utils.validation import check_int

# `split_global_batches` lived here; the old import path keeps working.
__all__ = ["DistributedTrainer", "split_global_batches", "train_multi_worker"]


class DistributedTrainer:
    """Trains a compiled Keras model with `strategy.run`, with checkpoints.

    ```python
    for step in range(restored_step, epochs * steps_per_epoch):
        logs = strategy.run(model.train_step, args=(next(iterator),))
        logs = mean over replicas of logs    # what `fit` reports
        every `checkpoint_every` steps: CheckpointManager.save()
    ```

    The model's own `train_step` runs on every replica: the compiled loss
    and metrics of a plain Keras model, or the custom step of
    `keras_featreg.models.TwoViewModel`. Its optimizer sums the replicas'
    gradients (all workers') before the update, and Keras' per-sample
    losses divide by the number of replicas, so a step equals one step of a
    single process on the same global batch (the library's losses gather
    their batch statistics; see `keras_featreg.ops.gather_batch`).

    Data. Pass a `tf.data.Dataset` of global batches, the same (same order,
    seeded shuffles) on every worker: each replica trains on its slice of
    every global batch (`split_global_batches`), so the run is the same as
    one process on that dataset (`keras_featreg.distribute.data`). Or pass
    a function `dataset_fn(input_context)` returning this worker's dataset of
    per-replica batches (shard files or rows with
    `input_context.input_pipeline_id`), the usual tf.distribute sharding
    for data too large to read on every worker; `steps_per_epoch` is then
    required.

    Checkpoints. With `checkpoint_dir`, the model (weights, layer and seed
    generator state), the optimizer (slots, iteration count) and the step
    are saved with `tf.train.CheckpointManager` every `checkpoint_every`
    steps and at the end. `fit` first restores the latest checkpoint and
    continues from its step: the dataset is repeated and its first
    `step` global batches are skipped, so a deterministic dataset gives a
    resumed run the same weights as an uninterrupted one (tested with a
    worker killed mid-run). All workers must reach the same
    `checkpoint_dir` (a shared file system or a bucket): the chief writes
    there, the other workers write to a scratch directory they delete (all
    workers must take part in a save; `keras_featreg.distribute.checkpoint`).
    Epoch metrics restart from zero after a resume.

    Args:
        model: A compiled `keras.Model`, created (and compiled) inside
            `strategy.scope()`.
        strategy: A `tf.distribute.Strategy` or a name for
            `keras_featreg.distribute.get_strategy`. Defaults to `None` (the
            strategy the model was created under).
        checkpoint_dir: Optional directory for checkpoints. Defaults to
            `None` (no checkpoints).
        checkpoint_every: Optional int, save every this many steps. Defaults
            to `None` (at the end of every epoch).
        max_to_keep: Int, checkpoints kept. Defaults to `3`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import keras_featreg
    >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    >>> global_batches = tf.data.Dataset.from_tensor_slices((x, x)).batch(8)
    >>> strategy = keras_featreg.distribute.get_strategy(
    ...     "default")  # "multiworker" on a cluster
    >>> with strategy.scope():
    ...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    ...     model.compile(optimizer="adam", loss="mse")
    >>> trainer = keras_featreg.distribute.DistributedTrainer(
    ...     model, checkpoint_dir="checkpoints")  # shared storage
    >>> history = trainer.fit(global_batches, epochs=2, verbose=0)
    >>> len(history["loss"])
    2
    """

    def __init__(
        self,
        model: keras.Model,
        strategy=None,
        checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None,
        max_to_keep: int = 3,
    ) -> None:
        if not isinstance(model, keras.Model):
            raise TypeError(
                f"`model` must be a keras.Model. Received: model={model!r}"
            )
        if getattr(model, "optimizer", None) is None:
            raise ValueError(
                "`model` must be compiled (with an optimizer) before "
                "training. Received: model.optimizer=None"
            )
        if strategy is None:
            strategy = model.distribute_strategy
        self.strategy = get_strategy(strategy)
        if model.distribute_strategy is not self.strategy:
            raise ValueError(
                "Create and compile `model` inside `strategy.scope()` of the "
                "trainer's strategy. Received: model created under "
                f"strategy={type(model.distribute_strategy).__name__}"
            )
        if checkpoint_every is not None:
            checkpoint_every = check_int(
                "checkpoint_every", checkpoint_every, minimum=1
            )
        self.model = model
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.max_to_keep = check_int("max_to_keep", max_to_keep, minimum=1)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._train_function = None
        self._barrier_function = None
        self._checkpoints_ = None

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the checkpoints and logs."""
        return is_chief(self.strategy)

    # Checkpoints -----------------------------------------------------------

    def _checkpoints(self) -> WorkerCheckpoints | None:
        if self.checkpoint_dir is not None and self._checkpoints_ is None:
            self._checkpoints_ = WorkerCheckpoints(
                self.strategy,
                self.checkpoint_dir,
                self.max_to_keep,
                model=self.model,
                optimizer=self.model.optimizer,
                step=self.step,
            )
        return self._checkpoints_

    def restore(self) -> int:
        """Restores the latest checkpoint, if any; returns its step.

        Call it on a built model (`build`, which `fit` calls first): every
        variable, the optimizer's included, must exist, since Keras creates
        some lazily and a deferred restore would skip them.
        """
        checkpoints = self._checkpoints()
        latest = None if checkpoints is None else checkpoints.latest()
        if latest is not None:
            if not (self.model.built and self.model.optimizer.built):
                raise ValueError(
                    "Build the model and its optimizer before restoring "
                    "(`trainer.build(dataset)`). Received: model.built="
                    f"{self.model.built}, optimizer.built="
                    f"{self.model.optimizer.built}"
                )
            checkpoints.restore(latest)
        return int(self.step.numpy())

    def save(self) -> str | None:
        """Saves a checkpoint (every worker must call it); returns its path."""
        checkpoints = self._checkpoints()
        if checkpoints is None:
            return None
        return checkpoints.save(self.step)

    # Training --------------------------------------------------------------

    def build(self, dataset) -> None:
        """Creates every variable: model, compiled loss/metrics, optimizer.

        Args:
            dataset: What `fit` takes (a dataset or a dataset function);
                only its element spec is used.
        """
        with self.strategy.scope():
            build_for_training(self.model, element_spec(dataset))

    def _make_train_function(self) -> Callable:
        strategy = self.strategy
        model = self.model

        @tf.function
        def train_function(iterator):
            data = next(iterator)
            logs = strategy.run(model.train_step, args=(data,))
            return {
                name: strategy.reduce("MEAN", value, axis=None)
                for name, value in logs.items()
            }

        return train_function

    def fit(
        self,
        dataset,
        epochs: int = 1,
        steps_per_epoch: int | None = None,
        verbose: int = 1,
        callbacks: list | None = None,
    ) -> dict:
        """Trains, resuming from the latest checkpoint; returns the history.

        Args:
            dataset: `tf.data.Dataset` of global batches (the same on every
                worker), or a function `dataset_fn(input_context)` returning
                this worker's dataset of per-replica batches.
            epochs: Int, total epochs (a resumed run does only the rest).
                Defaults to `1`.
            steps_per_epoch: Optional int. Defaults to `None` (the dataset's
                cardinality; required with a `dataset_fn` or an infinite
                dataset).
            verbose: Int, 0 (silent) or 1 (one line per epoch, chief only).
                Defaults to `1`.
            callbacks: Optional list of `keras.callbacks.Callback`, called
                on every worker (`on_train_batch_end` gets the batch index
                within the epoch and the step's logs; `self.step` is the
                global step). `model.stop_training = True` stops after the
                current step. Defaults to `None`.

        Returns:
            Dict `{metric name: [value at the end of each epoch trained]}`,
            plus `"epoch"` (the epoch numbers, from 1) and `"step"` (the
            step count at the end of each).
        """
        epochs = check_int("epochs", epochs, minimum=1)
        steps_per_epoch = resolve_steps_per_epoch(dataset, steps_per_epoch)
        if self._train_function is None:
            self.build(dataset)
            self._train_function = self._make_train_function()
        start = self.restore()
        total = epochs * steps_per_epoch
        history = {"epoch": [], "step": []}
        if start >= total:
            return history
        distributed = distribute_dataset(self.strategy, dataset, start)
        callbacks = keras.callbacks.CallbackList(
            callbacks,
            model=self.model,
            epochs=epochs,
            steps=steps_per_epoch,
            verbose=verbose,
        )
        iterator = iter(distributed)
        every = self.checkpoint_every
        step = start
        self.model.stop_training = False
        callbacks.on_train_begin()
        logs = {}
        while step < total and not self.model.stop_training:
            epoch = step // steps_per_epoch
            end = (epoch + 1) * steps_per_epoch
            for metric in self.model.metrics:
                metric.reset_state()
            callbacks.on_epoch_begin(epoch)
            began = time.perf_counter()
            steps_done = 0
            while step < end and not self.model.stop_training:
                callbacks.on_train_batch_begin(step - epoch * steps_per_epoch)
                logs = self._train_function(iterator)
                step += 1
                steps_done += 1
                self.step.assign(step)
                callbacks.on_train_batch_end(
                    step - 1 - epoch * steps_per_epoch, logs
                )
                if every is not None and step % every == 0:
                    self.save()
            final = step == total or self.model.stop_training
            if every is None or (final and step % every != 0):
                self.save()
            seconds = time.perf_counter() - began
            logs = {name: float(value) for name, value in logs.items()}
            callbacks.on_epoch_end(epoch, logs)
            history["epoch"].append(epoch + 1)
            history["step"].append(step)
            for name, value in logs.items():
                history.setdefault(name, []).append(value)
            if verbose and self.is_chief:
                values = " - ".join(
                    f"{name}: {value:.4g}" for name, value in logs.items()
                )
                print(
                    f"Epoch {epoch + 1}/{epochs} - {steps_done} steps - "
                    f"{seconds / steps_done * 1e3:.0f} ms/step - {values}",
                    flush=True,
                )
        callbacks.on_train_end(logs)
        self._barrier()  # no worker leaves (and exits) while others train
        return history

    def _barrier(self) -> None:
        """Waits until every replica, on every worker, gets here."""
        if self.strategy.num_replicas_in_sync == 1:
            return
        if self._barrier_function is None:
            strategy = self.strategy

            def one():
                context = tf.distribute.get_replica_context()
                return context.all_reduce("SUM", tf.constant(1.0))

            self._barrier_function = tf.function(lambda: strategy.run(one))
        self._barrier_function()


def train_multi_worker(
    build_model: Callable[[], keras.Model],
    dataset,
    epochs: int = 1,
    steps_per_epoch: int | None = None,
    strategy="multiworker",
    checkpoint_dir: str | None = None,
    checkpoint_every: int | None = None,
    verbose: int = 1,
) -> tuple[keras.Model, dict]:
    """Builds a compiled model under a strategy and trains it; see above.

    ```python
    strategy = get_strategy(strategy)
    with strategy.scope():
        model = build_model()            # built and compiled
    DistributedTrainer(model, strategy, checkpoint_dir).fit(dataset, ...)
    ```

    Args:
        build_model: Function returning a compiled `keras.Model`; called
            inside the strategy scope.
        dataset: `tf.data.Dataset` of global batches, or a function of the
            `tf.distribute.InputContext` (see `DistributedTrainer.fit`).
        epochs: Int. Defaults to `1`.
        steps_per_epoch: Optional int. Defaults to `None`.
        strategy: Strategy or name for `get_strategy`. Defaults to
            `"multiworker"` (workers from `TF_CONFIG`).
        checkpoint_dir: Optional shared checkpoint directory. Defaults to
            `None`.
        checkpoint_every: Optional int, steps between checkpoints. Defaults
            to `None` (every epoch).
        verbose: Int, 0 or 1. Defaults to `1`.

    Returns:
        `(model, history)`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> import keras_featreg
    >>> x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    >>> global_batches = tf.data.Dataset.from_tensor_slices((x, x)).batch(8)
    >>> def build_model():
    ...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(4)])
    ...     model.compile(optimizer="adam", loss="mse")
    ...     return model
    >>> model, history = keras_featreg.distribute.train_multi_worker(
    ...     build_model, global_batches, epochs=2, strategy="default",
    ...     checkpoint_dir="run", verbose=0)  # default: "multiworker"
    """
    strategy = get_strategy(strategy)
    with strategy.scope():
        model = build_model()
    trainer = DistributedTrainer(
        model,
        strategy,
        checkpoint_dir=checkpoint_dir,
        checkpoint_every=checkpoint_every,
    )
    history = trainer.fit(
        dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=verbose
    )
    return model, history
