"""Algorithm drivers, looked up by their command-line name.

Each name maps to ``module:Class``; modules are imported on first use so a
missing optional piece never breaks the others.
"""

from __future__ import annotations

import importlib

from .base import Algorithm, Hyper, RunContext, StepCost, counted_step

__all__ = [
    "ALGORITHMS",
    "Algorithm",
    "Hyper",
    "RunContext",
    "RunResult",
    "StepCost",
    "counted_step",
    "get",
    "run",
]

#: command-line name -> "module:Class"
ALGORITHMS: dict[str, str] = {
    "gd": "ecmpi.algorithms.sgd:GD",
    "sgd": "ecmpi.algorithms.sgd:SGD",
    "qsgd": "ecmpi.algorithms.sgd:QSGD",
    "ef-sgd": "ecmpi.algorithms.sgd:EFSGD",
    "ecq-sgd": "ecmpi.algorithms.ecqsgd:ECQSGD",
    "epoch-sgd": "ecmpi.algorithms.qesgd:EpochSGD",
    "qesgd": "ecmpi.algorithms.qesgd:QESGD",
    "ec-gd": "ecmpi.algorithms.ec:ECGD",
    "ec-sgd": "ecmpi.algorithms.ec:ECSGD",
    "ec-lsvrg": "ecmpi.algorithms.ec:ECLSVRG",
    "ec-gd-diana": "ecmpi.algorithms.ec:ECGDDiana",
    "ec-sgd-diana": "ecmpi.algorithms.ec:ECSGDDiana",
    "ec-lsvrg-diana": "ecmpi.algorithms.ec:ECLSVRGDiana",
    "lkatyusha": "ecmpi.algorithms.katyusha:LKatyusha",
    "ec-lkatyusha": "ecmpi.algorithms.katyusha:ECLKatyusha",
    "qgd": "ecmpi.algorithms.dqgd:QGD",
    "dqgd": "ecmpi.algorithms.dqgd:DQGD",
    "dqhb": "ecmpi.algorithms.dqgd:DQHB",
    "dqnag": "ecmpi.algorithms.dqgd:DQNAG",
}


def get(name: str) -> type[Algorithm]:
    """The algorithm class for a command-line name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        target = ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {name!r}; available: {', '.join(sorted(ALGORITHMS))}"
        ) from None
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)


def __getattr__(name: str):
    # the loop pulls in h5py and MPI: import it on first use only
    if name in ("run", "RunResult"):
        from . import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'ecmpi.algorithms' has no attribute {name!r}")
