"""DQ-GD and naive quantized GD on one worker: identity, rates against theory, bits, saturation.

The problems are quadratics ``f(x) = 1/2 (x - x*)^T H (x - x*)`` built here, so
that GD's iterates, L, mu and x* are known exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from mpi4py import MPI

from ecmpi.algorithms import get
from ecmpi.algorithms.base import RunContext
from ecmpi.algorithms.dqgd import (
    DQGD,
    DQHB,
    DQNAG,
    QGD,
    gd_contraction,
    momentum_defaults,
    rate_dqgd,
    rate_qgd,
)

D_DIM, KAPPA = 50, 3.5


class Quadratic:
    """``1/2 (x - x*)^T H (x - x*)`` with ``H = V diag(lam) V^T`` (V = I unless rotated)."""

    def __init__(self, lam, x_star, rotate_seed=None):
        lam = np.asarray(lam, dtype=np.float64)
        self.d = lam.shape[0]
        self.dtype = np.dtype(np.float64)
        if rotate_seed is None:
            v = np.eye(self.d)
        else:
            v, _ = np.linalg.qr(np.random.default_rng(rotate_seed).standard_normal((self.d,) * 2))
        self.H = (v * lam) @ v.T
        self.x_star = np.asarray(x_star, dtype=np.float64)
        self.L = self.L_local = float(lam.max())
        self.mu = float(lam.min())

    def local_grad(self, x, out=None):
        return self.H @ (np.asarray(x, dtype=np.float64) - self.x_star)


def problem(seed=0, rotate=False, d=D_DIM, kappa=KAPPA):
    rng = np.random.default_rng(seed)
    return Quadratic(np.linspace(1.0, kappa, d), rng.standard_normal(d), seed if rotate else None)


def make(cls, prob, x0, **params):
    ctx = RunContext(problem=prob, comm=MPI.COMM_SELF, compressor=None, x0=x0, params=params)
    return cls(ctx)


def gd_path(prob, x0, eta, steps):
    out = [np.array(x0, dtype=np.float64)]
    for _ in range(steps):
        out.append(out[-1] - eta * prob.local_grad(out[-1]))
    return out


def test_registered_names():
    assert get("dqgd") is DQGD and get("qgd") is QGD


def test_gd_contraction():
    assert gd_contraction(3.5, 1.0) == pytest.approx(2.5 / 4.5)
    assert gd_contraction(3.5, 1.0, 0.1) == pytest.approx(0.9)
    with pytest.raises(ValueError, match="L >= mu > 0"):
        gd_contraction(1.0, 2.0)


@pytest.mark.parametrize(
    "params",
    [
        {"bits_per_dim": 2},
        {"bits_per_dim": 4},
        {"bits_per_dim": 2.5},
        {"bits_per_dim": 0.5},
        {"bits_per_dim": 4, "range_norm": "linf"},
        {"bits_per_dim": 3, "send_scale": True},
    ],
)
def test_z_is_the_exact_gd_iterate(params):
    prob = problem(1, rotate=True)
    x0 = prob.x_star + np.random.default_rng(2).standard_normal(D_DIM)
    alg = make(DQGD, prob, x0, **params)
    gd = gd_path(prob, x0, alg.eta, 30)
    # rounding: each step adds a few ulps of the magnitudes M involved per coordinate; GD is a
    # contraction, so after t steps ||z_t - GD_t|| <= c * t * sqrt(d) * ulp * M (c = 10 here)
    ulp = np.finfo(np.float64).eps
    big = 0.0
    for t in range(30):
        big = max(big, np.linalg.norm(alg.x) + alg.eta * np.linalg.norm(alg.e), 1.0)
        tol = 10 * (t + 1) * math.sqrt(D_DIM) * ulp * big
        assert np.linalg.norm(alg.z - gd[t]) <= tol, t
        alg.step(t)


def test_huge_R_is_gd_to_the_quantizer_resolution():
    prob = problem(3, rotate=True)
    x0 = prob.x_star + np.random.default_rng(4).standard_normal(D_DIM)
    alg = make(DQGD, prob, x0, bits_per_dim=16)
    gd = gd_path(prob, x0, alg.eta, 40)
    for t in range(40):
        alg.step(t)
        # x_hat - GD = -eta*e with ||e||_2 <= eps*r_t, eps = sqrt(d)*2^-16
        bound = alg.eta * math.sqrt(D_DIM) * 2.0**-16 * float(alg.r_prev) * (1 + 1e-12)
        assert np.linalg.norm(alg.x - gd[t + 1]) <= bound + 1e-14
    assert np.linalg.norm(alg.x - gd[-1]) <= 1e-12 * np.linalg.norm(x0 - prob.x_star)


@pytest.mark.parametrize("cls", [DQGD, QGD])
@pytest.mark.parametrize("bits", [4, 2.5, 0.5, 7.3])
def test_bits_per_iteration_exact(cls, bits):
    prob = problem(5)
    alg = make(cls, prob, prob.x_star + 1.0, bits_per_dim=bits)
    cost = alg.step(0)
    assert cost.bits_up == math.floor(D_DIM * bits + 1e-9)
    assert cost.bits_down == 0
    assert alg.nbytes == math.ceil(cost.bits_up / 8)
    scaled = make(cls, prob, prob.x_star + 1.0, bits_per_dim=bits, send_scale=True)
    assert scaled.step(0).bits_up == math.floor(D_DIM * bits + 1e-9) + 32


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("bits", [1, 3, 5])
@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (DQGD, {}),
        (DQGD, {"range_norm": "linf"}),
        (QGD, {"qgd_range": "safe"}),
    ],
)
def test_worst_case_range_never_saturates(seed, bits, cls, params):
    # the recursions of the module docstring cover the worst case: no coordinate leaves the range
    prob = problem(seed, rotate=True, kappa=10.0)
    x0 = prob.x_star + np.random.default_rng(seed + 100).standard_normal(D_DIM) * 3
    alg = make(cls, prob, x0, bits_per_dim=bits, **params)
    for t in range(25):
        cost = alg.step(t)
        assert cost.extra["saturated"] == 0.0, t
        assert cost.extra["range"] > 0


@pytest.mark.parametrize("cls", [DQGD, QGD])
def test_saturation_counted_and_logged(cls):
    prob = problem(7, rotate=True)
    x0 = prob.x_star + np.ones(D_DIM)
    true_d = np.linalg.norm(x0 - prob.x_star)
    alg = make(cls, prob, x0, bits_per_dim=4, D_bound=0.01 * true_d)
    cost = alg.step(0)
    # the range is 100x too small: count exactly the coordinates of the input beyond it
    g = prob.local_grad(x0)
    assert cost.extra["saturated"] == float(np.sum(np.abs(g) > cost.extra["range"])) > 0


def _rate(alg, x0, x_star, steps):
    for t in range(steps):
        alg.step(t)
    return (np.linalg.norm(alg.x - x_star) / np.linalg.norm(x0 - x_star)) ** (1.0 / steps)


T_RATE = 40


@pytest.mark.parametrize("bits", [4, 5, 6, 7, 8])
def test_dqgd_rate_matches_theory(bits):
    """Measured rate against max(sigma, eps), eps = sqrt(d)*2^-R, with derived bounds.

    Diagonal H, x0 - x* = D*e_1 (the eigenvalue mu, contraction exactly sigma), one worker.
    From x_hat_T = z_T - eta*e_T with z_T exact GD, |z_T,1 - x*_1| = D*sigma^T, and
    ||e_T||_2 <= eps*r_{T-1}, |e_T,1| <= 2^-R*r_{T-1}:
        (D sigma^T - eta 2^-R r_{T-1}) / D <= rate^T <= (D sigma^T + eta eps r_{T-1}) / D
    with r_{T-1} from the recursion. Both bounds are within 6 % of the theory at T = 40.
    """
    prob = problem(8)
    d0 = 1.7
    x0 = prob.x_star.copy()
    x0[0] += d0
    alg = make(DQGD, prob, x0, bits_per_dim=bits)
    theory = rate_dqgd(alg.sigma, math.sqrt(D_DIM) * 2.0**-bits)
    assert theory == pytest.approx(alg.theory_rate)
    measured = _rate(alg, x0, prob.x_star, T_RATE)
    r_last = float(alg.r_prev)
    lo = ((d0 * alg.sigma**T_RATE - alg.eta * 2.0**-bits * r_last) / d0) ** (1 / T_RATE)
    hi = ((d0 * alg.sigma**T_RATE + alg.eta * alg.eps * r_last) / d0) ** (1 / T_RATE)
    assert lo <= measured <= hi
    assert 0.94 * theory <= lo and hi <= 1.06 * theory


@pytest.mark.parametrize("bits", [4, 5, 6, 7, 8])
def test_qgd_rate_matches_theory(bits):
    """Measured naive rate against a = sigma + eps with derived bounds.

    Upper (rigorous once no coordinate saturated): ||x_{t+1} - x*|| <= sigma ||x_t - x*||
    + eta eps r_t with r_t = L D a^t gives ||x_T - x*|| <= D (sigma^T + eta L (a^T - sigma^T)).
    Lower (uniform error model, Bennett 1948: per-coordinate errors independent, uniform
    on +-r 2^-R): E||x_T - x*||^2 >= eta^2 E||err_{T-1}||^2 = eta^2 d r_{T-1}^2 4^-R / 3, and by
    Hoeffding over d = 50 coordinates ||err||^2 >= E/4 except with probability exp(-d/8).
    """
    prob = problem(9, rotate=True)
    x0 = prob.x_star + np.random.default_rng(10).standard_normal(D_DIM)
    alg = make(QGD, prob, x0, bits_per_dim=bits)
    a = rate_qgd(alg.sigma, math.sqrt(D_DIM) * 2.0**-bits)
    assert a == pytest.approx(alg.theory_rate)
    d0 = np.linalg.norm(x0 - prob.x_star)
    sat = 0.0
    for t in range(T_RATE):
        sat += alg.step(t).extra["saturated"]
    measured = (np.linalg.norm(alg.x - prob.x_star) / d0) ** (1 / T_RATE)
    assert sat == 0.0
    hi = (alg.sigma**T_RATE + alg.eta * alg.L * (a**T_RATE - alg.sigma**T_RATE)) ** (1 / T_RATE)
    r_last = alg.L * d0 * a ** (T_RATE - 1)
    lo = (alg.eta * math.sqrt(D_DIM / 3) * 2.0**-bits * r_last / 2 / d0) ** (1 / T_RATE)
    assert lo <= measured <= hi
    assert 0.90 * a <= lo and hi <= 1.03 * a


def test_dqgd_beats_naive_at_same_bits():
    prob = problem(11, rotate=True)
    x0 = prob.x_star + np.random.default_rng(12).standard_normal(D_DIM)
    dq = _rate(make(DQGD, prob, x0, bits_per_dim=5), x0, prob.x_star, T_RATE)
    nv = _rate(make(QGD, prob, x0, bits_per_dim=5), x0, prob.x_star, T_RATE)
    assert dq < nv - 0.1


@pytest.mark.parametrize("cls", [DQGD, QGD])
def test_resume_from_state_dict(cls):
    prob = problem(13, rotate=True)
    x0 = prob.x_star + 1.0
    full = make(cls, prob, x0, bits_per_dim=3)
    for t in range(12):
        full.step(t)
    first = make(cls, prob, x0, bits_per_dim=3)
    for t in range(5):
        first.step(t)
    second = make(cls, prob, x0, bits_per_dim=3)
    second.load_state_dict(first.state_dict())
    for t in range(5, 12):
        second.step(t)
    assert np.array_equal(second.x, full.x)


def test_describe_and_overrides():
    prob = problem(14)
    alg = make(DQGD, prob, prob.x_star + 1.0, bits_per_dim=6, L_bound=4.0, mu_bound=0.5, rho=2.0)
    info = alg.describe()
    assert info["L"] == 4.0 and info["mu"] == 0.5 and info["eta"] == pytest.approx(2 / 4.5)
    assert info["eps"] == pytest.approx(2.0 * 2.0**-6)
    assert info["theory_rate"] == pytest.approx(max(3.5 / 4.5, 2.0 / 64))


def test_bad_hyperparameters():
    prob = problem(15)
    with pytest.raises(ValueError, match="bits per dimension"):
        make(DQGD, prob, prob.x_star, bits_per_dim=0)
    with pytest.raises(ValueError, match="range_norm"):
        make(DQGD, prob, prob.x_star, range_norm="l1")
    with pytest.raises(ValueError, match="qgd_range"):
        make(QGD, prob, prob.x_star, qgd_range="huge")
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        make(QGD, prob, prob.x_star, range_norm="l2")
    with pytest.raises(ValueError, match="x0 must have shape"):
        make(DQGD, prob, np.zeros(3))


@pytest.mark.parametrize("bits", [7, 8])
def test_qgd_fixed_range_is_safe_and_stalls_at_its_floor(bits):
    """The fixed range r = L*D: no saturation, linear at sigma, then a floor.

    Upper (induction, sigma + eta*L*eps <= 1 at these R): ||x_t - x*|| <= sigma^t D
    + eta*eps*r*(1 - sigma^t)/(1 - sigma). Lower, as in test_qgd_rate_matches_theory
    (uniform error model, Bennett 1948; Hoeffding over d = 50): the error of each step has
    ||err||_2 >= sqrt(d/3) 2^-R r / 2 and x_t - x* = (I - eta H)(x_{t-1} - x*) - eta*err
    with err independent of the past, so ||x_t - x*|| stays near eta*||err|| or above.
    """
    prob = problem(16, rotate=True, kappa=10.0)
    x0 = prob.x_star + np.random.default_rng(17).standard_normal(D_DIM)
    alg = make(QGD, prob, x0, bits_per_dim=bits, qgd_range="fixed")
    d0 = np.linalg.norm(x0 - prob.x_star)
    r = alg.L * d0
    assert alg.sigma + alg.eta * alg.L * alg.eps <= 1.0
    assert alg.floor == pytest.approx(alg.eta * alg.eps * r / (1 - alg.sigma))
    dist = []
    for t in range(T_RATE):
        cost = alg.step(t)
        assert cost.extra["saturated"] == 0.0 and cost.extra["range"] == pytest.approx(r)
        dist.append(np.linalg.norm(alg.x - prob.x_star))
    s = alg.sigma
    for t, dt in enumerate(dist, start=1):
        assert dt <= s**t * d0 + alg.eta * alg.eps * r * (1 - s**t) / (1 - s) * (1 + 1e-9), t
    lo = alg.eta * math.sqrt(D_DIM / 3) * 2.0**-bits * r / 2
    # stalled: the last five distances all stay above the error floor's lower bound
    assert min(dist[-5:]) >= 0.5 * lo


def test_qgd_send_scale_bits_and_no_saturation():
    """The scaled naive quantizer: d*R + 32 bits per step, range ||g||_inf, never saturates."""
    prob = problem(18, rotate=True)
    x0 = prob.x_star + np.random.default_rng(19).standard_normal(D_DIM)
    alg = make(QGD, prob, x0, bits_per_dim=4, send_scale=True)
    for t in range(T_RATE):
        g = prob.local_grad(alg.x)
        cost = alg.step(t)
        assert cost.bits_up == D_DIM * 4 + 32
        assert cost.extra["saturated"] == 0.0
        # float32(max |g_i|), rounded up so that no coordinate leaves the range
        r = cost.extra["range"]
        assert r == np.float32(r) and 0 <= r - np.max(np.abs(g)) <= 2.0**-23 * r


def momentum_path(prob, x0, eta, beta, kind, steps):
    """Exact heavy ball / Nesterov iterates from x_{-1} = x_0."""
    prev, cur, out = np.array(x0, dtype=np.float64), np.array(x0, dtype=np.float64), []
    for _ in range(steps):
        out.append(cur)
        if kind == "hb":
            nxt = cur - eta * prob.local_grad(cur) + beta * (cur - prev)
        else:
            y = cur + beta * (cur - prev)
            nxt = y - eta * prob.local_grad(y)
        prev, cur = cur, nxt
    return out


@pytest.mark.parametrize(("cls", "kind"), [(DQHB, "hb"), (DQNAG, "nag")])
@pytest.mark.parametrize("params", [{"bits_per_dim": 3}, {"bits_per_dim": 5, "range_norm": "linf"}])
def test_momentum_z_is_the_exact_iterate_and_never_saturates(cls, kind, params):
    """x_hat + eta*e is the unquantized method's iterate, to rounding (as for DQ-GD)."""
    prob = problem(20, rotate=True, kappa=30.0)
    x0 = prob.x_star + np.random.default_rng(21).standard_normal(D_DIM)
    alg = make(cls, prob, x0, **params)
    eta, beta = momentum_defaults(kind, prob.L, prob.mu)
    assert alg.eta == pytest.approx(eta) and alg.beta == pytest.approx(beta)
    path = momentum_path(prob, x0, eta, beta, kind, 40)
    ulp = np.finfo(np.float64).eps
    big = 1.0
    for t in range(40):
        big = max(big, np.linalg.norm(alg.x) + alg.eta * np.linalg.norm(alg.e))
        assert np.linalg.norm(alg.z - path[t]) <= 100 * (t + 1) ** 2 * ulp * big, t
        assert alg.step(t).extra["saturated"] == 0.0, t


@pytest.mark.parametrize(("cls", "kind"), [(DQHB, "hb"), (DQNAG, "nag")])
def test_momentum_rate_beats_dqgd_at_enough_bits(cls, kind):
    """kappa = 30: the accelerated rate (sqrt(kappa)-1)/(sqrt(kappa)+1) = 0.691 (HB) or
    1 - 1/sqrt(kappa) = 0.817 (NAG) against GD's 29/31 = 0.935; at R = 8 the
    quantizer's eps = sqrt(50)/256 = 0.028 is far below both, so the measured rates
    stay below GD's."""
    prob = problem(22, rotate=True, kappa=30.0)
    x0 = prob.x_star + np.random.default_rng(23).standard_normal(D_DIM)
    alg = make(cls, prob, x0, bits_per_dim=8)
    theory = (math.sqrt(30) - 1) / (math.sqrt(30) + 1) if kind == "hb" else 1 - 1 / math.sqrt(30)
    assert alg.sigma == pytest.approx(theory, rel=0.02)
    dq = _rate(alg, x0, prob.x_star, 120)
    assert dq <= 1.1 * theory
    gd = _rate(make(DQGD, prob, x0, bits_per_dim=8), x0, prob.x_star, 120)
    assert dq < gd


def test_momentum_resume_and_bad_momentum():
    prob = problem(24, rotate=True)
    x0 = prob.x_star + 1.0
    full = make(DQHB, prob, x0, bits_per_dim=4)
    for t in range(10):
        full.step(t)
    first = make(DQHB, prob, x0, bits_per_dim=4)
    for t in range(4):
        first.step(t)
    second = make(DQHB, prob, x0, bits_per_dim=4)
    second.load_state_dict(first.state_dict())
    for t in range(4, 10):
        second.step(t)
    assert np.array_equal(second.x, full.x)
    with pytest.raises(ValueError, match="momentum must be in"):
        make(DQNAG, prob, x0, momentum=1.0)
