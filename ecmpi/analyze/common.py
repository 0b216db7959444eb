"""Argument checks shared by the tables and the plots: the target ``eps`` and group keys."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

__all__ = ["check_accuracy", "check_eps", "group_keys"]


def check_eps(eps: float | None) -> float | None:
    """``eps`` as a positive finite float (None stays None).

    Raises:
        TypeError: not a number (a bool included).
        ValueError: zero, negative, NaN or infinite.
    """
    if eps is None:
        return None
    if isinstance(eps, bool):
        raise TypeError(f"eps must be a number, got {eps!r}")
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise TypeError(f"eps must be a number, got {eps!r}") from None
    if not (e > 0 and math.isfinite(e)):
        raise ValueError(f"eps must be a positive finite number, got {eps!r}")
    return e


def check_accuracy(accuracy: float | None) -> float | None:
    """A held-out accuracy target in (0, 1] as a float (None stays None).

    Raises:
        TypeError: not a number (a bool included).
        ValueError: outside (0, 1] or NaN.
    """
    if accuracy is None:
        return None
    if isinstance(accuracy, bool):
        raise TypeError(f"accuracy must be a number, got {accuracy!r}")
    try:
        a = float(accuracy)
    except (TypeError, ValueError):
        raise TypeError(f"accuracy must be a number, got {accuracy!r}") from None
    if not 0 < a <= 1:
        raise ValueError(f"accuracy must be in (0, 1], got {accuracy!r}")
    return a


def group_keys(group_by: str | Sequence[str] | None, df: pd.DataFrame) -> list[str]:
    """Column names to group by: ``"a,b"`` or ``["a", "b"]``, each a column of ``df``.

    Raises:
        ValueError: a name that is not a column (or is ``trajectory``); the
            message lists the available ones.
    """
    if group_by is None:
        return []
    keys = [k.strip() for k in group_by.split(",")] if isinstance(group_by, str) else list(group_by)
    keys = [k for k in keys if k]
    bad = [k for k in keys if k not in df.columns or k == "trajectory"]
    if bad:
        avail = ", ".join(c for c in df.columns if c != "trajectory")
        raise ValueError(f"cannot group by {', '.join(map(repr, bad))}; available keys: {avail}")
    return keys
