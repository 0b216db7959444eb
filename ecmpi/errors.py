"""The exceptions ecmpi raises, in one place.

Each is also importable from the module that raises it (``ecmpi.log.SchemaError``,
``ecmpi.algorithms.loop.RunError``, ...): the same class object. Hierarchy::

    ValueError
        SchemaError          a file is not an ecmpi log, or has another schema version
        UsageError           invalid command-line or config-file options
            UnknownConstant  a driver needs L, mu or x* of a problem that has none
    RuntimeError
        RunError             a run ended with an error every rank raises identically
            NonFiniteError   (also a FloatingPointError) the iterate became NaN or Inf
        SetupInterrupted     SIGTERM/SIGUSR1/SIGINT came before a run's first step
        ReproduceError       a paper experiment could not be run
        KernelCompileError   a CUDA kernel file failed to compile
        NetnsUnavailable     network namespaces cannot be created here

The MPI error channel (an exception on any rank marks rank 0's log ``failed``)
lives in :mod:`ecmpi.error_channel`; its names are still reachable here, deprecated.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

__all__ = [
    "KernelCompileError",
    "NetnsUnavailable",
    "NonFiniteError",
    "ReproduceError",
    "RunError",
    "SchemaError",
    "SetupInterrupted",
    "UnknownConstant",
    "UsageError",
]


class SchemaError(ValueError):
    """The file is not an ecmpi trajectory log, or has another schema version."""


class UsageError(ValueError):
    """Invalid command-line or config-file options (the same on every rank)."""


class UnknownConstant(UsageError):
    """A driver needs a constant (L, mu, x*) that the problem does not provide, e.g. the
    smoothness of a neural network's loss; the message says which option replaces it."""


class RunError(RuntimeError):
    """A run ended with an error that every rank raises identically (print it once)."""


class NonFiniteError(RunError, FloatingPointError):
    """The iterate became NaN or Inf (``on_nonfinite="error"``)."""


class SetupInterrupted(RuntimeError):
    """A stop signal came while a run was being set up (data, problem), before its first step.

    Nothing was run or checkpointed: ``ecmpi run`` exits with status 75 and the run is
    started again from the beginning.

    Attributes:
        signum: the signal received.
    """

    def __init__(self, signum: int, message: str | None = None):
        import signal

        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        super().__init__(
            message or f"interrupted during setup ({name}); nothing to resume, start the run again"
        )
        self.signum = signum


class ReproduceError(RuntimeError):
    """A run failed, a launcher is missing, or an algorithm is not available."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


class KernelCompileError(RuntimeError):
    """A kernel file failed to compile; the message names it and holds the compiler log."""


class NetnsUnavailable(RuntimeError):
    """The machine cannot create namespaces (not root, or ``ip``/``tc`` missing)."""


def __getattr__(name: str) -> Any:
    # the error channel's names, which this module held before they moved
    channel = importlib.import_module("ecmpi.error_channel")
    if name not in channel.__all__:
        raise AttributeError(f"module 'ecmpi.errors' has no attribute {name!r}")
    warnings.warn(
        f"ecmpi.errors.{name} moved to ecmpi.error_channel.{name}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(channel, name)
