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

Three studies of the same family on synthetic 400 x d logistic regression:

- ``ec-lkatyusha-template`` (:data:`TEMPLATE`): the authors' template in full,
  lambda = L/1e4, d = 20, every method of the family (ec-sgd and
  ec-sgd-diana with one sample per step) under TopK with K = 1, 2, 3 and
  2-level random dithering, against uncompressed lkatyusha; 1,500 rounds.
  Quick: TopK with K = 2 only.
- ``ec-lkatyusha-kappa`` (:data:`KAPPA`): rounds to f - f* <= 1e-6 as kappa
  grows (R = 1e-1 .. 1e-3, d = 50, TopK K = 5, p = 0.2); theory: slope 1/2 of
  log(rounds) against log(kappa) for ec-lkatyusha, 1 for ec-lsvrg. Full adds
  the quadratic (kappa = 10 .. 1000, d = 50) with ec-gd, which converges there
  (every node's gradient vanishes at x*). ``examples/eclkatyusha_acceleration.py``
  fits the slopes.
- ``ec-lkatyusha-p`` (:data:`P_SWEEP`): the snapshot probability p of
  ec-lkatyusha (R = 1e-2, d = 50, TopK K = 2), rounds and bits to 1e-6, with
  p = ratio (the compression ratio) among the values.
"""

from __future__ import annotations

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENT", "KAPPA", "P_SWEEP", "TEMPLATE", "runs"]

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


# --- the template ---------------------------------------------------------------------------
_TEMPLATE_DATA = flags(
    problem="logreg", dataset="synthetic:n=400,d=20,seed=1", l2_rel=1e-4, x0="star+1"
)
_TEMPLATE_METHODS = (
    "ec-gd",
    "ec-sgd",
    "ec-lsvrg",
    "ec-sgd-diana",
    "ec-lsvrg-diana",
    "ec-lkatyusha",
)
_STOCHASTIC = ("ec-sgd", "ec-sgd-diana")
_TEMPLATE_COMPRESSORS = ("topk:k=1", "topk:k=2", "topk:k=3", "qsgd:levels=2,bucket=512")


def _slug(spec: str) -> str:
    return spec.replace(":", "-").replace(",", "-").replace("=", "")


def template_runs(compressors: tuple[str, ...], steps: int = 1500) -> tuple[Run, ...]:
    """lkatyusha uncompressed, then every compressed method under each compressor."""
    common = (*_TEMPLATE_DATA, *flags(steps=steps, log_every=10))
    out = [Run("lkatyusha_none", ("lkatyusha", *common, *flags(batch_size=0)))]
    for comp in compressors:
        for alg in _TEMPLATE_METHODS:
            opts = flags(
                compressor=comp,
                batch_size=1 if alg in _STOCHASTIC else 0,
                p="delta" if alg in _LOOPLESS_COMPRESSED else None,
            )
            out.append(Run(f"{alg}_{_slug(comp)}", (alg, *common, *opts)))
    return tuple(out)


def _template_setting(compressors: tuple[str, ...]) -> Setting:
    figures = tuple(
        FigureSpec(
            f"ec-lkatyusha-template_{_slug(c)}",
            runs=("lkatyusha_none", *(f"{a}_{_slug(c)}" for a in _TEMPLATE_METHODS)),
            title=f"logistic regression, lambda = L/1e4, {c}",
        )
        for c in compressors
    )
    return Setting(runs=template_runs(compressors), figures=figures, group_by=None)


TEMPLATE = Experiment(
    name="ec-lkatyusha-template",
    paper=EXPERIMENT.paper,
    description=(
        "The authors' template: logistic regression, lambda = L/1e4, start x* + 1, every "
        "error-compensated method under TopK (K = 1, 2, 3) and 2-level dithering, against "
        "uncompressed loopless Katyusha."
    ),
    quick=_template_setting(("topk:k=2",)),
    full=_template_setting(_TEMPLATE_COMPRESSORS),
)

# --- rounds against kappa ---------------------------------------------------------------------
_KAPPA_COMMON = flags(
    compressor="topk:k=5",
    x0="star+1",
    batch_size=0,
    target=1e-6,
    log_every=10,
)


def kappa_runs(l2_rels: tuple[float, ...], kappas: tuple[float, ...] = ()) -> tuple[Run, ...]:
    """ec-lkatyusha and ec-lsvrg (p = 0.2) at each lambda = R * L of the logistic
    regression (20,000 rounds at most), then ec-lkatyusha, ec-lsvrg and ec-gd on the
    quadratic at each kappa (80,000: ec-gd needs about kappa log(1/eps) rounds)."""
    vr = ("ec-lkatyusha", "ec-lsvrg")
    out = []
    for rel in l2_rels:
        data = flags(problem="logreg", dataset="synthetic:n=400,d=50,seed=1", l2_rel=rel)
        for alg in vr:
            argv = (alg, *data, *_KAPPA_COMMON, *flags(steps=20000, p="0.2"))
            out.append(Run(f"{alg}_R{rel:g}", argv))
    for kappa in kappas:
        data = flags(problem="quadratic", kappa=kappa, dim=50, steps=80000)
        for alg in (*vr, "ec-gd"):
            p = flags(p="0.2") if alg in vr else ()
            out.append(Run(f"{alg}_kappa{kappa:g}", (alg, *data, *_KAPPA_COMMON, *p)))
    return tuple(out)


_RELS = (1e-1, 3e-2, 1e-2, 3e-3, 1e-3)
_KAPPAS = (10.0, 30.0, 100.0, 300.0, 1000.0)
KAPPA = Experiment(
    name="ec-lkatyusha-kappa",
    paper=EXPERIMENT.paper,
    description=(
        "Rounds to f - f* <= 1e-6 against the condition number: ec-lkatyusha and ec-lsvrg "
        "(TopK K = 5, p = 0.2) on logistic regression (lambda = R L) and, in full, ec-gd too on "
        "the quadratic."
    ),
    quick=Setting(
        runs=kappa_runs((1e-1, 1e-2, 1e-3)),
        figures=(FigureSpec("ec-lkatyusha-kappa", x=("rounds",), group_by=None),),
        eps=1e-6,
        group_by=None,
    ),
    full=Setting(
        runs=kappa_runs(_RELS, _KAPPAS),
        figures=(
            FigureSpec(
                "ec-lkatyusha-kappa",
                x=("rounds",),
                group_by=None,
                runs=tuple(r.name for r in kappa_runs(_RELS)),
            ),
            FigureSpec(
                "ec-lkatyusha-kappa_quadratic",
                x=("rounds",),
                group_by=None,
                runs=tuple(r.name for r in kappa_runs((), _KAPPAS)),
            ),
        ),
        eps=1e-6,
        group_by=None,
    ),
)

# --- the snapshot probability -------------------------------------------------------------------


def p_runs(ps: tuple[str, ...]) -> tuple[Run, ...]:
    """ec-lkatyusha at each snapshot probability (a number or ``ratio``)."""
    common = flags(
        problem="logreg",
        dataset="synthetic:n=400,d=50,seed=1",
        l2_rel=1e-2,
        compressor="topk:k=2",
        x0="star+1",
        batch_size=0,
        steps=20000,
        target=1e-6,
        log_every=10,
    )
    return tuple(Run(f"p_{p}", ("ec-lkatyusha", *common, *flags(p=p))) for p in ps)


_PS = ("0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "ratio")
P_SWEEP = Experiment(
    name="ec-lkatyusha-p",
    paper=EXPERIMENT.paper,
    description=(
        "ec-lkatyusha's snapshot probability p on logistic regression (lambda = 1e-2 L, "
        "TopK K = 2): rounds and bits per worker to f - f* <= 1e-6; p = ratio is the "
        "compression ratio."
    ),
    quick=Setting(
        runs=p_runs(("0.05", "0.2", "1", "ratio")),
        figures=(FigureSpec("ec-lkatyusha-p", group_by=None),),
        eps=1e-6,
        group_by=None,
    ),
    full=Setting(
        runs=p_runs(_PS),
        figures=(FigureSpec("ec-lkatyusha-p", group_by=None),),
        eps=1e-6,
        group_by=None,
    ),
)
