"""Argument checks shared by every public class and function.

Every error names the argument and ends with `Received: name=value`, so a
bad hyperparameter fails at construction with a message that says which one.
"""

import math
import numbers


def check_float(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    allow_equal_minimum: bool = True,
) -> float:
    """Returns `value` as a finite Python float within `[minimum, maximum]`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"`{name}` must be a real number. Received: {name}={value!r}"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"`{name}` must be finite. Received: {name}={value}")
    if minimum is not None:
        if allow_equal_minimum and value < minimum:
            raise ValueError(
                f"`{name}` must be >= {minimum}. Received: {name}={value}"
            )
        if not allow_equal_minimum and value <= minimum:
            raise ValueError(
                f"`{name}` must be > {minimum}. Received: {name}={value}"
            )
    if maximum is not None and value > maximum:
        raise ValueError(
            f"`{name}` must be <= {maximum}. Received: {name}={value}"
        )
    return value


def check_non_negative(name: str, value) -> float:
    return check_float(name, value, minimum=0.0)


def check_positive(name: str, value) -> float:
    return check_float(name, value, minimum=0.0, allow_equal_minimum=False)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return value


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"`{name}` must be an integer. Received: {name}={value!r}"
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(
            f"`{name}` must be >= {minimum}. Received: {name}={value}"
        )
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(
            f"`{name}` must be one of {sorted(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value
