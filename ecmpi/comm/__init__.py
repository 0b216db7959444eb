"""Compressed collectives on mpi4py.

:func:`allreduce` sums (or averages) a vector over the ranks of a
communicator with any ecmpi compressor, by one of the collectives of
:data:`COLLECTIVES` (the registry, :mod:`ecmpi.comm.registry`):

- ``allgather``: every rank's payload to every rank (:mod:`ecmpi.comm.allgather`);
- ``sra``: scatter-reduce-allgather with two-level error feedback (:mod:`ecmpi.comm.sra`);
- ``ring``: compressed ring reduce-scatter, then a ring allgather (:mod:`ecmpi.comm.ring`);
- ``ps``: parameter server, gather to a root and broadcast (:mod:`ecmpi.comm.ps`);
- ``sra-int``: ``sra`` adding integer codes under shared scales (:mod:`ecmpi.comm.sra_int`);
- ``ring-int``: ``ring`` adding integer codes at every hop (:mod:`ecmpi.comm.ring_int`);
- ``hier``: uncompressed inside nodes, compressed between them (:mod:`ecmpi.comm.hier`).

Every rank ends with the same bits, or raises the same ValueError when a
rank could not encode (:mod:`ecmpi.comm.failures`). :class:`CommStats` counts
bytes and seconds; :class:`CollectiveFeedback` holds the error-feedback residuals.
"""

from . import allgather, hier, ps, ring, ring_int, sra, sra_int  # noqa: F401  (registers all)
from .common import library_comm
from .dispatch import allreduce
from .ps import ps_broadcast, ps_exchange, ps_gather
from .registry import COLLECTIVES, Collective
from .residuals import CollectiveFeedback
from .stats import CommStats

__all__ = [
    "COLLECTIVES",
    "Collective",
    "CollectiveFeedback",
    "CommStats",
    "allreduce",
    "library_comm",
    "ps_broadcast",
    "ps_exchange",
    "ps_gather",
]
