"""``hier``: a two-level allreduce for nodes that hold several ranks.

With ``L`` ranks per node (local rank ``l``) and ``N`` nodes:

1. Inside each node, ``MPI_Reduce_scatter`` of the uncompressed vector: local
   rank ``l`` gets the node's sum of slice ``l`` (``chunk_bounds(d, L)``).
   This traffic stays in the node (shared memory on a real cluster).
2. Between nodes, the ranks of equal local rank (one per node) reduce their
   slice with a compressed collective: ``sra-int`` for qsgd and terngrad
   (``requantize`` passed on), ``sra`` for every other codec; seed
   ``(seed..., 6, l)``, error feedback on the slice. An error there (which
   every rank of the group raises) reaches every rank through one small
   intra-node ``allgather``.
   With a single node nothing is compressed (the result is the exact sum).
3. Inside each node, ``MPI_Allgatherv`` of the reduced slices. Every rank of
   a slice's group holds the same bits after step 2, so all ranks agree.

Node membership comes from MPI (``MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)``)
unless overridden: the keyword ``node_size`` of :func:`ecmpi.allreduce`, else
the environment variable ``ECMPI_NODE_SIZE``; an override of ``L`` puts ranks
``kL .. kL + L - 1`` on node ``k`` (so an emulated cluster can model 2 nodes x
2 ranks). Every node must hold the same number of ranks.

Only ``N`` ranks per slice share the compressed phase, so its wire volume per
rank is ``2(N-1)/N`` of a ``d/L`` vector's codes, ``1/L`` of a flat
collective's on the inter-node link, and coding is ``d/L`` entries per rank.

Cost per call (:func:`counts`, the inter-node link; ``n`` entries, ``P`` ranks,
the node size from ``ECMPI_NODE_SIZE`` or 1): the counts of ``sra`` (or
``sra-int``) for ``n/L`` entries on ``N = P/L`` ranks, plus ``2 ceil(log2 L)``
intra-node messages (their bytes are not on the inter-node link).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from .._backend import array_module, is_device_array, to_host
from ..compress.base import Compressor
from ..compress.base import compressor as make_compressor
from .codesum import CodeSum
from .common import chunk_bounds
from .registry import COLLECTIVES, Counts, register
from .residuals import CollectiveFeedback
from .stats import CommStats

__all__ = ["ENV_NODE_SIZE", "counts", "hier_allreduce", "node_comms", "node_size_from_env"]

PHASE = 6
#: the environment variable that overrides the ranks per node
ENV_NODE_SIZE = "ECMPI_NODE_SIZE"
_CACHE: dict[tuple[int, int], tuple[Any, Any]] = {}


def node_size_from_env() -> int | None:
    """``ECMPI_NODE_SIZE`` as a positive int, or None when unset.

    Raises:
        ValueError: set to anything but a positive integer.
    """
    raw = os.environ.get(ENV_NODE_SIZE, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value <= 0:
        raise ValueError(f"{ENV_NODE_SIZE} must be a positive int (ranks per node), got {raw!r}")
    return value


def node_comms(comm: Any, node_size: int | None = None) -> tuple[Any, Any]:
    """``(intra, inter)``: the ranks of this node, and the ranks of equal local rank.

    Collective over ``comm`` on first use for a given node size (cached after).
    ``node_size`` (else ``ECMPI_NODE_SIZE``) overrides MPI's shared-memory split.

    Raises:
        ValueError: a node size that does not divide the ranks, or nodes of unequal size.
    """
    from mpi4py import MPI

    size, rank = comm.size, comm.rank
    if node_size is None:
        node_size = node_size_from_env()
    key = (MPI._handleof(comm), node_size or 0)
    if key in _CACHE:
        return _CACHE[key]
    if node_size is not None:
        if size % node_size:
            raise ValueError(
                f"node size {node_size} does not divide the {size} ranks (every node must "
                "hold the same number of ranks)"
            )
        intra = comm.Split(color=rank // node_size, key=rank)
    else:
        intra = comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)
    sizes = set(comm.allgather(intra.size))
    if len(sizes) != 1:
        intra.Free()
        raise ValueError(
            f"nodes hold different numbers of ranks ({sorted(sizes)}); hier needs equal nodes "
            f"(set {ENV_NODE_SIZE} or node_size to override)"
        )
    inter = comm.Split(color=intra.rank, key=rank)
    _CACHE[key] = (intra, inter)
    return intra, inter


def _inner(c: Compressor) -> str:
    return "sra-int" if CodeSum.accepts(c) else "sra"


def counts(
    n: float,
    P: int,
    wire: Callable[[float], float],
    *,
    spec: str = "",
    node_size: int | None = None,
    requantize: bool = False,
) -> Counts:
    """The inter-node counts of one call (module docstring)."""
    L = node_size or node_size_from_env() or 1
    N = max(1, P // L)
    try:
        name = _inner(make_compressor(spec))
    except ValueError:
        name = "sra"
    entry = COLLECTIVES[name]
    kw: dict[str, Any] = {"spec": spec} if name == "sra-int" else {}
    if N > 1:
        k = entry.counts(n / L, N, wire, **kw)
    else:
        k = Counts(0.0, 0.0, n / L if name == "sra-int" else 0.0, 0.0)
    intra = 2.0 * math.ceil(math.log2(L)) if L > 1 else 0.0
    return Counts(k.messages + intra, k.bytes, k.encoded, k.decoded)


@register("hier", id=6, options=("node_size", "requantize"), counts=counts)
def hier_allreduce(
    x: Any,
    c: Compressor,
    comm: Any,
    *,
    average: bool,
    seed: tuple[int, ...],
    feedback: CollectiveFeedback | None,
    stats: CommStats,
    node_size: int | None = None,
    requantize: bool = False,
) -> Any:
    """Sum (or mean) of ``x``: uncompressed inside nodes, compressed between (module docstring)."""
    from mpi4py import MPI

    intra, inter = node_comms(comm, node_size)
    host = to_host(x)
    d, L, lr = host.shape[0], intra.size, intra.rank
    bounds = chunk_bounds(d, L)
    lengths = [b - a for a, b in bounds]
    offsets = [a for a, _ in bounds]
    item = host.dtype.itemsize
    part = np.empty(lengths[lr], dtype=host.dtype)
    with stats.timer("communicate"):
        intra.Reduce_scatter(np.ascontiguousarray(host), part, recvcounts=lengths, op=MPI.SUM)
    if L > 1:
        others = sum(lengths) - lengths[lr]
        stats.sent(item * (others + (L - 1) * lengths[lr]), messages=2 * (L - 1))
        stats.received(item * (others + (L - 1) * lengths[lr]))
    reduced, error = part, None
    if lengths[lr] and inter.size == 1:  # one node: nothing crosses a node boundary
        if average:
            reduced = part / comm.size
    elif lengths[lr]:
        entry = COLLECTIVES[_inner(c)]
        opts = {"requantize": requantize} if "requantize" in entry.options else {}
        try:
            reduced = entry.run(
                part,
                c,
                inter,
                average=False,
                seed=(*seed, PHASE, lr),
                feedback=feedback,
                stats=stats,
                **opts,
            )
        except ValueError as exc:  # raised by every rank of this slice's group
            error = str(exc)
        if average and error is None:
            reduced = reduced / comm.size
    if L > 1:  # every node holds a rank of each group: all ranks learn of a failure
        errors = [e for e in intra.allgather(error) if e]
        error = errors[0] if errors else None
    if error is not None:
        raise ValueError(f"hier: {error}")
    out = np.empty(d, dtype=host.dtype)
    with stats.timer("communicate"):
        intra.Allgatherv(reduced, [out, (lengths, offsets)])
    if c.check_finite and not np.isfinite(out).all():  # the same bits on every rank
        bad = int((~np.isfinite(out)).sum())
        raise ValueError(f"allreduce (hier): the sum holds {bad} non-finite entries")
    return array_module(x).asarray(out) if is_device_array(x) else out
