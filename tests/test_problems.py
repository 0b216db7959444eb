"""Problems in one process: gradients, constants, x*/f*, the factory."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

import ecmpi.problems.linear as linear
from ecmpi.problems import LeastSquares, LogisticRegression, Quadratic, load, make

SELF = MPI.COMM_SELF


def lsq(l2=0.0):
    return make("lsq", "synthetic:n=60,d=7,noise=0.3,seed=1", comm=SELF, l2=l2)


def logreg(l2=0.05):
    return make("logreg", "synthetic:n=80,d=6,noise=0.5,seed=2", comm=SELF, l2=l2, bias=True)


def quad(l2=0.0):
    return make("quadratic", kappa=30.0, dim=8, n=20, comm=SELF, l2=l2)


PROBLEMS = {"lsq": lsq, "logreg": logreg, "quadratic": quad}


def fd_grad(f, x, h=1e-6):
    """Central differences: error O(h^2 f''') plus rounding O(eps f / h)."""
    g = np.empty_like(x)
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        g[j] = (f(x + e) - f(x - e)) / (2 * h)
    return g


@pytest.mark.parametrize("name", PROBLEMS)
def test_gradients_match_finite_differences(name):
    p = PROBLEMS[name](l2=0.1)
    x = np.random.default_rng(0).standard_normal(p.d)
    for f, g in ((p.loss, p.grad), (p.local_loss, p.local_grad)):
        assert np.allclose(g(x), fd_grad(f, x), rtol=1e-6, atol=1e-6)
    out = np.empty(p.d)
    assert p.grad(x, out=out) is out and np.array_equal(out, p.grad(x))


@pytest.mark.parametrize("name", PROBLEMS)
def test_batch_grads_average_to_the_local_gradient(name):
    p = PROBLEMS[name](l2=0.1)
    x = np.random.default_rng(1).standard_normal(p.d)
    singles = np.array([p.batch_grad(x, [i]) for i in range(p.n_local)])
    assert np.allclose(singles.mean(axis=0), p.local_grad(x), rtol=1e-12, atol=1e-12)
    assert np.allclose(p.sample_grads(x, np.arange(p.n_local)), singles, rtol=1e-13, atol=1e-13)
    idx = np.array([3, 5, 5, 9])
    assert np.allclose(p.batch_grad(x, idx), singles[idx].mean(axis=0), rtol=1e-12, atol=1e-13)
    assert np.allclose(
        p.batch_grad(x, np.arange(p.n_local)), p.local_grad(x), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("name", PROBLEMS)
def test_hessian_matches_finite_differences_of_the_gradient(name):
    p = PROBLEMS[name](l2=0.1)
    x = np.random.default_rng(2).standard_normal(p.d)
    H = np.array([fd_grad(lambda z, j=j: p.grad(z)[j], x) for j in range(p.d)])
    assert np.allclose(p.hessian(x), H, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["lsq", "quadratic"])
@pytest.mark.parametrize("l2", [0.0, 0.2])
def test_least_squares_constants_from_the_dense_spectrum(name, l2):
    p = PROBLEMS[name](l2=l2)
    lam = np.linalg.eigvalsh(p.A.T @ p.A / p.n_global + l2 * np.eye(p.d))
    assert p.L == pytest.approx(lam[-1], rel=1e-12)
    assert p.mu == pytest.approx(lam[0], rel=1e-10)
    assert p.L_local == pytest.approx(lam[-1], rel=1e-12)  # one rank holds everything
    row = (p.A * p.A).sum(axis=1).max()
    assert p.L_max == pytest.approx(row + l2, rel=1e-14)
    x_ref = np.linalg.solve(p.A.T @ p.A / p.n_global + l2 * np.eye(p.d), p.A.T @ p.y / p.n_global)
    assert np.allclose(p.x_star, x_ref, rtol=1e-10, atol=1e-12)


def test_quadratic_constants_are_the_prescribed_ones():
    p = Quadratic.build(10, 1e4, mu=0.01, n=30, seed=3, spectrum="geometric", comm=SELF)
    assert p.L == pytest.approx(100.0, rel=1e-10) and p.mu == pytest.approx(0.01, rel=1e-8)
    assert np.allclose(p.x_star, p.x_true, rtol=0, atol=1e-9)
    assert p.f_star < 1e-20


def test_logreg_constants():
    p = logreg(l2=0.05)
    sigma = np.linalg.norm(p.A, 2)
    assert p.L == pytest.approx(sigma**2 / (4 * p.n_global) + 0.05, rel=1e-12)
    assert p.mu == 0.05
    assert p.L_max == pytest.approx((p.A * p.A).sum(axis=1).max() / 4 + 0.05, rel=1e-14)
    # L and mu bound the Hessian everywhere
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal(p.d) * 3
        lam = np.linalg.eigvalsh(p.hessian(x))
        assert p.mu * (1 - 1e-12) <= lam[0] and lam[-1] <= p.L * (1 + 1e-12)


def test_logreg_is_stable_for_huge_margins():
    p = logreg(l2=0.0)
    x = np.full(p.d, 1e4)
    assert np.isfinite(p.loss(x)) and np.isfinite(p.loss(-x))
    assert np.all(np.isfinite(p.grad(x))) and np.all(np.isfinite(p.grad(-x)))
    z = p.A @ -x
    assert p.loss(-x) == pytest.approx(np.mean(np.maximum(-p.y * z, 0)), rel=1e-6)


@pytest.mark.parametrize("name", PROBLEMS)
def test_x_star_is_optimal(name):
    p = PROBLEMS[name](l2=0.01)
    g = p.grad(p.x_star)
    assert np.linalg.norm(g) <= 1e-11
    assert p.x_star_info["grad_norm"] <= 1e-11
    assert p.f_star == p.loss(p.x_star)
    # a strongly convex f: f(x) - f* >= mu/2 ||x - x*||^2 around x*
    rng = np.random.default_rng(5)
    for _ in range(3):
        x = p.x_star + 1e-2 * rng.standard_normal(p.d)
        assert p.loss(x) - p.f_star >= 0.5 * p.mu * np.sum((x - p.x_star) ** 2) * (1 - 1e-6)


def test_logreg_x_star_on_real_data_reaches_1e12():
    p = make("logreg", "sklearn:breast_cancer", comm=SELF, scale="standard", bias=True, l2_rel=1e-4)
    assert p.l2 == pytest.approx(1e-4 * (p.L - p.l2), rel=1e-12)
    assert np.linalg.norm(p.grad(p.x_star)) <= 1e-12
    assert p.x_star_info["method"] == "newton"


def test_iterative_paths_for_large_d_agree_with_dense(monkeypatch):
    dense = {name: PROBLEMS[name](l2=0.01) for name in PROBLEMS}
    monkeypatch.setattr(linear, "DENSE_MAX", 3)
    for name, ref in dense.items():
        p = PROBLEMS[name](l2=0.01)
        with pytest.raises(ValueError, match="dense Gram"):
            p.gram()
        assert p.L == pytest.approx(ref.L, rel=1e-9)
        assert p.mu == pytest.approx(ref.mu, rel=1e-8)
        assert np.linalg.norm(p.grad(p.x_star)) <= 1e-10
        assert np.allclose(p.x_star, ref.x_star, rtol=1e-8, atol=1e-9)
        assert p.x_star_info["method"] == ("lbfgs" if name == "logreg" else "cg")


def test_l2_rel_uses_the_data_smoothness():
    p = make("lsq", "synthetic:n=60,d=7,noise=0.3,seed=1", comm=SELF, l2_rel=1e-3)
    q = lsq()
    assert p.l2 == pytest.approx(1e-3 * q.L, rel=1e-14)
    assert p.L == pytest.approx(q.L * 1.001, rel=1e-14)


def test_min_norm_solution_when_underdetermined():
    p = make("lsq", "synthetic:n=4,d=9,seed=3", comm=SELF)
    assert p.mu == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(p.x_star, np.linalg.pinv(p.A) @ p.y, rtol=1e-10, atol=1e-12)
    assert p.f_star == pytest.approx(0.0, abs=1e-25)


def test_describe_is_a_flat_dict_for_the_log():
    p = logreg()
    desc = p.describe()
    assert set(desc) == {"name", "dataset", "N", "d", "n_ranks", "l2", "L", "L_max", "mu"} | {
        "kappa",
        "f_star",
    }
    assert desc["f_star"] == p.f_star and desc["kappa"] == p.L / p.mu and desc["d"] == 7
    assert np.isnan(lsq().describe(solve=False)["f_star"])


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("svm", "synthetic"), {}, "unknown problem 'svm'"),
        (("lsq",), {}, "needs a dataset spec"),
        (("lsq", "synthetic"), {"kappa": 3.0}, "quadratic problem only"),
        (("lsq", "synthetic"), {"l2": 0.1, "l2_rel": 0.1}, "either l2 or l2_rel"),
        (("lsq", "synthetic"), {"l2": -1.0}, "l2 must be"),
        (("quadratic",), {"dim": 5}, "needs kappa and dim"),
        (("quadratic", "quadratic:d=4,kappa=2"), {"dim": 4}, "not both"),
        (("quadratic", "synthetic:n=10"), {}, "use lsq"),
        (("logreg", "sklearn:diabetes"), {}, "two label values"),
    ],
)
def test_make_rejects_bad_options(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make(*args, comm=SELF, **kwargs)


def test_bad_arguments_to_the_methods():
    p = lsq()
    with pytest.raises(ValueError, match="shape"):
        p.grad(np.zeros(3))
    with pytest.raises(ValueError, match="out of range"):
        p.batch_grad(np.zeros(p.d), [p.n_local])
    with pytest.raises(TypeError, match="integer"):
        p.batch_grad(np.zeros(p.d), [0.5])
    with pytest.raises(ValueError, match="empty"):
        p.batch_grad(np.zeros(p.d), [])
    with pytest.raises(ValueError, match=r"labels in \{-1, \+1\}"):
        LogisticRegression(load("sklearn:diabetes", comm=SELF), comm=SELF)
    with pytest.raises(TypeError, match="Shard"):
        LeastSquares(np.zeros((3, 3)), comm=SELF)
