"""Compressors, their wire format, bit packing and error feedback.

``ecmpi.compressor("qsgd:levels=4,bucket=512")`` builds one by name; see
:mod:`ecmpi.compress.base` for the interface and
:mod:`ecmpi.compress.payload` for the bytes on the wire.
"""

from . import cast  # noqa: F401  (registers none, fp16, bf16)
from .base import Compressor, available, compressor, parse_spec, register
from .payload import Header, Payload

__all__ = [
    "Compressor",
    "Header",
    "Payload",
    "available",
    "compressor",
    "parse_spec",
    "register",
]
