"""The registry of collectives: one entry per collective, filled by ``@register``.

Every collective is one module of :mod:`ecmpi.comm` whose function is decorated
with :func:`register`; the entry says all that the rest of the package needs:

- ``name``: the value of ``allreduce(..., collective=NAME)``, ``--collective`` of
  ``ecmpi run`` and ``--collectives`` of ``ecmpi bench allreduce``;
- ``id``: the collective's code in the cross-rank agreement check. Ids are
  never reused: a removed collective's id goes into :data:`RETIRED_IDS`;
- ``run``: ``run(x, c, comm, *, average, seed, feedback, stats, **options)``;
- ``options``: which of ``allreduce``'s collective-specific keywords
  (``root``, ``downlink``, ``segment``, ``requantize``, ``node_size``) it
  takes; the others are neither passed nor compared across ranks;
- ``counts``: its row of the alpha-beta-gamma model (:mod:`ecmpi.bench.model`),
  ``counts(n, P, wire, **options) -> Counts``, with ``wire(m)`` the payload bytes
  for ``m`` entries. The formula lives beside the collective, so the pattern and
  its cost are read (and changed) in one file; the model adds only the network,
  the codec's coding costs and ``MPI_Allreduce``'s row;
- ``accepts``: ``accepts(compressor) -> bool`` for a collective that runs with
  some compressors only (``sra-int``: qsgd and terngrad); the benchmarks skip
  the others (:meth:`Collective.supports`).

:data:`COLLECTIVES` maps name -> entry and iterates in id order
(``allgather``, ``sra``, ``ring``, ``ps``). Adding a collective: write
``ecmpi/comm/NAME.py`` with a decorated function and add the module to the
registering import of ``ecmpi/comm/__init__.py``; dispatch, the command-line
choices, the benchmarks and the model follow from the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["COLLECTIVES", "OPTIONS", "RETIRED_IDS", "Collective", "Counts", "get", "register"]

#: the collective-specific keywords of :func:`ecmpi.allreduce`
OPTIONS = ("root", "downlink", "segment", "requantize", "node_size")
#: agreement ids of removed collectives (never handed out again)
RETIRED_IDS: frozenset[int] = frozenset()


@dataclass(frozen=True)
class Counts:
    """What one rank does in one call: messages, bytes on its busiest link, entries coded."""

    messages: float
    bytes: float
    encoded: float
    decoded: float


@dataclass(frozen=True)
class Collective:
    """One registered collective (see the module docstring)."""

    name: str
    id: int
    run: Callable[..., Any]
    options: tuple[str, ...] = ()
    counts: Callable[..., Counts] | None = None
    accepts: Callable[[Any], bool] | None = None

    def supports(self, c: Any) -> bool:
        """Whether the collective runs with compressor ``c`` (all do, unless ``accepts`` says)."""
        return self.accepts is None or bool(self.accepts(c))


#: name -> entry, in id order
COLLECTIVES: dict[str, Collective] = {}


def register(
    name: str,
    *,
    id: int,
    options: tuple[str, ...] = (),
    counts: Callable[..., Counts] | None = None,
    accepts: Callable[[Any], bool] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register the decorated function as the collective ``name``.

    Raises:
        ValueError: a name or id already taken, a retired id, or an unknown option.
    """
    if isinstance(id, bool) or not isinstance(id, int) or id <= 0:
        raise ValueError(f"collective id must be a positive int, got {id!r}")
    bad = [o for o in options if o not in OPTIONS]
    if bad:
        raise ValueError(f"unknown collective option(s) {bad}; allreduce takes {OPTIONS}")

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in COLLECTIVES:
            raise ValueError(f"collective {name!r} is already registered")
        taken = {e.id: e.name for e in COLLECTIVES.values()}
        if id in taken or id in RETIRED_IDS:
            raise ValueError(f"collective id {id} is taken ({taken.get(id, 'retired')})")
        entry = Collective(name, id, fn, tuple(options), counts, accepts)
        items = sorted([*COLLECTIVES.values(), entry], key=lambda e: e.id)
        COLLECTIVES.clear()
        COLLECTIVES.update((e.name, e) for e in items)
        return fn

    return deco


def get(name: Any) -> Collective:
    """The entry of ``name``.

    Raises:
        ValueError: not a registered collective (the message lists them).
    """
    if not isinstance(name, str) or name not in COLLECTIVES:
        raise ValueError(f"unknown collective {name!r}; choose one of {', '.join(COLLECTIVES)}")
    return COLLECTIVES[name]
