"""The problem interface: a finite-sum objective whose rows are sharded over MPI ranks.

    f(x) = (1/N) sum_{i=1..N} f_i(x) + (l2/2) ||x||^2

Rank ``tau`` holds ``m_tau`` rows. Its *node objective* is

    f_tau(x) = (P / N) sum_{i in shard tau} f_i(x) + (l2/2) ||x||^2

so that ``f = (1/P) sum_tau f_tau`` holds exactly even when shards are
unequal: an algorithm that averages the ranks' node gradients gets the true
gradient. With equal shards ``f_tau`` is the plain shard average.

Concrete problems (``lsq``, ``logreg``, ``quadratic``) implement the per-row
loss and gradient; this class adds the MPI reductions and the constants.

Everything that reduces over ranks (``loss``, ``grad``, the first access to a
constant or to ``x_star``) is collective: every rank must call it, in the same
order. Reductions add the ranks' parts in rank order, so their results are
bitwise identical on every rank.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np

from ..errors import UnknownConstant
from ._mpi import allsum

__all__ = ["Problem", "UnknownConstant"]


class Problem(ABC):
    """Base class of the sharded objectives. See the module docstring for the math.

    Attributes (set by subclasses at construction):
        name: ``"lsq"``, ``"logreg"`` or ``"quadratic"``.
        comm: the communicator the rows are sharded over (library-owned duplicate).
        d: dimension of x.
        n_local: rows on this rank (m_tau); n_global: N.
        weight: ``P * n_local / n_global``, the factor in f_tau.
        l2: the l2 regularization lambda.
        dtype: float64 unless asked otherwise.
        dataset: the dataset spec string the data came from.
    """

    name: ClassVar[str]
    #: False for a problem whose L, mu and x* are unknown (a non-convex loss): reading
    #: them raises :class:`~ecmpi.errors.UnknownConstant` and ``f_star`` is NaN
    knows_optimum: ClassVar[bool] = True
    #: the extra trajectory columns :meth:`metrics` returns (docs/hdf5.md)
    metric_names: ClassVar[tuple[str, ...]] = ()

    def metrics(self, x: Any) -> dict[str, float]:
        """Extra trajectory columns at ``x``, named by :attr:`metric_names` (collective)."""
        return {}

    def initial_point(self) -> Any:
        """The start ``--x0 init`` means: zeros (a network overrides it with its seeded
        initialization)."""
        return np.zeros(self.d, dtype=self.dtype)

    def _idx(self, idx: Any) -> np.ndarray:
        """``idx`` as a flat array of this rank's row indices (integers in ``[0, n_local)``).

        Raises:
            TypeError: not integers. ValueError: empty on a rank with rows, or out of range.
        """
        idx = np.asarray(idx)
        if idx.size == 0:
            idx = idx.astype(np.intp)
        if idx.dtype.kind not in "iu":
            raise TypeError(f"idx must hold integer row indices, got dtype {idx.dtype}")
        idx = idx.reshape(-1)
        if idx.size == 0 and self.n_local:
            raise ValueError("idx is empty")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_local):
            raise ValueError(f"idx out of range: this rank has {self.n_local} training rows")
        return idx

    # -- this node's objective f_tau -------------------------------------------------
    @abstractmethod
    def local_loss(self, x: Any) -> float:
        """f_tau(x)."""

    @abstractmethod
    def local_grad(self, x: Any, out: Any = None) -> Any:
        """grad f_tau(x)."""

    @abstractmethod
    def batch_grad(self, x: Any, idx: Any, out: Any = None) -> Any:
        """Unbiased estimate of grad f_tau(x) from the local rows ``idx``:
        ``weight * (1/|idx|) sum_{i in idx} grad f_i(x) + l2 * x``."""

    # -- the global objective f (collective: every rank must call) -------------------
    def loss(self, x: Any) -> float:
        """f(x) = (1/P) sum_tau f_tau(x), reduced over all ranks; identical on every rank."""
        return allsum(self.comm, self.local_loss(x)) / self.comm.size

    def grad(self, x: Any, out: Any = None) -> Any:
        """grad f(x) = (1/P) sum_tau grad f_tau(x), reduced; identical on every rank."""
        g = allsum(self.comm, self.local_grad(x)) / self.comm.size
        if out is None:
            return g.astype(self.dtype, copy=False)
        out[...] = g
        return out

    def allsum(self, x: Any) -> Any:
        """``sum_tau x_tau`` over the ranks in rank order (collective, identical everywhere)."""
        return allsum(self.comm, x)

    def describe(self, *, solve: bool = True) -> dict[str, Any]:
        """The problem for a log: name, dataset, N, d, ranks, l2, L, L_max, mu, kappa, f_star.

        Collective. With ``solve=False`` ``f_star`` is NaN unless already computed.
        """
        f_star = self.f_star if solve else getattr(self, "_f_star", None)
        L, mu = float(self.L), float(self.mu)
        return {
            "name": self.name,
            "dataset": self.dataset,
            "N": int(self.n_global),
            "d": int(self.d),
            "n_ranks": int(self.comm.size),
            "l2": float(self.l2),
            "L": L,
            "L_max": float(self.L_max),
            "mu": mu,
            "kappa": L / mu if mu > 0 else float("inf"),
            "f_star": float("nan") if f_star is None else float(f_star),
        }

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name} dataset={self.dataset!r} "
            f"N={self.n_global} d={self.d} l2={self.l2:g} rank {self.comm.rank}/{self.comm.size}>"
        )

    # -- constants -----------------------------------------------------------------
    @property
    @abstractmethod
    def L(self) -> float:
        """Smoothness constant of f."""

    @property
    @abstractmethod
    def L_local(self) -> float:
        """Smoothness of this rank's f_tau."""

    @property
    @abstractmethod
    def L_max(self) -> float:
        """Largest smoothness of a single scaled row term ``weight*f_i + l2/2||x||^2``."""

    @property
    @abstractmethod
    def mu(self) -> float:
        """Strong convexity of f (l2, or the smallest eigenvalue for lsq/quadratic)."""

    @property
    @abstractmethod
    def x_star(self) -> Any:
        """The minimizer (computed once, to high accuracy; identical on every rank)."""

    @property
    @abstractmethod
    def f_star(self) -> float:
        """f(x_star)."""
