"""ECQ-SGD (Wu et al., ICML 2018): 32-bit SGD, QSGD and ECQ-SGD on Syn-d least squares.

The regime where QSGD suffers: one quantization level (``s = 1``) with l2
scaling over buckets of 512 entries (:data:`QUANTIZER`, variance factor
``omega = min(b/s^2, sqrt(b)/s) = 22.6``), the levels Elias coded on the wire
(``coding=elias``: the bits counted are the bytes sent). Least squares on two
Syn-d sets of d = :data:`DIM` (10,000 rows, float32 data and iterate, so full
precision is 32 bits per entry), minibatch 32 per worker:

- ``syn:d=D``: the isotropic Syn-d of the paper, first step 0.02;
- ``syn:d=D,cond=100``: its ill-conditioned variant (Hessian spectrum 1..1/100,
  docs/problems.md), first step 0.1.

Every method runs the same decaying step ``eta_t = eta_0 / (1 + t/100)``
(:data:`SCHEDULE`, ``--schedule 1/t``) for :data:`STEPS` steps: at a constant
step ECQ-SGD's compensated quantization noise leaves an excess over SGD's
floor that is of order ``eta^2`` (docs/algorithms/ecq-sgd.md), which a
decaying step removes faster than SGD's own ``O(eta)`` floor.

ECQ-SGD runs with its defaults (``beta = 1``, ``alpha = auto = 1/(1 + omega)``,
the stable choice of :func:`ecmpi.compress.feedback.auto_alpha`).

The target is fixed here, before any run: ``f - f* <= EPS_REL * (f(x0) - f*)``
(:data:`EPS_REL`, relative to each run's start, ``Setting.eps_relative``);
rounds and bits to it count from the last crossing (the run stays below from
there on, :func:`ecmpi.analyze.summary`).

The full setting adds, on the isotropic set, TernGrad (``terngrad``, 2-bit codes,
buckets of 512), error-feedback sign (``ef-sgd`` with ``sign``, 1 bit per
entry) and error-feedback TopK (``ef-sgd`` with ``topk:k=K``, :data:`TOPK`:
K chosen so that its 8 bytes per kept entry, a uint32 index and a float32
value, match ECQ-SGD's measured Elias payload per step), compared on the bits
axis. Quick: the isotropic set, one seed, SGD, QSGD and ECQ-SGD (``make demo``).
Full: three seeds, six methods on the isotropic set, the first three on the
other.

``ecq-sgd-sweep`` (:data:`SWEEP`) runs ECQ-SGD over an alpha x beta grid on the
isotropic set (one seed): where the recursion is stable
(``alpha^2 omega + (beta - alpha)^2 < 1``) and where it is fastest;
``examples/ecqsgd_sweep.py`` draws the map. ``ecq-sgd-time`` (:data:`TIME`) is
the per-step time split at d = 20,000 (gradient, encode + decode,
communicate; the logged ``compress_time``, ``comm_time``, ``wall_time``).

``ecq-sgd-real`` (:data:`REAL`) is the same comparison on real data:
l2-regularized logistic regression on scikit-learn's breast_cancer (569 x 30,
standardized, bias column, lambda = 1e-3 * L), step 0.5, minibatch 8 per
worker, s = 4 levels with l2 scaling and one bucket per vector (31 entries).
Quick: 400 steps, one seed. Full: three seeds.
"""

from __future__ import annotations

from .base import BREAST_CANCER, Experiment, FigureSpec, Run, Setting, flags

__all__ = [
    "DIM",
    "EPS_REL",
    "EXPERIMENT",
    "QUANTIZER",
    "REAL",
    "SWEEP",
    "TIME",
    "TOPK",
    "real_runs",
    "runs",
    "sweep_runs",
    "time_runs",
]

#: the coarse quantizer: 1 level, l2 buckets of 512, Elias-coded levels
QUANTIZER = "qsgd:levels=1,bucket=512,norm=l2,coding=elias"
#: Syn-d dimension of the main comparison
DIM = 1024
#: the target, fixed before the runs: f - f* <= EPS_REL * (f(x0) - f*)
EPS_REL = 3e-2
#: K of error-feedback TopK: K * 8 bytes = ECQ-SGD's measured payload body per step
TOPK = 6
#: dataset spec -> first step size eta_0
PROBLEMS = {f"syn:d={DIM}": 0.02, f"syn:d={DIM},cond=100": 0.1}
#: the step schedule of every method: eta_t = eta_0 / (1 + t/t0)
SCHEDULE = flags(schedule="1/t", t0=100)
#: steps of the full setting and of the quick one (``make demo``)
STEPS, QUICK_STEPS = 1000, 400

_MAIN = {
    "sgd": ("sgd", flags(compressor="none")),
    "qsgd": ("qsgd", flags(compressor=QUANTIZER)),
    "ecq-sgd": ("ecq-sgd", flags(compressor=QUANTIZER)),
}
_BASELINES = {
    "terngrad": ("qsgd", flags(compressor="terngrad:bucket=512")),
    "ef-sign": ("ef-sgd", flags(compressor="sign:bucket=512")),
    "ef-topk": ("ef-sgd", flags(compressor=f"topk:k={TOPK}")),
}


def _common(dataset: str, seed: int, steps: int) -> tuple[str, ...]:
    return (
        flags(
            problem="lsq",
            dataset=dataset,
            dtype="float32",
            lr=PROBLEMS[dataset],
            batch_size=32,
            steps=steps,
            log_every=10,
            seed=seed,
        )
        + SCHEDULE
    )


def _tag(dataset: str) -> str:
    return "ill" if "cond=" in dataset else "iso"


def runs(
    datasets: tuple[str, ...], seeds: range, *, baselines: bool = False, steps: int = STEPS
) -> tuple[Run, ...]:
    """SGD, QSGD and ECQ-SGD (and the baselines) on each set for each seed."""
    methods = {**_MAIN, **(_BASELINES if baselines else {})}
    out = []
    for dataset in datasets:
        for seed in seeds:
            common = _common(dataset, seed, steps)
            for name, (alg, extra) in methods.items():
                out.append(Run(f"{name}_{_tag(dataset)}_s{seed}", (alg, *common, *extra)))
    return tuple(out)


_ISO, _ILL = tuple(PROBLEMS)
_FULL_RUNS = runs((_ISO,), range(3), baselines=True) + runs((_ILL,), range(3))
EXPERIMENT = Experiment(
    name="ecq-sgd",
    paper=(
        "Wu, Huang, Huang, Zhang. Error Compensated Quantized SGD and its Applications to "
        "Large-scale Distributed Optimization. ICML 2018."
    ),
    description=(
        f"Least squares on Syn-{DIM} (10,000 rows; isotropic, step 0.02/(1 + t/100), and "
        "cond=100, step 0.1/(1 + t/100)), minibatch 32 per worker: 32-bit SGD against QSGD "
        "and ECQ-SGD with one "
        "quantization level (l2 buckets of 512, Elias-coded levels); target f - f* <= "
        f"{EPS_REL:g} (f(x0) - f*), counted from the last crossing."
    ),
    quick=Setting(
        runs=runs((_ISO,), range(1), steps=QUICK_STEPS),
        figures=(FigureSpec("ecq-sgd", x=("rounds", "bits"), title=f"Syn-{DIM} least squares"),),
        eps=EPS_REL,
        eps_relative=True,
        group_by=("algorithm", "compressor"),
    ),
    full=Setting(
        runs=_FULL_RUNS,
        figures=tuple(
            FigureSpec(
                f"ecq-sgd_{tag}",
                x=("rounds", "bits"),
                group_by=("algorithm", "compressor"),
                runs=tuple(r.name for r in _FULL_RUNS if f"_{tag}_" in r.name),
                title=f"Syn-{DIM}{', cond=100' if tag == 'ill' else ''}, 3 seeds",
            )
            for tag in ("iso", "ill")
        ),
        eps=EPS_REL,
        eps_relative=True,
        group_by=("dataset", "algorithm", "compressor"),
    ),
)

#: the grid of the sweep
SWEEP_ALPHAS = (0.01, 0.04, 0.2, 1.0)
SWEEP_BETAS = (0.5, 1.0)


def sweep_runs(seeds: range, steps: int = STEPS) -> tuple[Run, ...]:
    """ECQ-SGD on the isotropic set for every (alpha, beta) of the grid."""
    out = []
    for seed in seeds:
        common = _common(_ISO, seed, steps)
        for beta in SWEEP_BETAS:
            for alpha in SWEEP_ALPHAS:
                extra = flags(compressor=QUANTIZER, alpha=alpha, beta=beta)
                out.append(
                    Run(f"ecq-sgd_a{alpha:g}_b{beta:g}_s{seed}", ("ecq-sgd", *common, *extra))
                )
    return tuple(out)


_SWEEP_FIG = FigureSpec(
    "ecq-sgd-sweep",
    x=("rounds",),
    group_by=("resolved.alpha", "resolved.beta"),
    title=f"ECQ-SGD alpha x beta, Syn-{DIM}",
)
SWEEP = Experiment(
    name="ecq-sgd-sweep",
    paper=(
        "Wu, Huang, Huang, Zhang. Error Compensated Quantized SGD and its Applications to "
        "Large-scale Distributed Optimization. ICML 2018."
    ),
    description=(
        f"ECQ-SGD on Syn-{DIM} (step 0.02/(1 + t/100), minibatch 32, {QUANTIZER}) over alpha in "
        f"{', '.join(map(str, SWEEP_ALPHAS))} and beta in {', '.join(map(str, SWEEP_BETAS))}."
    ),
    quick=Setting(
        runs=sweep_runs(range(1), steps=60),
        figures=(_SWEEP_FIG,),
        eps=EPS_REL,
        eps_relative=True,
        group_by=("resolved.alpha", "resolved.beta"),
    ),
    full=Setting(
        runs=sweep_runs(range(1)),
        figures=(_SWEEP_FIG,),
        eps=EPS_REL,
        eps_relative=True,
        group_by=("resolved.alpha", "resolved.beta"),
    ),
)

#: dimension and rows of the timing runs
TIME_DIM, TIME_ROWS = 20_000, 2_000


def time_runs(steps: int) -> tuple[Run, ...]:
    """32-bit SGD, QSGD and ECQ-SGD at d = 20,000 for the per-step time split."""
    common = flags(
        problem="lsq",
        dataset=f"syn:d={TIME_DIM},n={TIME_ROWS}",
        dtype="float32",
        lr=0.002,
        batch_size=32,
        steps=steps,
        log_every=10,
        seed=0,
    )
    return tuple(
        Run(f"{name}_time", (alg, *common, *extra)) for name, (alg, extra) in _MAIN.items()
    )


_TIME_FIG = FigureSpec("ecq-sgd-time", x=("time", "bits"), title=f"d = {TIME_DIM:,}")
TIME = Experiment(
    name="ecq-sgd-time",
    paper=EXPERIMENT.paper,
    description=(
        f"Per-step time of 32-bit SGD, QSGD and ECQ-SGD at d = {TIME_DIM:,} "
        f"(syn, {TIME_ROWS:,} rows, minibatch 32, {QUANTIZER}): time (s) is the wall time of "
        "the steps, of which the logged compress and comm times."
    ),
    quick=Setting(runs=time_runs(20), figures=(_TIME_FIG,)),
    full=Setting(runs=time_runs(100), figures=(_TIME_FIG,)),
)


REAL_QUANTIZER = "qsgd:levels=4,bucket=31,norm=l2"
_REAL_METHODS = ("sgd", "qsgd", "ecq-sgd")


def real_runs(seeds: range, steps: int = 400) -> tuple[Run, ...]:
    """SGD, QSGD and ECQ-SGD on breast_cancer logistic regression for each seed."""
    out = []
    for seed in seeds:
        common = BREAST_CANCER + flags(
            lr=0.5,
            batch_size=8,
            steps=steps,
            log_every=10,
            seed=seed,
        )
        for alg in _REAL_METHODS:
            comp = "none" if alg == "sgd" else REAL_QUANTIZER
            out.append(Run(f"{alg}_s{seed}", (alg, *common, *flags(compressor=comp))))
    return tuple(out)


_REAL_FIGURE = FigureSpec("ecq-sgd-real", x=("rounds", "bits"), title="breast_cancer logistic")
REAL = Experiment(
    name="ecq-sgd-real",
    paper=EXPERIMENT.paper,
    description=(
        "Logistic regression on breast_cancer (standardized, bias, lambda = 1e-3 L), step 0.5, "
        "minibatch 8 per worker: SGD against QSGD and ECQ-SGD with a 4-level quantizer "
        "(l2 scaling, one bucket per vector)."
    ),
    quick=Setting(runs=real_runs(range(1)), figures=(_REAL_FIGURE,)),
    full=Setting(runs=real_runs(range(3)), figures=(_REAL_FIGURE,)),
)
