"""Per-run and per-group summary tables, and their text/Markdown/CSV/JSON renderings.

Definitions (all per worker, from the logged rows; no interpolation):

- ``steps``: the last logged step; ``final_suboptimality`` = f(x) - f* and
  ``final_loss`` = f(x) at that row; ``bits_up`` (uplink) and ``bits_total``
  (``bits_up + bits_down``) cumulative per worker; ``time``: ``wall_time``.
- With ``eps``: the first logged row from which the suboptimality stays
  ``<= eps`` at every later row (the last crossing: a run that rises above eps
  again has not reached it there); ``rounds_to_eps`` is its step,
  ``bits_up_to_eps``/``bits_to_eps``/``time_to_eps`` the cumulative values
  there; ``reached`` is False (and those NaN, shown as "not reached") when the
  last row is above eps. With ``eps_relative`` the target of each run is
  ``eps * (f(x0) - f*)``, its suboptimality at its step-0 row (column
  ``eps_abs``).
- ``final_test_accuracy``: the last row's ``test_accuracy`` (NaN for logs without
  that column, e.g. the convex problems). With ``accuracy``: the first logged row
  from which ``test_accuracy >= accuracy`` holds at every later row (the last
  crossing: a run that dips below again has not reached it there);
  ``rounds_to_acc``, ``bits_up_to_acc``, ``bits_to_acc``, ``time_to_acc`` are the
  values there and ``reached_acc`` says whether the last row is at or above it.
- ``compression_ratio`` against the full-precision run of the same problem
  (compressor ``none`` but not a run whose algorithm quantizes by itself,
  such as DQ-GD/QGD: the loaded column ``self_quantizing``; or the runs
  ``baseline`` selects; same ``problem``, ``dataset`` and problem
  constants ``L`` and ``mu`` (to a relative 1e-6: a different regularization
  is a different problem, while another rank count may round them
  differently); among several the
  one with the same rank count, then seed, then collective, then the first
  file name): with ``eps``, baseline ``bits_up_to_eps`` / this run's
  ``bits_up_to_eps`` (uplink bits needed to reach eps; NaN if either run
  never reaches it); without ``eps``, the ratio of ``bits_up`` at the
  largest step ``> 0`` both runs logged (the per-step saving at equal steps).
  ``baseline`` names the file compared with; a run of compressor ``none`` is
  its own baseline (ratio 1).
- Grouped: ``n_runs``, ``statuses``, ``n_reached``; for each metric the mean
  over the group and its ``_std`` (sample standard deviation, NaN for one
  run), ``_min`` and ``_max``. Metrics "to eps" are averaged over the runs
  that reached eps only (``n_reached`` says how many).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .common import check_accuracy, check_eps, group_keys
from .loading import ID_COLUMNS, as_frame

__all__ = ["FORMATS", "METRICS", "format_table", "last_crossing", "parse_baseline", "summary"]

FORMATS = ("text", "md", "csv", "json")
_FINAL = ("steps", "final_suboptimality", "final_loss", "bits_up", "bits_total", "time")
_TO_EPS = ("rounds_to_eps", "bits_up_to_eps", "bits_to_eps", "time_to_eps")
_TO_ACC = ("rounds_to_acc", "bits_up_to_acc", "bits_to_acc", "time_to_acc")
#: every numeric metric :func:`summary` reports, in table order
METRICS = (*_FINAL, *_TO_EPS, "final_test_accuracy", *_TO_ACC, "compression_ratio")
_HEADERS = {
    "steps": "steps",
    "final_suboptimality": "final f-f*",
    "final_loss": "final loss",
    "bits_up": "bits up/worker",
    "bits_total": "bits total/worker",
    "time": "time (s)",
    "rounds_to_eps": "rounds to eps",
    "bits_up_to_eps": "bits up to eps",
    "bits_to_eps": "bits total to eps",
    "time_to_eps": "time to eps (s)",
    "final_test_accuracy": "final test accuracy",
    "rounds_to_acc": "rounds to acc",
    "bits_up_to_acc": "bits up to acc",
    "bits_to_acc": "bits total to acc",
    "time_to_acc": "time to acc (s)",
    "compression_ratio": "compression ratio",
}
NOT_REACHED = "not reached"


def last_crossing(ok: np.ndarray) -> int | None:
    """The first index from which ``ok`` holds to the end (None if its last entry is False)."""
    ok = np.asarray(ok, dtype=bool)
    if not len(ok) or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return int(bad[-1]) + 1 if len(bad) else 0


def _run_metrics(
    traj: dict[str, np.ndarray], eps: float | None, accuracy: float | None = None
) -> dict[str, Any]:
    step = np.asarray(traj["step"])
    sub = np.asarray(traj["suboptimality"], dtype=float)
    up = np.asarray(traj["bits_up"], dtype=float)
    total = up + np.asarray(traj["bits_down"], dtype=float)
    wall = np.asarray(traj["wall_time"], dtype=float)
    loss = np.asarray(traj["loss"], dtype=float)
    out: dict[str, Any] = dict.fromkeys(METRICS, math.nan)
    if len(step):
        out.update(
            steps=float(step[-1]),
            final_suboptimality=float(sub[-1]),
            final_loss=float(loss[-1]),
            bits_up=float(up[-1]),
            bits_total=float(total[-1]),
            time=float(wall[-1]),
        )
    if eps is not None:
        i = last_crossing(sub <= eps)  # NaN compares False
        out["reached"] = i is not None
        if i is not None:
            out.update(
                rounds_to_eps=float(step[i]),
                bits_up_to_eps=float(up[i]),
                bits_to_eps=float(total[i]),
                time_to_eps=float(wall[i]),
            )
    acc = np.asarray(traj.get("test_accuracy", np.full(len(step), np.nan)), dtype=float)
    if len(step):
        out["final_test_accuracy"] = float(acc[-1])
    if accuracy is not None:
        i = last_crossing(acc >= accuracy)  # NaN compares False
        out["reached_acc"] = i is not None
        if i is not None:
            out.update(
                rounds_to_acc=float(step[i]),
                bits_up_to_acc=float(up[i]),
                bits_to_acc=float(total[i]),
                time_to_acc=float(wall[i]),
            )
    return out


def _run_eps(row: Any, eps: float | None) -> float | None:
    """``eps * (f(x0) - f*)`` of one run (its step-0 row)."""
    if eps is None:
        return None
    traj = row["trajectory"]
    if not len(traj["step"]) or traj["step"][0] != 0:
        raise ValueError(f"{row['file']}: a relative eps needs the log's step-0 row")
    start = float(traj["suboptimality"][0])
    if not (start > 0 and math.isfinite(start)):
        raise ValueError(f"{row['file']}: f(x0) - f* = {start!r}, no relative eps")
    return eps * start


def _is_reference(row: Any, baseline: Mapping[str, Any] | None) -> bool:
    if baseline is None:
        return str(row["compressor"]).split(":")[0] == "none" and not row["self_quantizing"]
    return all(str(row[k]) == str(v) for k, v in baseline.items())


#: relative tolerance of the problem constants two runs of one problem must share
_CONSTANTS_RTOL = 1e-6


def _same_problem(a: Any, b: Any) -> bool:
    """Same problem name and dataset, and equal ``L`` and ``mu`` where both logs have them."""
    if a["problem"] != b["problem"] or a["dataset"] != b["dataset"]:
        return False
    for k in ("L", "mu"):
        x, y = a.get(k), b.get(k)
        try:
            x, y = float(x), float(y)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            if not math.isclose(x, y, rel_tol=_CONSTANTS_RTOL, abs_tol=0.0):
                return False
    return True


def _baseline_index(df: pd.DataFrame, i: int, baseline: Mapping[str, Any] | None) -> int | None:
    row = df.iloc[i]
    if _is_reference(row, baseline):
        return i
    best, best_key = None, None
    for j in range(len(df)):
        c = df.iloc[j]
        if not _is_reference(c, baseline):
            continue
        if not _same_problem(c, row):
            continue
        key = (
            c["n_ranks"] != row["n_ranks"],
            c["seed"] != row["seed"],
            c["collective"] != row["collective"],
            str(c["file"]),
        )
        if best_key is None or key < best_key:
            best, best_key = j, key
    return best


def _ratio(run: dict, base: dict, traj: dict, btraj: dict, eps: float | None) -> float:
    if eps is not None:
        num, den = base["bits_up_to_eps"], run["bits_up_to_eps"]
    else:
        common = np.intersect1d(traj["step"], btraj["step"])
        common = common[common > 0]
        if not len(common):
            return math.nan
        s = common[-1]
        num = float(btraj["bits_up"][np.flatnonzero(btraj["step"] == s)[0]])
        den = float(traj["bits_up"][np.flatnonzero(traj["step"] == s)[0]])
    if not (math.isfinite(num) and math.isfinite(den)) or den <= 0:
        return math.nan
    return num / den


def parse_baseline(spec: str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``"algorithm=gd,n_ranks=2"`` or a dict -> dict of key -> value (None stays None)."""
    if spec is None:
        return None
    if isinstance(spec, Mapping):
        out = dict(spec)
    else:
        out = {}
        for item in str(spec).split(","):
            key, eq, val = item.partition("=")
            if not eq or not key.strip():
                raise ValueError(f"baseline must be KEY=VALUE[,KEY=VALUE], got {spec!r}")
            out[key.strip()] = val.strip()
    if not out:
        raise ValueError("baseline needs at least one KEY=VALUE")
    return out


def summary(
    data: Any,
    eps: float | None = None,
    group_by: str | Sequence[str] | None = None,
    *,
    baseline: str | Mapping[str, Any] | None = None,
    accuracy: float | None = None,
    eps_relative: bool = False,
) -> pd.DataFrame:
    """Final values, cost to reach ``eps`` or a held-out ``accuracy``, and compression
    ratio, per run or per group.

    See the module docstring for every definition.

    Args:
        data: a frame from :func:`ecmpi.analyze.load`, or what ``load`` accepts.
        eps: suboptimality target f(x) - f* <= eps (None: final values only).
        group_by: column name(s) of the loaded frame (e.g. ``["algorithm",
            "compressor"]`` or ``"algorithm,compressor"``); None: one row per run.
        baseline: which runs are full-precision references, as ``{key: value}``
            or ``"key=value,..."`` over the loaded frame's columns (values
            compared as text); default: compressor ``none``, except runs whose
            algorithm quantizes by itself (column ``self_quantizing``).
        accuracy: held-out accuracy target ``test_accuracy >= accuracy`` in (0, 1]
            (None: no columns "to acc").
        eps_relative: ``eps`` is a fraction of each run's ``f(x0) - f*`` (its
            step-0 row), so that one target fits problems of different scales.

    Returns:
        One row per run (the identity columns, the metrics, ``reached`` with
        eps, ``baseline``), or one row per group (the keys, ``n_runs``,
        ``statuses``, ``n_reached`` with eps, and mean/_std/_min/_max of each
        metric; ``n_reached_acc`` with accuracy). ``df.attrs`` holds ``eps``,
        ``accuracy`` and ``group_by``.

    Raises:
        ValueError: bad eps, unknown group key, a relative eps for a run without
            its step-0 row; see :func:`load` for files.
    """
    eps = check_eps(eps)
    accuracy = check_accuracy(accuracy)
    df = as_frame(data).reset_index(drop=True)
    keys = group_keys(group_by, df)
    baseline = parse_baseline(baseline)
    bad = [k for k in baseline or () if k not in df.columns or k == "trajectory"]
    if bad:
        avail = ", ".join(c for c in df.columns if c != "trajectory")
        raise ValueError(f"unknown baseline key(s) {', '.join(bad)}; available keys: {avail}")
    runs = []
    for i in range(len(df)):
        row = df.iloc[i]
        e = _run_eps(row, eps) if eps_relative else eps
        m = _run_metrics(row["trajectory"], e, accuracy)
        if eps_relative:
            m["eps_abs"] = e
        runs.append({**{k: row[k] for k in ID_COLUMNS}, **m})
    for i, m in enumerate(runs):
        j = _baseline_index(df, i, baseline)
        m["baseline"] = None if j is None else str(df.iloc[j]["file"])
        m["compression_ratio"] = (
            math.nan
            if j is None
            else _ratio(m, runs[j], df.iloc[i]["trajectory"], df.iloc[j]["trajectory"], eps)
        )
    per_run = pd.DataFrame(runs)
    if eps is None:
        per_run = per_run.drop(columns=list(_TO_EPS))
    if accuracy is None:
        per_run = per_run.drop(columns=list(_TO_ACC))
    if not keys:
        per_run.attrs.update(eps=eps, accuracy=accuracy, group_by=[], eps_relative=eps_relative)
        return per_run
    per_run = pd.concat([per_run, df[[k for k in keys if k not in per_run.columns]]], axis=1)
    metrics = [m for m in METRICS if m in per_run.columns]
    out = []
    try:
        groups = list(per_run.groupby(keys, sort=True, dropna=False))
    except TypeError:  # keys of mixed types cannot be sorted: keep first-seen order
        groups = list(per_run.groupby(keys, sort=False, dropna=False))
    for gkey, g in groups:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        rec: dict[str, Any] = dict(zip(keys, gkey))
        rec["n_runs"] = len(g)
        counts = g["status"].value_counts(sort=False)
        rec["statuses"] = ", ".join(
            s if n == len(g) else f"{s} x{n}" for s, n in sorted(counts.items())
        )
        if eps is not None:
            rec["n_reached"] = int(g["reached"].sum())
        if accuracy is not None:
            rec["n_reached_acc"] = int(g["reached_acc"].sum())
        for m in metrics:
            v = g[m].to_numpy(dtype=float)
            v = v[np.isfinite(v)]
            rec[m] = float(v.mean()) if len(v) else math.nan
            rec[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else math.nan
            rec[f"{m}_min"] = float(v.min()) if len(v) else math.nan
            rec[f"{m}_max"] = float(v.max()) if len(v) else math.nan
        out.append(rec)
    res = pd.DataFrame(out)
    res.attrs.update(eps=eps, accuracy=accuracy, group_by=keys, eps_relative=eps_relative)
    return res


# ---------------------------------------------------------------------------------------
# rendering
# ---------------------------------------------------------------------------------------
def _num(v: float, integer: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if integer and float(v).is_integer():
        return str(int(v))
    return f"{v:.4g}"


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return f"{v:g}" if isinstance(v, float) else str(v)


def _display(df: pd.DataFrame) -> tuple[list[str], list[list[str]], list[bool]]:
    """Column headers, cell strings and right-alignment flags for text and Markdown."""
    eps = df.attrs.get("eps")
    keys = list(df.attrs.get("group_by") or [])
    grouped = bool(keys) or "n_runs" in df.columns
    accuracy = df.attrs.get("accuracy")
    shown = (*_FINAL[:3], *_TO_EPS) if eps is not None else _FINAL
    if accuracy is not None:
        shown = (*shown, "final_test_accuracy", *_TO_ACC)
    elif "final_test_accuracy" in df.columns and df["final_test_accuracy"].notna().any():
        shown = (*shown, "final_test_accuracy")
    metrics = [m for m in (*shown, "compression_ratio") if m in df.columns]
    if accuracy is not None and df["final_suboptimality"].isna().all():
        metrics.remove("final_suboptimality")  # f* unknown (mlp): an empty column
    if grouped:
        idcols = [*keys, "n_runs", "statuses"]
    else:
        names = [Path(f).name for f in df["file"]]
        use = names if len(set(names)) == len(names) else list(df["file"])
        df = df.assign(file=use)
        varying = [
            c for c in ID_COLUMNS[1:-1] if c in df.columns and df[c].astype(str).nunique() > 1
        ]
        idcols = ["file", *[c for c in ("algorithm", "compressor") if c not in varying], *varying]
        idcols = list(dict.fromkeys([*idcols, "status"]))
    headers = [*idcols, *(_HEADERS[m] for m in metrics)]
    right = [False] * len(idcols) + [True] * len(metrics)
    if grouped and eps is not None:
        headers.insert(len(idcols), "reached")
        right.insert(len(idcols), True)
    if grouped and accuracy is not None:
        headers.insert(len(idcols) + (eps is not None), "reached acc")
        right.insert(len(idcols), True)
    cells = []
    for _, r in df.iterrows():
        row = [_cell(r[c]) for c in idcols]
        if grouped and eps is not None:
            row.append(f"{int(r['n_reached'])}/{int(r['n_runs'])}")
        if grouped and accuracy is not None:
            row.append(f"{int(r['n_reached_acc'])}/{int(r['n_runs'])}")
        for m in metrics:
            v = r[m]
            integer = m in ("steps", "rounds_to_eps", "rounds_to_acc") or m.startswith("bits")
            s = _num(v, integer)
            if m in (*_TO_EPS, *_TO_ACC) and not s:
                s = NOT_REACHED
            elif m == "compression_ratio" and not s:
                missed = eps is not None and not (
                    r["n_reached"] if grouped else bool(r.get("reached", False))
                )
                s = NOT_REACHED if missed else "n/a"
            elif grouped and s:
                sd = r.get(f"{m}_std", math.nan)
                if isinstance(sd, float) and math.isfinite(sd) and sd > 0:
                    s = f"{s} ± {_num(sd)}"
            row.append(s)
        cells.append(row)
    return headers, cells, right


def _note(df: pd.DataFrame) -> str:
    eps = df.attrs.get("eps")
    if eps is None:
        basis = "uplink bits per worker of the full-precision run / this run's, at equal steps"
    else:
        rel = " (f(x0)-f*)" if df.attrs.get("eps_relative") else ""
        basis = (
            f"uplink bits per worker until f-f* stays <= {eps:g}{rel} (last crossing), "
            "full precision / this run"
        )
    grouped = bool(df.attrs.get("group_by"))
    spread = "; values are mean ± sample std over the group" if grouped else ""
    acc = df.attrs.get("accuracy")
    to_acc = (
        f"; to acc: the first logged row from which held-out accuracy stays >= {acc:g}"
        if acc is not None
        else ""
    )
    return f"compression ratio: {basis}{spread}{to_acc}"


def format_table(df: pd.DataFrame, fmt: str = "text") -> str:
    """Render a :func:`summary` frame.

    Formats: ``text`` (aligned columns), ``md`` (Markdown table), both with
    "not reached" for eps never reached and a note defining the ratio;
    ``csv`` and ``json`` (a list of records) carry every column, numeric,
    with empty cells / ``null`` where a value is undefined (``reached`` says
    whether eps was reached). Returns the text, ending in a newline.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    plain = df.drop(columns=[c for c in ("trajectory",) if c in df.columns])
    if fmt == "csv":
        return plain.to_csv(index=False)
    if fmt == "json":
        records = json.loads(plain.to_json(orient="records"))
        return json.dumps(records, indent=2) + "\n"
    headers, cells, right = _display(df)
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(vals: list[str]) -> list[str]:
        return [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(vals, widths, right)]

    if fmt == "md":
        out = ["| " + " | ".join(line(headers)) + " |"]
        out.append(
            "|"
            + "|".join(
                ("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right)
            )
            + "|"
        )
        out += ["| " + " | ".join(line(c)) + " |" for c in cells]
        return "\n".join(out) + f"\n\n{_note(df)}\n"
    out = ["  ".join(line(headers)).rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(line(c)).rstrip() for c in cells]
    return "\n".join(out) + f"\n\n{_note(df)}\n"
