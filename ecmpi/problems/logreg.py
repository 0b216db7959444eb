"""l2-regularized logistic regression, labels in {-1, +1}:

    f(x) = (1/N) sum_i log(1 + exp(-y_i a_i.x)) + (l2/2) ||x||^2

Row term ``phi(z, y) = log(1 + exp(-y z))`` computed as ``logaddexp(0, -y z)``
(no overflow), ``phi' = -y sigmoid(-y z)``, ``phi'' = sigmoid(z) sigmoid(-z) <= 1/4``.
Hence ``L = sigma_max(A)^2 / (4N) + l2`` and ``mu = l2`` (the bounds used by the
EC-LKatyusha experiments: ``lambda = L/1e4`` is ``l2_rel=1e-4``). ``x*`` by
Newton's method on the reduced Hessian (:mod:`ecmpi.problems.optimum`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit

from ._mpi import agree, default_comm
from .data import Shard
from .linear import LinearModel

__all__ = ["LogisticRegression"]


class LogisticRegression(LinearModel):
    """``logreg``: see the module docstring; arguments as :class:`LinearModel`.

    Raises:
        ValueError: labels other than -1 and +1.
    """

    name = "logreg"
    curvature = 0.25
    mu_from_spectrum = False
    task = "classification"

    def __init__(self, shard: Shard, **kwargs: Any):
        comm = kwargs["comm"] = default_comm(kwargs.get("comm"))
        bad = shard.y[(shard.y != 1) & (shard.y != -1)]
        err = None
        if bad.size:
            err = ValueError(
                f"logreg needs labels in {{-1, +1}}; dataset {shard.spec!r} has e.g. "
                f"{float(bad[0])!r} (load it with task='classification')"
            )
        agree(comm, err)
        super().__init__(shard, **kwargs)

    def phi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``log(1 + exp(-y z))``."""
        return np.logaddexp(0.0, -y * z)

    def dphi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``-y sigmoid(-y z)``."""
        return -y * expit(-y * z)

    def d2phi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``sigmoid(z) sigmoid(-z)``."""
        return expit(z) * expit(-z)
