"""A quadratic with a prescribed condition number, written as a finite sum so it shards.

    f(x) = (1/2N) sum_i (a_i.x - b_i)^2 = (1/2) (x - x_true)^T H (x - x_true),
    H = Q diag(lambda) Q^T

built by the ``quadratic:`` data source (:mod:`ecmpi.problems.data`): ``Q`` is a
Haar-random orthogonal matrix (QR of a Gaussian matrix with the signs of R's
diagonal fixed), ``lambda_j`` runs from ``mu`` to ``kappa*mu`` (``linear`` or
``geometric`` spacing), row ``i`` is ``a_i = sqrt(lambda_j N / m_j) q_j`` with
``j = i mod d`` and ``m_j`` the number of rows sharing ``j``, and
``b_i = a_i . x_true + noise * e_i`` with ``x_true ~ N(0, I)``, ``e_i ~ N(0, 1)``.
Then ``A^T A / N = H``, so ``L = kappa*mu``, ``mu = mu`` and, with ``noise = 0``,
``x* = x_true`` up to rounding (with ``l2 = 0``; the constants are still computed
from the reduced spectrum, ``x*`` from the normal equations).

**Heterogeneous shards.** With ``noise = 0`` every shard of ``N/P`` rows (a
multiple of ``d``) has the same local function, so P workers compute identical
gradients. ``noise > 0`` keeps the Hessian and gives each shard its own
minimizer: ``grad f_p(x*) != 0`` and the workers' average matters.
"""

from __future__ import annotations

from typing import Any

from .data import load, parse_dataset_spec
from .lsq import LeastSquares

__all__ = ["Quadratic", "quadratic_spec"]


def quadratic_spec(
    dim: int,
    kappa: float,
    *,
    mu: float = 1.0,
    n: int | None = None,
    seed: int = 0,
    spectrum: str = "linear",
    noise: float = 0.0,
) -> str:
    """The dataset spec ``quadratic:d=...,kappa=...`` for these parameters."""
    parts = [f"d={int(dim)}", f"kappa={float(kappa)!r}"]
    if mu != 1.0:
        parts.append(f"mu={float(mu)!r}")
    if n is not None:
        parts.append(f"n={int(n)}")
    if seed:
        parts.append(f"seed={int(seed)}")
    if spectrum != "linear":
        parts.append(f"spectrum={spectrum}")
    if noise:
        parts.append(f"noise={float(noise)!r}")
    return "quadratic:" + ",".join(parts)


class Quadratic(LeastSquares):
    """``quadratic``: least squares on the ``quadratic:`` rows (module docstring).

    Args:
        shard: rows from a ``quadratic:`` spec (see :meth:`build`).
        **kwargs: as :class:`~ecmpi.problems.linear.LinearModel` (``l2`` defaults to 0).
    """

    name = "quadratic"

    def __init__(self, shard: Any, **kwargs: Any):
        if parse_dataset_spec(shard.spec)[0] != "quadratic":
            raise ValueError(
                f"the quadratic problem builds its own rows (dataset 'quadratic:d=...,kappa=...'), "
                f"got {shard.spec!r}; use lsq for other datasets"
            )
        super().__init__(shard, **kwargs)
        self.eigenvalues = shard.info["eigenvalues"]
        self.x_true = shard.info["x_true"]

    @classmethod
    def build(
        cls,
        dim: int,
        kappa: float,
        *,
        comm: Any = None,
        mu: float = 1.0,
        n: int | None = None,
        seed: int = 0,
        spectrum: str = "linear",
        noise: float = 0.0,
        l2: float = 0.0,
        l2_rel: float | None = None,
        dtype: Any = None,
    ) -> Quadratic:
        """``Quadratic(load(quadratic_spec(...)))`` in one call (collective)."""
        spec = quadratic_spec(dim, kappa, mu=mu, n=n, seed=seed, spectrum=spectrum, noise=noise)
        shard = load(spec, comm=comm, **({} if dtype is None else {"dtype": dtype}))
        return cls(shard, comm=comm, l2=l2, l2_rel=l2_rel)
