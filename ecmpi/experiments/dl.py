"""Distributed deep learning, the experiment both ECQ-SGD and QESGD report: a network on digits.

A multilayer perceptron (``--problem mlp``: 64 inputs, two hidden ReLU layers of 64,
10 classes; 8,970 parameters) on scikit-learn's digits (1797 x 64, pixels divided by
their column maximum), 20 % of the rows held out by the seed, float32 parameters
(full precision is 32 bits per entry), 4 workers, minibatch 16 per worker, step 0.2
for every method (the best of 0.05, 0.1, 0.2, 0.4 for 32-bit SGD on seed 0, chosen
before the comparison), parameter-server pattern (``--collective ps``) for all, so
``bits_up`` is what each worker sends to the server. Equal epochs: every method runs
the same number of steps (22.5 steps are one pass over the training rows).

Methods: 32-bit SGD; QSGD and ECQ-SGD with the 4-level quantizer of the ECQ-SGD
experiment (``qsgd:levels=4,bucket=64,norm=l2``, about 4.5 bits per entry);
Epoch-SGD and QESGD (same quantizer both ways) with stages of 50, 100, 200, ...
steps, the step halved per stage; error-feedback SGD with scaled sign (about 1.1 bits
per entry) and with TopK at 1 % (0.7 bits per entry).

The target, fixed before the runs: held-out accuracy 0.95 (the table's "to acc"
columns use the last crossing: the first logged row after which the accuracy stays
at or above it).

Quick: 225 steps (10 epochs), one seed. Full: 450 steps (20 epochs), three seeds.
"""

from __future__ import annotations

from .base import Experiment, FigureSpec, Run, Setting, flags

__all__ = ["ACCURACY", "EXPERIMENT", "QUANTIZER", "runs"]

#: the held-out accuracy target of the table and the figure (fixed before the runs)
ACCURACY = 0.95
QUANTIZER = "qsgd:levels=4,bucket=64,norm=l2"
LR = 0.2
_STAGES = flags(stage_length=50, stage_growth=2.0, lr_decay=0.5)
#: run name -> (algorithm, its options)
METHODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sgd32": ("sgd", flags(compressor="none")),
    "qsgd": ("qsgd", flags(compressor=QUANTIZER)),
    "ecq-sgd": ("ecq-sgd", flags(compressor=QUANTIZER)),
    "epoch-sgd": ("epoch-sgd", _STAGES),
    "qesgd": ("qesgd", (*_STAGES, *flags(compressor=QUANTIZER))),
    "ef-sign": ("ef-sgd", flags(compressor="sign")),
    "ef-topk": ("ef-sgd", flags(compressor="topk:ratio=0.01")),
}
#: the network and data every run shares
NETWORK = flags(
    problem="mlp",
    dataset="sklearn:digits",
    scale="maxabs",
    hidden="64,64",
    dtype="float32",
)


def runs(seeds: range, steps: int) -> tuple[Run, ...]:
    """Every method of :data:`METHODS` for each seed, ``steps`` steps each."""
    out = []
    for seed in seeds:
        common = NETWORK + flags(
            lr=LR,
            batch_size=16,
            steps=steps,
            seed=seed,
            log_every=15,
            collective="ps",
        )
        for name, (alg, extra) in METHODS.items():
            out.append(Run(f"{name}_s{seed}", (alg, *common, *extra)))
    return tuple(out)


def _setting(seeds: int, steps: int, title: str) -> Setting:
    return Setting(
        runs=runs(range(seeds), steps),
        figures=(
            FigureSpec(
                "dl", x=("rounds", "bits"), group_by=("algorithm", "compressor"), title=title
            ),
        ),
        accuracy=ACCURACY,
        group_by=("algorithm", "compressor"),
    )


EXPERIMENT = Experiment(
    name="dl",
    paper=(
        "Wu, Huang, Huang, Zhang. Error Compensated Quantized SGD and its Applications to "
        "Large-scale Distributed Optimization. ICML 2018; Zhao, Gao, Li. Quantized Epoch-SGD "
        "for Communication-Efficient Distributed Learning. arXiv 1901.03040, 2019 (their "
        "deep-learning experiments, on a small network)."
    ),
    description=(
        "MLP 64-64-64-10 (ReLU, softmax cross-entropy) on digits, 20 % held out, float32, "
        "4 workers, minibatch 16 each, step 0.2, parameter server, equal steps: 32-bit SGD, "
        "QSGD, ECQ-SGD, Epoch-SGD, QESGD and error-feedback sign/TopK; target: held-out "
        f"accuracy {ACCURACY}."
    ),
    quick=_setting(1, 225, "digits MLP, 10 epochs"),
    full=_setting(3, 450, "digits MLP, 20 epochs, 3 seeds"),
)
