"""`TwoViewModel`'s batches: the data forms it takes, and their checks.

A batch is a pair of views `(view_a, view_b)`, optionally with labels,
`((view_a, view_b), labels)` (ignored), or, with an `augmenter`, images
`x` or `(x, labels)` from which the augmenter makes the two views. The
views must be numeric, finite, of one shape and hold at least 2 rows (the
losses use batch statistics). What is known while tracing fails with a
`ValueError`/`TypeError`; what is only known at run time fails with an
`InvalidArgumentError` carrying the same message.
"""

import tensorflow as tf

from keras_featreg.ops.batch import in_replica_context

_PAIRS = (
    "TwoViewModel needs batches of view pairs (view_a, view_b), or an "
    "`augmenter` to make them from single images"
)


def _strip(data):
    """Drops `train_on_batch`'s trailing `None`s and 1-tuples."""
    # `train_on_batch`/`test_on_batch` pass `(x, y, sample_weight)` with
    # `None` for what was not given.
    while (
        isinstance(data, (tuple, list)) and len(data) > 1 and data[-1] is None
    ):
        data = data[:-1]
    while isinstance(data, (tuple, list)) and len(data) == 1:
        data = data[0]
    return data


def _is_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2


def _check_numeric(name: str, value) -> tf.Tensor:
    """`value` as a tensor of numbers (images or features), or TypeError."""
    try:
        value = tf.convert_to_tensor(value)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"`{name}` must be a numeric tensor (images or features). "
            f"Received: {name} of type {type(value).__name__}"
        ) from error
    if not (value.dtype.is_floating or value.dtype.is_integer):
        raise TypeError(
            f"`{name}` must be a numeric tensor (images or features). "
            f"Received: {name}.dtype={value.dtype.name}"
        )
    return value


def unpack_views(data, augmenter=None) -> tuple[tf.Tensor, tf.Tensor]:
    """The two views of a batch, checked.

    Args:
        data: What `train_step`/`test_step` receive: `(view_a, view_b)`,
            `((view_a, view_b), labels)`; with an `augmenter`, `x` or
            `(x, labels)`.
        augmenter: Optional layer making a random view of a batch of
            images, called twice in training mode.

    Returns:
        `(view_a, view_b)`, checked by `check_views`.
    """
    data = _strip(data)
    if augmenter is not None:
        images = data[0] if isinstance(data, (tuple, list)) else data
        if isinstance(images, (tuple, list)):
            raise ValueError(
                "With an `augmenter`, TwoViewModel takes batches of images "
                "`x` or `(x, labels)`, and makes the two views itself. "
                f"Received: x of type {type(images).__name__}"
            )
        images = _check_numeric("x", images)
        view_a = augmenter(images, training=True)
        view_b = augmenter(images, training=True)
        return check_views(view_a, view_b)
    if _is_pair(data) and _is_pair(data[0]):
        data = data[0]  # ((view_a, view_b), labels): labels are ignored
    if not _is_pair(data):
        raise ValueError(
            f"{_PAIRS}. Received: data of type {type(data).__name__}"
        )
    view_a, view_b = data
    for name, view in (("view_a", view_a), ("view_b", view_b)):
        if isinstance(view, (tuple, list, dict)):
            raise ValueError(
                f"{_PAIRS}; each view is one tensor. "
                f"Received: {name} of type {type(view).__name__}"
            )
    view_a = _check_numeric("view_a", view_a)
    view_b = _check_numeric("view_b", view_b)
    shape_a, shape_b = tuple(view_a.shape), tuple(view_b.shape)
    if len(shape_a) != len(shape_b) or any(
        a is not None and b is not None and a != b
        for a, b in zip(shape_a, shape_b, strict=True)
    ):
        raise ValueError(
            "The two views must have the same shape and batch size. "
            f"Received: view_a.shape={shape_a}, view_b.shape={shape_b}"
        )
    return check_views(view_a, view_b)


def _global_batch_size(size: tf.Tensor) -> tf.Tensor:
    """The rows of all replicas (the losses gather the global batch)."""
    if not in_replica_context():
        return size
    # float32: collective ops reduce floats on every strategy.
    total = tf.distribute.get_replica_context().all_reduce(
        "sum", tf.cast(size, tf.float32)
    )
    return tf.cast(tf.round(total), tf.int32)


def check_views(view_a, view_b) -> tuple[tf.Tensor, tf.Tensor]:
    """Numeric and finite views, same batch size, at least 2 rows.

    A NaN pixel must fail here: a ReLU can turn it into 0 in the forward
    pass while the gradient still poisons the weights.
    """
    view_a = _check_numeric("view_a", view_a)
    view_b = _check_numeric("view_b", view_b)
    batch_size = view_a.shape[0]
    if batch_size is not None and batch_size < 2:
        raise ValueError(
            "TwoViewModel needs at least 2 images per batch (the losses "
            f"use batch statistics). Received: batch_size={batch_size}"
        )
    views = {"view_a": view_a, "view_b": view_b}
    if tf.executing_eagerly():
        for name, view in views.items():
            if view.dtype.is_floating and not bool(
                tf.reduce_all(tf.math.is_finite(view))
            ):
                raise ValueError(
                    f"`{name}` must not contain NaN or Inf values. "
                    f"Received: {name} with non-finite entries"
                )
        return view_a, view_b
    # Checked when the graph runs: values, and batch sizes known only at
    # run time (e.g. the last batch of an epoch), with clear errors instead
    # of a broadcasting failure deep inside the loss or a silently
    # meaningless 1-row step.
    checks = [
        tf.debugging.Assert(
            tf.reduce_all(tf.math.is_finite(view)),
            [
                f"`{name}` must not contain NaN or Inf values. "
                f"Received: {name} with non-finite entries"
            ],
        )
        for name, view in views.items()
        if view.dtype.is_floating
    ]
    if batch_size is None or view_b.shape[0] is None:
        size_a, size_b = tf.shape(view_a)[0], tf.shape(view_b)[0]
        checks += [
            tf.debugging.assert_equal(
                size_a,
                size_b,
                message="The two views must have the same batch size",
            ),
            # Under several replicas a replica may hold 1 row (or none);
            # the global batch needs 2.
            tf.debugging.assert_greater_equal(
                _global_batch_size(size_a),
                2,
                message=(
                    "TwoViewModel needs at least 2 images per batch (the "
                    "losses use batch statistics); drop the last partial "
                    "batch (`drop_remainder=True`)"
                ),
            ),
        ]
    with tf.control_dependencies(checks):
        return tf.identity(view_a), tf.identity(view_b)
