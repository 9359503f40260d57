"""Lower and upper bounds of s_mu for L2-normalized rows."""

import math
import numbers

import tensorflow as tf


def svmax_bounds(batch_size, dim):
    """Bounds `(lower, upper)` of s_mu for a batch of unit-norm rows.

    With k = min(b, d):

    ```python
    lower = sqrt(b) / k      # rank 1: every row the same (collapse)
    upper = sqrt(b / k)      # singular values all equal (uniform spread)
    ```

    For b >= d this is the paper's Eq. 2-3 (L = sqrt(b)/d and
    U = sqrt(b d / max(b, d)) sqrt(b) / d = sqrt(b / d)); for b < d it is
    appendix B.2 (L = 1/sqrt(b), U = 1). The authors' code uses the b >= d
    form and asserts b > d; with b < d that form is wrong because the mean
    runs over min(b, d) singular values.

    Args:
        batch_size: Positive int b, or a scalar integer tensor (e.g.
            `tf.shape(x)[0]`).
        dim: Positive int d, the embedding dimension, or a scalar integer
            tensor.

    Raises:
        TypeError: an argument is a bool, a float, a string or None, or a
            non-integer tensor.
        ValueError: an argument is < 1 (Python and NumPy integers, eager
            tensors and tensors whose value is known when the function is
            traced), or a tensor is not a scalar. A graph tensor known only
            at run time is checked at run time (`InvalidArgumentError`).

    Returns:
        `(lower, upper)` as Python floats when both arguments are integers
        (Python or NumPy), as float32 scalar tensors otherwise.
        lower == upper when k == 1 (b = 1 or d = 1).

    Example:

    >>> import keras_featreg
    >>> keras_featreg.ops.svmax_bounds(144, 128)
    (0.09375, 1.0606601717798212)

    Reference:
    - [Taha et al., 2021](https://arxiv.org/abs/2103.02770), Eq. 2-3, B.2.
    """
    python_ints = True
    tensors = {}
    for name, value in (("batch_size", batch_size), ("dim", dim)):
        if (
            value is None
            or isinstance(value, (bool, str, bytes))
            or (
                isinstance(value, numbers.Real)
                and not isinstance(value, numbers.Integral)
            )
        ):
            raise TypeError(
                f"`{name}` must be a positive integer or an integer tensor. "
                f"Received: {name}={value!r}"
            )
        if isinstance(value, numbers.Integral):
            if value < 1:
                raise ValueError(
                    f"`{name}` must be a positive integer. "
                    f"Received: {name}={value!r}"
                )
        else:
            python_ints = False
            tensors[name] = _as_size_tensor(name, value)
    if python_ints:
        batch_size, dim = int(batch_size), int(dim)
        k = min(batch_size, dim)
        return math.sqrt(batch_size) / k, math.sqrt(batch_size / k)
    batch_size = tensors.get("batch_size", batch_size)
    dim = tensors.get("dim", dim)
    checks = [
        tf.debugging.assert_positive(
            value,
            message=f"`{name}` must be a positive integer.",
        )
        for name, value in tensors.items()
        if tf.get_static_value(value) is None  # only known at run time
    ]
    with tf.control_dependencies(checks):
        b = tf.cast(batch_size, tf.float32)
        k = tf.minimum(b, tf.cast(dim, tf.float32))
        return tf.sqrt(b) / k, tf.sqrt(b / k)


def _as_size_tensor(name: str, value) -> tf.Tensor:
    """A scalar integer tensor argument, checked where its value is known."""
    value = tf.convert_to_tensor(value)
    if not value.dtype.is_integer:
        raise TypeError(
            f"`{name}` must be a positive integer or an integer tensor. "
            f"Received: {name}.dtype={value.dtype.name}"
        )
    if value.shape.rank not in (0, None):
        raise ValueError(
            f"`{name}` must be a scalar. Received: {name}.shape={value.shape}"
        )
    known = tf.get_static_value(value)
    if known is not None and known < 1:
        raise ValueError(
            f"`{name}` must be a positive integer. Received: {name}={known}"
        )
    return value
