"""The mlp problem on one rank: gradient, loss, training, resume, unknown constants, analysis."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest

import ecmpi
from ecmpi.analyze import plot, summary
from ecmpi.analyze.tables import last_crossing
from ecmpi.cli import main as cli_main
from ecmpi.errors import UnknownConstant
from ecmpi.log import open_log
from ecmpi.problems import load, make
from ecmpi.problems.mlp import MLP, parse_hidden

SMALL = "synthetic:n=60,d=5,classes=3,seed=2"


def small(**kw):
    opts = {"hidden": "4,3", "l2": 0.01, "test_fraction": 0.25, "seed": 1, **kw}
    return make("mlp", SMALL, **opts)


def test_layout_and_initialization():
    p = small()
    assert p.sizes == (5, 4, 3, 3)
    assert p.d == 5 * 4 + 4 + 4 * 3 + 3 + 3 * 3 + 3
    x = p.initial_point()
    (W1, b1), (W2, _), (W3, b3) = p.unpack(x)
    assert W1.shape == (5, 4) and W2.shape == (4, 3) and W3.shape == (3, 3)
    assert not b1.any() and not b3.any() and W1.std() > 0
    np.testing.assert_array_equal(x, small().initial_point())  # the seed fixes it
    assert not np.array_equal(x, small(seed=2).initial_point())
    # He: W_l ~ N(0, 2/n_{l-1}); over a wide layer the sample variance is close to 2/n
    wide = make("mlp", "synthetic:n=20,d=100,classes=2", hidden="400")
    W = wide.unpack(wide.initial_point())[0][0]
    assert abs(W.var() * 100 / 2 - 1) < 4 * math.sqrt(2 / W.size)  # 4 standard errors


def test_gradient_matches_central_differences():
    p = small()
    x = p.initial_point() + 0.05 * np.random.default_rng(0).standard_normal(p.d)
    g = p.grad(x)
    h = 1e-5
    fd = np.array([(p.loss(x + h * e) - p.loss(x - h * e)) / (2 * h) for e in np.eye(p.d)])
    # central differences: error h^2/6 |f'''| plus rounding ~ 1e-16 |f| / h, both < 1e-8 here
    np.testing.assert_allclose(g, fd, rtol=0, atol=1e-8)
    assert np.abs(g).max() > 1e-2  # a gradient that is not trivially zero
    # the node gradient and the minibatch estimate over every row once agree with it
    np.testing.assert_allclose(p.local_grad(x), g, rtol=1e-13, atol=1e-15)
    every = np.arange(p.n_local)
    np.testing.assert_allclose(p.batch_grad(x, every), g, rtol=1e-13, atol=1e-15)
    # a batch of one row: the row's gradient times the weight, plus l2 x
    one = p.batch_grad(x, np.array([3]))
    X, y = p._rows(np, "train")
    row = p._grad_sum(x, X[3:4], y[3:4])
    np.testing.assert_allclose(one, p.weight * row + p.l2 * x, rtol=1e-14)


def direct_loss(p, x, X, y):
    """Cross-entropy of the network written out row by row, without the class's code."""
    Ws = p.unpack(x)
    total = 0.0
    for a, label in zip(X, y):
        h = a
        for W, b in Ws[:-1]:
            h = np.array([max(0.0, v) for v in h @ W + b])
        z = h @ Ws[-1][0] + Ws[-1][1]
        total += math.log(sum(math.exp(v) for v in z)) - z[int(label)]
    return total / len(y)


def test_loss_matches_a_direct_computation():
    p = small(l2=0.3)
    x = np.linspace(-1, 1, p.d)
    X, y = p._rows(np, "train")
    expect = direct_loss(p, x, X, y) + 0.15 * float(x @ x)
    assert p.loss(x) == pytest.approx(expect, rel=1e-13)
    Xt, yt = p._rows(np, "test")
    m = p.metrics(x)
    assert m["test_loss"] == pytest.approx(direct_loss(p, x, Xt, yt), rel=1e-13)


def test_two_class_softmax_by_hand():
    # no hidden layer, zero weights: every row's loss is log 2; logits (0, 5): log(1+e^-5)
    p = make("mlp", "synthetic:n=50,d=3,classes=2", hidden="none", test_fraction=0.0)
    assert p.sizes == (3, 2) and p.n_test == 0
    x = np.zeros(p.d)
    assert p.loss(x) == pytest.approx(math.log(2), rel=1e-15)
    x[-1] = 5.0  # b for class 1
    _, y = p._rows(np, "train")
    ones = float((y == 1).sum())
    expect = ones * math.log1p(math.exp(-5)) + (len(y) - ones) * (5 + math.log1p(math.exp(-5)))
    assert p.loss(x) == pytest.approx(expect / len(y), rel=1e-14)
    assert all(math.isnan(v) for v in p.metrics(x).values())  # nothing held out


def test_held_out_split_is_fixed_by_the_seed():
    a, b, c = small(), small(), small(seed=5)
    assert a.n_global + a.n_test == 60 and a.n_test == b.n_test
    np.testing.assert_array_equal(a._rows(np, "test")[0], b._rows(np, "test")[0])
    assert not np.array_equal(a._rows(np, "test")[0], c._rows(np, "test")[0])
    # about test_fraction of the rows: binomial(1797, 0.2), within 4 standard deviations
    d = make("mlp", "sklearn:digits", hidden="8")
    assert abs(d.n_test - 0.2 * 1797) < 4 * math.sqrt(1797 * 0.2 * 0.8)
    assert d.classes == 10 and d.n_global + d.n_test == 1797


def test_float32_stays_float32():
    p = make("mlp", SMALL, hidden="4", dtype=np.float32)
    x = p.initial_point()
    assert x.dtype == np.float32
    assert p.grad(x).dtype == np.float32
    assert p.batch_grad(x, np.array([0, 1])).dtype == np.float32


def test_sgd_on_digits_reaches_090_within_300_steps(tmp_path):
    """The documented budget (docs/problems.md): 300 steps of 32-row minibatches, step 0.2."""
    res = ecmpi.run(
        "sgd",
        problem="mlp",
        dataset="sklearn:digits",
        scale="maxabs",
        lr=0.2,
        batch_size=32,
        steps=300,
        log_every=50,
        seed=0,
        quiet=True,
        out=tmp_path / "d.h5",
    )
    assert res.status == "completed"
    assert res.last["test_accuracy"] >= 0.9
    log = open_log(tmp_path / "d.h5")
    acc = log.trajectory["test_accuracy"]
    assert acc[0] < 0.3  # it learned: the start is near chance (0.1)
    assert np.isnan(log.trajectory["suboptimality"]).all()
    assert np.isnan(log.trajectory["dist_to_opt"]).all()
    assert math.isnan(log.attrs["f_star"]) and math.isnan(log.attrs["L"])


def test_resume_is_bitwise(tmp_path):
    kw = dict(
        problem="mlp",
        dataset="sklearn:digits",
        scale="maxabs",
        hidden="16",
        lr=0.2,
        batch_size=8,
        log_every=5,
        seed=3,
        quiet=True,
        compressor="qsgd:levels=4",
    )
    whole, part = tmp_path / "whole.h5", tmp_path / "part.h5"
    ecmpi.run("ef-sgd", steps=30, out=whole, **kw)
    ecmpi.run("ef-sgd", steps=15, checkpoint_every=15, out=part, **kw)
    ecmpi.run("ef-sgd", steps=30, resume=part, **{k: v for k, v in kw.items()})
    a, b = open_log(whole), open_log(part)
    assert b.status == "completed"
    np.testing.assert_array_equal(a.x_final, b.x_final)
    for name in ("step", "loss", "test_accuracy", "test_loss", "bits_up", "grad_norm"):
        np.testing.assert_array_equal(a.trajectory[name], b.trajectory[name], err_msg=name)


def test_unknown_constants_name_the_option():
    p = small()
    for name in ("L", "L_max", "L_local", "L_local_max"):
        with pytest.raises(UnknownConstant, match="--lr"):
            getattr(p, name)
    with pytest.raises(UnknownConstant, match="mu"):
        p.mu  # noqa: B018
    with pytest.raises(UnknownConstant, match="minimizer"):
        p.x_star  # noqa: B018
    assert math.isnan(p.f_star) and not p.knows_optimum
    assert math.isnan(p.describe()["L"])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sgd"], "does not provide the smoothness constant L"),
        (["ecq-sgd", "--compressor", "qsgd:levels=4"], "give --lr"),
        (["dqgd", "--lr", "0.1"], "does not provide the minimizer x"),
        (["ec-lkatyusha", "--L", "10"], "does not provide the strong-convexity constant mu"),
        (["sgd", "--lr", "0.1", "--x0", "star+1"], "minimizer x"),
        (["sgd", "--lr", "0.1", "--l2-rel", "0.1"], "--l2-rel needs the smoothness L"),
    ],
)
def test_drivers_needing_constants_stop_with_a_message(argv, message, capsys):
    data = ["--problem", "mlp", "--dataset", "sklearn:digits", "--hidden", "4", "--steps", "2"]
    assert cli_main(["run", *argv, *data, "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_bad_inputs_are_named(capsys):
    with pytest.raises(ValueError, match="whole numbers"):
        make("mlp", "synthetic:n=30,d=3")
    with pytest.raises(ValueError, match="mlp needs class labels"):
        MLP(load("synthetic:n=30,d=3"))
    with pytest.raises(ValueError, match="test_fraction"):
        small(test_fraction=1.0)
    with pytest.raises(ValueError, match="positive integers"):
        parse_hidden("64,0")
    with pytest.raises(ValueError, match="apply to the mlp problem only"):
        make("lsq", "synthetic:n=30,d=3", hidden="4")
    assert parse_hidden("64, 32") == (64, 32) and parse_hidden("none") == ()
    lsq = ["--problem", "lsq", "--dataset", "synthetic:n=30,d=3"]
    assert cli_main(["run", "sgd", *lsq, "--hidden", "4", "--quiet"]) == 2
    assert "--hidden and --test-fraction apply to --problem mlp only" in capsys.readouterr().err


def test_multiclass_labels():
    d = load("sklearn:digits", task="multiclass")
    assert d.info["classes"] == 10 and set(np.unique(d.y)) == set(range(10))
    s = load("synthetic:n=40,d=4,classes=5,seed=1")
    assert s.task == "multiclass" and s.info["classes"] <= 5 and s.y.min() == 0
    with pytest.raises(ValueError, match="digit= makes binary labels"):
        load("sklearn:digits,digit=3", task="multiclass")
    with pytest.raises(ValueError, match="classes must be at least 2"):
        load("synthetic:n=40,d=4,classes=1")


def test_accuracy_to_target_uses_the_last_crossing(tmp_path):
    assert last_crossing(np.array([False, True, False, True, True])) == 3
    assert last_crossing(np.array([True, True])) == 0
    assert last_crossing(np.array([True, False])) is None
    path = tmp_path / "acc.h5"
    ecmpi.run(
        "sgd",
        problem="mlp",
        dataset="sklearn:digits",
        scale="maxabs",
        hidden="8",
        lr=0.2,
        batch_size=8,
        steps=8,
        quiet=True,
        out=path,
    )
    acc = np.array([0.1, 0.96, 0.5, 0.97, 0.99, 0.951, 0.96, 0.98, 0.99])
    with h5py.File(path, "r+") as f:  # a known curve: it dips below 0.95 at step 2
        f["trajectory/test_accuracy"][...] = acc
    row = summary(path, accuracy=0.95).iloc[0]
    assert bool(row["reached_acc"]) and row["rounds_to_acc"] == 3
    assert row["final_test_accuracy"] == 0.99
    bits = open_log(path).trajectory["bits_up"]
    assert row["bits_up_to_acc"] == bits[3]
    assert not summary(path, accuracy=0.995).iloc[0]["reached_acc"]
    fig = plot(path, x="rounds,bits", accuracy=0.95)
    assert fig.axes[0].get_ylabel() == "held-out accuracy"
    with pytest.raises(ValueError, match=r"accuracy must be in \(0, 1\]"):
        summary(path, accuracy=1.5)


def _device() -> bool:
    try:
        import cupy

        return bool(cupy.is_available())
    except Exception:
        return False


@pytest.mark.skipif(not _device(), reason="needs CuPy and a CUDA device")
def test_cupy_iterate_computes_on_the_device():
    import cupy as cp

    p = small()
    x = p.initial_point() + 0.05 * np.random.default_rng(0).standard_normal(p.d)
    xd = cp.asarray(x)
    g = p.grad(xd)
    assert isinstance(g, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(g), p.grad(x), rtol=1e-12, atol=1e-14)
    gb = p.batch_grad(xd, np.array([0, 2, 2]))
    assert isinstance(gb, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(gb), p.batch_grad(x, np.array([0, 2, 2])), rtol=1e-12)
    assert p.loss(xd) == pytest.approx(p.loss(x), rel=1e-13)
    assert p.metrics(xd)["test_accuracy"] == p.metrics(x)["test_accuracy"]


def test_dl_experiment_runs_and_tabulates(tmp_path):
    """Every run of ``ecmpi reproduce dl`` on one rank, 6 steps each: a table with accuracy."""
    from ecmpi.experiments import get_experiment

    setting = get_experiment("dl").setting(quick=True)
    assert setting.accuracy == 0.95 and len({r.algorithm for r in setting.runs}) == 6
    paths = setting.run_all(tmp_path, max_steps=6)
    tab = summary(paths, accuracy=setting.accuracy, group_by=setting.group_by)
    assert len(tab) == 7 and set(tab["statuses"]) == {"completed"}
    assert tab["final_test_accuracy"].between(0, 1).all()
    ef = tab[tab["algorithm"] == "ef-sgd"]
    assert sorted(c.split(":")[0] for c in ef["compressor"]) == ["sign", "topk"]
