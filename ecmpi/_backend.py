"""Array-backend selection: NumPy on the CPU, CuPy on the GPU.

CuPy is never imported at package import time; these helpers look at the
array's type instead. This module also decides how device buffers meet MPI:

- :func:`synchronize` waits for the current CUDA stream before MPI reads or
  writes device memory (MPI knows nothing about CUDA streams; skipping it gives
  wrong results).
- :func:`gpu_aware_mpi` detects a CUDA-aware MPI library
  (``MPIX_Query_cuda_support``/``MPIX_GPU_query_support`` looked up through
  ctypes in the loaded libmpi), overridable with ``ECMPI_GPU_AWARE_MPI=0|1``.
- :func:`mpi_buffer`, :func:`mpi_empty` and :func:`from_mpi_buffer` hand MPI
  either the device buffer itself (GPU-aware MPI) or a host copy (staging).
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from typing import Any

import numpy as np

__all__ = [
    "GPU_AWARE_ENV",
    "array_module",
    "from_mpi_buffer",
    "gpu_aware_mpi",
    "gpu_mpi_status",
    "is_device_array",
    "mpi_buffer",
    "mpi_empty",
    "synchronize",
    "to_host",
]

#: environment variable forcing GPU-aware MPI on (1) or off (0)
GPU_AWARE_ENV = "ECMPI_GPU_AWARE_MPI"


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


def synchronize(x: Any = None) -> None:
    """Wait for the current CUDA stream if ``x`` is a device array (no-op otherwise).

    Call it before MPI touches device memory written by a kernel.
    """
    if x is not None and not is_device_array(x):
        return
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return
    cupy.cuda.get_current_stream().synchronize()


def _loaded_libmpi() -> list[str]:
    """Paths of the MPI shared libraries mapped into this process (Linux)."""
    paths: list[str] = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.rsplit(None, 1)[-1] if "/" in line else ""
                name = os.path.basename(path)
                if name.startswith("libmpi") and ".so" in name and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def _query_cuda_support() -> tuple[bool, str]:
    """Ask the loaded MPI library whether it accepts CUDA device buffers."""
    from mpi4py import MPI  # noqa: F401  (loads libmpi)

    for path in _loaded_libmpi() or [None]:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        fn = getattr(lib, "MPIX_Query_cuda_support", None)
        if fn is not None:
            fn.restype = ctypes.c_int
            fn.argtypes = []
            return bool(fn()), f"MPIX_Query_cuda_support() in {path or 'the process'}"
        fn = getattr(lib, "MPIX_GPU_query_support", None)
        if fn is not None:  # MPICH: MPIX_GPU_query_support(MPIX_GPU_SUPPORT_CUDA=0, &flag)
            flag = ctypes.c_int(0)
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            if fn(0, ctypes.byref(flag)) == 0:
                return bool(flag.value), f"MPIX_GPU_query_support(CUDA) in {path}"
    return False, "no CUDA support query in the MPI library"


@functools.lru_cache(maxsize=1)
def _detected() -> tuple[bool, str]:
    return _query_cuda_support()


def gpu_mpi_status() -> dict[str, Any]:
    """How device buffers cross MPI: ``{"gpu_aware": bool, "source": str, "path": str}``.

    ``source`` says how it was decided (environment override or the library
    query); ``path`` is ``"device buffers"`` or ``"host staging"``.

    Raises:
        ValueError: ``ECMPI_GPU_AWARE_MPI`` is set to something other than 0 or 1.
    """
    env = os.environ.get(GPU_AWARE_ENV)
    if env is not None and env.strip() != "":
        if env.strip() not in ("0", "1"):
            raise ValueError(f"{GPU_AWARE_ENV} must be 0 or 1, got {env!r}")
        aware, source = env.strip() == "1", f"{GPU_AWARE_ENV}={env.strip()}"
    else:
        aware, source = _detected()
    return {
        "gpu_aware": aware,
        "source": source,
        "path": "device buffers" if aware else "host staging",
    }


def gpu_aware_mpi() -> bool:
    """True when MPI may read and write CUDA device buffers directly."""
    return bool(gpu_mpi_status()["gpu_aware"])


def mpi_buffer(buf: Any) -> Any:
    """The array to hand to MPI for ``buf``.

    NumPy arrays pass through. For a CuPy array the stream is synchronized and
    the device array is returned under GPU-aware MPI, else a host copy.
    """
    if not is_device_array(buf):
        return buf
    synchronize(buf)
    return buf if gpu_aware_mpi() else buf.get()


def mpi_empty(nbytes: int, like: Any = None) -> Any:
    """An uninitialized uint8 receive buffer of ``nbytes`` where MPI should write.

    On the device when ``like`` is a CuPy array and MPI is GPU-aware, else on the host.
    """
    if like is not None and is_device_array(like) and gpu_aware_mpi():
        xp = array_module(like)
        return xp.empty(int(nbytes), dtype=xp.uint8)
    return np.empty(int(nbytes), dtype=np.uint8)


def from_mpi_buffer(buf: Any, like: Any = None) -> Any:
    """``buf`` moved to the backend of ``like`` (host staging copies to the device)."""
    if like is not None and is_device_array(like):
        if is_device_array(buf):
            return buf
        return array_module(like).asarray(buf)
    return to_host(buf)
