"""The wire format: one contiguous, versioned, validated byte buffer per message.

Layout (all integers little-endian)::

    offset size  field
    0      2     magic b"EC"
    2      1     format version (2)
    3      1     codec id (see CODECS)
    4      1     dtype of the decoded vector (0 float32, 1 float64)
    5      1     code width in bits (0 when there are no codes, else 1..16)
    6      1     value format of the values section (0 none, 1 f16, 2 bf16, 3 f32, 4 f64)
    7      1     codec flags (meaning per codec; e.g. stochastic, l2/linf, unbiased)
    8      8     n, the length of the decoded vector
    16     8     ncodes, number of packed codes
    24     4     bucket size (0 when the codec has none)
    28     4     codec parameter (levels for qsgd, k for topk/randk, ...)
    32     4     nscales, float32 scales
    36     4     nidx, uint32 indices
    40     4     nvals, entries in the values section
    44     4     CRC-32C of bytes 0..43 followed by every byte from 48 on
    48     ...   values  (nvals * itemsize, zero-padded to a multiple of 4 bytes)
           ...   scales  (nscales * 4, float32)
           ...   indices (nidx * 4, uint32)
           ...   codes   (ceil(ncodes * bits / 8) bytes, see packing.py)

The total length is a function of the header alone, so :meth:`Payload.from_bytes`
checks the length, magic, version and every field's range before any section is
touched, then the checksum over the whole message (header and body, so a flipped
bit anywhere is caught). A receiver that knows
the decoded length passes it (``n=``): a header claiming another length is
refused before anything is allocated. :attr:`Payload.nbytes` is the exact size
on the wire.

Codec ``qsgd-elias`` (9) keeps this table: its codes section is a bit stream
of ``ncodes`` bits stored as 1-bit codes (``bits = 1``), Elias gamma codes of
the nonzero levels (:mod:`ecmpi.compress.elias`), so the size depends on the
data but is still fixed by the header. :meth:`Payload.from_bytes` parses the
stream too (:data:`BODY_CHECKS`) and refuses one that does not decode into
exactly ``n`` entries.

Version 1 (the same table, its checksum over bytes 0..43 only) is refused: a
payload is a message between the ranks of one job, never stored, so both ends
always run the same format.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from crc32c import crc32c

from .._backend import array_module
from .packing import MAX_WIDTH, packed_nbytes

__all__ = [
    "BODY_CHECKS",
    "CODECS",
    "DTYPES",
    "HEADER_SIZE",
    "VALUE_FORMATS",
    "VERSION",
    "Header",
    "Payload",
    "register_body_check",
]

MAGIC = b"EC"
VERSION = 2
HEADER_SIZE = 48
_STRUCT = struct.Struct("<2sBBBBBBQQIIIII")  # without the trailing crc
assert _STRUCT.size == HEADER_SIZE - 4

#: codec name -> id; ids are part of the format and never reused.
CODECS: dict[str, int] = {
    "none": 0,
    "fp16": 1,
    "bf16": 2,
    "qsgd": 3,
    "sign": 4,
    "terngrad": 5,
    "topk": 6,
    "randk": 7,
    "uniform": 8,
    "qsgd-elias": 9,
}
_CODEC_NAMES = {v: k for k, v in CODECS.items()}

#: codec id -> a check of a variable-length body (raises ValueError), run by
#: :meth:`Payload.from_bytes` after the checksum; see :func:`register_body_check`
BODY_CHECKS: dict[int, Callable[[Payload], None]] = {}


def register_body_check(codec: int, check: Callable[[Payload], None]) -> None:
    """Have :meth:`Payload.from_bytes` run ``check(payload)`` on every payload of ``codec``.

    For codecs whose codes section is a variable-length stream (``qsgd-elias``):
    the header fixes the stream's length, the check its contents.
    """
    BODY_CHECKS[int(codec)] = check


#: dtype code -> numpy dtype of the decoded vector
DTYPES: dict[int, np.dtype] = {0: np.dtype(np.float32), 1: np.dtype(np.float64)}
_DTYPE_CODES = {v: k for k, v in DTYPES.items()}

#: value format code -> (name, itemsize)
VALUE_FORMATS: dict[int, tuple[str, int]] = {
    0: ("none", 0),
    1: ("f16", 2),
    2: ("bf16", 2),
    3: ("f32", 4),
    4: ("f64", 8),
}
_U32 = 0xFFFFFFFF
#: without a stated length, a payload may describe at most this many entries per
#: byte, or ``_FREE_ENTRIES`` (so a lying header of a sparse codec cannot make
#: the decoder allocate gigabytes); pass ``n=`` to accept any length
_ENTRIES_PER_BYTE = 4096
_FREE_ENTRIES = 1 << 24


def dtype_code(dtype: Any) -> int:
    """The header's dtype code for a float32/float64 dtype."""
    dt = np.dtype(dtype)
    try:
        return _DTYPE_CODES[dt]
    except KeyError:
        raise TypeError(f"unsupported dtype {dt}; ecmpi compresses float32 and float64") from None


@dataclass(frozen=True)
class Header:
    """The fixed 48-byte header of a payload. See the module docstring."""

    codec: int
    dtype: int
    bits: int = 0
    value_fmt: int = 0
    flags: int = 0
    n: int = 0
    ncodes: int = 0
    bucket: int = 0
    param: int = 0
    nscales: int = 0
    nidx: int = 0
    nvals: int = 0

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range."""
        if self.codec not in _CODEC_NAMES:
            raise ValueError(f"payload header: unknown codec id {self.codec}")
        if self.dtype not in DTYPES:
            raise ValueError(f"payload header: unknown dtype code {self.dtype}")
        if not 0 <= self.bits <= MAX_WIDTH:
            raise ValueError(f"payload header: code width {self.bits} outside 0..{MAX_WIDTH}")
        if self.value_fmt not in VALUE_FORMATS:
            raise ValueError(f"payload header: unknown value format {self.value_fmt}")
        if self.ncodes and not self.bits:
            raise ValueError("payload header: codes present but code width is 0")
        if self.nvals and not self.value_fmt:
            raise ValueError("payload header: values present but value format is 'none'")
        for name in ("nscales", "nidx", "nvals", "bucket", "param"):
            v = getattr(self, name)
            if not 0 <= v <= _U32:
                raise ValueError(f"payload header: {name}={v} out of range")
        if self.n < 0 or self.ncodes < 0:
            raise ValueError("payload header: negative length")

    @property
    def codec_name(self) -> str:
        return _CODEC_NAMES[self.codec]

    @property
    def out_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]

    def section_offsets(self) -> dict[str, tuple[int, int]]:
        """``{section: (start, stop)}`` byte ranges, and ``"end"`` the total size."""
        vsize = VALUE_FORMATS[self.value_fmt][1]
        values = self.nvals * vsize
        values += (-values) % 4
        off = HEADER_SIZE
        out = {}
        for name, size in (
            ("values", values),
            ("scales", 4 * self.nscales),
            ("indices", 4 * self.nidx),
            ("codes", packed_nbytes(self.ncodes, self.bits) if self.bits else 0),
        ):
            out[name] = (off, off + size)
            off += size
        out["end"] = (off, off)
        return out

    @property
    def total_nbytes(self) -> int:
        return self.section_offsets()["end"][0]

    def pack(self) -> bytes:
        """The 48 header bytes, checksum included."""
        self.validate()
        body = _STRUCT.pack(
            MAGIC,
            VERSION,
            self.codec,
            self.dtype,
            self.bits,
            self.value_fmt,
            self.flags,
            self.n,
            self.ncodes,
            self.bucket,
            self.param,
            self.nscales,
            self.nidx,
            self.nvals,
        )
        return body + b"\0\0\0\0"  # the checksum is written by Payload.seal

    @classmethod
    def unpack(cls, raw: bytes) -> Header:
        """Parse and validate 48 header bytes (:meth:`Payload.from_bytes` checks the CRC)."""
        if len(raw) < HEADER_SIZE:
            raise ValueError(
                f"payload too short: {len(raw)} bytes, the header alone is {HEADER_SIZE}"
            )
        body = raw[: HEADER_SIZE - 4]
        magic, version, *rest = _STRUCT.unpack(body)
        if magic != MAGIC:
            raise ValueError(f"not an ecmpi payload: magic {magic!r}, expected {MAGIC!r}")
        if version != VERSION:
            raise ValueError(f"payload format version {version}, this ecmpi reads {VERSION}")
        names = [f.name for f in fields(cls)]
        header = cls(**dict(zip(names, rest, strict=True)))
        header.validate()
        return header


class Payload:
    """One compressed message: a header and a contiguous uint8 buffer.

    The buffer is a NumPy array, or a CuPy array when encoded on the GPU.
    Sections are exposed as views (no copies).
    """

    __slots__ = ("buf", "header")

    def __init__(self, header: Header, buf: Any):
        self.header = header
        self.buf = buf

    # -- construction ---------------------------------------------------------
    @classmethod
    def allocate(cls, header: Header, xp: Any = np) -> Payload:
        """A payload of the right size for ``header``, header bytes written, body uninitialized."""
        raw = header.pack()
        buf = xp.empty(header.total_nbytes, dtype=xp.uint8)
        buf[:HEADER_SIZE] = xp.asarray(np.frombuffer(raw, dtype=np.uint8))
        vs, ve = header.section_offsets()["values"]
        pad_start = vs + header.nvals * VALUE_FORMATS[header.value_fmt][1]
        if pad_start < ve:
            buf[pad_start:ve] = 0
        return cls(header, buf)

    def checksum(self) -> int:
        """CRC-32C (Castagnoli, hardware-accelerated) of the message but bytes 44..47."""
        buf = self.buf.get() if hasattr(self.buf, "get") else self.buf
        view = memoryview(np.ascontiguousarray(buf))
        return crc32c(view[HEADER_SIZE:], value=crc32c(view[: HEADER_SIZE - 4]))

    def seal(self) -> Payload:
        """Write the checksum once the body is filled (every encoder ends with it)."""
        crc = np.frombuffer(struct.pack("<I", self.checksum()), dtype=np.uint8)
        self.buf[HEADER_SIZE - 4 : HEADER_SIZE] = array_module(self.buf).asarray(crc)
        return self

    @classmethod
    def from_bytes(cls, data: Any, *, n: int | None = None) -> Payload:
        """Parse and validate a payload from ``bytes``/``bytearray``/``memoryview``/uint8 array.

        Args:
            data: the message.
            n: the decoded length the receiver expects; a header claiming
                another length is refused before any allocation. None: any length
                up to 4096 entries per byte of the message (at least 2**24).

        Raises:
            ValueError: truncated, over-long or corrupted bytes, a length other
                than ``n``, or any field out of range.
        """
        if isinstance(data, (bytes, bytearray, memoryview)):
            buf = np.frombuffer(data, dtype=np.uint8)
        else:
            buf = data
            if getattr(buf, "dtype", None) != np.uint8 or getattr(buf, "ndim", 0) != 1:
                raise TypeError(
                    "Payload.from_bytes takes bytes or a 1-D uint8 array, "
                    f"got {type(data).__name__}"
                )
        head = buf[:HEADER_SIZE]
        raw = bytes(head.get() if hasattr(head, "get") else head)
        header = Header.unpack(raw)
        total = header.total_nbytes
        if n is not None and header.n != n:
            raise ValueError(
                f"payload of {header.n} entries ({header.codec_name}), this receiver expects {n}"
            )
        if n is None and header.n > max(_FREE_ENTRIES, _ENTRIES_PER_BYTE * total):
            raise ValueError(
                f"payload header claims {header.n} entries from {total} bytes "
                f"({header.codec_name}); pass Payload.from_bytes(data, n=...) to accept it"
            )
        out = cls(header, buf)
        (crc,) = struct.unpack("<I", raw[HEADER_SIZE - 4 : HEADER_SIZE])
        if buf.shape[0] != total:
            what = "truncated" if buf.shape[0] < total else "too long"
            damaged = "" if out.checksum() == crc else " (checksum mismatch: a corrupted header?)"
            raise ValueError(
                f"payload {what}: {buf.shape[0]} bytes, the header describes {total} "
                f"({header.codec_name}, n={header.n}){damaged}"
            )
        if out.checksum() != crc:
            raise ValueError(
                f"payload checksum mismatch ({header.codec_name}, n={header.n}): "
                "the bytes are corrupted"
            )
        body_check = BODY_CHECKS.get(header.codec)
        if body_check is not None:
            body_check(out)
        return out

    # -- views ----------------------------------------------------------------
    def _section(self, name: str):
        start, stop = self.header.section_offsets()[name]
        return self.buf[start:stop]

    @property
    def values(self):
        """The values section as an array (f16 as float16, bf16 as its uint16 bit patterns)."""
        fmt, size = VALUE_FORMATS[self.header.value_fmt]
        raw = self._section("values")[: self.header.nvals * size]
        dt = {
            "none": np.uint8,
            "f16": np.float16,
            "bf16": np.uint16,
            "f32": np.float32,
            "f64": np.float64,
        }[fmt]
        return raw.view(dt)

    @property
    def scales(self):
        return self._section("scales").view(np.float32)

    @property
    def indices(self):
        return self._section("indices").view(np.uint32)

    @property
    def codes(self):
        """The packed code bytes (see :mod:`ecmpi.compress.packing`)."""
        return self._section("codes")

    # -- wire -----------------------------------------------------------------
    @property
    def nbytes(self) -> int:
        """Exact bytes on the wire: header, scales, indices, values and codes."""
        return int(self.buf.shape[0])

    @property
    def n(self) -> int:
        return self.header.n

    def to_bytes(self) -> bytes:
        """The whole message as ``bytes`` (copied to the host for a GPU buffer)."""
        buf = self.buf.get() if hasattr(self.buf, "get") else self.buf
        return np.ascontiguousarray(buf).tobytes()

    def with_header(self, **changes: Any) -> Header:
        """A copy of the header with fields changed (helper for codecs)."""
        return replace(self.header, **changes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Payload) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.to_bytes())

    def __repr__(self) -> str:
        h = self.header
        return (
            f"Payload({h.codec_name}, n={h.n}, bits={h.bits}, nscales={h.nscales}, "
            f"nidx={h.nidx}, nvals={h.nvals}, nbytes={self.nbytes})"
        )
