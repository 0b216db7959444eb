"""DQ-GD (Lin, Kostina, Hassibi): the convergence-communication tradeoff at R bits per dimension.

Every setting is defined here once; ``docs/reproduce.md`` shows the tables.

``dqgd`` (:data:`EXPERIMENT`, ``ecmpi reproduce dqgd``): the multi-worker case.
A quadratic with condition number 3.5 in d = 50 whose rows carry target noise
(``quadratic:...,noise=0.5``), so each of the P = 2 workers holds a shard with
its own minimizer (``G = max_p ||grad f_p(x*)|| > 0``) and the server's average
of the decoded gradients matters. GD (step 2/(L+mu)) against DQ-GD and the
naive quantized GD in three forms: the range shrinking on the paper's schedule
(``qgd``), the worst-case-safe fixed range ``L*D + G`` (``qgd --qgd-range
fixed``) and one float32 scale sent per step (``qgd --send-scale``, d*R + 32
bits). Three data seeds (basis, x_true and noise), mean +- std. Quick: R = 4
and 8, one seed, no schedule variant. Full: R = 4, 6, 8.

``dqgd-rates`` (:data:`RATES`): the rate claim, one worker as in the paper.
The measured linear rate ``(||x_T - x*|| / ||x_0 - x*||)^(1/T)`` against R = 2..8
for d in {10, 50, 200, 1000} (the quadratic with n = d rows, kappa = 3.5,
T = 40 so that sigma^T = 6e-11, three data seeds) for GD, DQ-GD (l2 and linf
range recursions) and the three naive forms; ``examples/dqgd_rates.py`` runs it
in one MPI job and writes the table and the figure beside
``max(sigma, rho 2^-R)``, ``sigma + rho 2^-R`` and ``max(sigma, 2^-R)``.
Quick: d = 10 and 200, R = 2, 4, 6, 8, one seed.

``dqgd-real`` (:data:`REAL`): least squares on scikit-learn's diabetes (442 x 10,
standardized, bias column; kappa = 470, sigma = 0.9958, T = 4330 steps so that
sigma^T = 1e-8) and on a large synthetic set (``synthetic:n=100000,d=500``,
kappa = 1.32, sigma = 0.14, 20 steps), P = 2 workers on contiguous shards; on
diabetes also DQ-HB and DQ-NAG (``dqhb``, ``dqnag``, the journal version's
momentum methods with the same differential quantization).
Quick: diabetes only, R = 4 and 8, 1000 steps.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from ..algorithms.dqgd import gd_contraction
from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = [
    "EXPERIMENT",
    "NAIVE",
    "RATES",
    "RATE_STYLE",
    "REAL",
    "SEEDS",
    "hetero_runs",
    "measured_rates",
    "rate_runs",
    "rate_table",
    "real_runs",
]

KAPPA = 3.5
#: 2 / (L + mu) with mu = 1, L = kappa
GD_STEP = 2.0 / (KAPPA + 1.0)
#: data seeds of every randomized setting
SEEDS = (0, 1, 2)
#: the per-row target noise that makes the shards differ
NOISE = 0.5
#: variant name -> (algorithm, extra options); the naive forms first, then DQ-GD's
NAIVE = {
    "qgd": ("qgd", ()),
    "qgd-fixed": ("qgd", flags(qgd_range="fixed")),
    "qgd-scale": ("qgd", flags(send_scale="true")),
}
_DQ = {"dqgd": ("dqgd", ()), "dqgd-linf": ("dqgd", flags(range_norm="linf"))}


def _quad(dim: int, seed: int, *, n: int | None = None, noise: float = 0.0) -> tuple[str, ...]:
    spec = f"quadratic:d={dim},kappa={KAPPA!r}"
    spec += (f",n={n}" if n else "") + (f",seed={seed}" if seed else "")
    spec += f",noise={noise!r}" if noise else ""
    return flags(problem="quadratic", dataset=spec)


def hetero_runs(
    bits: tuple[int, ...], variants: tuple[str, ...], seeds: tuple[int, ...] = SEEDS
) -> tuple[Run, ...]:
    """Per seed: GD, then DQ-GD and each naive variant at each R (heterogeneous shards)."""
    table = {"dqgd": _DQ["dqgd"], **NAIVE}
    out = []
    for s in seeds:
        common = (*_quad(50, s, noise=NOISE), *flags(steps=60))
        out.append(Run(f"gd_s{s}", ("gd", *common, *flags(lr=GD_STEP))))
        for name in variants:
            alg, extra = table[name]
            for r in bits:
                argv = (alg, *common, *extra, *flags(bits_per_dim=r))
                out.append(Run(f"{name}_R{r}_s{s}", argv))
    return tuple(out)


_GROUPS = (
    "algorithm",
    "hyperparameters.qgd_range",
    "hyperparameters.send_scale",
    "hyperparameters.bits_per_dim",
)
_TITLE = f"quadratic, kappa = {KAPPA:g}, d = 50, target noise {NOISE:g}, P = 2"
_FIG = (FigureSpec("dqgd", x=("rounds", "bits"), group_by=_GROUPS, title=_TITLE),)
_DESCRIPTION = (
    f"Quadratic, kappa = {KAPPA:g}, d = 50, target noise {NOISE:g} (every shard its own "
    "minimizer), P = 2, three data seeds: GD (step 2/(L+mu)) against DQ-GD and naive quantized "
    "GD (range on the paper's schedule, fixed worst-case range, one float32 scale per step) at "
    "R bits per dimension per iteration."
)
EXPERIMENT = Experiment(
    name="dqgd",
    paper=(
        "Lin, Kostina, Hassibi. Achieving the fundamental convergence-communication tradeoff "
        "with Differentially Quantized Gradient Descent. arXiv 2002.02508."
    ),
    description=_DESCRIPTION,
    quick=Setting(
        runs=hetero_runs((4, 8), ("dqgd", "qgd-fixed", "qgd-scale"), (0,)),
        figures=_FIG,
        eps=1e-6,
        group_by=_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
    full=Setting(
        runs=hetero_runs((4, 6, 8), ("dqgd", *NAIVE)),
        figures=_FIG,
        eps=1e-6,
        group_by=_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
)

#: dimensions and steps of the rate sweep (sigma^40 = 6e-11 at kappa = 3.5)
RATE_DIMS = (10, 50, 200, 1000)
RATE_BITS = tuple(range(2, 9))
RATE_STEPS = 40


def rate_runs(
    dims: tuple[int, ...], bits: tuple[int, ...], seeds: tuple[int, ...] = SEEDS
) -> tuple[Run, ...]:
    """For each d and seed: GD, then DQ-GD (l2, linf) and the naive forms at each R."""
    out = []
    for dim in dims:
        for s in seeds:
            common = (*_quad(dim, s, n=dim), *flags(steps=RATE_STEPS))
            out.append(Run(f"d{dim}_s{s}_gd", ("gd", *common, *flags(lr=GD_STEP))))
            for name, (alg, extra) in {**_DQ, **NAIVE}.items():
                for r in bits:
                    argv = (alg, *common, *extra, *flags(bits_per_dim=r))
                    out.append(Run(f"d{dim}_s{s}_{name}_R{r}", argv))
    return tuple(out)


def _rate_figure(dim: int, bits: tuple[int, ...]) -> FigureSpec:
    """Distance curves of one d and seed 0 (the rates themselves: examples/dqgd_rates.py)."""
    names = tuple(r.name for r in rate_runs((dim,), bits, (0,)))
    return FigureSpec("dqgd-rates", x=("rounds",), group_by=None, runs=names, title=f"d = {dim}")


RATES = Experiment(
    name="dqgd-rates",
    paper=EXPERIMENT.paper,
    description=(
        "Measured linear rate against bits per dimension R = 2..8 on one worker (GD, DQ-GD with "
        f"l2 and linf ranges, naive QGD in three forms), quadratic kappa = {KAPPA:g} with n = d "
        "rows for d = 10, 50, 200, 1000, T = 40, three data seeds (examples/dqgd_rates.py)."
    ),
    quick=Setting(
        runs=rate_runs((10, 200), (2, 4, 6, 8), (0,)),
        figures=(_rate_figure(10, (2, 4, 6, 8)),),
        group_by=None,
        ranks=1,
    ),
    full=Setting(
        runs=rate_runs(RATE_DIMS, RATE_BITS),
        figures=(_rate_figure(50, RATE_BITS),),
        group_by=None,
        ranks=1,
    ),
)

#: plot style of each variant of the rate sweep
RATE_STYLE = {
    "dqgd": "C1o-",
    "dqgd-linf": "C3^-",
    "qgd": "C2x--",
    "qgd-fixed": "C4s--",
    "qgd-scale": "C5d--",
}
_RUN_NAME = re.compile(r"d(\d+)_s(\d+)_(.+?)(?:_R(\d+))?$")


def measured_rates(out: str | Path) -> Any:
    """One row per run: d, seed, variant, R, measured rate, sigma."""
    from .. import analyze

    df = analyze.load(out)
    parts = df["file"].map(lambda f: _RUN_NAME.match(Path(f).stem).groups())
    df["d"] = [int(p[0]) for p in parts]
    df["seed"] = [int(p[1]) for p in parts]
    df["variant"] = [p[2] for p in parts]
    df["R"] = [int(p[3]) if p[3] else 0 for p in parts]
    dist = df["trajectory"].map(lambda tr: np.asarray(tr["dist_to_opt"]))
    df["rate"] = [(d[-1] / d[0]) ** (1 / (len(d) - 1)) for d in dist]
    df["sigma"] = [gd_contraction(L, mu) for L, mu in zip(df["L"], df["mu"], strict=True)]
    return df[["d", "seed", "variant", "R", "rate", "sigma"]]


def rate_table(df: Any) -> str:
    """Markdown: per d and R, mean +- std of each variant's rate, and the three theory curves."""
    variants = [v for v in RATE_STYLE if v in set(df["variant"])]
    head = ["d", "R", "GD", *variants, "max(s, rho 2^-R)", "s + rho 2^-R", "max(s, 2^-R)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for d, sel in df.groupby("d"):
        sigma = float(sel["sigma"].iloc[0])
        gd = sel.loc[sel["variant"] == "gd", "rate"]
        for r in sorted(set(sel["R"]) - {0}):
            eps = np.sqrt(d) * 2.0**-r
            row = [str(d), str(r), f"{gd.mean():.3f}"]
            for v in variants:
                x = sel.loc[(sel["variant"] == v) & (sel["R"] == r), "rate"]
                row.append(
                    f"{x.mean():.3f} ± {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}"
                )
            row += [f"{max(sigma, eps):.3f}", f"{sigma + eps:.3f}", f"{max(sigma, 2.0**-r):.3f}"]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


_DIABETES = flags(problem="lsq", dataset="sklearn:diabetes", scale="standard", bias=True)
#: 2 / (L + mu) of diabetes least squares (L = 4.0242, mu = 0.008561)
DIABETES_GD_STEP = 0.495937
_LARGE = flags(problem="lsq", dataset="synthetic:n=100000,d=500")
#: 2 / (L + mu) of the large set (L = 1.14217, mu = 0.86429, sigma = 0.1385)
LARGE_GD_STEP = 0.996779


def real_runs(
    tag: str, bits: tuple[int, ...], steps: int, variants: tuple[str, ...]
) -> tuple[Run, ...]:
    """GD, then each variant at each R on ``diabetes`` or ``large`` least squares."""
    opts, step, every = {
        "diabetes": (_DIABETES, DIABETES_GD_STEP, 10),
        "large": (_LARGE, LARGE_GD_STEP, 1),
    }[tag]
    common = (*opts, *flags(steps=steps, log_every=every))
    out = [Run(f"{tag}_gd", ("gd", *common, *flags(lr=step)))]
    table = {"dqgd": _DQ["dqgd"], "dqhb": ("dqhb", ()), "dqnag": ("dqnag", ()), **NAIVE}
    for name in variants:
        alg, extra = table[name]
        for r in bits:
            out.append(Run(f"{tag}_{name}_R{r}", (alg, *common, *extra, *flags(bits_per_dim=r))))
    return tuple(out)


_REAL_GROUPS = ("dataset", *_GROUPS)
#: the naive schedule diverges on diabetes below R = 12 (its range overflows), so it is left out
_DIAB_FULL = real_runs(
    "diabetes", (4, 6, 8), 4330, ("dqgd", "dqhb", "dqnag", "qgd-fixed", "qgd-scale")
)
_LARGE_FULL = real_runs("large", (4, 8), 20, ("dqgd", "qgd-fixed", "qgd-scale"))
REAL = Experiment(
    name="dqgd-real",
    paper=EXPERIMENT.paper,
    description=(
        "Least squares on diabetes (standardized, bias; kappa = 470) and on synthetic "
        "n = 100000, d = 500 (kappa = 1.32), P = 2: GD (step 2/(L+mu)) against DQ-GD and "
        "the naive forms."
    ),
    quick=Setting(
        runs=real_runs("diabetes", (4, 8), 1000, ("dqgd", "qgd-fixed", "qgd-scale")),
        figures=(
            FigureSpec(
                "dqgd-real", x=("rounds", "bits"), group_by=_GROUPS, title="least squares, diabetes"
            ),
        ),
        group_by=_REAL_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
    full=Setting(
        runs=_DIAB_FULL + _LARGE_FULL,
        figures=(
            FigureSpec(
                "dqgd-real",
                x=("rounds", "bits"),
                group_by=_GROUPS,
                runs=tuple(r.name for r in _DIAB_FULL),
                title="least squares, diabetes",
            ),
            FigureSpec(
                "dqgd-large",
                x=("rounds", "bits"),
                group_by=_GROUPS,
                runs=tuple(r.name for r in _LARGE_FULL),
                title="least squares, synthetic n = 100000, d = 500",
            ),
        ),
        group_by=_REAL_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
)
