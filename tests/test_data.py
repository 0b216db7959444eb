"""Dataset specs and sources in one process (the sharded cases are in tests/mpi/)."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from ecmpi.problems import data
from ecmpi.problems.data import load, normal, parse_dataset_spec, row_range
from ecmpi.rng import derive

SELF = MPI.COMM_SELF


def test_row_range_covers_every_row_once():
    for n in (0, 1, 7, 100):
        for p in (1, 2, 3, 4, 9):
            bounds = [row_range(n, p, r) for r in range(p)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(bounds[k][1] == bounds[k + 1][0] for k in range(p - 1))
            assert all(0 <= b - a <= n // p + 1 for a, b in bounds)


def test_normal_moments_and_slices():
    key, stream = derive(3, 11)
    z = normal(key, stream, 0, 200_000)
    # mean ~ N(0, 1/n): 5 standard errors; variance: sd of the sample variance is sqrt(2/n)
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    assert abs((np.abs(z) < 1).mean() - 0.682689492) < 5 * math.sqrt(0.25 / z.size)
    assert np.array_equal(normal(key, stream, 1234, 77), z[1234 : 1234 + 77])


def test_parse_spec_types_and_path():
    assert parse_dataset_spec("synthetic:n=10,d=3,noise=0.5,seed=2") == (
        "synthetic",
        None,
        {"n": 10, "d": 3, "noise": 0.5, "seed": 2},
    )
    assert parse_dataset_spec("hdf5:/tmp/a.h5,x=feat,y=lab,scale=standard,bias=true") == (
        "hdf5",
        "/tmp/a.h5",
        {"x": "feat", "y": "lab", "scale": "standard", "bias": 1.0},
    )
    assert parse_dataset_spec("sklearn:digits,digit=3")[1:] == ("digits", {"digit": 3})


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nosuch:n=3", "unknown dataset source 'nosuch'"),
        ("synthetic:n=10,foo=1", "unknown key 'foo'"),
        ("synthetic:n=ten", "bad value for 'n'"),
        ("synthetic:n=-3", "bad value for 'n'"),
        ("synthetic:n=3,n=4", "given twice"),
        ("synthetic:n", "use key=value"),
        ("libsvm:", "needs a file path"),
        ("sklearn:digit=3", "needs a dataset name"),
        ("", "non-empty"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        parse_dataset_spec(spec)


@pytest.mark.parametrize(
    ("spec", "kwargs", "exc", "match"),
    [
        ("sklearn:iris", {}, ValueError, "unknown sklearn dataset 'iris'"),
        ("syn:n=100", {}, ValueError, "needs d="),
        ("synthetic:n=10", {"scale": "zscore"}, ValueError, "scale must be one of"),
        ("synthetic:n=10", {"task": "ranking"}, ValueError, "task must be"),
        ("sklearn:diabetes", {"task": "classification"}, ValueError, "two label values"),
        ("libsvm:/nonexistent/file.svm", {}, FileNotFoundError, "not found"),
        ("hdf5:/nonexistent/file.h5", {}, FileNotFoundError, "not found"),
        ("quadratic:d=5,kappa=0.5", {}, ValueError, "kappa must be >= 1"),
        ("quadratic:d=5,kappa=2,n=3", {}, ValueError, "n >= d"),
        ("quadratic:d=5,kappa=2,spectrum=cubic", {}, ValueError, "spectrum"),
        ("synthetic:n=10", {"dtype": np.int32}, TypeError, "floating"),
    ],
)
def test_bad_loads(spec, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        load(spec, comm=SELF, **kwargs)


def test_synthetic_regression_recipe():
    s = load("synthetic:n=500,d=8,noise=0.25,seed=4", comm=SELF)
    assert (s.A.shape, s.y.shape, s.n_global, s.offset, s.d, s.task) == (
        (500, 8),
        (500,),
        500,
        0,
        8,
        "regression",
    )
    w = s.info["w_true"]
    key, stream = derive(4, data._DATA, data._WEIGHTS)
    assert np.array_equal(w, normal(key, stream, 0, 8) / math.sqrt(8))
    resid = s.y - s.A @ w
    # residuals are the noise: N(0, 0.25^2); sample variance within 5 sd of its mean
    assert abs(resid.var() / 0.25**2 - 1) < 5 * math.sqrt(2 / 500)
    again = load("synthetic:n=500,d=8,noise=0.25,seed=4", comm=SELF)
    assert np.array_equal(again.A, s.A) and np.array_equal(again.y, s.y)
    other = load("synthetic:n=500,d=8,noise=0.25,seed=5", comm=SELF)
    assert not np.array_equal(other.A, s.A)


def test_synthetic_rows_do_not_depend_on_n_or_block():
    a = load("synthetic:n=50,d=6,seed=1", comm=SELF)
    b = load("synthetic:n=80,d=6,seed=1", comm=SELF)
    assert np.array_equal(a.A, b.A[:50]) and np.array_equal(a.y, b.y[:50])
    A, y, *_ = data._synthetic_rows(80, 6, 0.1, 1, None, 33, 61)
    assert np.array_equal(A, b.A[33:61]) and np.array_equal(y, b.y[33:61])


def test_synthetic_classification_labels():
    s = load("synthetic:n=400,d=5,noise=0,seed=2", comm=SELF, task="classification")
    assert s.task == "classification"
    assert set(np.unique(s.y)) == {-1.0, 1.0}
    assert np.array_equal(s.y, np.where(s.A @ s.info["w_true"] >= 0, 1.0, -1.0))


def test_syn_recipe_defaults():
    s = load("syn:d=16", comm=SELF)
    assert s.A.shape == (10_000, 16) and s.task == "regression"
    assert np.array_equal(s.A[:100], load("synthetic:n=100,d=16", comm=SELF).A)
    assert load("syn:d=16,n=300", comm=SELF).n_global == 300


def test_syn_cond_scales_the_columns_geometrically():
    base, s = load("syn:d=16,n=4000", comm=SELF), load("syn:d=16,n=4000,cond=100", comm=SELF)
    col = 100.0 ** (-np.arange(16) / 30.0)
    assert np.allclose(s.A, base.A * col, rtol=1e-12, atol=0)
    assert np.allclose(s.y - s.A @ s.info["w_true"], base.y - base.A @ base.info["w_true"])
    # the sample Hessian's condition number is near cond (n = 250 d)
    lam = np.linalg.eigvalsh(s.A.T @ s.A / s.n_global)
    assert 60 < lam[-1] / lam[0] < 160
    with pytest.raises(ValueError, match="cond must be >= 1"):
        load("syn:d=16,cond=0.5", comm=SELF)


@pytest.mark.parametrize("spectrum", ["linear", "geometric"])
def test_quadratic_rows_have_the_prescribed_spectrum(spectrum):
    s = load(f"quadratic:d=12,kappa=50,mu=0.5,n=40,spectrum={spectrum}", comm=SELF)
    lam = np.linalg.eigvalsh(s.A.T @ s.A / s.n_global)
    assert np.allclose(lam, s.info["eigenvalues"], rtol=1e-12, atol=0)
    assert lam[0] == pytest.approx(0.5, rel=1e-12) and lam[-1] == pytest.approx(25, rel=1e-12)
    assert np.allclose(s.A @ s.info["x_true"], s.y, rtol=1e-13, atol=1e-12)


def test_sklearn_sources():
    bc = load("sklearn:breast_cancer", comm=SELF)
    assert bc.A.shape == (569, 30) and bc.task == "classification"
    assert (bc.y == 1).sum() == 357 and (bc.y == -1).sum() == 212
    dg = load("sklearn:digits", comm=SELF)
    from sklearn.datasets import load_digits

    t = load_digits().target
    assert dg.A.shape == (1797, 64) and np.array_equal(dg.y, np.where(t % 2 == 1, 1.0, -1.0))
    d3 = load("sklearn:digits,digit=3", comm=SELF)
    assert np.array_equal(d3.y, np.where(t == 3, 1.0, -1.0))
    db = load("sklearn:diabetes", comm=SELF)
    assert db.A.shape == (442, 10) and db.task == "regression" and len(np.unique(db.y)) > 100


def test_standard_scaling_and_bias():
    s = load("sklearn:breast_cancer", comm=SELF, scale="standard", bias=True)
    assert s.d == 31 and np.all(s.A[:, -1] == 1.0)
    assert np.allclose(s.A[:, :-1].mean(axis=0), 0, atol=1e-12)
    assert np.allclose(s.A[:, :-1].std(axis=0), 1, rtol=1e-12)
    # the spec's keys override the keyword arguments
    t = load("sklearn:breast_cancer,scale=maxabs,bias=2.5", comm=SELF, scale="standard")
    assert np.all(t.A[:, -1] == 2.5) and np.allclose(np.abs(t.A[:, :-1]).max(axis=0), 1)
    r = load("sklearn:breast_cancer,scale=rownorm", comm=SELF)
    assert np.allclose(np.linalg.norm(r.A, axis=1), 1)


LIBSVM = """# a comment line
+1 1:0.5 3:-2 # trailing comment
-1 2:1.5

+1 1:1 2:2 3:3
-1 3:4.25
"""


def test_libsvm_matches_sklearn_reader(tmp_path):
    from sklearn.datasets import load_svmlight_file

    path = tmp_path / "small.svm"
    path.write_text(LIBSVM)
    s = load(f"libsvm:{path}", comm=SELF)
    X, y = load_svmlight_file(str(path), zero_based=False)
    assert s.A.shape == (4, 3) and s.task == "classification"
    assert np.array_equal(s.A, X.toarray()) and np.array_equal(s.y, y)
    wide = load(f"libsvm:{path},n_features=5", comm=SELF)
    assert wide.A.shape == (4, 5) and np.array_equal(wide.A[:, :3], s.A)


def test_libsvm_zero_based_and_label_mapping(tmp_path):
    path = tmp_path / "zb.svm"
    path.write_text("0 0:1 2:2\n1 1:3\n1 0:-1\n")
    s = load(f"libsvm:{path}", comm=SELF)
    assert np.array_equal(s.A, [[1, 0, 2], [0, 3, 0], [-1, 0, 0]])
    assert np.array_equal(s.y, [-1, 1, 1])
    r = load(f"libsvm:{path}", comm=SELF, task="regression")
    assert np.array_equal(r.y, [0, 1, 1])


@pytest.mark.parametrize(
    ("text", "line"),
    [("1 1:2\n1 1:2 3\n", 2), ("1 1:2\n\nx 1:2\n", 3), ("1 1:2\n1 a:2\n", 2), ("1 1:z\n", 1)],
)
def test_libsvm_malformed_line_is_named(tmp_path, text, line):
    path = tmp_path / "bad.svm"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"line {line}: malformed"):
        load(f"libsvm:{path}", comm=SELF)


def test_hdf5_source(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 4)), rng.standard_normal(30)
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["X"], f["y"], f["feat"], f["lab"] = X, y, X[:, :2], np.sign(y)
    s = load(f"hdf5:{path}", comm=SELF)
    assert np.array_equal(s.A, X) and np.array_equal(s.y, y) and s.task == "regression"
    t = load(f"hdf5:{path},x=feat,y=lab", comm=SELF)
    assert np.array_equal(t.A, X[:, :2]) and t.task == "classification"
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        load(f"hdf5:{path},x=nope", comm=SELF)
    with pytest.raises(ValueError, match="must be 2-D"):
        load(f"hdf5:{path},x=y", comm=SELF)
    with pytest.raises(ValueError, match="must be 1-D with 30"):
        load(f"hdf5:{path},y=X", comm=SELF)
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        load(f"hdf5:{junk}", comm=SELF)


def test_float32_dtype():
    s = load("synthetic:n=20,d=3", comm=SELF, dtype=np.float32)
    assert s.A.dtype == np.float32 and s.y.dtype == np.float32


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e300])
def test_non_finite_or_huge_entries_are_refused_with_the_row(tmp_path, bad):
    path = tmp_path / "bad.h5"
    X = np.ones((12, 3))
    X[7, 2] = bad
    with h5py.File(path, "w") as f:
        f["X"] = X
        f["y"] = np.ones(12)
    with pytest.raises(ValueError, match=r"row 7 has feature value"):
        load(f"hdf5:{path}")
