"""Objectives of linear models, ``f_i(x) = phi(a_i . x, y_i)``, on a sharded dataset.

With the rows of this rank in ``A`` (``m = n_local`` of them) and ``w = P m / N``:

    f_tau(x)      = (P/N) sum_{i in shard} phi(a_i.x, y_i) + (l2/2)||x||^2
    grad f_tau(x) = (P/N) A^T phi'(Ax, y) + l2 x
    Hessian f(x)  = (1/N) A_all^T diag(phi''(A_all x, y)) A_all + l2 I

With ``c = sup phi''`` (1 for least squares, 1/4 for the logistic loss) and the
global Gram matrix ``G = A_all^T A_all / N``:

    L_data = c lambda_max(G)         L = L_data + l2
    L_local = c lambda_max((P/N) A^T A) + l2
    L_max   = max_{tau, i in tau} c w_tau ||a_i||^2 + l2      (per scaled row term)

``G`` is reduced once (d x d) when ``d <= DENSE_MAX``; larger problems use
Lanczos (``scipy.sparse.linalg.eigsh``) on reduced matrix-vector products.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np

from ._mpi import allmax, default_comm
from .base import Problem
from .data import Shard

__all__ = ["DENSE_MAX", "LinearModel"]

#: largest d for which the d x d Gram matrix is formed and eigendecomposed
DENSE_MAX = 4096


class LinearModel(Problem):
    """A :class:`Problem` whose row terms are ``phi(a_i . x, y_i)``.

    Subclasses define :meth:`phi`, :meth:`dphi`, :meth:`d2phi`, ``curvature``
    (``sup phi''``) and ``mu_from_spectrum`` (True when ``mu`` is the smallest
    eigenvalue of ``c G + l2 I``, False when it is ``l2``).

    Args:
        shard: this rank's rows (:func:`ecmpi.problems.data.load`).
        comm: the communicator the shard was loaded over (ecmpi uses its own
            duplicate; None: COMM_WORLD).
        l2: the regularization lambda.
        l2_rel: instead of ``l2``: ``lambda = l2_rel * L_data`` (e.g. ``1e-4``
            for the ``lambda = L/1e4`` template).
    """

    curvature: ClassVar[float]
    mu_from_spectrum: ClassVar[bool]
    task: ClassVar[str | None] = None

    def __init__(
        self,
        shard: Shard,
        *,
        comm: Any = None,
        l2: float = 0.0,
        l2_rel: float | None = None,
    ):
        if not isinstance(shard, Shard):
            raise TypeError(f"shard must be an ecmpi.problems.data.Shard, got {type(shard)}")
        self.comm = default_comm(comm)
        self.shard = shard
        self.A = shard.A
        self.y = shard.y
        self.dtype = shard.A.dtype
        self.d = shard.d
        self.n_local = shard.n_local
        self.n_global = shard.n_global
        self.offset = shard.offset
        self.dataset = shard.spec
        self.weight = self.comm.size * self.n_local / self.n_global
        self._scale = self.comm.size / self.n_global  # P/N
        self._cache: dict[str, Any] = {}
        l2 = float(l2)
        if not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be finite and non-negative, got {l2}")
        if l2_rel is not None:
            l2_rel = float(l2_rel)
            if not np.isfinite(l2_rel) or l2_rel < 0:
                raise ValueError(f"l2_rel must be finite and non-negative, got {l2_rel}")
            if l2:
                raise ValueError("give either l2 or l2_rel, not both")
            l2 = l2_rel * self.L_data
        self.l2 = l2
        self.l2_rel = l2_rel

    # -- the row loss -------------------------------------------------------------------
    @abstractmethod
    def phi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Row losses ``phi(z_i, y_i)``."""

    @abstractmethod
    def dphi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``d phi / dz``."""

    @abstractmethod
    def d2phi(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``d^2 phi / dz^2``."""

    # -- helpers --------------------------------------------------------------------------
    def _x(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        if x.shape != (self.d,):
            raise ValueError(f"x must have shape ({self.d},), got {x.shape}")
        return x

    def _out(self, g: np.ndarray, out: Any) -> np.ndarray:
        if out is None:
            return g.astype(self.dtype, copy=False)
        out[...] = g
        return out

    def _reg(self, x: np.ndarray) -> float:
        return 0.5 * self.l2 * float(np.dot(x, x))

    def _data_sum(self, x: np.ndarray) -> float:
        """``sum_{i in shard} phi(a_i.x, y_i)``."""
        return float(self.phi(self.A @ x, self.y).sum()) if self.n_local else 0.0

    def _data_grad_sum(self, x: np.ndarray) -> np.ndarray:
        """``sum_{i in shard} phi'(a_i.x, y_i) a_i``."""
        if not self.n_local:
            return np.zeros(self.d, dtype=np.result_type(self.dtype, x.dtype))
        return self.A.T @ self.dphi(self.A @ x, self.y)

    # -- this node's objective ------------------------------------------------------------
    def local_loss(self, x: Any) -> float:
        """``f_tau(x) = (P/N) sum_{i in shard} phi(a_i.x, y_i) + (l2/2)||x||^2``."""
        x = self._x(x)
        return self._scale * self._data_sum(x) + self._reg(x)

    def local_grad(self, x: Any, out: Any = None) -> Any:
        """``grad f_tau(x) = (P/N) A^T phi'(Ax, y) + l2 x``."""
        x = self._x(x)
        return self._out(self._scale * self._data_grad_sum(x) + self.l2 * x, out)

    def batch_grad(self, x: Any, idx: Any, out: Any = None) -> Any:
        """``w (1/|idx|) sum_{i in idx} phi'(a_i.x, y_i) a_i + l2 x``; its mean over uniform
        ``idx`` is ``local_grad(x)``. Repeated indices count repeatedly."""
        x = self._x(x)
        idx = self._idx(idx)
        if idx.size == 0:
            return self._out(self.l2 * x, out)
        Ab = self.A[idx]
        g = Ab.T @ self.dphi(Ab @ x, self.y[idx])
        return self._out((self.weight / idx.size) * g + self.l2 * x, out)

    def sample_grads(self, x: Any, idx: Any) -> np.ndarray:
        """Per-row gradients ``w phi'(a_i.x, y_i) a_i + l2 x`` as an ``(|idx|, d)`` array."""
        x = self._x(x)
        idx = self._idx(idx)
        Ab = self.A[idx]
        coef = self.weight * self.dphi(Ab @ x, self.y[idx])
        return (coef[:, None] * Ab + self.l2 * x).astype(self.dtype, copy=False)

    # -- the global objective (reduced sums divided by N, not averaged f_tau) -------------
    def loss(self, x: Any) -> float:
        """``f(x) = (1/N) sum_i phi(a_i.x, y_i) + (l2/2)||x||^2`` (collective)."""
        x = self._x(x)
        return self.allsum(self._data_sum(x)) / self.n_global + self._reg(x)

    def grad(self, x: Any, out: Any = None) -> Any:
        """``grad f(x) = (1/N) A_all^T phi'(A_all x, y) + l2 x`` (collective)."""
        x = self._x(x)
        return self._out(self.allsum(self._data_grad_sum(x)) / self.n_global + self.l2 * x, out)

    def hessian(self, x: Any) -> np.ndarray:
        """``(1/N) A_all^T diag(phi''(A_all x)) A_all + l2 I``, a dense ``(d, d)`` array
        (collective)."""
        x = self._x(x)
        if self.n_local:
            s = self.d2phi(self.A @ x, self.y)
            part = self.A.T @ (s[:, None] * self.A)
        else:
            part = np.zeros((self.d, self.d))
        H = self.allsum(part) / self.n_global
        H[np.diag_indices(self.d)] += self.l2
        return H

    # -- spectrum -------------------------------------------------------------------------
    def gram(self) -> np.ndarray:
        """``G = A_all^T A_all / N`` (``d x d``; collective on first call, then cached)."""
        if "gram" not in self._cache:
            if self.d > DENSE_MAX:
                raise ValueError(f"d={self.d} > {DENSE_MAX}: the dense Gram matrix is not formed")
            part = self.A.T @ self.A if self.n_local else np.zeros((self.d, self.d))
            self._cache["gram"] = self.allsum(part) / self.n_global
        return self._cache["gram"]

    def gram_eigh(self) -> tuple[np.ndarray, np.ndarray]:
        """Eigenvalues (ascending) and eigenvectors of :meth:`gram` (collective, cached)."""
        if "eigh" not in self._cache:
            lam, V = np.linalg.eigh(self.gram())
            self._cache["eigh"] = (np.maximum(lam, 0.0), V)
        return self._cache["eigh"]

    def _gram_extreme(self, which: str) -> float:
        """Largest (``LA``) or smallest (``SA``) eigenvalue of ``G`` (collective)."""
        if self.d <= DENSE_MAX:
            lam = self.gram_eigh()[0]
            return float(lam[-1] if which == "LA" else lam[0])
        if which == "SA" and self.n_global < self.d:
            return 0.0
        from scipy.sparse.linalg import LinearOperator, eigsh

        def matvec(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v, dtype=np.float64).reshape(-1)
            part = self.A.T @ (self.A @ v) if self.n_local else np.zeros(self.d)
            return self.allsum(part) / self.n_global

        op = LinearOperator((self.d, self.d), matvec=matvec, dtype=np.float64)
        v0 = np.ones(self.d) / np.sqrt(self.d)
        val = eigsh(op, k=1, which=which, v0=v0, tol=1e-12, return_eigenvectors=False)
        return max(float(val[0]), 0.0)

    # -- constants --------------------------------------------------------------------------
    def _cached(self, name: str, compute: Any) -> Any:
        if name not in self._cache:
            self._cache[name] = compute()
        return self._cache[name]

    @property
    def L_data(self) -> float:
        """Smoothness of the data term alone: ``c lambda_max(G)`` (collective on first use)."""
        return self._cached("L_data", lambda: self.curvature * self._gram_extreme("LA"))

    @property
    def L(self) -> float:
        """``L_data + l2``."""
        return self.L_data + self.l2

    @property
    def L_local(self) -> float:
        """``c lambda_max((P/N) A_tau^T A_tau) + l2`` for this rank (local, no communication)."""

        def compute() -> float:
            if not self.n_local:
                return 0.0
            small = self.A @ self.A.T if self.n_local < self.d else self.A.T @ self.A
            return float(np.linalg.eigvalsh(small)[-1])

        return self.curvature * self._scale * self._cached("L_local", compute) + self.l2

    @property
    def L_local_max(self) -> float:
        """``max_tau L_local`` (collective on first use)."""
        val = self._cached("L_local_max", lambda: allmax(self.comm, self.L_local - self.l2))
        return val + self.l2

    @property
    def L_max(self) -> float:
        """``max_{tau, i} c w_tau ||a_i||^2 + l2`` over all ranks (collective on first use)."""

        def compute() -> float:
            rows = float((self.A * self.A).sum(axis=1).max()) if self.n_local else 0.0
            return allmax(self.comm, self.curvature * self.weight * rows)

        return self._cached("L_max", compute) + self.l2

    @property
    def mu(self) -> float:
        """``c lambda_min(G) + l2`` (least squares) or ``l2`` (logistic)."""
        if not self.mu_from_spectrum:
            return self.l2
        return self.curvature * self._cached("lam_min", lambda: self._gram_extreme("SA")) + self.l2

    @property
    def x_star(self) -> np.ndarray:
        """The minimizer, from :func:`ecmpi.problems.optimum.solve` (collective on first use)."""
        if "x_star" not in self._cache:
            from .optimum import solve

            x, info = solve(self)
            self._cache["x_star"] = x
            self._cache["x_star_info"] = info
            self._f_star = self.loss(x)
        return self._cache["x_star"].astype(self.dtype, copy=True)

    @property
    def f_star(self) -> float:
        """``f(x_star)``."""
        self.x_star  # noqa: B018  (computes and caches)
        return self._f_star

    @property
    def x_star_info(self) -> dict[str, Any]:
        """How x_star was found: method, iterations, final gradient norm."""
        self.x_star  # noqa: B018
        return dict(self._cache["x_star_info"])
