"""DQ-GD (Lin, Kostina, Hassibi): the convergence-communication tradeoff at R bits per dimension.

A quadratic with condition number 3.5 in d = 50 (``f* = 0``), from x0 = 0,
on P = 2 workers by default (the paper has one; with one rank GD communicates
nothing and there is no bit count to compare with), each quantizing its own
gradient. Full-precision GD with step 2/(L+mu)
contracts at sigma = (kappa-1)/(kappa+1) = 0.556; DQ-GD at R bits per
dimension contracts at max(sigma, rho*2^-R) and naive quantized GD (``qgd``)
only at sigma + rho*2^-R (rho = sqrt(d) for the per-coordinate quantizer), so
DQ-GD matches GD from about R = 6 on while QGD stays slower. Against bits,
DQ-GD needs far fewer bits per worker than GD's 64 per entry; GD is the
reference of the compression ratio.

Quick: R = 4 and 6. Full: R = 4, 5, 6, 7, 8.

``dqgd-rates`` (:data:`RATES`) measures the linear rate
``(||x_T - x*|| / ||x_0 - x*||)^(1/T)`` against R = 2..10 for GD, DQ-GD (l2 and
linf range recursions) and QGD, with T chosen so that sigma^T = 1e-10, on the
quadratic (kappa = 3.5, d = 50 and 200) and on synthetic least squares (d = 50);
``examples/dqgd_rates.py`` draws it beside the theory curves. Quick: the
quadratic in d = 50, R = 2, 4, 6, 8.

``dqgd-real`` (:data:`REAL`) is least squares on scikit-learn's diabetes (442 x 10,
standardized, bias column; kappa = 470, sigma = 0.9958): GD and DQ-GD / QGD at
R = 3, 4, 6, 8, 12 for T = 4330 steps (sigma^T = 1e-8), distance against bits.
Quick: R = 4 and 8, 1000 steps.
"""

from __future__ import annotations

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENT", "RATES", "REAL", "rate_runs", "real_runs", "runs"]

KAPPA = 3.5
_COMMON = flags(problem="quadratic", kappa=KAPPA, dim=50, steps=60)
#: 2 / (L + mu) with mu = 1, L = kappa
GD_STEP = 2.0 / (KAPPA + 1.0)


def runs(bits: tuple[int, ...]) -> tuple[Run, ...]:
    """GD, then DQ-GD and QGD at each R."""
    out = [Run("gd", ("gd", *_COMMON, *flags(lr=GD_STEP)))]
    for alg in ("dqgd", "qgd"):
        for r in bits:
            out.append(Run(f"{alg}_R{r}", (alg, *_COMMON, *flags(bits_per_dim=r))))
    return tuple(out)


_GROUPS = ("algorithm", "hyperparameters.bits_per_dim")
_TITLE = f"quadratic, kappa = {KAPPA:g}, d = 50"
EXPERIMENT = Experiment(
    name="dqgd",
    paper=(
        "Lin, Kostina, Hassibi. Achieving the fundamental convergence-communication tradeoff "
        "with Differentially Quantized Gradient Descent. arXiv 2002.02508."
    ),
    description=(
        "Quadratic, kappa = 3.5, d = 50, P workers: GD (step 2/(L+mu)) against DQ-GD and naive "
        "quantized GD at R bits per dimension per iteration."
    ),
    quick=Setting(
        runs=runs((4, 6)),
        figures=(FigureSpec("dqgd", x=("rounds", "bits"), group_by=_GROUPS, title=_TITLE),),
        eps=1e-10,
        group_by=_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
    full=Setting(
        runs=runs((4, 5, 6, 7, 8)),
        figures=(FigureSpec("dqgd", x=("rounds", "bits"), group_by=_GROUPS, title=_TITLE),),
        eps=1e-10,
        group_by=_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
)


#: (tag, problem options, steps T with sigma^T = 1e-10, GD step 2/(L+mu)) of the rate sweep
_RATE_PROBLEMS = {
    "q50": (flags(problem="quadratic", kappa=KAPPA, dim=50), 40, GD_STEP),
    "q200": (flags(problem="quadratic", kappa=KAPPA, dim=200), 40, GD_STEP),
    # L = 1.3237, mu = 0.7048 (sigma = 0.305)
    "lsq50": (flags(problem="lsq", dataset="synthetic:n=2000,d=50"), 20, 0.985927),
}
#: the variants of the rate sweep: algorithm and extra options
_VARIANTS = {
    "dqgd": ("dqgd", ()),
    "dqgd-linf": ("dqgd", flags(range_norm="linf")),
    "qgd": ("qgd", ()),
}


def rate_runs(problems: tuple[str, ...], bits: tuple[int, ...]) -> tuple[Run, ...]:
    """For each problem: GD, then DQ-GD (l2 and linf ranges) and QGD at each R."""
    out = []
    for tag in problems:
        opts, steps, gd_step = _RATE_PROBLEMS[tag]
        common = (*opts, *flags(steps=steps))
        out.append(Run(f"{tag}_gd", ("gd", *common, *flags(lr=gd_step))))
        for name, (alg, extra) in _VARIANTS.items():
            for r in bits:
                out.append(
                    Run(f"{tag}_{name}_R{r}", (alg, *common, *extra, *flags(bits_per_dim=r)))
                )
    return tuple(out)


_RATE_GROUPS = (
    "dataset",
    "algorithm",
    "hyperparameters.range_norm",
    "hyperparameters.bits_per_dim",
)
RATES = Experiment(
    name="dqgd-rates",
    paper=EXPERIMENT.paper,
    description=(
        "Measured linear rate against bits per dimension R (GD, DQ-GD with l2 and linf ranges, "
        "QGD) on the quadratic (kappa = 3.5) and synthetic least squares, T with sigma^T = 1e-10."
    ),
    quick=Setting(
        runs=rate_runs(("q50",), (2, 4, 6, 8)),
        figures=(FigureSpec("dqgd-rates", x=("rounds",), group_by=None, title=_TITLE),),
        group_by=None,
        ranks=1,
    ),
    full=Setting(
        runs=rate_runs(tuple(_RATE_PROBLEMS), tuple(range(2, 11))),
        figures=tuple(
            FigureSpec(
                f"dqgd-rates_{tag}",
                x=("rounds",),
                group_by=None,
                runs=tuple(r.name for r in rate_runs((tag,), tuple(range(2, 11)))),
            )
            for tag in _RATE_PROBLEMS
        ),
        group_by=None,
        ranks=1,
    ),
)

_DIABETES = flags(problem="lsq", dataset="sklearn:diabetes", scale="standard", bias=True)
#: 2 / (L + mu) of diabetes least squares (L = 4.0242, mu = 0.008561)
DIABETES_GD_STEP = 0.495937


def real_runs(bits: tuple[int, ...], steps: int) -> tuple[Run, ...]:
    """GD, then DQ-GD and QGD at each R, on diabetes least squares."""
    common = (*_DIABETES, *flags(steps=steps, log_every=10))
    out = [Run("gd", ("gd", *common, *flags(lr=DIABETES_GD_STEP)))]
    for alg in ("dqgd", "qgd"):
        for r in bits:
            out.append(Run(f"{alg}_R{r}", (alg, *common, *flags(bits_per_dim=r))))
    return tuple(out)


_REAL_FIGURE = FigureSpec(
    "dqgd-real", x=("rounds", "bits"), group_by=_GROUPS, title="least squares, diabetes"
)
REAL = Experiment(
    name="dqgd-real",
    paper=EXPERIMENT.paper,
    description=(
        "Least squares on diabetes (standardized, bias; kappa = 470): GD (step 2/(L+mu)) "
        "against DQ-GD and naive quantized GD at R bits per dimension per iteration."
    ),
    quick=Setting(
        runs=real_runs((4, 8), 1000),
        figures=(_REAL_FIGURE,),
        group_by=_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
    full=Setting(
        runs=real_runs((3, 4, 6, 8, 12), 4330),
        figures=(_REAL_FIGURE,),
        group_by=_GROUPS,
        ranks=2,
        baseline={"algorithm": "gd"},
    ),
)
