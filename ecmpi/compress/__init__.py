"""Compressors, their wire format, bit packing and error feedback.

``ecmpi.compressor("qsgd:levels=4,bucket=512")`` builds one by name; see
:mod:`ecmpi.compress.base` for the interface, :mod:`ecmpi.compress.payload`
for the bytes on the wire and ``docs/compressors.md`` for the exact arithmetic.
"""

from . import cast, quantize, sparsify, uniform  # noqa: F401  (registers every codec)
from .base import Compressor, available, compressor, parse_spec, register
from .feedback import ErrorFeedback, FeedbackState
from .payload import Header, Payload
from .quantize import QSGD, Sign, TernGrad
from .sparsify import RandK, TopK

__all__ = [
    "QSGD",
    "Compressor",
    "ErrorFeedback",
    "FeedbackState",
    "Header",
    "Payload",
    "RandK",
    "Sign",
    "TernGrad",
    "TopK",
    "available",
    "compressor",
    "parse_spec",
    "register",
]
