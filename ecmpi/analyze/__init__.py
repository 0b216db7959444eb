"""Tables and plots from ecmpi trajectory logs (``ecmpi analyze``).

>>> from ecmpi import analyze
>>> df = analyze.load("runs/")                       # one row per run
>>> analyze.summary(df, eps=1e-6, group_by=["algorithm", "compressor"])
>>> analyze.plot(df, x="rounds,bits", group_by="algorithm", path="fig.png")

Reading goes through :func:`ecmpi.log.open_log` (complete rows only, safe
while a run is writing). ``docs/analyze.md`` defines every column.
"""

from __future__ import annotations

from .command import add_arguments, main
from .loading import ID_COLUMNS, SELF_QUANTIZING, find_logs, load
from .plots import OKABE_ITO, plot
from .tables import FORMATS, METRICS, format_table, parse_baseline, summary

__all__ = [
    "FORMATS",
    "ID_COLUMNS",
    "METRICS",
    "OKABE_ITO",
    "SELF_QUANTIZING",
    "add_arguments",
    "find_logs",
    "format_table",
    "load",
    "main",
    "parse_baseline",
    "plot",
    "summary",
]
