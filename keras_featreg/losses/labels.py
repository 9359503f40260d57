"""Keeps integer class ids exact through `keras.losses.Loss.__call__`.

`keras.losses.Loss.__call__` converts `y_true` to the loss dtype (float32 by
default) before `call`: distinct class ids beyond 2**24 then merge (2**24
and 2**24 + 1 are one float32), and every loss mining pairs from the labels
silently computes another batch. `LabelLoss.__call__` remembers an integer
`y_true` for the duration of its `super().__call__`, and `call` reads it
back with `self.exact_labels(y_true)`: the losses compare the labels in
their own integer dtype, exactly. Float labels, and `call` used directly,
behave as before.

The labels are kept per thread (`tf.distribute.MirroredStrategy` runs each
replica in its own thread, interleaved at its collectives) and per loss
instance, and removed when `__call__` returns; nothing is stored on the
loss, so it serializes and copies as before. Keras' compiled loss
(`model.fit`, `evaluate`) calls `loss(y_true, y_pred, sample_weight)` with
`y_true` as the data holds it, so the path is the same there.
"""

import threading

import keras
import tensorflow as tf

_local = threading.local()


def _stacks() -> dict:
    """This thread's `{id(loss): [labels, ...]}` of the running `__call__`s."""
    stacks = getattr(_local, "stacks", None)
    if stacks is None:
        stacks = _local.stacks = {}
    return stacks


def integer_labels(y_true):
    """`y_true` as an integer tensor, or `None` when it is not integer.

    Nested structures, and values TensorFlow cannot convert to a dense
    tensor, give `None` (Keras then handles them as before).
    """
    if y_true is None or keras.tree.is_nested(y_true):
        return None
    try:
        labels = tf.convert_to_tensor(y_true)
    except (TypeError, ValueError):
        return None
    return labels if labels.dtype.is_integer else None


class LabelLoss(keras.losses.Loss):
    """A `keras.losses.Loss` whose integer `y_true` reaches `call` exactly.

    Subclasses read the labels in `call` with `self.exact_labels(y_true)`:
    the integer tensor given to `__call__`, or `y_true` itself (float
    labels, or `call` used directly). Integer class ids of any int32/int64
    value are then compared exactly, where Keras' cast to float32 would
    merge those beyond 2**24.
    """

    def uses_exact_labels(self) -> bool:
        """Whether `__call__` keeps an integer `y_true` for `call`."""
        return True

    def __call__(self, y_true, y_pred, sample_weight=None):
        labels = integer_labels(y_true) if self.uses_exact_labels() else None
        if labels is None:
            return super().__call__(y_true, y_pred, sample_weight)
        stack = _stacks().setdefault(id(self), [])
        stack.append(labels)
        try:
            return super().__call__(y_true, y_pred, sample_weight)
        finally:
            stack.pop()
            if not stack:
                del _stacks()[id(self)]

    def exact_labels(self, y_true):
        """The integer `y_true` of the running `__call__`, else `y_true`.

        `y_true` is what `call` received: the running `__call__`'s labels
        cast by Keras (same shape), which the exact ones replace.
        """
        stack = _stacks().get(id(self))
        if not stack:
            return y_true
        labels = stack[-1]
        shape = getattr(y_true, "shape", None)
        if shape is None or not labels.shape.is_compatible_with(shape):
            return y_true  # not the labels of `__call__`, e.g. a slice
        return labels
