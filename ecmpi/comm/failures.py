"""Encoding failures carried in-band, so one rank's error never leaves the others waiting.

A collective's ranks wait on each other's payloads. When a rank cannot encode
(NaN/Inf input, a value its codec cannot represent, a sum that overflowed in a
later phase) or cannot decode what it received, it does not raise at once: it
sends, in place of every payload it still owes, a *failure marker* of the same
size (the bytes ``b"EX"``, then zeros; payloads start with ``b"EC"``), and a
receiver that finds a marker does the same. The schedule of messages is
unchanged and a call without failure sends nothing more.

Each collective's last exchange reaches every rank, so at its end either every
rank knows of a failure or none does. Only then do the ranks trade their
reasons (one small ``allgather``, on the failure path only) and each raises the
same ``ValueError`` naming the rank(s) and what failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import array_module
from ..compress.payload import Payload

__all__ = ["MARKER_MAGIC", "Failures"]

MARKER_MAGIC = b"EX"
_MARKER_SIZE = 8  # when sizes travel with the messages
#: exceptions that mean "this data cannot be encoded or decoded" (not a bug)
_DATA_ERRORS = (ValueError, ArithmeticError)


class Failures:
    """What one rank knows of failures during one collective call.

    Args:
        comm: the collective's communicator.
        like: an array on the backend (NumPy or CuPy) markers must live on.
        name: the collective, for the message.
        kind: what the call is, for the message (``allreduce``, ``parameter-server
            exchange``).
    """

    def __init__(self, comm: Any, like: Any, name: str, *, kind: str = "allreduce"):
        self.comm, self.like, self.name, self.kind = comm, like, name, kind
        self.reason: str | None = None  # this rank's own failure
        self.any = False  # a failure anywhere (own, or a marker received)
        self._deferred: Exception | None = None

    def run(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``; None once a failure is known or if it raises (recorded)."""
        if self.any:
            return None
        try:
            return fn(*args, **kwargs)
        except _DATA_ERRORS as exc:
            self.reason, self.any = " ".join(f"{what}: {exc}".split()), True
            return None

    def encode(
        self, what: str, nbytes: int | None, fn: Callable[..., Payload], *args: Any, **kwargs: Any
    ) -> tuple[Payload | None, Any]:
        """``(payload, bytes to send)``: ``fn(*args, **kwargs)``'s payload, or ``(None, marker)``.

        ``nbytes`` is the size the receiver expects (fixed-size codecs), None if sizes travel.
        """
        p = self.run(what, fn, *args, **kwargs)
        return (p, p.buf) if p is not None else (None, self.marker(nbytes))

    def marker(self, nbytes: int | None) -> Any:
        """A marker of ``nbytes`` bytes (8 when None)."""
        raw = np.zeros(_MARKER_SIZE if nbytes is None else int(nbytes), dtype=np.uint8)
        raw[:2] = np.frombuffer(MARKER_MAGIC, dtype=np.uint8)[: raw.shape[0]]
        return array_module(self.like).asarray(raw)

    def seen(self, buf: Any) -> bool:
        """Whether ``buf`` is a marker (then a failure is known)."""
        if buf.shape[0] < 2:
            return False
        head = buf[:2]
        if bytes(head.get() if hasattr(head, "get") else head) != MARKER_MAGIC:
            return False
        self.any = True
        return True

    def decode(
        self, what: str, c: Any, buf: Any, n: int, *, acc: Any = None, out: Any = None
    ) -> Any:
        """Parse ``buf`` (``n`` entries) and decode it (added onto ``acc``, or into ``out``).

        Returns the decoded vector, or None if ``buf`` is a marker, a failure is
        already known, or parsing or decoding fails (then recorded as ``what``).
        """
        if self.seen(buf):
            return None
        if acc is not None:
            return self.run(what, lambda: c.decode_add(Payload.from_bytes(buf, n=n), acc))
        return self.run(what, lambda: c.decode(Payload.from_bytes(buf, n=n), out=out))

    def defer(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in the last exchange, where only this rank would know of
        its error: the first one is kept and raised by :meth:`check` after the exchange."""
        if self._deferred is not None:
            return None
        try:
            return fn(*args, **kwargs)
        except _DATA_ERRORS as exc:
            self._deferred = exc
            return None

    def check(self) -> None:
        """Raise, after the call's last exchange, the same ValueError on every rank that knows
        of a failure (all or none), then any error deferred on this rank alone."""
        if self.any:
            reasons = self.comm.allgather(self.reason)
            ranks = [r for r, t in enumerate(reasons) if t]
            who = f"rank {ranks[0]}" if len(ranks) == 1 else "ranks " + ", ".join(map(str, ranks))
            text = "; ".join(f"rank {r} could not {reasons[r]}" for r in ranks)
            raise ValueError(
                f"{self.kind} ({self.name}) failed on {who}: {text or 'no reason given'}"
            )
        if self._deferred is not None:
            raise self._deferred
