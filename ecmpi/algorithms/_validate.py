"""Checks of numeric hyperparameters shared by the algorithm drivers."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["finite", "positive"]


def _number(v: Any, name: str) -> float:
    """``float(v)``; bools and non-numbers raise TypeError naming ``name``."""
    if isinstance(v, bool):
        raise TypeError(f"{name} must be a number, got {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {v!r}") from None


def finite(v: Any, name: str) -> float:
    """``v`` as a finite float.

    Raises:
        TypeError: not a number (bools included).
        ValueError: NaN or infinite.
    """
    f = _number(v, name)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {v!r}")
    return f


def positive(v: Any, name: str) -> float:
    """``v`` as a finite float ``> 0``.

    Raises:
        TypeError: not a number (bools included).
        ValueError: zero, negative, NaN or infinite.
    """
    f = _number(v, name)
    if not (math.isfinite(f) and f > 0):
        raise ValueError(f"{name} must be a positive finite number, got {v!r}")
    return f
