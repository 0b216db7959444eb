"""The one place that finds ecmpi's CUDA source and compiles it with CuPy.

The ``.cu``/``.cuh`` files live in the top-level ``kernels/`` directory,
installed as the package ``ecmpi.kernels``; they are read through
:mod:`importlib.resources` (so a zipped or installed package works) and their
``#include "x.cuh"`` lines are expanded here, so the compiler needs no include
path. Each file becomes one ``cupy.RawModule``, compiled on first use for the
current device with :data:`OPTIONS` and memoized per device id. A compile
failure raises :class:`KernelCompileError` naming the file and carrying the
compiler log.

``--fmad=false`` is not optional: the kernels must round every float
operation on its own to give the same bytes as the NumPy path
(docs/compressors.md).
"""

from __future__ import annotations

import importlib.resources
import re
import threading
from functools import cache
from typing import Any

from .errors import KernelCompileError

__all__ = [
    "KERNEL_FILES",
    "OPTIONS",
    "KernelCompileError",
    "clear_cache",
    "get_function",
    "get_module",
    "nvrtc_ptx",
    "source",
]

#: the kernel files the runtime compiles (harness.cu is a host-only test program)
KERNEL_FILES = ("qsgd.cu", "sign.cu", "topk.cu", "randk.cu")
#: compiler options for every kernel file
OPTIONS = ("--fmad=false", "-std=c++17")

_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$', re.MULTILINE)
_modules: dict[tuple[str, int], Any] = {}
_lock = threading.Lock()


def _read(name: str) -> str:
    res = importlib.resources.files("ecmpi.kernels").joinpath(name)
    if not res.is_file():
        raise FileNotFoundError(f"kernel source {name!r} not found in package ecmpi.kernels")
    return res.read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The source of kernel file ``name`` with its local includes expanded (each once).

    Raises:
        FileNotFoundError: the file, or a header it includes, is not in ``ecmpi.kernels``.
    """
    seen: set[str] = set()

    def expand(fname: str) -> str:
        if fname in seen:
            return f"// {fname} already included\n"
        seen.add(fname)
        text = _read(fname).replace("#pragma once", "")
        return _INCLUDE.sub(lambda m: expand(m.group(1)), text)

    return f"// ecmpi kernel source {name} (includes expanded)\n" + expand(name)


def _cupy() -> Any:
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "the GPU path needs CuPy: pip install 'ecmpi[gpu]' (cupy-cuda12x)"
        ) from exc
    return cupy


def get_module(name: str) -> Any:
    """The compiled ``cupy.RawModule`` of kernel file ``name`` for the current device.

    Raises:
        ValueError: ``name`` is not one of :data:`KERNEL_FILES`.
        KernelCompileError: compilation failed (the message holds the compiler log).
    """
    if name not in KERNEL_FILES:
        raise ValueError(f"unknown kernel file {name!r}; expected one of {KERNEL_FILES}")
    cupy = _cupy()
    dev = cupy.cuda.Device()
    key = (name, int(dev.id))
    with _lock:
        mod = _modules.get(key)
        if mod is not None:
            return mod
        mod = cupy.RawModule(code=source(name), options=OPTIONS)
        try:
            mod.compile()
        except Exception as exc:
            log = exc.get_message() if hasattr(exc, "get_message") else str(exc)
            raise KernelCompileError(
                f"compiling kernels/{name} failed for device {dev.id} "
                f"(compute capability {dev.compute_capability}) with options {OPTIONS}:\n{log}"
            ) from exc
        _modules[key] = mod
        return mod


def get_function(name: str, kernel: str) -> Any:
    """The ``cupy.RawKernel`` named ``kernel`` in kernel file ``name`` (current device)."""
    mod = get_module(name)
    try:
        return mod.get_function(kernel)
    except Exception as exc:
        raise KernelCompileError(f"kernels/{name} has no kernel {kernel!r}: {exc}") from exc


def clear_cache() -> None:
    """Forget every compiled module (e.g. after the device context was reset)."""
    with _lock:
        _modules.clear()


def nvrtc_ptx(name: str, arch: str = "compute_90") -> str:
    """Compile kernel file ``name`` to PTX with NVRTC, without a device.

    This is what CuPy does at run time (minus loading), so a test can check
    that every file compiles on a machine with no GPU. Needs the NVRTC library
    (``nvidia-cuda-nvrtc-cu12`` or a CUDA toolkit).

    Raises:
        KernelCompileError: with the NVRTC log.
    """
    from cupy.cuda import nvrtc

    prog = nvrtc.createProgram(source(name), name, [], [])
    try:
        opts = [*OPTIONS, f"-arch={arch}"]
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as exc:
            log = nvrtc.getProgramLog(prog)
            raise KernelCompileError(f"NVRTC failed on kernels/{name} ({arch}):\n{log}") from exc
        ptx = nvrtc.getPTX(prog)
        return ptx.decode() if isinstance(ptx, bytes) else ptx
    finally:
        nvrtc.destroyProgram(prog)
