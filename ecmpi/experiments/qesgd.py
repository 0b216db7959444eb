"""QESGD (Zhao, Gao, Li, 2019): quantized parameters with Epoch-SGD stages.

l2-regularized logistic regression on scikit-learn's breast_cancer (569 x 30,
standardized, bias column, lambda = 1e-3 * L), parameter-server pattern
(``--collective ps``), Epoch-SGD stages (T_0 = 25 steps, doubling; step 1.0,
halving), minibatch 8 per worker. QESGD and QSGD use the same quantizer in
both directions (``qsgd:levels=7,bucket=31,norm=linf``, 4-bit codes), so they
send the same bits per entry and step; full-precision Epoch-SGD is the
reference. The claim: QESGD nearly matches Epoch-SGD with several times fewer
bits, and ends below QSGD at the same bits.

Quick: 175 steps (stages of 25, 50, 100), one seed. Full: 375 steps, three seeds.
"""

from __future__ import annotations

from .base import BREAST_CANCER, Experiment, FigureSpec, Run, Setting, flags

__all__ = ["EXPERIMENT", "runs"]

QUANTIZER = "qsgd:levels=7,bucket=31,norm=linf"
_STAGES = flags(stage_length=25, stage_growth=2.0, lr_decay=0.5)
_METHODS = {
    "epoch-sgd": _STAGES,
    "qesgd": (*_STAGES, *flags(compressor=QUANTIZER)),
    "qsgd": flags(
        compressor=QUANTIZER, schedule="stagewise", stage_steps=25, stage_growth=2.0, decay=0.5
    ),
}


def runs(seeds: range, steps: int) -> tuple[Run, ...]:
    """Epoch-SGD, QESGD and stagewise QSGD for each seed."""
    out = []
    for seed in seeds:
        common = BREAST_CANCER + flags(
            lr=1.0,
            batch_size=8,
            steps=steps,
            seed=seed,
            log_every=5,
            collective="ps",
        )
        for alg, extra in _METHODS.items():
            out.append(Run(f"{alg}_s{seed}", (alg, *common, *extra)))
    return tuple(out)


EXPERIMENT = Experiment(
    name="qesgd",
    paper=(
        "Zhao, Gao, Li. Quantized Epoch-SGD for Communication-Efficient Distributed Learning. "
        "arXiv 1901.03040, 2019 (the algorithm is reconstructed from the abstract)."
    ),
    description=(
        "Logistic regression on breast_cancer (standardized, bias, lambda = 1e-3 L), parameter "
        "server, Epoch-SGD stages: full-precision Epoch-SGD against QESGD and stagewise QSGD "
        "with the same 4-bit quantizer in both directions."
    ),
    quick=Setting(
        runs=runs(range(1), 175),
        figures=(FigureSpec("qesgd", x=("rounds", "bits"), title="breast_cancer logistic"),),
    ),
    full=Setting(
        runs=runs(range(3), 375),
        figures=(
            FigureSpec("qesgd", x=("rounds", "bits"), title="breast_cancer logistic, 3 seeds"),
        ),
    ),
)
