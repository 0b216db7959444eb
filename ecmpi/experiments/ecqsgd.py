"""ECQ-SGD (Wu et al., ICML 2018): 32-bit SGD, QSGD and ECQ-SGD on the Syn-d least squares.

Least squares on ``syn:d=D`` (10,000 rows, y = X w* + noise), float32 data
and iterate (so full precision is 32 bits per entry), step 0.02, minibatch 32
per worker, the bucketed QSGD quantizer with s = 4 levels and l2 scaling
(bucket 64) for QSGD and ECQ-SGD (alpha = beta = 1). The paper's finding:
ECQ-SGD's curve nearly overlaps full-precision SGD while QSGD with the same
quantizer converges more slowly and stalls further from the optimum.

The table reports the cost to reach f - f* <= 1e-3.
Quick: d = 256, one seed. Full: d = 256, 512, 1024, three seeds each.
``examples/ecqsgd_bits.py`` reads its logs: bits to equal loss, entropy coded too.

``ecq-sgd-real`` (:data:`REAL`) is the same comparison on real data:
l2-regularized logistic regression on scikit-learn's breast_cancer (569 x 30,
standardized, bias column, lambda = 1e-3 * L), step 0.5, minibatch 8 per
worker, s = 4 levels with l2 scaling and one bucket per vector (31 entries).
Quick: 400 steps, one seed. Full: three seeds.
"""

from __future__ import annotations

from .base import BREAST_CANCER, Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENT", "REAL", "real_runs", "runs"]

QUANTIZER = "qsgd:levels=4,bucket=64,norm=l2"
#: table target: f - f* about 1/500 of its start (0.5 on Syn-256)
EPS = 1e-3
_METHODS = {
    "sgd": flags(compressor="none"),
    "qsgd": flags(compressor=QUANTIZER),
    "ecq-sgd": flags(compressor=QUANTIZER, alpha=1.0, beta=1.0),
}


def runs(d: int, seeds: range, steps: int = 300, log_every: int = 10) -> tuple[Run, ...]:
    """SGD, QSGD and ECQ-SGD on Syn-``d`` for each seed."""
    out = []
    for seed in seeds:
        common = flags(
            problem="lsq",
            dataset=f"syn:d={d}",
            dtype="float32",
            lr=0.02,
            batch_size=32,
            steps=steps,
            log_every=log_every,
            seed=seed,
        )
        for alg, extra in _METHODS.items():
            out.append(Run(f"{alg}_d{d}_s{seed}", (alg, *common, *extra)))
    return tuple(out)


_DIMS = (256, 512, 1024)
EXPERIMENT = Experiment(
    name="ecq-sgd",
    paper=(
        "Wu, Huang, Huang, Zhang. Error Compensated Quantized SGD and its Applications to "
        "Large-scale Distributed Optimization. ICML 2018."
    ),
    description=(
        "Least squares on Syn-d (10,000 x d), step 0.02, minibatch 32 per worker: 32-bit SGD "
        "against QSGD and ECQ-SGD with the same 4-level quantizer (l2 scaling, buckets of 64)."
    ),
    quick=Setting(
        runs=runs(256, range(1)),
        figures=(FigureSpec("ecq-sgd", x=("rounds", "bits"), title="Syn-256 least squares"),),
        eps=EPS,
        group_by=("algorithm", "compressor"),
    ),
    full=Setting(
        runs=tuple(r for d in _DIMS for r in runs(d, range(3))),
        figures=tuple(
            FigureSpec(
                f"ecq-sgd_d{d}",
                x=("rounds", "bits"),
                runs=tuple(r.name for r in runs(d, range(3))),
                title=f"Syn-{d} least squares, 3 seeds",
            )
            for d in _DIMS
        ),
        eps=EPS,
        group_by=("dataset", "algorithm", "compressor"),
    ),
)


REAL_QUANTIZER = "qsgd:levels=4,bucket=31,norm=l2"


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
        for alg in _METHODS:
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
