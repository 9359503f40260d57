"""Cross-replica gathers: the global batch, with a correct gradient.

Batch statistics (SVMax's s_mu, VICReg's variance and covariance, in-batch
mining) computed by each replica on its own rows are statistics of a smaller
batch. `gather_batch` concatenates the rows of every replica (all workers
included) in replica order, inside `strategy.run`, and is the identity
everywhere else (one device, the default strategy, cross-replica context),
so the same loss code runs unchanged on one device.

Gradient. `tf.distribute.ReplicaContext.all_gather` is differentiable: its
gradient sums the upstream gradients of all replicas (an all-reduce) and
hands each replica the slice of its own rows. With each replica's loss
scaled by `1 / num_replicas` (Keras' per-sample `Loss` does it) and Keras
summing the replicas' weight gradients, every row receives exactly the
gradient it has in a single-device run on the global batch (tested in
tests/distribute/test_gather.py). The batch regularizers gather in the
forward pass too (tests/distribute/test_regularizer_replicas.py); what must
not happen there is another cross-replica synchronization, such as
assigning an `ONLY_FIRST_REPLICA` variable, after which replicas read each
other's `add_loss` values.
"""

import tensorflow as tf


def num_replicas_in_sync() -> int:
    """Replicas of the current tf.distribute strategy (1 without one)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


def _replica_context():
    """The replica context when it has several replicas, else `None`."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def in_replica_context() -> bool:
    """True inside `strategy.run` of a strategy with several replicas."""
    return _replica_context() is not None


def gather_batch(x, axis: int = 0):
    """All replicas' rows of `x`, concatenated in replica order.

    ```python
    gather_batch(x) = concat([x_replica_0, x_replica_1, ...], axis=axis)
    ```

    Inside `strategy.run` with several replicas this is
    `ReplicaContext.all_gather(x, axis)` (replicas may hold different
    numbers of rows); elsewhere it returns `x` unchanged. Nested structures
    (tuples, dicts) are gathered leaf by leaf (one collective each:
    TensorFlow's gradient of one `all_gather` of tensors of different ranks
    fails).

    Args:
        x: Tensor, or nested structure of tensors, with the batch on `axis`.
        axis: Int, the batch axis. Defaults to `0`.

    Returns:
        The gathered tensor(s), of the same dtype; differentiable.

    Example:

    >>> def step(z):
    ...     return keras_featreg.distribute.gather_batch(z)
    >>> strategy.run(step, args=(z,))  # each replica sees the global batch
    """
    context = _replica_context()
    if context is None:
        return x
    return tf.nest.map_structure(
        lambda value: _all_gather(context, value, axis), x
    )


_BITCAST = {tf.int32: tf.float32, tf.int64: tf.float64}


def _all_gather(context, value, axis):
    """`all_gather`, with integers (class ids) carried bit-exactly as floats.

    Collective ops of MultiWorkerMirroredStrategy refuse integer tensors
    ("destinations can not be empty"); a bitcast to the float of the same
    width is exact and an all-gather only moves bytes.
    """
    value = tf.convert_to_tensor(value)
    carrier = _BITCAST.get(value.dtype)
    if carrier is None:
        return context.all_gather(value, axis=axis)
    gathered = context.all_gather(tf.bitcast(value, carrier), axis=axis)
    return tf.bitcast(gathered, value.dtype)


def replica_offset(batch_size) -> tf.Tensor:
    """Index of this replica's first row in the gathered batch.

    The sum of the batch sizes of the replicas before this one (0 outside a
    replica context); with `n` this replica's rows,
    `gather_batch(x)[offset:offset + n]` is `x`.

    Args:
        batch_size: Int scalar (tensor), this replica's number of rows.

    Returns:
        An int32 scalar tensor.
    """
    batch_size = tf.reshape(tf.cast(batch_size, tf.int32), [1])
    context = _replica_context()
    if context is None:
        return tf.constant(0, tf.int32)
    sizes = context.all_gather(batch_size, axis=0)
    return tf.reduce_sum(sizes[: context.replica_id_in_sync_group])


def local_rows(gathered, batch_size, axis: int = 0):
    """This replica's rows of a gathered (or gathered-shaped) tensor.

    The inverse of `gather_batch` for per-row results computed on the
    global batch: a per-anchor loss over the gathered batch, sliced back to
    the rows this replica owns (Keras then reduces and scales them). The
    identity outside a replica context.

    Args:
        gathered: Tensor whose `axis` runs over the global batch.
        batch_size: Int scalar (tensor), this replica's number of rows.
        axis: Int, the batch axis. Defaults to `0`.

    Returns:
        Tensor with `batch_size` entries on `axis`.
    """
    if not in_replica_context():
        return gathered
    start = replica_offset(batch_size)
    size = tf.cast(batch_size, tf.int32)
    indices = tf.range(start, start + size)
    return tf.gather(gathered, indices, axis=axis)
