"""The experiments ``ecmpi reproduce`` runs, one module each, defined once.

Each module holds one paper's experiments (:class:`~ecmpi.experiments.base.Experiment`):
``EXPERIMENT``, the paper's main comparison, and further studies of the same
paper beside it; each is the runs of ``ecmpi run`` of its quick and full
settings, the figures and the table made from their logs. ``ecmpi reproduce
NAME`` runs them through ``mpiexec``; the scripts in ``examples/`` run them
in one MPI job, one :func:`ecmpi.run` per run (:attr:`Run.options`,
:meth:`Setting.run_all`).
"""

from __future__ import annotations

import importlib

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENTS", "Experiment", "FigureSpec", "Run", "Setting", "flags", "get_experiment"]

#: experiment name -> ``module:ATTRIBUTE`` defining it
EXPERIMENTS: dict[str, str] = {
    "ecq-sgd": "ecmpi.experiments.ecqsgd:EXPERIMENT",
    "ecq-sgd-real": "ecmpi.experiments.ecqsgd:REAL",
    "ecq-sgd-sweep": "ecmpi.experiments.ecqsgd:SWEEP",
    "ecq-sgd-time": "ecmpi.experiments.ecqsgd:TIME",
    "qesgd": "ecmpi.experiments.qesgd:EXPERIMENT",
    "ec-lkatyusha": "ecmpi.experiments.eclkatyusha:EXPERIMENT",
    "ec-lkatyusha-template": "ecmpi.experiments.eclkatyusha:TEMPLATE",
    "ec-lkatyusha-kappa": "ecmpi.experiments.eclkatyusha:KAPPA",
    "ec-lkatyusha-p": "ecmpi.experiments.eclkatyusha:P_SWEEP",
    "dqgd": "ecmpi.experiments.dqgd:EXPERIMENT",
    "dqgd-rates": "ecmpi.experiments.dqgd:RATES",
    "dqgd-real": "ecmpi.experiments.dqgd:REAL",
    "dl": "ecmpi.experiments.dl:EXPERIMENT",
}


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}")
    module, attr = EXPERIMENTS[name].split(":")
    return getattr(importlib.import_module(module), attr)
