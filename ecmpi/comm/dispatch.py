"""``ecmpi.allreduce``: argument checks, the cross-rank agreement check, dispatch.

The collective is looked up in :data:`ecmpi.comm.registry.COLLECTIVES`; its
entry says which of ``root``, ``downlink``, ``segment`` it takes (only those
are passed to it and compared across ranks) and its agreement id.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .._backend import array_module
from ..compress.base import Compressor
from ..compress.payload import dtype_code
from ..rng import SeedLike
from .common import (
    agree,
    as_compressor,
    check_root,
    check_vector,
    library_comm,
    seed_fingerprint,
    seed_parts,
)
from .native import finite, native_allreduce, traffic
from .registry import COLLECTIVES, Collective, get
from .residuals import CollectiveFeedback
from .ring import DEFAULT_SEGMENT
from .stats import CommStats

__all__ = ["allreduce"]

#: what the agreement check compares across ranks
_FIELDS = (
    "valid arguments",
    "length",
    "dtype",
    "compressor",
    "collective",
    "average",
    "seed",
    "error feedback",
    "root",
    "downlink",
    "segment",
    "requantize",
    "node size",
)


def _resolve(collective: Any, algorithm: Any) -> Any:
    """The collective's name from ``collective=`` or its deprecated alias ``algorithm=``."""
    if algorithm is None:
        return "allgather" if collective is None else collective
    if collective is not None:
        raise TypeError("allreduce() got both 'collective' and its deprecated alias 'algorithm'")
    warnings.warn(
        "allreduce(algorithm=...) is deprecated; use the keyword 'collective'",
        DeprecationWarning,
        stacklevel=3,
    )
    return algorithm


def _validate(
    x: Any,
    compressor: Any,
    name: Any,
    feedback: Any,
    stats: Any,
    downlink: Any,
    segment: Any,
) -> tuple[Collective, Compressor, Compressor | None]:
    check_vector(x)
    c = as_compressor(compressor)
    entry = get(name)
    if feedback is not None and not isinstance(feedback, CollectiveFeedback):
        raise TypeError(
            f"feedback must be a CollectiveFeedback or None, got {type(feedback).__name__}"
        )
    if stats is not None and not isinstance(stats, CommStats):
        raise TypeError(f"stats must be a CommStats or None, got {type(stats).__name__}")
    if isinstance(segment, bool) or not isinstance(segment, int) or segment <= 0:
        raise ValueError(f"segment must be a positive int, got {segment!r}")
    down = None
    if downlink is not None:
        if "downlink" not in entry.options:
            takes = " or ".join(
                f"collective={n!r}" for n, e in COLLECTIVES.items() if "downlink" in e.options
            )
            raise ValueError(f"downlink applies to {takes} only, not {entry.name!r}")
        down = as_compressor(downlink, "downlink")
    return entry, c, down


def _check_out(x: Any, out: Any) -> None:
    """``out`` is None, ``x`` itself, or a contiguous vector like ``x`` sharing no memory."""
    if out is None or out is x:
        return
    xp = array_module(x)
    if not isinstance(out, type(x)):
        raise TypeError(f"out must be a {type(x).__name__} like x, got {type(out).__name__}")
    if out.shape != x.shape or out.dtype != x.dtype:
        raise ValueError(
            f"out must have x's shape {x.shape} and dtype {x.dtype}, got {out.shape} {out.dtype}"
        )
    if not out.flags.c_contiguous:
        raise ValueError("out must be contiguous")
    if xp.shares_memory(x, out):
        raise ValueError("out overlaps x without being x (pass out=x for in place)")


def _native(c: Compressor, down: Compressor | None, feedback: Any) -> bool:
    """Whether the call goes to ``MPI_Allreduce`` (:mod:`ecmpi.comm.native`): nothing to
    compress (``none``, and a ``ps`` downlink that is ``none`` or unset) and no error
    feedback (an identity codec leaves nothing to feed back)."""
    return c.is_identity and (down is None or down.is_identity) and feedback is None


def allreduce(
    x: Any,
    compressor: Compressor | str,
    *,
    comm: Any = None,
    collective: str | None = None,
    average: bool = False,
    seed: SeedLike = 0,
    feedback: CollectiveFeedback | None = None,
    stats: CommStats | None = None,
    check: bool = True,
    root: int = 0,
    downlink: Compressor | str | None = None,
    segment: int = DEFAULT_SEGMENT,
    requantize: bool = False,
    node_size: int | None = None,
    algorithm: str | None = None,
    out: Any = None,
) -> Any:
    """Compressed sum (or mean) of ``x`` over the ranks of ``comm``.

    Collective: every rank calls it with a vector of the same length and dtype
    and the same arguments. The result is identical, bit for bit, on every
    rank, and lies on ``x``'s backend (NumPy or CuPy). With ``none`` and no
    error feedback every collective hands the vector to ``MPI_Allreduce``
    (:mod:`ecmpi.comm.native`; bytes counted as the collective's).

    Args:
        x: this rank's 1-D float32/float64 vector (NumPy or CuPy).
        compressor: an :class:`ecmpi.Compressor` or a spec such as ``"qsgd:levels=4"``.
        comm: an mpi4py intracommunicator (None: ``COMM_WORLD``); the traffic
            runs on a library-owned duplicate of it.
        collective: a name of :data:`ecmpi.comm.COLLECTIVES` (default
            ``allgather``): ``allgather``, ``sra`` (scatter-reduce-allgather),
            ``ring`` or ``ps`` (parameter server); see :mod:`ecmpi.comm`.
        average: divide the sum by the number of ranks.
        seed: int or tuple of ints keying every random draw; vary it per call
            (e.g. ``(seed, step)``). Collectives append ``(phase, chunk)`` ids.
        feedback: a :class:`CollectiveFeedback` for error feedback at every
            compression of the collective (None: none).
        stats: a :class:`CommStats` that accumulates bytes, messages and
            seconds; ``stats.last`` holds this call's alone.
        check: first verify, in one small ``Allreduce``, that all ranks agree on
            the length, dtype, compressor, collective, options and seed; a
            mismatch raises the same ValueError on every rank.
        root: the server rank of ``ps``.
        downlink: ``ps`` only: the compressor of the broadcast (default: the
            same; ``"none"`` for full precision).
        segment: ``ring`` only: entries per pipelined message.
        requantize: ``sra-int`` and ``ring-int`` only: requantize the sum of codes
            once to the codec's levels instead of sending it in wider codes
            (:mod:`ecmpi.comm.codesum`).
        node_size: ``hier`` only: ranks per node, overriding MPI's shared-memory
            split (default: ``ECMPI_NODE_SIZE``, else MPI's).
        algorithm: deprecated alias of ``collective`` (DeprecationWarning).
        out: where to write the result (same length, dtype and backend as ``x``,
            contiguous; ``x`` itself for an in-place allreduce); returned. Reusing one
            buffer across calls spares the fresh pages a new result costs (for
            ``none``, whose ``MPI_Allreduce`` then writes into ``out`` directly).

    Raises:
        ValueError, TypeError: bad arguments (both ``collective`` and ``algorithm``:
            TypeError), or (with ``check``) ranks that disagree.
        ValueError: on every rank alike, when a rank could not encode (NaN/Inf,
            a value beyond the codec's range, a sum that overflowed) or decode;
            the message names the rank(s) (:mod:`ecmpi.comm.failures`).
    """
    error: Exception | None = None
    c = down = entry = None
    try:
        name = _resolve(collective, algorithm)
        entry, c, down = _validate(x, compressor, name, feedback, stats, downlink, segment)
        if not isinstance(requantize, (bool, np.bool_)):
            raise TypeError(f"requantize must be a bool, got {requantize!r}")
        if node_size is not None and (
            isinstance(node_size, bool) or not isinstance(node_size, int) or node_size <= 0
        ):
            raise ValueError(f"node_size must be a positive int or None, got {node_size!r}")
        _check_out(x, out)
        parts = seed_parts(seed)
        if isinstance(root, bool) or not isinstance(root, int):
            raise TypeError(f"root must be an int rank, got {root!r}")
    except (TypeError, ValueError) as exc:
        if not check:
            raise
        error = exc
    lcomm = library_comm(comm)
    if check:
        fields = dict.fromkeys(_FIELDS, 0)
        if error is None:
            fields.update(
                {
                    "valid arguments": 1,
                    "length": x.shape[0],
                    "dtype": dtype_code(x.dtype),
                    "compressor": c.signature(),
                    "collective": entry.id,
                    "average": int(bool(average)),
                    "seed": seed_fingerprint(parts),
                    "error feedback": int(feedback is not None),
                    "root": root if "root" in entry.options else 0,
                    "downlink": down.signature() if down is not None else -1,
                    "segment": segment if "segment" in entry.options else 0,
                    "requantize": int(requantize) if "requantize" in entry.options else 0,
                    "node size": (node_size or 0) if "node_size" in entry.options else 0,
                }
            )
        try:
            labels = None
            if error is None:
                labels = {
                    "dtype": x.dtype,
                    "compressor": c.spec,
                    "seed": ",".join(map(str, parts)),
                    "downlink": down.spec if down is not None else "none",
                }
            agree(lcomm, fields, gate="valid arguments", labels=labels)
        except ValueError:
            if error is None:
                raise
        if error is not None:
            raise error
    options = {
        "root": root,
        "downlink": down,
        "segment": segment,
        "requantize": bool(requantize),
        "node_size": node_size,
    }
    if "root" in entry.options:
        options["root"] = check_root(lcomm, root)
    chosen = {k: options[k] for k in entry.options}
    call = CommStats()
    y = None
    if _native(c, down, feedback):
        direct = None if out is x else out  # in place: x is kept until the sum is checked
        y = native_allreduce(x, lcomm, average=bool(average), stats=call, out=direct)
        if c.check_finite and not finite(y):
            y, call = None, CommStats()  # the collective raises the error on every rank
        else:
            call += traffic(entry.name, c, x.shape[0], lcomm.size, lcomm.rank, x.dtype, **chosen)
    if y is None:
        y = entry.run(
            x,
            c,
            lcomm,
            average=bool(average),
            seed=parts,
            feedback=feedback,
            stats=call,
            **chosen,
        )
    if out is not None and y is not out:
        out[...] = y
        y = out
    if stats is not None:
        stats.merge_call(call)
    return y
