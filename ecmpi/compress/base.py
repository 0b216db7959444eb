"""The compressor interface, the registry and the ``name:key=value`` spec parser.

A compressor maps a 1-D float32/float64 vector to a :class:`Payload` and back::

    c = ecmpi.compressor("qsgd:levels=4,bucket=512")
    p = c.encode(x, seed=(7, step), rank=r)   # same seed and rank -> same bytes
    y = c.decode(p)                           # numpy in -> numpy out

Randomness comes from :mod:`ecmpi.rng`: draws that must differ between
workers (stochastic rounding) are keyed by ``derive(seed, rank)``, draws that
all workers must share (RandK's coordinates) by ``derive(seed)`` alone.
"""

from __future__ import annotations

import hashlib
import inspect
from abc import ABC, abstractmethod
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

from .._backend import array_module
from ..rng import SeedLike
from .payload import CODECS, Header, Payload, dtype_code

__all__ = [
    "Compressor",
    "available",
    "check_bool",
    "check_int",
    "compressor",
    "parse_spec",
    "register",
]

_REGISTRY: dict[str, type[Compressor]] = {}


def gpu_drivers(codec: str) -> Any:
    """The CuPy drivers of ``codec``: :data:`ecmpi.compress.gpu.DRIVERS` ``[codec]``.

    :mod:`ecmpi.compress.gpu` is imported on first use (and CuPy only when a
    driver runs).
    """
    from . import gpu

    return gpu.DRIVERS[codec]


class Compressor(ABC):
    """Base class: validated ``encode``/``decode`` around codec-specific ``_encode``/``_decode``.

    Subclasses set ``name`` (a key of :data:`ecmpi.compress.payload.CODECS`),
    implement :meth:`header` (the exact header for ``n`` entries, which fixes
    the wire size), :meth:`_encode` and :meth:`_decode`, and store their
    constructor arguments as attributes of the same names (:meth:`params`
    reads them back for :attr:`spec`).

    Attributes:
        unbiased: ``E[C(x)] = x`` over the compressor's randomness.
        check_finite: raise ValueError on NaN/Inf input (default) instead of
            producing garbage.
        fixed_size: the payload's size is a function of ``n`` alone; False when
            it depends on the data (then :meth:`wire_nbytes` is an upper bound
            and the collectives exchange sizes first).
    """

    name: ClassVar[str]
    unbiased: bool = False
    fixed_size: bool = True

    def __init__(self, *, check_finite: bool = True):
        self.check_finite = bool(check_finite)

    # -- description ------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """Constructor parameters and their current values."""
        sig = inspect.signature(type(self).__init__)
        return {
            k: getattr(self, k)
            for k in sig.parameters
            if k not in ("self", "check_finite") and hasattr(self, k)
        }

    @property
    def spec(self) -> str:
        """``name:key=value,...``; ``compressor(c.spec)`` rebuilds an equal compressor."""
        items = ",".join(f"{k}={_fmt(v)}" for k, v in self.params().items())
        return f"{self.name}:{items}" if items else self.name

    def signature(self) -> int:
        """A 63-bit fingerprint of the spec, for cheap cross-rank agreement checks."""
        digest = hashlib.blake2b(self.spec.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") >> 1

    def __repr__(self) -> str:
        return f"ecmpi.compressor({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Compressor) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    @property
    def codec(self) -> int:
        return CODECS[self.name]

    # -- properties used by algorithms ----------------------------------------------
    def omega(self, n: int) -> float:
        """Variance factor: ``E||C(x) - x||^2 <= omega ||x||^2`` (unbiased codecs). inf if none."""
        return 0.0 if self.is_identity else float("inf")

    def delta(self, n: int) -> float:
        """Contraction: ``E||C(x) - x||^2 <= (1 - delta) ||x||^2``; 0 if not contractive."""
        if self.is_identity:
            return 1.0
        om = self.omega(n)
        return 1.0 / (om + 1.0) if self.unbiased and np.isfinite(om) else 0.0

    @property
    def is_identity(self) -> bool:
        """True when decode(encode(x)) == x exactly (``none``)."""
        return False

    # -- wire -------------------------------------------------------------------
    @abstractmethod
    def header(self, n: int, dtype: Any) -> Header:
        """The header of the payload for ``n`` entries of ``dtype`` (fixes its size)."""

    def wire_nbytes(self, n: int, dtype: Any = np.float32) -> int:
        """Exact bytes on the wire for a vector of ``n`` entries of ``dtype`` (an upper
        bound when :attr:`fixed_size` is False)."""
        return self.header(n, dtype).total_nbytes

    # -- encode/decode ------------------------------------------------------------
    def encode(self, x: Any, *, seed: SeedLike = 0, rank: int = 0) -> Payload:
        """Compress ``x`` (1-D float32/float64, NumPy or CuPy) into one payload.

        Args:
            x: the vector.
            seed: int or tuple of ints keying every random draw (see :mod:`ecmpi.rng`).
            rank: the worker's id; mixed into draws that must be independent per worker.
        """
        x = self._check_input(x)
        p = self._encode(x, seed, int(rank))
        if self.check_finite and p.header.nscales:
            self._require_finite_scales(p)
        return p.seal()

    def _require_finite_scales(self, p: Payload) -> None:
        """ValueError when a finite input made a scale overflow its float32 field."""
        if not bool(array_module(p.buf).isfinite(p.scales).all()):
            raise ValueError(
                f"{self.name}: input too large for the codec's float32 scales "
                "(a bucket norm exceeds 3.4e38); scale the vector down"
            )

    def decode(self, payload: Payload, *, out: Any = None) -> Any:
        """Decompress into a new array (or into ``out``), on the payload's backend."""
        self.check_payload(payload)
        xp = array_module(payload.buf)
        h = payload.header
        if out is None:
            out = xp.empty(h.n, dtype=h.out_dtype)
        elif out.shape != (h.n,) or out.dtype != h.out_dtype:
            raise ValueError(
                f"out must have shape ({h.n},) and dtype {h.out_dtype}, got {out.shape} {out.dtype}"
            )
        self._decode(payload, out)
        return out

    def decode_add(self, payload: Payload, acc: Any) -> Any:
        """``acc += decode(payload)``; codecs override with a fused version."""
        acc += self.decode(payload).astype(acc.dtype, copy=False)
        return acc

    def _check_acc(self, payload: Payload, acc: Any) -> None:
        """Checks of a fused ``decode_add``: the payload is this codec's, ``acc`` fits it."""
        self.check_payload(payload)
        if acc.shape != (payload.n,):
            raise ValueError(f"acc must have shape ({payload.n},), got {acc.shape}")

    def roundtrip(self, x: Any, *, seed: SeedLike = 0, rank: int = 0) -> Any:
        """``decode(encode(x))``."""
        return self.decode(self.encode(x, seed=seed, rank=rank))

    def warm_up(self, like: Any) -> None:
        """Compile (or load from the disk cache) this codec's kernels for arrays like ``like``.

        Encodes, decodes and decode-adds a 64-entry vector of ``like``'s dtype on
        ``like``'s device, so a timed loop does not count the one-time JIT
        compilation (numba on the CPU, NVRTC on the GPU) in its first step.
        """
        xp = array_module(like)
        x = xp.linspace(-1.0, 1.0, 64).astype(like.dtype)
        p = self.encode(x, seed=0)
        self.decode_add(p, self.decode(p))

    @abstractmethod
    def _encode(self, x: Any, seed: SeedLike, rank: int) -> Payload: ...

    @abstractmethod
    def _decode(self, payload: Payload, out: Any) -> None: ...

    # -- validation -----------------------------------------------------------------
    def _check_input(self, x: Any) -> Any:
        xp = array_module(x)
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
            xp = np
        if x.ndim != 1:
            raise ValueError(f"{self.name}: input must be a 1-D array, got shape {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{self.name}: input is empty")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{self.name}: input dtype must be float32 or float64, got {x.dtype}")
        if self.check_finite and not self._kernel_checks_finite(x):
            self._require_finite(x)
        if not x.flags.c_contiguous:
            x = xp.ascontiguousarray(x)
        return x

    def _kernel_checks_finite(self, x: Any) -> bool:
        """True when ``_encode`` itself sees every NaN/Inf of ``x`` (and then calls
        :meth:`_require_finite`), so the separate pass over ``x`` can be skipped."""
        return False

    def _require_finite(self, x: Any) -> None:
        """ValueError naming the count of NaN/Inf entries of ``x``, if any."""
        xp = array_module(x)
        if not bool(xp.isfinite(x).all()):
            bad = int((~xp.isfinite(x)).sum())
            raise ValueError(
                f"{self.name}: input holds {bad} NaN/Inf entries "
                "(pass check_finite=False to compress them anyway)"
            )

    def check_payload(self, payload: Payload) -> None:
        """Raise ValueError unless ``payload`` was made by a compressor equal to this one."""
        if not isinstance(payload, Payload):
            raise TypeError(f"{self.name}.decode takes a Payload, got {type(payload).__name__}")
        h = payload.header
        if h.codec != self.codec:
            raise ValueError(
                f"payload was encoded by '{h.codec_name}', cannot decode it with '{self.spec}'"
            )
        want = self._expected_header(h)
        diff = [
            f"{f.name}={getattr(h, f.name)} (expected {getattr(want, f.name)})"
            for f in fields(Header)
            if getattr(h, f.name) != getattr(want, f.name)
        ]
        if diff:
            raise ValueError(f"payload does not match compressor '{self.spec}': " + ", ".join(diff))
        if payload.nbytes != want.total_nbytes:
            raise ValueError(f"payload holds {payload.nbytes} bytes, expected {want.total_nbytes}")

    def _expected_header(self, h: Header) -> Header:
        """The header this compressor writes for ``h.n`` entries of ``h``'s dtype
        (codecs whose size depends on the data take their data-dependent fields from ``h``)."""
        return self.header(h.n, h.out_dtype)

    def _new_header(self, n: int, dtype: Any, **kw: Any) -> Header:
        if n <= 0:
            raise ValueError(f"{self.name}: vector length must be positive, got {n}")
        return Header(codec=self.codec, dtype=dtype_code(dtype), n=int(n), **kw)


def check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``, else TypeError (not an int) or ValueError (range)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{owner}: {name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{owner}: {name} must be in {lo}..{hi}, got {value}")
    return int(value)


def check_bool(owner: str, name: str, value: Any) -> bool:
    """``value`` as a bool, else TypeError."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{owner}: {name} must be true or false, got {value!r}")
    return bool(value)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    return str(v)


def register(cls: type[Compressor]) -> type[Compressor]:
    """Class decorator adding a compressor to the registry under ``cls.name``."""
    if cls.name not in CODECS:
        raise ValueError(f"compressor name {cls.name!r} has no codec id in payload.CODECS")
    _REGISTRY[cls.name] = cls
    return cls


def available() -> list[str]:
    """Registered compressor names."""
    return sorted(_REGISTRY)


def _parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip()


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """Split ``"name:key=value,key=value"`` into ``(name, params)``.

    Values are read as bool (true/false), none, int, float, or else string.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"compressor spec must be a non-empty string, got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    params: dict[str, Any] = {}
    if rest.strip():
        for item in rest.split(","):
            key, eq, val = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"bad item {item!r} in compressor spec {spec!r}; use key=value")
            if key.strip() in params:
                raise ValueError(f"parameter {key.strip()!r} given twice in {spec!r}")
            params[key.strip()] = _parse_value(val)
    return name.strip().lower(), params


def compressor(spec: str | Compressor, **params: Any) -> Compressor:
    """Build a compressor from a name or spec string plus keyword parameters.

    ``compressor("qsgd:levels=4", bucket=512)`` and
    ``compressor("qsgd", levels=4, bucket=512)`` are the same.

    Raises:
        ValueError: unknown name or parameter, or a parameter out of range.
    """
    if isinstance(spec, Compressor):
        if params:
            return compressor(spec.spec, **params)
        return spec
    name, from_spec = parse_spec(spec)
    dup = set(from_spec) & set(params)
    if dup:
        raise ValueError(f"parameter(s) {sorted(dup)} given both in the spec and as keywords")
    from_spec.update(params)
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown compressor {name!r}; available: {', '.join(available())}"
        ) from None
    sig = inspect.signature(cls.__init__)
    valid = [k for k in sig.parameters if k != "self"]
    unknown = [k for k in from_spec if k not in valid]
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for compressor {name!r}; valid: {', '.join(valid)}"
        )
    return cls(**from_spec)
