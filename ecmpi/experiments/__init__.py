"""The experiments ``ecmpi reproduce`` runs, one module each, defined once.

Each module defines ``EXPERIMENT`` (:class:`~ecmpi.experiments.base.Experiment`):
the runs of ``ecmpi run`` of its quick and full settings, the figures and the
table made from their logs.
"""

from __future__ import annotations

import importlib

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENTS", "Experiment", "FigureSpec", "Run", "Setting", "flags", "get_experiment"]

#: experiment name -> module defining ``EXPERIMENT``
EXPERIMENTS: dict[str, str] = {
    "ecq-sgd": "ecmpi.experiments.ecqsgd",
    "qesgd": "ecmpi.experiments.qesgd",
    "ec-lkatyusha": "ecmpi.experiments.eclkatyusha",
    "dqgd": "ecmpi.experiments.dqgd",
}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}")
    return importlib.import_module(EXPERIMENTS[name]).EXPERIMENT
