"""EC-LKatyusha (Qian, Richtárik, Zhang, NeurIPS 2021): accelerated error compensation.

l2-regularized logistic regression (the authors' template: lambda = R * L,
start at x* + 1, TopK compression) comparing error-compensated GD, L-SVRG and
loopless Katyusha with uncompressed loopless Katyusha; f - f* against rounds
and bits per worker. The claim: rounds to reach f - f* <= eps grow like
sqrt(kappa) for EC-LKatyusha and like kappa for EC-GD / EC-LSVRG, so it needs
several times fewer rounds at large kappa (kappa ~ 1/R).

Every method uses full local gradients (``--batch-size 0``: one round = one
local pass, so rounds measure communication, not sampling noise) and the
loopless methods refresh their snapshot with probability ``p = delta``, the
contraction factor K/d of TopK (the paper's "p in proportion to K/d"; the
default 1/m is 1 with full gradients, which sends a full-precision snapshot
gradient every round). lkatyusha is the identity-compressed reference.

Quick: synthetic 2,000 x 100, R = 1e-2, TopK with K = 3. Full: R = 1e-2, 1e-3
and 1e-4 (kappa about 1e2 to 1e4), one figure each.
"""

from __future__ import annotations

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENT", "runs"]

DATASET = "synthetic:n=2000,d=100"
_METHODS = ("lkatyusha", "ec-gd", "ec-lsvrg", "ec-lkatyusha")
#: the methods whose snapshot probability is set to C's contraction factor
_LOOPLESS_COMPRESSED = ("ec-lsvrg", "ec-lkatyusha")


def runs(l2_rel: float, steps: int, k: int = 3) -> tuple[Run, ...]:
    """The four methods at ``lambda = l2_rel * L``; lkatyusha sends full precision."""
    common = flags(
        problem="logreg",
        dataset=DATASET,
        l2_rel=l2_rel,
        x0="star+1",
        batch_size=0,
        steps=steps,
        log_every=10,
        target=1e-9,
    )
    tag = f"{l2_rel:.0e}".replace("-0", "-")
    out = []
    for alg in _METHODS:
        comp = "none" if alg == "lkatyusha" else f"topk:k={k}"
        p = "delta" if alg in _LOOPLESS_COMPRESSED else None
        out.append(Run(f"{alg}_l2{tag}", (alg, *common, *flags(compressor=comp, p=p))))
    return tuple(out)


_FULL = ((1e-2, 2000), (1e-3, 6000), (1e-4, 20000))
EXPERIMENT = Experiment(
    name="ec-lkatyusha",
    paper=(
        "Qian, Richtárik, Zhang. Error Compensated Distributed SGD Can Be Accelerated. "
        "NeurIPS 2021, arXiv 2010.00091."
    ),
    description=(
        "l2-regularized logistic regression, start x* + 1, TopK (K = 3): EC-GD, EC-LSVRG and "
        "EC-LKatyusha against uncompressed loopless Katyusha, f - f* against rounds and bits."
    ),
    quick=Setting(
        runs=runs(1e-2, 1500),
        figures=(FigureSpec("ec-lkatyusha", x=("rounds", "bits")),),
        eps=1e-6,
    ),
    full=Setting(
        runs=tuple(r for l2, steps in _FULL for r in runs(l2, steps)),
        figures=tuple(
            FigureSpec(
                f"ec-lkatyusha_l2{l2:.0e}".replace("-0", "-"),
                x=("rounds", "bits"),
                runs=tuple(r.name for r in runs(l2, steps)),
                title=f"logistic regression, lambda = {l2:g} L",
            )
            for l2, steps in _FULL
        ),
        eps=1e-6,
        group_by=("algorithm", "compressor", "l2_rel"),
    ),
)
