"""EC-LKatyusha (Qian, Richtárik, Zhang, NeurIPS 2021): accelerated error compensation.

``ec-lkatyusha`` (:data:`EXPERIMENT`) is the paper's template: l2-regularized
logistic regression with ``lambda = R * L`` (kappa = L/mu about 1/R), start
``x* + 1``, TopK compression, and the claim that rounds to ``f - f* <= 1e-6``
grow like sqrt(kappa) for EC-LKatyusha but like kappa for the error-compensated
methods without momentum. The comparison is the DIANA family, which converges
to x* on heterogeneous data (EC-GD alone stops at a floor there): ``ec-gd-diana``
(full local gradients, step 1/L) and ``ec-lsvrg-diana`` (loopless SVRG on
minibatches of :data:`BATCH` rows, the finite-sum regime: with full local gradients
and its local snapshot its estimator is ``grad f_tau(x)`` and it runs
ec-gd-diana's iterates, measured identical). Every
method uses its defaults: the loopless methods refresh their snapshot with
``p = delta`` (K/d for TopK), an unbiased compressor is scaled into a
contraction (``--ef-scale auto``), DIANA's shifts use ``qsgd:levels=1``.

Full (:data:`DATASETS` x :data:`RELS` x :data:`METHODS` x 3 seeds, then
:func:`panel_runs`):

- the kappa sweep: R = 1e-2, 1e-3, 1e-4, 1e-5 on the synthetic set, scikit-learn's
  breast_cancer and keel's mushroom, magic and spambase (standardized, a bias
  column), TopK K = 1, full local gradients (one round = one local pass) except
  ec-lsvrg-diana (minibatches of :data:`BATCH` rows);
  rounds capped per R (:data:`STEPS`), a run stops at ``f - f* <= 1e-8`` so the
  last crossing of 1e-6 lies inside the log;
- at R = 1e-4 on the synthetic set: TopK K = 2, 3 and random dithering
  (``qsgd:levels=2``), and ec-lkatyusha on minibatches of :data:`BATCH` rows
  (m = 50 per node) under TopK K = 1;
- the paper's 20 workers (:func:`worker_runs`): breast_cancer at R = 1e-2 and
  1e-3 on :data:`WORKERS` MPI ranks, one worker and one shard (28-29 rows)
  per rank; the other runs use the ``reproduce -n`` rank count (4 by default).

Quick: the synthetic set at R = 1e-2 and 1e-3, one seed, at most 800 rounds (6 runs).
``examples/eclkatyusha_kappa.py`` runs any subset of these runs in one MPI job
and fits the exponents.

Three older studies of the same family on synthetic 400 x d logistic regression:

- ``ec-lkatyusha-template`` (:data:`TEMPLATE`): lambda = L/1e4, d = 20, every
  method of the family (ec-sgd and ec-sgd-diana with one sample per step)
  under TopK with K = 1, 2, 3 and 2-level random dithering, against
  uncompressed lkatyusha; 1,500 rounds. Quick: TopK with K = 2 only.
- ``ec-lkatyusha-kappa`` (:data:`KAPPA`): rounds to f - f* <= 1e-6 as kappa
  grows (R = 1e-1 .. 1e-3, d = 50, TopK K = 5, p = 0.2) for ec-lkatyusha and
  ec-lsvrg; full adds the quadratic (kappa = 10 .. 1000, d = 50) with ec-gd.
  ``examples/eclkatyusha_acceleration.py`` fits the slopes.
- ``ec-lkatyusha-p`` (:data:`P_SWEEP`): the snapshot probability p of
  ec-lkatyusha (R = 1e-2, d = 50, TopK K = 2), rounds and bits to 1e-6, with
  p = ratio (the compression ratio) among the values.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = [
    "BATCH",
    "DATASETS",
    "EPS",
    "EXPERIMENT",
    "KAPPA",
    "METHODS",
    "P_SWEEP",
    "RELS",
    "SEEDS",
    "STEPS",
    "TEMPLATE",
    "WORKERS",
    "extrapolated_rounds",
    "kappa_table",
    "panel_runs",
    "panel_table",
    "sweep_runs",
    "worker_runs",
]

_STANDARD = {"scale": "standard", "bias": True}
#: short name -> dataset flags of the logistic regression
DATASETS: dict[str, dict] = {
    "synthetic": {"dataset": "synthetic:n=2000,d=50,seed=1"},
    "breast_cancer": {"dataset": "sklearn:breast_cancer", **_STANDARD},
    "mushroom": {"dataset": "keel:mushroom", **_STANDARD},
    "magic": {"dataset": "keel:magic", **_STANDARD},
    "spambase": {"dataset": "keel:spambase", **_STANDARD},
}
#: the compared methods, the accelerated one first
METHODS = ("ec-lkatyusha", "ec-lsvrg-diana", "ec-gd-diana")
#: lambda = R * L: kappa about 1e2 .. 1e5
RELS = (1e-2, 1e-3, 1e-4, 1e-5)
#: the round cap at each R (a run that does not reach eps by then is a lower bound)
#: minibatch rows of ec-lsvrg-diana in the sweep (and of ec-lkatyusha's minibatch runs)
BATCH = 10
STEPS = {1e-2: 2000, 1e-3: 4000, 1e-4: 8000, 1e-5: 10000}
SEEDS = (0, 1, 2)
EPS = 1e-6


def _slug(spec: str) -> str:
    return spec.replace(":", "-").replace(",", "-").replace("=", "")


def _run(
    alg: str, data: str, rel: float, seed: int, *, comp: str = "topk:k=1", batch=0, steps=None
):
    tag = f"{alg}_{data}_R{rel:g}_s{seed}"
    if comp != "topk:k=1":
        tag += "_" + _slug(comp)
    if batch:
        tag += f"_b{batch}"
    argv = flags(
        problem="logreg",
        **DATASETS[data],
        l2_rel=rel,
        x0="star+1",
        compressor=comp,
        batch_size=batch,
        steps=steps or STEPS[rel],
        log_every=10,
        target=1e-8,
        seed=seed,
    )
    return Run(tag, (alg, *argv))


def sweep_runs(
    datasets=tuple(DATASETS), rels=RELS, seeds=SEEDS, methods=METHODS, steps=None
) -> tuple[Run, ...]:
    """Every method at every ``lambda = R * L`` on every data set, TopK K = 1, full local
    gradients except ec-lsvrg-diana (minibatches of :data:`BATCH` rows)."""
    return tuple(
        _run(a, ds, rel, s, steps=steps, batch=BATCH if a == "ec-lsvrg-diana" else 0)
        for ds in datasets
        for rel in rels
        for a in methods
        for s in seeds
    )


def panel_runs(seeds=SEEDS, rel: float = 1e-4) -> tuple[Run, ...]:
    """R = 1e-4 on the synthetic set: other compressors (ec-lsvrg-diana on minibatches, as
    in the sweep), and ec-lkatyusha on minibatches."""
    out = [
        _run(a, "synthetic", rel, s, comp=c, batch=BATCH if a == "ec-lsvrg-diana" else 0)
        for c in ("topk:k=2", "topk:k=3", "qsgd:levels=2,bucket=512")
        for a in METHODS
        for s in seeds
    ]
    out += [_run("ec-lkatyusha", "synthetic", rel, s, batch=BATCH) for s in seeds]
    return tuple(out)


#: the paper's worker count: one MPI rank per worker (mpiexec oversubscribes smaller machines)
WORKERS = 20


def worker_runs(seeds=SEEDS, rels=(1e-2, 1e-3), methods=METHODS) -> tuple[Run, ...]:
    """The sweep's breast_cancer runs on :data:`WORKERS` ranks, one worker (shard) each."""
    return tuple(
        replace(r, name=f"{r.name}_w{WORKERS}", ranks=WORKERS)
        for r in sweep_runs(("breast_cancer",), rels, seeds, methods)
    )


def _figures(datasets, rels) -> tuple[FigureSpec, ...]:
    return tuple(
        FigureSpec(
            f"ec-lkatyusha_{ds}_R{rel:g}",
            x=("rounds", "bits"),
            runs=tuple(r.name for r in sweep_runs((ds,), (rel,), seeds=(0,))),
            title=f"logistic regression, {ds}, lambda = {rel:g} L, topk:k=1",
        )
        for ds in datasets
        for rel in rels
    )


_GROUP = ("algorithm", "dataset", "compressor", "l2_rel", "batch_size")
EXPERIMENT = Experiment(
    name="ec-lkatyusha",
    paper=(
        "Qian, Richtárik, Zhang. Error Compensated Distributed SGD Can Be Accelerated. "
        "NeurIPS 2021, arXiv 2010.00091."
    ),
    description=(
        "l2-regularized logistic regression, lambda = R L (R = 1e-2 .. 1e-5), start x* + 1, "
        "TopK K = 1: EC-LKatyusha against EC-LSVRG-DIANA and EC-GD-DIANA on synthetic, "
        "breast_cancer, mushroom, magic and spambase, 3 seeds; rounds and bits to f - f* <= 1e-6."
    ),
    quick=Setting(
        runs=sweep_runs(("synthetic",), (1e-2, 1e-3), seeds=(0,), steps=800),
        figures=_figures(("synthetic",), (1e-3,)),
        eps=EPS,
        group_by=_GROUP,
    ),
    full=Setting(
        runs=sweep_runs() + panel_runs() + worker_runs(),
        figures=_figures(tuple(DATASETS), (1e-4,)),
        eps=EPS,
        group_by=_GROUP,
    ),
)

# --- rounds against kappa, fitted ---------------------------------------------------------


def _fit(kappa: np.ndarray, rounds: np.ndarray) -> float:
    ok = np.isfinite(rounds)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(np.log(kappa[ok]), np.log(rounds[ok]), 1)[0])


def extrapolated_rounds(traj: dict[str, np.ndarray], eps: float = EPS) -> float:
    """Rounds to ``eps`` of a run that stopped above it, from its last linear rate:
    ``log(f - f*) = a + b t`` fitted over the second half of its steps, solved for
    ``eps`` (inf when the fitted line does not decrease). An extrapolation, not a
    measurement: the tables mark it ``~N``."""
    t, f = np.asarray(traj["step"], float), np.asarray(traj["suboptimality"], float)
    ok = np.isfinite(f) & (f > 0)
    t, f = t[ok], f[ok]
    half = t >= t[-1] / 2 if len(t) else t
    if half.sum() < 2:
        return math.inf
    b, a = np.polyfit(t[half], np.log(f[half]), 1)
    flat = b * (t[-1] - t[half][0]) > -1e-9  # not even a 1e-9 relative decrease fitted
    return math.inf if flat else float((math.log(eps) - a) / b)


_LEGEND = (
    f"Rounds to f - f* <= {EPS:g} (mean +- std over seeds; `>N`: not reached by step N "
    "in some seed, mean of the lower bounds; `~M`: the mean of the rounds extrapolated "
    "from each run's last linear rate)."
)


def _rounds(out: Path) -> tuple[Any, Any]:
    """The completed runs under ``out`` and their rounds to :data:`EPS` (last crossing),
    lower bounds and extrapolations, one row per run."""
    from .. import analyze

    df = analyze.load(out)
    df = df[df["status"] == "completed"].reset_index(drop=True)  # unfinished runs left out
    per = analyze.summary(df, eps=EPS)
    per["kappa"] = (df["L"] / df["mu"]).to_numpy(float)
    per["l2_rel"] = df["l2_rel"].to_numpy(float)
    per["data"] = df["dataset"].map({v["dataset"]: k for k, v in DATASETS.items()})
    per["batch_size"] = df["batch_size"].to_numpy(int)
    per["rounds"] = np.where(per["reached"], per["rounds_to_eps"], per["steps"])
    per["extrapolated"] = [
        float(r) if ok else extrapolated_rounds(tr)
        for r, ok, tr in zip(per["rounds_to_eps"], per["reached"], df["trajectory"])
    ]
    return df, per


def _cell(h: Any) -> tuple[str, float, bool, float]:
    """A table cell for the seeds ``h`` of one setting: its text, the mean rounds (or
    bounds), whether every seed reached eps, and the mean extrapolated rounds."""
    r = h["rounds"].to_numpy(float)
    all_in = bool(h["reached"].all())
    mean, std = r.mean(), (r.std(ddof=1) if len(r) > 1 else 0.0)
    ext = float(h["extrapolated"].mean())
    if not all_in:
        text = f">{mean:.0f} (~{ext:.0f}) ({len(r)})"
    elif len(r) > 1:
        text = f"{mean:.0f} +- {std:.0f} ({len(r)})"
    else:
        text = f"{mean:.0f} (1)"
    return text, float(mean), all_in, ext


def panel_table(out: Path) -> str:
    """Rounds to eps of :func:`panel_runs`' logs under ``out`` (any settings found there),
    one row per data set, R, compressor, method and minibatch; cells as in
    :func:`kappa_table`. Written to ``out/panel.md`` and returned."""
    _, per = _rounds(out)
    keys = ["data", "l2_rel", "compressor", "algorithm", "batch_size"]
    lines = [
        _LEGEND,
        "",
        "| data set | R | compressor | method | minibatch | rounds to eps |",
        "|---|---|---|---|---|---|",
    ]
    for (data, rel, comp, alg, batch), h in per.groupby(keys, sort=True):
        lines.append(f"| {data} | {rel:g} | {comp} | {alg} | {batch or 'full'} | {_cell(h)[0]} |")
    md = "\n".join(lines) + "\n"
    (out / "panel.md").write_text(md)
    return md


def kappa_table(out: Path) -> str:
    """Rounds to eps against kappa for the sweep's logs under ``out``: table and figures.

    Rounds are :func:`ecmpi.analyze.summary`'s (the last crossing of :data:`EPS`);
    a run that never gets there counts as its last step, a lower bound, shown
    ``>N``. Per method and data set, ``log(rounds) = a + slope log(kappa)`` is
    fitted by least squares over the seeds' means at the kappas where every seed
    reached eps ("reached"), over every kappa with the lower bounds in place
    ("with bounds"; where the last points are bounds the true slope is at least
    this), and with :func:`extrapolated_rounds` in place of the bounds
    ("extrapolated", the cells' ``~N``). Writes ``out/kappa.md``,
    ``out/kappa_<data set>.png`` and f - f* against rounds and bits per worker,
    ``out/curves_<data set>_R<R>.png`` (mean and min-max over seeds); returns the
    table. Runs that did not complete are left out.
    """
    from matplotlib.figure import Figure

    from .. import analyze

    df, per = _rounds(out)
    lines = [
        _LEGEND,
        "",
        "| data set | method | "
        + " | ".join(f"R = {r:g}" for r in RELS)
        + " | slope (reached) | slope (with bounds) | slope (extrapolated) |",
        "|---|---|" + "---|" * len(RELS) + "---|---|---|",
    ]
    slopes: dict[tuple[str, str], tuple[float, ...]] = {}
    for data in DATASETS:
        sub = per[per["data"] == data]
        if sub.empty:
            continue
        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
        for alg in METHODS:
            g = sub[sub["algorithm"] == alg]
            cells, ks, reached, bounds, extra = [], [], [], [], []
            for rel in RELS:
                h = g[np.isclose(g["l2_rel"], rel)]
                if h.empty:
                    cells.append("")
                    continue
                text, mean, all_in, ext = _cell(h)
                cells.append(text)
                ks.append(float(h["kappa"].mean()))
                reached.append(mean if all_in else math.nan)
                bounds.append(mean)
                extra.append(ext)
            if not ks:
                continue
            k = np.array(ks)
            s = tuple(_fit(k, np.array(v)) for v in (reached, bounds, extra))
            slopes[(data, alg)] = s
            lines.append(
                f"| {data} | {alg} | "
                + " | ".join(cells)
                + f" | {s[0]:.2f} | {s[1]:.2f} | {s[2]:.2f} |"
            )
            if len(k):
                ax.loglog(k, bounds, "o--", label=f"{alg} (slope {s[0]:.2f} / {s[1]:.2f})")
                ax.loglog(k, reached, "o-", color=ax.lines[-1].get_color())
        ax.set(
            xlabel="kappa = L/mu",
            ylabel=f"rounds to f - f* <= {EPS:g}",
            title=f"{data}: topk:k=1, 4 workers (dashed: lower bounds)",
        )
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"kappa_{data}.png", dpi=110)
        for rel in RELS:
            sel = df[(per["data"] == data) & np.isclose(per["l2_rel"], rel)]
            if len(sel):
                title = f"{data}, lambda = {rel:g} L, topk:k=1, 4 workers"
                path = out / f"curves_{data}_R{rel:g}.png"
                analyze.plot(
                    sel, x=("rounds", "bits"), group_by="algorithm", eps=EPS, title=title, path=path
                )
    md = "\n".join(lines) + "\n"
    (out / "kappa.md").write_text(md)
    return md


_LOOPLESS_COMPRESSED = ("ec-lsvrg", "ec-lkatyusha")


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
