"""``ecmpi.allreduce``: argument checks, the cross-rank agreement check, dispatch."""

from __future__ import annotations

from typing import Any

from ..compress.base import Compressor
from ..compress.payload import dtype_code
from ..rng import SeedLike
from .allgather import allgather_allreduce
from .common import (
    ALGORITHMS,
    agree,
    as_compressor,
    check_root,
    check_vector,
    library_comm,
    seed_fingerprint,
    seed_parts,
)
from .ps import ps_allreduce
from .residuals import CollectiveFeedback
from .ring import DEFAULT_SEGMENT, ring_allreduce
from .sra import sra_allreduce
from .stats import CommStats

__all__ = ["allreduce"]

#: what the agreement check compares across ranks
_FIELDS = (
    "valid arguments",
    "length",
    "dtype",
    "compressor",
    "algorithm",
    "average",
    "seed",
    "error feedback",
    "root",
    "downlink",
    "segment",
)


def _validate(
    x: Any, compressor: Any, algorithm: Any, feedback: Any, stats: Any, downlink: Any, segment: Any
) -> tuple[Compressor, Compressor | None]:
    check_vector(x)
    c = as_compressor(compressor)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose one of {', '.join(ALGORITHMS)}")
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
        if algorithm != "ps":
            raise ValueError(f"downlink applies to algorithm='ps' only, not {algorithm!r}")
        down = as_compressor(downlink, "downlink")
    return c, down


def allreduce(
    x: Any,
    compressor: Compressor | str,
    *,
    comm: Any = None,
    algorithm: str = "allgather",
    average: bool = False,
    seed: SeedLike = 0,
    feedback: CollectiveFeedback | None = None,
    stats: CommStats | None = None,
    check: bool = True,
    root: int = 0,
    downlink: Compressor | str | None = None,
    segment: int = DEFAULT_SEGMENT,
) -> Any:
    """Compressed sum (or mean) of ``x`` over the ranks of ``comm``.

    Collective: every rank calls it with a vector of the same length and dtype
    and the same arguments. The result is identical, bit for bit, on every
    rank, and lies on ``x``'s backend (NumPy or CuPy).

    Args:
        x: this rank's 1-D float32/float64 vector (NumPy or CuPy).
        compressor: an :class:`ecmpi.Compressor` or a spec such as ``"qsgd:levels=4"``.
        comm: an mpi4py intracommunicator (None: ``COMM_WORLD``); the traffic
            runs on a library-owned duplicate of it.
        algorithm: ``allgather``, ``sra`` (scatter-reduce-allgather), ``ring`` or
            ``ps`` (parameter server); see :mod:`ecmpi.comm`.
        average: divide the sum by the number of ranks.
        seed: int or tuple of ints keying every random draw; vary it per call
            (e.g. ``(seed, step)``). Collectives append ``(phase, chunk)`` ids.
        feedback: a :class:`CollectiveFeedback` for error feedback at every
            compression of the collective (None: none).
        stats: a :class:`CommStats` that accumulates bytes, messages and
            seconds; ``stats.last`` holds this call's alone.
        check: first verify, in one small ``Allreduce``, that all ranks agree on
            the length, dtype, compressor, algorithm, options and seed; a
            mismatch raises the same ValueError on every rank.
        root: the server rank of ``ps``.
        downlink: ``ps`` only: the compressor of the broadcast (default: the
            same; ``"none"`` for full precision).
        segment: ``ring`` only: entries per pipelined message.

    Raises:
        ValueError, TypeError: bad arguments, or (with ``check``) ranks that disagree.
    """
    error: Exception | None = None
    c = down = None
    try:
        c, down = _validate(x, compressor, algorithm, feedback, stats, downlink, segment)
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
                    "algorithm": ALGORITHMS[algorithm],
                    "average": int(bool(average)),
                    "seed": seed_fingerprint(parts),
                    "error feedback": int(feedback is not None),
                    "root": root if algorithm == "ps" else 0,
                    "downlink": down.signature() if down is not None else -1,
                    "segment": segment if algorithm == "ring" else 0,
                }
            )
        try:
            agree(lcomm, fields, gate="valid arguments")
        except ValueError:
            if error is None:
                raise
        if error is not None:
            raise error
    if algorithm == "ps":
        root = check_root(lcomm, root)

    call = CommStats()
    kw = {"average": bool(average), "seed": parts, "feedback": feedback, "stats": call}
    if algorithm == "allgather":
        out = allgather_allreduce(x, c, lcomm, **kw)
    elif algorithm == "sra":
        out = sra_allreduce(x, c, lcomm, **kw)
    elif algorithm == "ring":
        out = ring_allreduce(x, c, lcomm, segment=segment, **kw)
    else:
        out = ps_allreduce(x, c, lcomm, root=int(root), downlink=down, **kw)
    if stats is not None:
        stats.merge_call(call)
    return out
