"""Sharded objectives (lsq, logreg, quadratic, mlp) and the data they are built from.

    prob = ecmpi.problems.make("logreg", "sklearn:breast_cancer", comm=comm,
                               scale="standard", bias=True, l2_rel=1e-4)
    prob.grad(x); prob.L; prob.mu; prob.f_star; prob.describe()

See docs/problems.md for the dataset specs, constants and sharding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import Problem
from .data import Shard, load, parse_dataset_spec
from .linear import LinearModel
from .logreg import LogisticRegression
from .lsq import LeastSquares
from .mlp import MLP
from .quadratic import Quadratic, quadratic_spec

__all__ = [
    "MLP",
    "PROBLEMS",
    "LeastSquares",
    "LinearModel",
    "LogisticRegression",
    "Problem",
    "Quadratic",
    "Shard",
    "load",
    "make",
    "quadratic_spec",
]

#: problem name -> class
PROBLEMS: dict[str, type[Problem]] = {
    "lsq": LeastSquares,
    "logreg": LogisticRegression,
    "quadratic": Quadratic,
    "mlp": MLP,
}


def make(
    name: str,
    dataset: str | None = None,
    *,
    comm: Any = None,
    l2: float | None = None,
    l2_rel: float | None = None,
    kappa: float | None = None,
    dim: int | None = None,
    mu: float | None = None,
    n: int | None = None,
    seed: int | None = None,
    scale: str = "none",
    bias: float | bool = False,
    dtype: Any = np.float64,
    hidden: Any = None,
    test_fraction: float | None = None,
) -> Problem:
    """Build a problem by name from a dataset spec (collective: every rank calls).

    Args:
        name: ``lsq``, ``logreg``, ``quadratic`` or ``mlp``.
        dataset: a spec for :func:`ecmpi.problems.data.load`; required for lsq and
            logreg; for quadratic either ``quadratic:d=..,kappa=..`` or None with
            ``dim`` and ``kappa``.
        comm: communicator to shard over (ecmpi uses its own duplicate; None: COMM_WORLD).
        l2: regularization lambda (default 0).
        l2_rel: instead of ``l2``: ``lambda = l2_rel * L_data``.
        kappa, dim, mu, n, seed: the quadratic's condition number, dimension,
            smallest eigenvalue (default 1), rows (default 10*dim) and seed.
        scale, bias, dtype: passed to :func:`ecmpi.problems.data.load`.
        hidden, test_fraction: the network's hidden widths and held-out share (mlp only;
            its ``seed`` draws the initialization and the split, default 0).

    Raises:
        ValueError: unknown name, missing or conflicting options, bad dataset.
    """
    if name not in PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; available: {', '.join(PROBLEMS)}")
    if l2 is not None and l2_rel is not None:
        raise ValueError("give either l2 or l2_rel, not both")
    net = {"hidden": hidden, "test_fraction": test_fraction}
    if name == "mlp":
        quad = {"kappa": kappa, "dim": dim, "mu": mu, "n": n, "l2_rel": l2_rel}
        given = sorted(k for k, v in quad.items() if v is not None)
        if given:
            raise ValueError(f"{', '.join(given)} do not apply to the mlp problem")
        if dataset is None:
            raise ValueError("problem 'mlp' needs a dataset spec, e.g. sklearn:digits")
        return MLP.from_spec(
            dataset,
            comm=comm,
            scale=scale,
            bias=bias,
            dtype=dtype,
            hidden=hidden,
            l2=0.0 if l2 is None else l2,
            seed=seed or 0,
            test_fraction=test_fraction,
        )
    given = sorted(k for k, v in net.items() if v is not None)
    if given:
        raise ValueError(f"{', '.join(given)} apply to the mlp problem only, not {name}")
    quad = {"kappa": kappa, "dim": dim, "mu": mu, "n": n, "seed": seed}
    given = sorted(k for k, v in quad.items() if v is not None)
    if name == "quadratic":
        if dataset is None:
            if kappa is None or dim is None:
                raise ValueError("the quadratic problem needs kappa and dim (or a dataset spec)")
            dataset = quadratic_spec(dim, kappa, mu=1.0 if mu is None else mu, n=n, seed=seed or 0)
        elif given:
            raise ValueError(
                f"give the quadratic either a dataset spec or {', '.join(given)}, not both"
            )
        elif parse_dataset_spec(dataset)[0] != "quadratic":
            raise ValueError(
                f"the quadratic problem takes a 'quadratic:d=...,kappa=...' dataset, got "
                f"{dataset!r}; use lsq for other datasets"
            )
    else:
        if given:
            raise ValueError(f"{', '.join(given)} apply to the quadratic problem only, not {name}")
        if dataset is None:
            raise ValueError(f"problem {name!r} needs a dataset spec, e.g. synthetic:n=1000,d=20")
    cls = PROBLEMS[name]
    shard = load(dataset, comm=comm, scale=scale, bias=bias, task=cls.task, dtype=dtype)
    return cls(shard, comm=comm, l2=0.0 if l2 is None else l2, l2_rel=l2_rel)
