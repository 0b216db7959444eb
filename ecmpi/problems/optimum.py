"""High-accuracy minimizers ``x*`` (and so ``f* = f(x*)``) of the sharded problems.

- Least squares / quadratic, ``d <= DENSE_MAX``: the normal equations
  ``(G + l2 I) x = A^T y / N`` solved with the eigendecomposition of the reduced
  Gram matrix (pseudo-inverse on its null space, so ``l2 = 0`` with ``N < d``
  gives the minimum-norm solution), then iterative refinement
  ``x <- x - (G + l2 I)^+ grad f(x)`` with the exactly reduced gradient.
- Least squares, larger d: conjugate gradients on reduced matrix-vector products.
- Logistic regression, ``d <= DENSE_MAX``: Newton's method with the reduced
  Hessian and Armijo backtracking; larger d: L-BFGS (``scipy.optimize``).

Every method stops at ``||grad f(x)|| <= tol`` (default ``1e-12``) or when the
gradient norm stops decreasing (the rounding floor of the data). All ranks
run the same iterations on identical reduced values; rank 0's result is then
broadcast so ``x*`` is bitwise identical everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TOL", "cg", "lbfgs", "newton", "normal_equations", "solve"]

#: target gradient norm
TOL = 1e-12


class _Best:
    """Keeps the iterate with the smallest gradient norm; detects stagnation."""

    def __init__(self) -> None:
        self.x: np.ndarray | None = None
        self.gn = np.inf
        self.stalled = 0

    def offer(self, x: np.ndarray, gn: float) -> None:
        if gn < 0.5 * self.gn:
            self.stalled = 0
        else:
            self.stalled += 1
        if gn < self.gn:
            self.x, self.gn = x.copy(), gn


def normal_equations(
    problem: Any, tol: float = TOL, max_refine: int = 10
) -> tuple[np.ndarray, dict]:
    """Least squares by the eigendecomposition of ``G + l2 I`` plus iterative refinement."""
    lam, V = problem.gram_eigh()
    h = lam + problem.l2
    inv = np.where(h > h[-1] * h.size * np.finfo(np.float64).eps, 1.0 / np.maximum(h, 1e-300), 0.0)

    def apply(r: np.ndarray) -> np.ndarray:
        return V @ (inv * (V.T @ r))

    part = problem.A.T @ problem.y if problem.n_local else np.zeros(problem.d)
    b = problem.allsum(np.asarray(part, dtype=np.float64)) / problem.n_global
    x = apply(b)
    best = _Best()
    it = 0
    for it in range(max_refine + 1):  # noqa: B007
        g = np.asarray(problem.grad(x), dtype=np.float64)
        best.offer(x, float(np.linalg.norm(g)))
        if best.gn <= tol or best.stalled >= 2:
            break
        x = x - apply(g)
    return best.x, {"method": "normal-equations", "iterations": it, "grad_norm": best.gn}


def _gram_op(problem: Any, v: np.ndarray) -> np.ndarray:
    part = problem.A.T @ (problem.A @ v) if problem.n_local else np.zeros(problem.d)
    return problem.allsum(part) / problem.n_global + problem.l2 * v


def cg(problem: Any, tol: float = TOL, max_iter: int | None = None) -> tuple[np.ndarray, dict]:
    """Least squares by conjugate gradients on ``(G + l2 I) x = A^T y / N``."""
    max_iter = 10 * problem.d if max_iter is None else max_iter
    x = np.zeros(problem.d)
    r = -np.asarray(problem.grad(x), dtype=np.float64)
    p = r.copy()
    rr = float(r @ r)
    best = _Best()
    it = 0
    for it in range(max_iter):
        Hp = _gram_op(problem, p)
        alpha = rr / float(p @ Hp)
        x = x + alpha * p
        r = r - alpha * Hp
        rr_new = float(r @ r)
        if np.sqrt(rr_new) <= 10 * tol or it % 50 == 49:
            g = np.asarray(problem.grad(x), dtype=np.float64)  # true residual
            best.offer(x, float(np.linalg.norm(g)))
            if best.gn <= tol or best.stalled >= 4:
                break
            r = -g
            rr_new = float(r @ r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    if best.x is None:
        best.offer(x, float(np.linalg.norm(problem.grad(x))))
    return best.x, {"method": "cg", "iterations": it + 1, "grad_norm": best.gn}


def newton(problem: Any, tol: float = TOL, max_iter: int = 200) -> tuple[np.ndarray, dict]:
    """Newton's method ``x <- x - t H(x)^{-1} grad f(x)``, Armijo backtracking (c = 1/4).

    Far from the optimum (Newton decrement ``g.dx > 1e-10``) ``t`` halves from 1
    until ``f(x - t dx) <= f(x) - t g.dx / 4``; near it full steps are taken,
    where function values are below rounding and quadratic convergence holds.
    """
    import scipy.linalg

    x = np.zeros(problem.d)
    best = _Best()
    it = 0
    for it in range(max_iter):  # noqa: B007
        g = np.asarray(problem.grad(x), dtype=np.float64)
        best.offer(x, float(np.linalg.norm(g)))
        if best.gn <= tol or best.stalled >= 4:
            break
        H = problem.hessian(x)
        try:
            dx = scipy.linalg.solve(H, g, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            dx = np.linalg.lstsq(H, g, rcond=None)[0]
        dec = float(g @ dx)
        t = 1.0
        if dec > 1e-10:
            f0 = problem.loss(x)
            while t > 1e-12 and problem.loss(x - t * dx) > f0 - 0.25 * t * dec:
                t *= 0.5
        x = x - t * dx
    return best.x, {"method": "newton", "iterations": it, "grad_norm": best.gn}


def lbfgs(problem: Any, tol: float = TOL, max_iter: int = 20_000) -> tuple[np.ndarray, dict]:
    """L-BFGS (``scipy.optimize.minimize``, method ``L-BFGS-B``) on the reduced loss/grad."""
    from scipy.optimize import minimize

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        return problem.loss(x), np.asarray(problem.grad(x), dtype=np.float64)

    res = minimize(
        fun,
        np.zeros(problem.d),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": tol / np.sqrt(problem.d), "ftol": 0.0, "maxiter": max_iter, "maxcor": 20},
    )
    x = np.asarray(res.x, dtype=np.float64)
    gn = float(np.linalg.norm(problem.grad(x)))
    return x, {"method": "lbfgs", "iterations": int(res.nit), "grad_norm": gn}


def solve(problem: Any, tol: float = TOL) -> tuple[np.ndarray, dict]:
    """``x*`` of ``problem`` by the method its type calls for (collective).

    Returns:
        ``(x_star, info)``: x_star float64, identical on every rank; info holds
        ``method``, ``iterations`` and the final ``grad_norm``.
    """
    from .linear import DENSE_MAX
    from .lsq import LeastSquares

    dense = problem.d <= DENSE_MAX
    if isinstance(problem, LeastSquares):
        x, info = normal_equations(problem, tol) if dense else cg(problem, tol)
    elif hasattr(problem, "hessian") and dense:
        x, info = newton(problem, tol)
    else:
        x, info = lbfgs(problem, tol)
    x = np.ascontiguousarray(x, dtype=np.float64)
    if problem.comm.size > 1:
        problem.comm.Bcast(x, root=0)
    info["grad_norm"] = float(problem.comm.bcast(info["grad_norm"], root=0))
    return x, info
