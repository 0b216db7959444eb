"""Least squares: ``f(x) = (1/2N) ||A x - y||^2 + (l2/2) ||x||^2``.

Row term ``phi(z, y) = (z - y)^2 / 2``; ``phi'' = 1``, so ``L = lambda_max(G) + l2``
and ``mu = lambda_min(G) + l2`` with ``G = A^T A / N`` (exact, from the spectrum).
``x*`` solves the normal equations ``(G + l2 I) x = A^T y / N`` directly
(:mod:`ecmpi.problems.optimum`).
"""

from __future__ import annotations

import numpy as np

from .linear import LinearModel

__all__ = ["LeastSquares"]


class LeastSquares(LinearModel):
    """``lsq``: see the module docstring; arguments as :class:`LinearModel`."""

    name = "lsq"
    curvature = 1.0
    mu_from_spectrum = True

    def phi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(z - y)^2 / 2``."""
        r = z - y
        return 0.5 * r * r

    def dphi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``z - y``."""
        return z - y

    def d2phi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``1``."""
        return np.ones_like(z)
