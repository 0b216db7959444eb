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

Quick: R = 4 and 6. Full: R = 4, 5, 6, 7, 8. ``examples/dqgd_rates.py`` measures the
rates against the theory curves.
"""

from __future__ import annotations

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENT", "runs"]

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
