"""Array-backend selection: NumPy on the CPU, CuPy on the GPU.

CuPy is never imported at package import time; these helpers look at the
array's type instead. GPU-aware MPI detection and host staging live here too
(see :func:`gpu_aware_mpi`).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

__all__ = ["array_module", "is_device_array", "to_host"]


def is_device_array(x: Any) -> bool:
    """True for a CuPy array (checked without importing CuPy)."""
    return type(x).__module__.split(".", 1)[0] == "cupy"


def array_module(x: Any) -> Any:
    """``cupy`` for a CuPy array, else ``numpy``."""
    if is_device_array(x):
        return sys.modules["cupy"]
    return np


def to_host(x: Any) -> np.ndarray:
    """A NumPy view or copy of ``x`` (device arrays are copied to the host)."""
    if is_device_array(x):
        return x.get()
    return np.asarray(x)
