"""ecmpi: communication-efficient distributed optimization on MPI.

Compressed collectives on mpi4py, compressors with error feedback (NumPy on
the CPU, CUDA kernels through CuPy on the GPU, the same bytes on both), and
drivers for ECQ-SGD, QESGD, EC-LKatyusha and DQ-GD that log to HDF5.

MPI, CuPy, h5py and matplotlib are imported only when a name that needs them
is first used, so ``import ecmpi`` is cheap and never initializes MPI.
"""

from __future__ import annotations

import importlib
from typing import Any

from .compress import Compressor, Payload, available, compressor

__version__ = "0.1.0"

# public name -> module that defines it (imported on first use)
_LAZY = {
    "allreduce": "ecmpi.comm",
    "CommStats": "ecmpi.comm",
    "CollectiveFeedback": "ecmpi.comm",
    "ErrorFeedback": "ecmpi.compress.feedback",
    "ps_exchange": "ecmpi.comm",
    "feedback": "ecmpi.compress.feedback",
    "rng": "ecmpi.rng",
    "problems": "ecmpi.problems",
    "algorithms": "ecmpi.algorithms",
    "analyze": "ecmpi.analyze",
    "run": "ecmpi.session",
    "RunResult": "ecmpi.session",
    "errors": "ecmpi.errors",
    "KernelCompileError": "ecmpi.errors",
    "NetnsUnavailable": "ecmpi.errors",
    "NonFiniteError": "ecmpi.errors",
    "ReproduceError": "ecmpi.errors",
    "RunError": "ecmpi.errors",
    "SchemaError": "ecmpi.errors",
    "SetupInterrupted": "ecmpi.errors",
    "UnknownConstant": "ecmpi.errors",
    "UsageError": "ecmpi.errors",
}

__all__ = ["Compressor", "Payload", "__version__", "available", "compressor", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'ecmpi' has no attribute {name!r}")
    module = importlib.import_module(target)
    value = module if target.rsplit(".", 1)[-1] == name else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
