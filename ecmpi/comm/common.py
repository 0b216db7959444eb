"""What every collective shares: the library-owned communicator, argument
checks, the cross-rank agreement check, chunking and seeds.

All ecmpi traffic runs on a duplicate of the user's communicator that the
library owns, so it never matches a message of the user's. The duplicate is
cached on the user's communicator with MPI attribute caching
(``Create_keyval``/``Set_attr``) and freed together with it.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..compress.base import Compressor
from ..compress.base import compressor as make_compressor
from ..compress.payload import dtype_code
from ..rng import SeedLike

__all__ = [
    "agree",
    "as_compressor",
    "check_root",
    "check_vector",
    "chunk_bounds",
    "fixed_size",
    "library_comm",
    "seed_parts",
    "wire_size",
]

_KEYVAL: int | None = None  # attribute: user comm -> its library duplicate
_OWNED: int | None = None  # attribute: marks a library duplicate


def _free_duplicate(_comm: Any, _keyval: int, dup: Any) -> None:
    if dup is not None and not dup.is_predefined and dup != _comm:
        dup.Free()


def _keyvals() -> tuple[int, int]:
    global _KEYVAL, _OWNED
    from mpi4py import MPI

    if _KEYVAL is None:
        _KEYVAL = MPI.Comm.Create_keyval(delete_fn=_free_duplicate)
        _OWNED = MPI.Comm.Create_keyval()
    return _KEYVAL, _OWNED


def library_comm(comm: Any = None) -> Any:
    """The library-owned duplicate of ``comm`` (``None`` means ``COMM_WORLD``).

    The first call on a communicator is collective over it (``MPI_Comm_dup``);
    later calls return the cached duplicate. A communicator that is already a
    library duplicate is returned as is.

    Raises:
        TypeError: ``comm`` is not an mpi4py intracommunicator.
        ValueError: ``comm`` is ``COMM_NULL``.
    """
    from mpi4py import MPI

    if comm is None:
        comm = MPI.COMM_WORLD
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm must be an mpi4py communicator, got {type(comm).__name__}")
    if comm == MPI.COMM_NULL:
        raise ValueError("comm is MPI.COMM_NULL")
    if comm.Is_inter():
        raise TypeError("comm is an intercommunicator; ecmpi collectives need an intracommunicator")
    keyval, owned = _keyvals()
    if comm.Get_attr(owned):
        return comm
    dup = comm.Get_attr(keyval)
    if dup is None:
        dup = comm.Dup()
        dup.Set_attr(owned, True)
        comm.Set_attr(keyval, dup)
    return dup


def check_vector(x: Any, name: str = "x") -> Any:
    """Validate a 1-D, non-empty float32/float64 vector (NumPy or CuPy).

    Raises:
        TypeError: not an array, or another dtype.
        ValueError: not 1-D, or empty.
    """
    if not hasattr(x, "dtype") or not hasattr(x, "ndim"):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(x).__name__}")
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    dtype_code(x.dtype)  # TypeError for anything but float32/float64
    return x


def check_root(comm: Any, root: Any) -> int:
    """Validate a root rank of ``comm``.

    Raises:
        TypeError: not an int.
        ValueError: outside ``0 .. comm.size - 1``.
    """
    if isinstance(root, bool) or not isinstance(root, (int, np.integer)):
        raise TypeError(f"root must be an int rank, got {root!r}")
    if not 0 <= root < comm.size:
        raise ValueError(f"root {root} is not a rank of the communicator (0..{comm.size - 1})")
    return int(root)


def as_compressor(spec: Any, what: str = "compressor") -> Compressor:
    """A :class:`Compressor` from an instance or a spec string."""
    if isinstance(spec, Compressor):
        return spec
    if isinstance(spec, str):
        return make_compressor(spec)
    raise TypeError(f"{what} must be an ecmpi Compressor or a spec string, got {spec!r}")


def fixed_size(c: Compressor) -> bool:
    """Whether ``c``'s payload size is a function of the length alone.

    A compressor whose payload size also depends on the data (e.g. a variable
    number of nonzeros) sets the class attribute ``fixed_size = False``; the
    collectives then exchange sizes first (the ``v`` variants of MPI calls).
    """
    return bool(getattr(c, "fixed_size", True))


def wire_size(c: Compressor, n: int, dtype: Any) -> int:
    """Bytes of ``c``'s payload for ``n`` entries (0 for an empty chunk, which is not sent)."""
    return c.wire_nbytes(n, dtype) if n > 0 else 0


def seed_parts(seed: SeedLike) -> tuple[int, ...]:
    """The seed as a tuple of non-negative ints (collectives append phase and chunk ids)."""
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError("seed must be an int or a tuple of ints, not bool")
    if isinstance(seed, (int, np.integer)):
        parts = (int(seed),)
    else:
        try:
            parts = tuple(int(v) for v in seed)
        except TypeError as exc:
            raise TypeError(f"seed must be an int or a tuple of ints, got {seed!r}") from exc
    if not parts or any(p < 0 for p in parts):
        raise ValueError(f"seed must be a non-negative int or a non-empty tuple of them: {seed!r}")
    return parts


def seed_fingerprint(parts: tuple[int, ...]) -> int:
    """A 62-bit hash of a seed tuple (for the agreement check)."""
    raw = ",".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little") >> 2


def chunk_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``parts`` contiguous chunks whose lengths differ by at most 1.

    The first ``n % parts`` chunks are one longer; chunks are empty when ``n < parts``.
    """
    if parts <= 0:
        raise ValueError(f"number of chunks must be positive, got {parts}")
    base, extra = divmod(int(n), parts)
    out, start = [], 0
    for j in range(parts):
        stop = start + base + (1 if j < extra else 0)
        out.append((start, stop))
        start = stop
    return out


def agree(
    comm: Any, fields: dict[str, int], gate: str | None = None, labels: dict | None = None
) -> None:
    """Raise the same ValueError on every rank unless all ranks passed equal ``fields``.

    One ``Allreduce(MAX)`` of ``[v, -v]`` (int64) yields each field's max and min.
    Every rank must pass the same keys in the same order. If the field ``gate``
    differs (e.g. some ranks had invalid arguments), only it is reported. A field
    with an entry in ``labels`` (the readable value behind a fingerprint) is
    reported as each rank's label, gathered on the failure path only.
    """
    from mpi4py import MPI

    names = list(fields)
    vals = np.array([int(fields[k]) for k in names], dtype=np.int64)
    both = np.concatenate([vals, -vals])
    out = np.empty_like(both)
    comm.Allreduce(both, out, op=MPI.MAX)
    hi, lo = out[: len(names)], -out[len(names) :]
    diff = [f"{k} (min {lo[i]}, max {hi[i]})" for i, k in enumerate(names) if hi[i] != lo[i]]
    if gate is not None and any(d.startswith(f"{gate} (") for d in diff):
        diff = [d for d in diff if d.startswith(f"{gate} (")]
    if diff and labels and not (gate is not None and diff[0].startswith(f"{gate} (")):
        named = [k for i, k in enumerate(names) if k in labels and hi[i] != lo[i]]
        every = comm.allgather({k: str(labels[k]) for k in named})
        for k in named:
            by_value: dict[str, list[str]] = {}
            for rank, got in enumerate(every):
                by_value.setdefault(got.get(k, "?"), []).append(str(rank))
            shown = "; ".join(
                f"{v} on rank{'s' if len(rs) > 1 else ''} {', '.join(rs[:4])}"
                + (f" ({len(rs)} ranks)" if len(rs) > 4 else "")
                for v, rs in by_value.items()
            )
            diff = [f"{k} ({shown})" if d.startswith(f"{k} (") else d for d in diff]
    if diff:
        raise ValueError(
            "ranks disagree on the arguments of a collective call: "
            + "; ".join(diff)
            + f" across {comm.size} ranks"
        )
