"""Strategy helpers: pick a tf.distribute strategy by name; who is chief."""

import json
import os

import tensorflow as tf

from keras_featreg.utils.validation import check_choice

STRATEGIES = ("default", "mirrored", "multiworker")

# Each strategy made here gets its own collective group keys (see
# `get_strategy`); TensorFlow's own tests do the same.
_COLLECTIVE_KEY_STRIDE = 100_000


def _fresh_collective_keys(strategy_class) -> None:
    """Moves the class's collective key base past every earlier strategy."""
    base = getattr(strategy_class, "_collective_key_base", None)
    if isinstance(base, int):
        strategy_class._collective_key_base = base + _COLLECTIVE_KEY_STRIDE


def _with_own_keys(strategy_class, *args):
    """A strategy whose collective keys no other strategy uses.

    The base moves before (past earlier strategies) and after (so that a
    strategy made later, here or directly, does not reuse these keys).
    """
    _fresh_collective_keys(strategy_class)
    strategy = strategy_class(*args)
    _fresh_collective_keys(strategy_class)
    return strategy


def get_strategy(name: str = "default", devices=None) -> tf.distribute.Strategy:
    """The tf.distribute strategy for `--strategy {default, mirrored, ...}`.

    - `"default"`: `tf.distribute.get_strategy()`, the no-op strategy of one
      device (or the strategy whose scope is open).
    - `"mirrored"`: `tf.distribute.MirroredStrategy(devices)`, one replica per
      local GPU (all GPUs by default; the CPU if there is none). Train with
      `model.fit` as usual.
    - `"multiworker"`: `tf.distribute.MultiWorkerMirroredStrategy`, the
      workers and this process's index read from the `TF_CONFIG` environment
      variable (set by `python -m keras_featreg.distribute.launch`); without
      `TF_CONFIG` it is one local worker. Train with
      `keras_featreg.distribute.DistributedTrainer` (Keras 3 `fit` fails under
      this strategy, keras-team/keras#20585). Make it at the start of the
      program, before other TensorFlow work.

    Under `"mirrored"` and `"multiworker"` the library's losses compute their
    batch statistics on the global batch (see `docs/distributed.md`).

    Collective keys. Two `MirroredStrategy` objects in one process share
    collective keys, and TensorFlow aborts when the second runs a different
    sequence of collectives (e.g. an all-reduce where the first ran an
    `all_gather`: "Collective instance 100 expected type 2 ..."). Each
    mirrored strategy made here gets keys of its own, so a process (a test
    suite, a notebook) can make several.

    Args:
        name: String, one of `"default"`, `"mirrored"`, `"multiworker"`, or a
            `tf.distribute.Strategy`, returned as is. Defaults to
            `"default"`.
        devices: Optional list of device names for `"mirrored"` (e.g.
            `["GPU:0", "GPU:1"]`). Defaults to `None` (all local GPUs).

    Returns:
        A `tf.distribute.Strategy`.

    Example:

    >>> import keras
    >>> import keras_featreg
    >>> strategy = keras_featreg.distribute.get_strategy("default")  # a flag
    >>> with strategy.scope():
    ...     model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    >>> strategy.num_replicas_in_sync
    1
    """
    if isinstance(name, tf.distribute.Strategy):
        return name
    check_choice("name", name, STRATEGIES)
    if devices is not None and name != "mirrored":
        raise ValueError(
            "`devices` applies to the mirrored strategy only. "
            f"Received: devices={devices!r}"
        )
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _with_own_keys(tf.distribute.MirroredStrategy, devices)
    # One per process, and every worker must use the same collective keys:
    # the class's own keys.
    return tf.distribute.MultiWorkerMirroredStrategy()


def task_info() -> tuple[str, int, int]:
    """`(task_type, task_index, num_workers)` of this process from TF_CONFIG.

    `("worker", 0, 1)` without `TF_CONFIG`. A `"chief"` task counts as a
    worker.
    """
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = config.get("cluster", {})
    task = config.get("task", {})
    num_workers = len(cluster.get("worker", [])) + len(cluster.get("chief", []))
    return (
        task.get("type", "worker"),
        int(task.get("index", 0)),
        max(num_workers, 1),
    )


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the checkpoints, logs and exports.

    The `"chief"` task, or worker 0 when the cluster has no chief; always
    `True` for single-process strategies.

    Args:
        strategy: Optional strategy. Defaults to `None` (the current one).

    Returns:
        Bool.
    """
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief
