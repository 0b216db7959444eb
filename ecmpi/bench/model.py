"""The alpha-beta-gamma cost model of allreduce, per collective and compressor.

Hockney's model (alpha-beta, Hockney 1994; Thakur, Rabenseifner and Gropp
2005 for MPI's collectives) extended by a per-entry compute cost, as in the
analyses of compressed allreduce (Agarwal et al. 2022, "On the utility of
gradient compression in distributed training systems"). For one call on P
ranks, each with its own full-duplex link, a vector of n float32 entries and a
codec whose payload for m entries is ``w(m) = h + c*m`` bytes::

    T = alpha * messages + beta * bytes + gamma_e * encoded + gamma_d * decoded
        + delta_e + delta_d

- ``alpha``: seconds per message a rank sends (latency and per-message software cost);
- ``beta``: seconds per payload byte through the busiest link in one
  direction (``8/rate`` on an ideal link; the fit absorbs TCP/IP framing);
- ``gamma_e``, ``gamma_d``: seconds per entry encoded, and per entry decoded
  (decode includes adding into the sum);
- ``delta_e``, ``delta_d``: fixed seconds per call (Python, allocation).

Counts per collective (one rank, sequential phases, no overlap) live beside
each collective, as its registry entry's ``counts`` (:data:`ecmpi.comm.COLLECTIVES`;
the module docstrings of :mod:`ecmpi.comm.allgather`, ``sra``, ``ring`` and
``ps`` state the formulas, and docs/network.md tabulates them). This module
adds the one row that is not an ecmpi collective::

    MPI_Allreduce:  messages 2 ceil(log2 P), bytes 2 (P-1)/P * 4n, decoded (P-1)/P * n (the sum)

MPI_Allreduce is modelled as MPICH's large-message algorithm (Rabenseifner:
recursive-halving reduce-scatter, recursive-doubling allgather); its
reduction cost (``gamma_sum`` per entry) is folded into the decode column.

Assumptions, stated plainly: every rank has one full-duplex link and the
switch is non-blocking (no contention beyond the links); phases do not
overlap (the ring's segment pipelining makes its measured time lower); the
per-entry costs do not depend on P (on the emulated cluster they do, because
4 ranks share 2 cores: they are fitted per P); payload sizes are the exact
wire sizes of the codec (``Compressor.wire_nbytes``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..comm.registry import COLLECTIVES, Counts
from ..comm.ring import DEFAULT_SEGMENT

__all__ = [
    "MODEL_COLLECTIVES",
    "Codec",
    "Counts",
    "Network",
    "break_even_throughput",
    "codec",
    "counts",
    "fit_gamma",
    "fit_mpi_gamma",
    "fit_network",
    "ideal_speedup",
    "predict",
    "predict_rows",
    "predict_seconds",
]

#: what the model predicts: MPI_Allreduce and every registered collective
MODEL_COLLECTIVES = ("MPI_Allreduce", *COLLECTIVES)
#: the ring collective's default segment (entries), :data:`ecmpi.comm.ring.DEFAULT_SEGMENT`
RING_SEGMENT = DEFAULT_SEGMENT
_DEPRECATED = {"MODEL_ALGORITHMS": "MODEL_COLLECTIVES"}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        import warnings

        new = _DEPRECATED[name]
        warnings.warn(
            f"ecmpi.bench.model.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2
        )
        return globals()[new]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Network:
    """Per-message latency ``alpha`` (s) and per-byte time ``beta`` (s/byte) of one link."""

    alpha: float
    beta: float

    @classmethod
    def from_rate(cls, gbit_per_s: float, alpha: float) -> Network:
        """An ideal link: ``beta = 8 / rate``."""
        if gbit_per_s <= 0:
            raise ValueError(f"rate must be positive, got {gbit_per_s}")
        return cls(alpha=float(alpha), beta=8.0 / (gbit_per_s * 1e9))


@dataclass(frozen=True)
class Codec:
    """Wire size ``w(m) = header + per_entry * m`` bytes and compute costs of a compressor.

    Attributes:
        name: the compressor spec.
        header: fixed bytes per payload.
        per_entry: bytes per entry (may be fractional: scales, packed codes).
        gamma_encode, gamma_decode: seconds per entry encoded / decoded.
        delta_encode, delta_decode: fixed seconds per call.
    """

    name: str
    header: float
    per_entry: float
    gamma_encode: float = 0.0
    gamma_decode: float = 0.0
    delta_encode: float = 0.0
    delta_decode: float = 0.0

    def wire(self, m: float) -> float:
        """Payload bytes for ``m`` entries (0 for an empty chunk)."""
        return 0.0 if m <= 0 else self.header + self.per_entry * m


#: the uncompressed float32 vector: 4 bytes per entry, no header
FLOAT32 = Codec("float32", 0.0, 4.0)


def codec(spec: Any, *, n_ref: int = 1 << 20, **costs: float) -> Codec:
    """The :class:`Codec` of a compressor (spec or object), from its exact ``wire_nbytes``.

    ``per_entry = (w(2N) - w(N)) / N`` and ``header = w(N) - per_entry * N`` at
    ``N = n_ref``; exact for every ecmpi codec up to rounding to whole bytes.
    """
    from ..compress.base import compressor

    c = compressor(spec)
    w1, w2 = c.wire_nbytes(n_ref), c.wire_nbytes(2 * n_ref)
    per = (w2 - w1) / n_ref
    name = spec if isinstance(spec, str) else c.spec
    return Codec(name, w1 - per * n_ref, per, **costs)


def _check(n: float, P: int) -> None:
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if isinstance(P, bool) or int(P) != P or P < 1:
        raise ValueError(f"P must be a positive int, got {P!r}")


def counts(collective: str, n: float, P: int, c: Codec = FLOAT32, *, segment: int = RING_SEGMENT):
    """The :class:`Counts` of one call: ``MPI_Allreduce``'s (module docstring) or the
    collective's registry entry's ``counts``.

    Args:
        collective: one of :data:`MODEL_COLLECTIVES`.
        n: float32 entries per rank.
        P: ranks.
        c: the codec (ignored for ``MPI_Allreduce``).
        segment: ring segment length in entries (for a collective taking ``segment``).
    """
    _check(n, P)
    if collective == "MPI_Allreduce":
        if P == 1:
            return Counts(0.0, 0.0, 0.0, 0.0)
        lg = math.ceil(math.log2(P))
        return Counts(2.0 * lg, 2.0 * (P - 1) / P * 4.0 * n, 0.0, (P - 1) / P * n)
    entry = COLLECTIVES.get(collective) if isinstance(collective, str) else None
    if entry is None or entry.counts is None:
        names = [k for k in MODEL_COLLECTIVES if k not in COLLECTIVES or COLLECTIVES[k].counts]
        raise ValueError(f"unknown collective {collective!r}; choose from {', '.join(names)}")
    if P == 1:
        return Counts(0.0, 0.0, 0.0, 0.0)
    kw: dict[str, Any] = {"segment": segment} if "segment" in entry.options else {}
    if "spec" in inspect.signature(entry.counts).parameters:
        kw["spec"] = c.name  # a collective whose counts depend on the codec's parameters
    return entry.counts(n, P, c.wire, **kw)


def predict_seconds(k: Counts, net: Network, c: Codec) -> float:
    """``alpha*messages + beta*bytes + gamma_e*encoded + gamma_d*decoded (+ deltas)``."""
    t = net.alpha * k.messages + net.beta * k.bytes
    if k.encoded:
        t += c.gamma_encode * k.encoded + c.delta_encode
    if k.decoded:
        t += c.gamma_decode * k.decoded + c.delta_decode
    return t


def predict(collective: str, n: float, P: int, net: Network, c: Codec = FLOAT32, **kw: Any):
    """Seconds of one call: :func:`predict_seconds` of :func:`counts`."""
    return predict_seconds(counts(collective, n, P, c, **kw), net, c)


def ideal_speedup(collective: str, n: float, P: int, c: Codec) -> float:
    """Bytes of ``MPI_Allreduce`` over bytes of the compressed collective (busiest link)."""
    return counts("MPI_Allreduce", n, P).bytes / counts(collective, n, P, c).bytes


def break_even_throughput(
    collective: str, n: float, P: int, net: Network, c: Codec, *, mpi_gamma: float = 0.0
) -> float:
    """Input bytes per second (float32) that encode and decode must reach together for the
    compressed collective to tie with ``MPI_Allreduce`` (inf when it cannot, even at zero cost).

    With one per-entry cost ``g`` for encode and decode, ``T(g) = T_comm + g*(E + D)``
    equals ``T_mpi`` at ``g* = (T_mpi - T_comm) / (E + D)``; the throughput is ``4/g*``.
    """
    t_mpi = predict("MPI_Allreduce", n, P, net, replace(FLOAT32, gamma_decode=mpi_gamma))
    k = counts(collective, n, P, c)
    t_comm = net.alpha * k.messages + net.beta * k.bytes
    if t_comm >= t_mpi:
        return math.inf
    return 4.0 * (k.encoded + k.decoded) / (t_mpi - t_comm)


# -- fitting ------------------------------------------------------------------------------
def _lstsq_nonneg(A: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    sol, _ = nnls(A * w[:, None], y * w)
    return sol


def fit_network(rows: Iterable[dict[str, Any]]) -> Network:
    """Least-squares ``alpha, beta`` (non-negative, relative errors) from measured rows.

    Uses ``MPI_Allreduce`` rows (``seconds`` against ``2 ceil(log2 P)`` messages and
    ``bytes_sent``) and the ``communicate_seconds`` of compressed rows (against
    their ``messages`` and ``max(bytes_sent, bytes_received)``); rows of one link rate.
    """
    A, y = [], []
    for r in rows:
        if r["P"] < 2:
            continue
        if r["algorithm"] == "MPI_Allreduce":
            A.append([2 * math.ceil(math.log2(r["P"])), r["bytes_sent"]])
            y.append(r["seconds"])
        elif r.get("communicate_seconds") is not None:
            A.append([r["messages"], max(r["bytes_sent"], r["bytes_received"])])
            y.append(r["communicate_seconds"])
    if len(y) < 2:
        raise ValueError(f"fit_network needs at least 2 usable rows, got {len(y)}")
    A, y = np.asarray(A, float), np.asarray(y, float)
    alpha, beta = _lstsq_nonneg(A, y, 1.0 / np.maximum(y, 1e-9))
    return Network(alpha=float(alpha), beta=float(beta))


def fit_gamma(rows: Iterable[dict[str, Any]], spec: str, P: int | None = None) -> Codec:
    """Per-entry and fixed costs of one compressor from the phase times of measured rows.

    ``encode_seconds ~ delta_e + gamma_e * encoded`` and ``decode_seconds ~ delta_d +
    gamma_d * decoded``, the counts from :func:`counts` for each row's collective and
    size; non-negative least squares on relative errors. ``P`` selects rows of one rank
    count (the costs depend on how many ranks share the cores).
    """
    c = codec(spec)
    E, D, te, td = [], [], [], []
    for r in rows:
        if r["compressor"] != spec or r["algorithm"] == "MPI_Allreduce":
            continue
        if P is not None and r["P"] != P:
            continue
        k = counts(r["algorithm"], r["n"], r["P"], c)
        E.append(k.encoded)
        D.append(k.decoded)
        te.append(r["encode_seconds"])
        td.append(r["decode_seconds"])
    if len(te) < 2:
        raise ValueError(f"fit_gamma({spec!r}, P={P}) needs at least 2 rows, got {len(te)}")
    ge, de = _fit_line(np.asarray(E), np.asarray(te))
    gd, dd = _fit_line(np.asarray(D), np.asarray(td))
    return replace(c, gamma_encode=ge, gamma_decode=gd, delta_encode=de, delta_decode=dd)


def fit_mpi_gamma(rows: Iterable[dict[str, Any]], net: Network, P: int) -> Codec:
    """The reduction cost ``gamma_sum`` of ``MPI_Allreduce`` on ``P`` ranks: the non-negative
    least-squares slope of ``seconds - alpha*messages - beta*bytes`` against ``(P-1)/P * n``."""
    x, y = [], []
    for r in rows:
        if r["algorithm"] == "MPI_Allreduce" and r["P"] == P:
            k = counts("MPI_Allreduce", r["n"], P)
            x.append(k.decoded)
            y.append(r["seconds"] - net.alpha * k.messages - net.beta * k.bytes)
    if not x:
        raise ValueError(f"no MPI_Allreduce rows with P={P}")
    x, y = np.asarray(x, float), np.asarray(y, float)
    g = max(0.0, float(np.dot(x, y) / np.dot(x, x)))
    return replace(FLOAT32, name="mpi", gamma_decode=g)


def _fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Non-negative ``slope, intercept`` of ``y ~ intercept + slope * x`` (relative errors)."""
    A = np.column_stack([x, np.ones_like(x)]).astype(float)
    slope, icpt = _lstsq_nonneg(A, y.astype(float), 1.0 / np.maximum(y, 1e-9))
    return float(slope), float(icpt)


def predict_rows(
    rows: Sequence[dict[str, Any]], nets: dict[str, Network], codecs: dict[tuple[str, int], Codec]
) -> list[float]:
    """Model seconds for measured rows (network by ``rate``, codec by ``(compressor, P)``)."""
    out = []
    for r in rows:
        net = nets[r["rate"]]
        if r["algorithm"] == "MPI_Allreduce":
            c = codecs.get(("mpi", r["P"]), FLOAT32)
        else:
            c = codecs[r["compressor"], r["P"]]
        out.append(predict(r["algorithm"], r["n"], r["P"], net, c))
    return out
