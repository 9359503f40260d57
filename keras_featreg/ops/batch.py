"""Batch ops: validate a batch as a 2-D float matrix; gather replicas' rows.

`as_matrix` turns an embedding batch into a `(batch_size, features)` float
matrix, or says why it can't; `as_view_pair` does it for two views.

Cross-replica gathers: batch statistics (SVMax's s_mu, VICReg's variance
and covariance, in-batch mining) computed by each replica on its own rows
are statistics of a smaller batch. `gather_batch` concatenates the rows of
every replica (all workers included) in replica order, inside
`strategy.run`, and is the identity everywhere else (one device, the
default strategy, cross-replica context), so the same loss code runs
unchanged on one device.

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

from keras_featreg.ops.scaling import rescale


def compute_dtype(dtype: tf.DType) -> tf.DType:
    """float64 stays float64; half precision and float32 compute in float32."""
    return tf.float64 if dtype == tf.float64 else tf.float32


def as_matrix(x, name: str = "x", min_batch_size: int = 1) -> tf.Tensor:
    """Validates a batch and flattens it to `(batch_size, features)`.

    Half-precision inputs are cast to float32 (the maths needs its range);
    float32 and float64 are kept. Rank > 2 inputs are flattened over all
    but the batch axis.

    Raises:
        TypeError: `x` is not floating point.
        ValueError: `x` has rank < 2, a zero-size axis, fewer than
            `min_batch_size` rows (when the batch size is static), or NaN/Inf
            values (checked eagerly; inside a graph the check raises
            `InvalidArgumentError` at run time).
    """
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        raise TypeError(
            f"`{name}` must be a floating-point tensor. "
            f"Received: {name}.dtype={x.dtype.name}"
        )
    rank = x.shape.rank
    if rank is None or rank < 2:
        raise ValueError(
            f"`{name}` must have rank >= 2: (batch_size, features, ...). "
            f"Received: {name}.shape={x.shape}"
        )
    if any(dim == 0 for dim in x.shape):
        raise ValueError(
            f"`{name}` must not have a zero-size axis. "
            f"Received: {name}.shape={x.shape}"
        )
    batch_size = x.shape[0]
    if batch_size is not None and batch_size < min_batch_size:
        raise ValueError(
            f"`{name}` needs at least {min_batch_size} rows. "
            f"Received: {name}.shape={x.shape}"
        )
    if rank > 2:
        features = x.shape[1:].num_elements()
        if features is None:
            features = tf.reduce_prod(tf.shape(x)[1:])
        x = tf.reshape(x, tf.stack([tf.shape(x)[0], features]))
    x = tf.cast(x, compute_dtype(x.dtype))
    if tf.executing_eagerly():
        bad = int(tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int32)))
        if bad:
            raise ValueError(
                f"`{name}` must not contain NaN or Inf values. "
                f"Received: {name} with {bad} non-finite entries"
            )
        return x
    # One fused pass (is_finite + reduce_all) is ~5x cheaper than
    # `check_numerics`, which would also re-check the gradient.
    check = tf.debugging.Assert(
        tf.reduce_all(tf.math.is_finite(x)),
        [
            f"`{name}` must not contain NaN or Inf values. "
            f"Received: {name} with non-finite entries"
        ],
    )
    with tf.control_dependencies([check]):
        return tf.identity(x)


def power_of_two_scale(x: tf.Tensor) -> tf.Tensor:
    """A power of two near max|x| (1 for an all-zero `x`), not differentiated.

    Dividing by a power of two is exact, so scale-equivariant maths can run
    on `x / scale` with entries of order 1: huge or tiny inputs then neither
    overflow nor underflow intermediate products, and no rounding perturbs
    ill-conditioned batches.

    Which power: that of `keras_featreg.ops.scaling.rescale` (at or below
    max|x|), or 1 where that one is subnormal in x's dtype (use `rescale`
    itself to read subnormal batches exactly).
    """
    _, scale = rescale(x)
    return tf.where(scale > 0, scale, tf.ones_like(scale))


def as_view_pair(z_a, z_b, min_batch_size: int = 1):
    """Validates two views' embeddings: `as_matrix` of each, same shape.

    The one validator of view pairs (`keras_featreg.ops.vicreg_terms`, the
    two-view losses). `z_b` is cast to `z_a`'s compute dtype.

    Raises:
        TypeError, ValueError: as `as_matrix`, for `z_a` or `z_b`.
        ValueError: the shapes (or, with unknown batch sizes, the numbers
            of features) differ.
    """
    z_a = as_matrix(z_a, "z_a", min_batch_size=min_batch_size)
    z_b = as_matrix(z_b, "z_b", min_batch_size=min_batch_size)
    if (
        z_a.shape != z_b.shape
        and z_a.shape.is_fully_defined()
        and z_b.shape.is_fully_defined()
    ):
        raise ValueError(
            "`z_a` and `z_b` must have the same shape. "
            f"Received: z_a.shape={z_a.shape}, z_b.shape={z_b.shape}"
        )
    features = (z_a.shape[1], z_b.shape[1])
    if None not in features and features[0] != features[1]:
        raise ValueError(
            "`z_a` and `z_b` must have the same number of features. "
            f"Received: z_a.shape={z_a.shape}, z_b.shape={z_b.shape}"
        )
    return z_a, tf.cast(z_b, z_a.dtype)


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

    >>> import tensorflow as tf
    >>> import keras_featreg
    >>> strategy = keras_featreg.distribute.get_strategy("mirrored")
    >>> def step(z):
    ...     return keras_featreg.ops.gather_batch(z)
    >>> z = tf.reshape(tf.range(8.0), (4, 2))  # a global batch of 4 rows
    >>> batches = strategy.experimental_distribute_dataset(
    ...     tf.data.Dataset.from_tensors(z))
    >>> gathered = strategy.run(step, args=(next(iter(batches)),))
    >>> {tuple(g.shape) for g in strategy.experimental_local_results(gathered)}
    {(4, 2)}
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
