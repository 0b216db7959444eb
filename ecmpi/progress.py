"""Progress display for the run loop (rank 0 only).

On a terminal: one bar redrawn in place (at most ten times a second). In a
file or pipe (a batch job's output): one plain line every ``every`` steps, so
the log stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Progress"]


class Progress:
    """Shows the loop's progress on ``stream``.

    Args:
        total: the step budget.
        stream: where to write (default ``sys.stderr``).
        every: steps between lines when ``stream`` is not a terminal
            (default: about 20 lines per run).
        bar: force the terminal bar on or off (default: ``stream.isatty()``).
    """

    def __init__(
        self,
        total: int,
        stream: TextIO | None = None,
        *,
        every: int | None = None,
        bar: bool | None = None,
    ):
        if total < 0:
            raise ValueError(f"total must be non-negative, got {total}")
        if every is not None and every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.total = int(total)
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.bar = bool(isatty()) if bar is None and callable(isatty) else bool(bar)
        self.every = every or max(1, self.total // 20)
        self._last_draw = 0.0
        self._last_line = -1
        self._t0 = time.perf_counter()

    @staticmethod
    def _fmt(row: dict[str, Any]) -> str:
        parts = []
        sub, loss, bits = row.get("suboptimality"), row.get("loss"), row.get("bits_up")
        if sub is not None and sub == sub:  # NaN != NaN: f* unknown
            parts.append(f"f-f*={sub:.3e}")
        elif loss is not None:
            parts.append(f"loss={loss:.6g}")
        if bits is not None:
            parts.append(f"bits/worker={bits:.3g}")
        return " ".join(parts)

    def update(self, step: int, row: dict[str, Any] | None = None, *, force: bool = False) -> None:
        """Report that ``step`` steps are done; ``row`` is the latest logged row."""
        row = row or {}
        if self.bar:
            now = time.perf_counter()
            if not force and now - self._last_draw < 0.1 and step < self.total:
                return
            self._last_draw = now
            frac = step / self.total if self.total else 1.0
            width = 30
            filled = round(frac * width)
            bar = "#" * filled + "-" * (width - filled)
            self.stream.write(f"\r[{bar}] {step}/{self.total} {self._fmt(row)}\x1b[K")
            self.stream.flush()
        elif (force or step % self.every == 0) and step != self._last_line:
            self._last_line = step
            elapsed = time.perf_counter() - self._t0
            self.stream.write(f"step {step}/{self.total} {elapsed:.1f}s {self._fmt(row)}\n")
            self.stream.flush()

    def close(self, message: str = "") -> None:
        """Finish the display (newline after a bar) and print ``message`` if any."""
        if self.bar:
            self.stream.write("\n")
        if message:
            self.stream.write(message + "\n")
        self.stream.flush()
