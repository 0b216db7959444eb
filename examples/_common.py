"""Helpers shared by the example scripts: launching runs, reading logs, saving figures.

The scripts add their own directory to ``sys.path`` and import from here::

    sys.path.insert(0, str(Path(__file__).parent))
    from _common import COMM, final, run_cli
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mpi4py import MPI

from ecmpi.cli import main as ecmpi_main
from ecmpi.comm import library_comm
from ecmpi.experiments.base import flags
from ecmpi.log import open_log

__all__ = [
    "BREAST_CANCER",
    "COLORS",
    "COMM",
    "final",
    "output_dir",
    "plot_against_bits",
    "pyplot",
    "run_cli",
    "save_figure",
]

COMM = MPI.COMM_WORLD
COLORS = {
    "sgd": "#000000",
    "qsgd": "#E69F00",
    "ecq-sgd": "#0072B2",
    "epoch-sgd": "#000000",
    "qesgd": "#009E73",
    "ef-sgd": "#CC79A7",
}  # Okabe-Ito
#: ``ecmpi run`` options of l2-logistic regression on scikit-learn's breast_cancer
#: (569 x 30 standardized features plus a bias, lambda = 1e-3 * L)
BREAST_CANCER = flags(
    problem="logreg",
    dataset="sklearn:breast_cancer",
    scale="standard",
    bias=True,
    l2_rel="1e-3",
)


def run_cli(out: Path, algorithm: str, args: list[str]) -> Path:
    """``ecmpi run ALGORITHM ARGS --out out`` on every rank; returns the log path."""
    if COMM.rank == 0:
        out.parent.mkdir(parents=True, exist_ok=True)
    COMM.Barrier()
    rc = ecmpi_main(["run", algorithm, *args, "--out", str(out), "--overwrite", "--quiet"])
    if rc != 0:
        raise SystemExit(f"ecmpi run {algorithm} failed with status {rc}")
    return out


def final(path: Path) -> dict[str, float]:
    """The last logged row of a run (rank 0)."""
    tr = open_log(path).trajectory
    return {k: float(v[-1]) for k, v in tr.items()}


def output_dir(out: str | Path) -> tuple[Any, Path]:
    """The library communicator and ``out``, created by rank 0 before any rank goes on."""
    comm = library_comm(MPI.COMM_WORLD)
    out = Path(out)
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    comm.Barrier()
    return comm, out


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(
    fig: Any, *paths: str | Path | None, dpi: int = 110, announce: bool = False
) -> None:
    """Lay ``fig`` out tightly and save it to each given path (None is skipped).

    Parent directories are created; ``announce`` prints ``figure: PATH`` per file.
    """
    fig.tight_layout()
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
        if announce:
            print(f"figure: {path}")


def plot_against_bits(
    logs: dict[str, Path], path: Path, title: str, *, downlink: bool = False
) -> None:
    """f - f* of each run against iterations and, log-log, against bits per worker.

    The bits are the uplink's (``bits_up``), or up plus down with ``downlink``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.4))
    for m, p in logs.items():
        tr = open_log(p).trajectory
        bits = tr["bits_up"] + tr["bits_down"] if downlink else tr["bits_up"]
        axes[0].semilogy(tr["step"], tr["suboptimality"], color=COLORS[m], label=m)
        axes[1].loglog(bits[1:], tr["suboptimality"][1:], color=COLORS[m])
    axes[0].set_xlabel("iteration")
    axes[1].set_xlabel("bits per worker (up + down)" if downlink else "bits per worker (uplink)")
    axes[0].set_ylabel("f(w) - f*")
    axes[0].legend()
    fig.suptitle(title)
    save_figure(fig, path, announce=True)
