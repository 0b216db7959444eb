"""The few MPI reductions the problems need, made deterministic and hang-free.

- :func:`allsum` sums one array over the ranks *in rank order* (allgather,
  then a fixed sequential sum), so the result is bitwise identical on every
  rank and does not depend on the MPI library's reduction algorithm.
- :func:`agree` turns an exception raised on some ranks into the same
  exception on every rank before the next collective, so a bad file line seen
  by one rank never leaves the others waiting.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._backend import array_module, to_host

__all__ = ["agree", "allmax", "allsum", "default_comm"]


def default_comm(comm: Any = None) -> Any:
    """ecmpi's duplicate of ``comm`` (None: ``COMM_WORLD``); see
    :func:`ecmpi.comm.common.library_comm`. Collective on first use."""
    from ..comm.common import library_comm

    return library_comm(comm)


def allsum(comm: Any, x: Any) -> Any:
    """``sum_tau x_tau`` over the ranks, added in rank order; identical on every rank.

    Args:
        comm: the communicator.
        x: a scalar or an array of the same shape on every rank (NumPy or CuPy;
            device arrays are staged through the host).

    Returns:
        A float for scalar input, else an array on ``x``'s backend.
    """
    scalar = np.ndim(x) == 0
    host = np.array(to_host(x), dtype=np.float64, order="C")  # a copy; 0-d stays 0-d
    if comm.size == 1:
        total = host.copy()
    else:
        parts = np.empty((comm.size, *host.shape), dtype=np.float64)
        comm.Allgather(host, parts)
        total = parts[0].copy()
        for k in range(1, comm.size):
            total += parts[k]
    if scalar:
        return float(total)
    xp = array_module(x)
    return total if xp is np else xp.asarray(total)


def allmax(comm: Any, value: Any) -> Any:
    """Elementwise ``max_tau value_tau`` of a scalar or a float64 array (exact, hence
    identical on every rank)."""
    if np.ndim(value) == 0:
        if comm.size == 1:
            return float(value)
        from mpi4py import MPI

        return float(comm.allreduce(float(value), op=MPI.MAX))
    host = np.array(value, dtype=np.float64, order="C")
    if comm.size == 1:
        return host
    from mpi4py import MPI

    out = np.empty_like(host)
    comm.Allreduce(host, out, op=MPI.MAX)
    return out


def agree(comm: Any, err: BaseException | None) -> None:
    """Raise on every rank if ``err`` is set on any rank (collective).

    The exception of the lowest failing rank is raised everywhere with its type
    (``ValueError``, ``TypeError``, ``FileNotFoundError``, ``KeyError``,
    ``OSError``; anything else becomes ``RuntimeError``) and message.
    """
    info = None if err is None else (type(err).__name__, str(err))
    infos = comm.allgather(info) if comm.size > 1 else [info]
    for rank, item in enumerate(infos):
        if item is None:
            continue
        if err is not None and rank == comm.rank:
            raise err
        name, msg = item
        cls = {
            "ValueError": ValueError,
            "TypeError": TypeError,
            "FileNotFoundError": FileNotFoundError,
            "KeyError": KeyError,
            "OSError": OSError,
        }.get(name, RuntimeError)
        raise cls(f"{msg} (raised on rank {rank})")
