"""Communication accounting: bytes, messages and seconds per phase.

Bytes are the real sizes of the payload buffers this rank handed to MPI or
received from it (every payload's 48-byte header included). A collective's
own bookkeeping (the agreement check, 8-byte size announcements for payloads
of varying size) is not counted. For MPI collectives the count is the data
this rank contributes to or takes from the other ranks, e.g. an Allgather of
``b`` bytes per rank counts ``(P-1)*b`` sent and ``(P-1)*b`` received, however
the MPI library routes it internally.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

__all__ = ["PHASES", "CommStats"]

#: timed phases: compression, MPI calls and waits, decompression plus reduction
PHASES = ("encode", "communicate", "decode")


@dataclass
class CommStats:
    """Bytes, messages and seconds of the collectives it was passed to.

    Pass one instance as ``stats=`` to :func:`ecmpi.allreduce` (or the
    parameter-server helpers): it accumulates over calls, and :attr:`last`
    holds the counts of the most recent call alone.

    Attributes:
        calls: collective calls recorded.
        bytes_sent: payload bytes this rank sent.
        bytes_received: payload bytes this rank received.
        messages: messages this rank sent (one per destination of a collective).
        bytes_up: parameter server, worker -> root bytes this rank sent (a
            worker) or received (the root).
        bytes_down: parameter server, root -> worker bytes this rank received
            (a worker) or sent (the root).
        encode_seconds, communicate_seconds, decode_seconds: wall time per phase.
        last: a :class:`CommStats` of the most recent call (None before the first).
    """

    calls: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    messages: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    encode_seconds: float = 0.0
    communicate_seconds: float = 0.0
    decode_seconds: float = 0.0
    last: CommStats | None = field(default=None, repr=False, compare=False)

    # -- recording ------------------------------------------------------------
    def sent(self, nbytes: int, messages: int = 1) -> None:
        """Record ``nbytes`` sent in ``messages`` messages."""
        self.bytes_sent += int(nbytes)
        self.messages += int(messages)

    def received(self, nbytes: int) -> None:
        """Record ``nbytes`` received."""
        self.bytes_received += int(nbytes)

    @contextmanager
    def timer(self, phase: str) -> Iterator[None]:
        """Add the wall time of the ``with`` body to ``phase`` (one of :data:`PHASES`)."""
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; phases: {', '.join(PHASES)}")
        t0 = time.perf_counter()
        try:
            yield
        finally:
            name = f"{phase}_seconds"
            setattr(self, name, getattr(self, name) + time.perf_counter() - t0)

    def merge_call(self, call: CommStats) -> None:
        """Add one call's counts and remember them as :attr:`last`."""
        call.calls = max(call.calls, 1)
        self += call
        self.last = call

    # -- arithmetic -------------------------------------------------------------
    def _counters(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "last"]

    def __add__(self, other: CommStats) -> CommStats:
        if not isinstance(other, CommStats):
            return NotImplemented
        return CommStats(**{k: getattr(self, k) + getattr(other, k) for k in self._counters()})

    def __iadd__(self, other: CommStats) -> CommStats:
        if not isinstance(other, CommStats):
            return NotImplemented
        for k in self._counters():
            setattr(self, k, getattr(self, k) + getattr(other, k))
        return self

    @property
    def seconds(self) -> float:
        """Total seconds over all phases."""
        return self.encode_seconds + self.communicate_seconds + self.decode_seconds

    def reset(self) -> None:
        """Zero every counter and forget :attr:`last`."""
        for k in self._counters():
            setattr(self, k, type(getattr(self, k))(0))
        self.last = None

    def as_dict(self) -> dict[str, Any]:
        """The counters as a plain dict (``last`` excluded)."""
        return {k: getattr(self, k) for k in self._counters()}
