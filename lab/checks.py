"""The one test of what counts as a number, shared by every argument check.

A bool is not a number here (``True`` as a layer or a seed is a mistake); numpy's
integers and floats are.

    >>> import numpy as np
    >>> is_integer(3), is_integer(np.int64(3)), is_integer(3.0), is_integer(True)
    (True, True, False, False)
"""
from __future__ import annotations

import numbers


def is_integer(value) -> bool:
    """True for an int or a numpy integer, False for a bool, a float or anything else.

    >>> is_integer(2), is_integer(2.5), is_integer("2")
    (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """True for an int, float or numpy number (NaN and inf included), False for a bool or a str.

    >>> is_real(0.5), is_real(float("nan")), is_real("0.5"), is_real(False)
    (True, True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
