"""Suboptimality (or held-out accuracy, loss) curves from trajectory logs (matplotlib, Agg
canvas, no pyplot state)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np

from .common import check_accuracy, check_eps, group_keys
from .loading import ID_COLUMNS, as_frame

__all__ = ["OKABE_ITO", "PLOT_FORMATS", "SPREADS", "X_AXES", "Y_AXES", "parse_x", "plot"]

#: Okabe & Ito (2008) colour-blind-safe palette, yellow last (weak on white)
OKABE_ITO = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#F0E442",
)
_STYLES = ("-", "--", "-.", ":")
#: --x name -> (trajectory column, axis label)
X_AXES = {
    "rounds": ("step", "rounds (steps)"),
    "bits": ("bits_up", "uplink bits per worker"),
    "time": ("wall_time", "wall time (s)"),
}
#: --y name -> (axis scale, axis label); the name is the trajectory column
Y_AXES = {
    "suboptimality": ("log", "suboptimality f(x) - f*"),
    "loss": ("log", "loss f(x)"),
    "test_accuracy": ("linear", "held-out accuracy"),
    "test_loss": ("log", "held-out loss"),
}
SPREADS = ("minmax", "std", "none")
PLOT_FORMATS = (".png", ".pdf", ".svg")
_LABEL_KEYS = ID_COLUMNS[1:-1]  # algorithm ... seed


def parse_x(x: str | Sequence[str]) -> list[str]:
    """``"rounds,bits"`` or ``["rounds", "bits"]`` -> validated list of x-axis names."""
    names = [s.strip() for s in x.split(",")] if isinstance(x, str) else [str(s) for s in x]
    names = [n for n in names if n]
    bad = [n for n in names if n not in X_AXES]
    if bad or not names:
        raise ValueError(f"x must be one or more of {', '.join(X_AXES)}, got {x!r}")
    return list(dict.fromkeys(names))


def _fmt(key: str, value: Any) -> str:
    """``algorithm``/``compressor`` as their value, others as ``name=value``; "" if unset."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        value = f"{value:g}"
    if key in ("algorithm", "compressor"):
        return str(value)
    return f"{key.rsplit('.', 1)[-1]}={value}"


def _join(parts: list[str]) -> str:
    return " · ".join(p for p in parts if p)


def _run_label(row: Any, varying: list[str]) -> str:
    keys = varying or ["algorithm", "compressor"]
    label = _join([_fmt(k, row[k]) for k in keys])
    if row["status"] != "completed":
        label += f" [{row['status']}]"
    return label


def _group_series(
    runs: list[dict[str, np.ndarray]], xcol: str, spread: str, ycol: str = "suboptimality"
) -> tuple:
    """Mean curve over runs at the steps all of them logged; band per ``spread``."""
    common = reduce(np.intersect1d, [np.asarray(t["step"]) for t in runs])
    xs, ys = [], []
    for t in runs:
        idx = np.searchsorted(t["step"], common)
        xs.append(np.asarray(t[xcol], dtype=float)[idx])
        y = t.get(ycol, np.full(len(t["step"]), np.nan))
        ys.append(np.asarray(y, dtype=float)[idx])
    X, Y = np.vstack(xs), np.vstack(ys)
    x, y = X.mean(axis=0), Y.mean(axis=0)
    lo = hi = None
    if len(runs) > 1 and spread == "minmax":
        lo, hi = Y.min(axis=0), Y.max(axis=0)
    elif len(runs) > 1 and spread == "std":
        sd = Y.std(axis=0, ddof=1)
        lo, hi = y - sd, y + sd
        lo = np.where(lo > 0, lo, np.nan)
    return x, y, lo, hi


def plot(
    data: Any,
    x: str | Sequence[str] = "rounds",
    group_by: str | Sequence[str] | None = None,
    *,
    eps: float | None = None,
    spread: str = "minmax",
    title: str | None = None,
    path: str | Path | None = None,
    y: str | None = None,
    accuracy: float | None = None,
) -> Any:
    """Suboptimality f(x) - f* (log scale), or another ``y``, against rounds, uplink bits or
    time.

    One panel per entry of ``x``. Without ``group_by`` one line per run;
    with it one line per group: the mean over the group's runs (typically
    seeds) at the steps every run logged, x the mean of their x there, and a
    shaded band of their min-max (``spread="minmax"``) or mean ± sample std
    (``"std"``). Colours follow the Okabe-Ito palette, line styles cycle
    after eight lines. Runs that did not complete say so in the legend.

    Args:
        data: a frame from :func:`ecmpi.analyze.load`, or what ``load`` accepts.
        x: ``rounds``, ``bits`` (uplink per worker), ``time``, or several
            (``"rounds,bits"``).
        group_by: column name(s) of the loaded frame.
        eps: draw the target as a dotted horizontal line.
        spread: ``minmax``, ``std`` or ``none``.
        title: figure title (default: the problem and dataset).
        path: also save the figure here (``.png``, ``.pdf`` or ``.svg``).
        y: the curve: ``suboptimality``, ``loss``, ``test_accuracy`` (linear scale) or
            ``test_loss``; a bits axis is logarithmic (the row of step 0 left out)
            (default: ``test_accuracy`` with ``accuracy``, else ``suboptimality``).
        accuracy: draw this held-out accuracy target as a dotted horizontal line.

    Returns:
        The ``matplotlib.figure.Figure`` (one Axes per panel).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    xs = parse_x(x)
    eps = check_eps(eps)
    accuracy = check_accuracy(accuracy)
    y = y or ("test_accuracy" if accuracy is not None else "suboptimality")
    if y not in Y_AXES:
        raise ValueError(f"y must be one of {', '.join(Y_AXES)}, got {y!r}")
    yscale, ylabel = Y_AXES[y]
    if spread not in SPREADS:
        raise ValueError(f"spread must be one of {', '.join(SPREADS)}, got {spread!r}")
    if path is not None:
        path = Path(path)
        if path.suffix.lower() not in PLOT_FORMATS:
            raise ValueError(f"plot file must end in {', '.join(PLOT_FORMATS)}, got {path.name!r}")
        if not path.parent.is_dir():
            raise FileNotFoundError(f"directory {path.parent} does not exist")
    df = as_frame(data).reset_index(drop=True)
    keys = group_keys(group_by, df)

    series: list[tuple[str, list[dict[str, np.ndarray]]]] = []
    if keys:
        try:
            groups = list(df.groupby(keys, sort=True, dropna=False))
        except TypeError:
            groups = list(df.groupby(keys, sort=False, dropna=False))
        for gkey, g in groups:
            gkey = gkey if isinstance(gkey, tuple) else (gkey,)
            label = _join([_fmt(k, v) for k, v in zip(keys, gkey)])
            bad = g["status"][g["status"] != "completed"]
            if len(bad):
                label += " [" + ", ".join(f"{n} {s}" for s, n in bad.value_counts().items()) + "]"
            if len(g) > 1:
                label += f" (n={len(g)})"
            series.append((label, list(g["trajectory"])))
    else:
        varying = [k for k in _LABEL_KEYS if df[k].astype(str).nunique() > 1]
        labels = [_run_label(r, varying) for _, r in df.iterrows()]
        if len(set(labels)) < len(labels):
            labels = [f"{lab} ({Path(f).stem})" for lab, f in zip(labels, df["file"])]
        series = [(lab, [t]) for lab, t in zip(labels, df["trajectory"])]

    width = 5.0 * len(xs) + 0.5
    # legend columns that fit the figure: about 0.075 in per character at "small" size
    longest = max((len(lab) for lab, _ in series), default=10)
    ncols = max(1, min(3, len(series) + 1, int(width // (0.075 * longest + 0.6))))
    rows = -(-(len(series) + 1) // ncols)
    fig = Figure(figsize=(width, 4.2 + 0.22 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(xs), squeeze=False)[0]
    for ax, name in zip(axes, xs):
        xcol, xlabel = X_AXES[name]
        positive = False
        for i, (label, runs) in enumerate(series):
            colour = OKABE_ITO[i % len(OKABE_ITO)]
            style = _STYLES[(i // len(OKABE_ITO)) % len(_STYLES)]
            xv, yv, lo, hi = _group_series(runs, xcol, spread, y)
            ax.plot(xv, yv, color=colour, ls=style, lw=1.6, label=label)
            positive = positive or bool((xv > 0).any())
            if lo is not None:
                ax.fill_between(xv, lo, hi, color=colour, alpha=0.2, lw=0)
        if eps is not None and y == "suboptimality":
            ax.axhline(eps, color="0.35", ls=":", lw=1.0, label=f"eps = {eps:g}")
        if accuracy is not None and y == "test_accuracy":
            ax.axhline(accuracy, color="0.35", ls=":", lw=1.0, label=f"target = {accuracy:g}")
        if yscale == "log":
            ax.set_yscale("log", nonpositive="mask")
        if name == "bits" and positive:  # the methods' costs differ by orders of magnitude
            ax.set_xscale("log", nonpositive="mask")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside lower center", ncols=min(ncols, len(labels)), fontsize="small"
    )
    fig.suptitle(title if title is not None else _default_title(df))
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def _default_title(df: Any) -> str:
    problems = df["problem"].astype(str).unique()
    datasets = df["dataset"].astype(str).unique()
    if len(problems) == 1 and len(datasets) == 1:
        ds = "" if datasets[0] in ("none", "") else f" on {datasets[0]}"
        return f"{problems[0]}{ds}"
    return "suboptimality"
