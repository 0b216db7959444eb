"""A multilayer perceptron classifier (``mlp``) whose parameters are one flat vector.

Layers ``n_0 = d_in, n_1, ..., n_{L-1}`` (``hidden``), ``n_L = K`` classes. With
``H_0 = X`` (rows of features):

    Z_l = H_{l-1} W_l + b_l,   H_l = relu(Z_l)   (l < L),   logits = H_{L-1} W_L + b_L

and the softmax cross-entropy of row i with class y_i,

    ell_i(x) = logsumexp(logits_i) - logits_i[y_i],

    f(x) = (1/N) sum_{i in train} ell_i(x) + (l2/2) ||x||^2        (l2 on every parameter)

The node objective of rank tau and its minibatch estimate follow
:mod:`ecmpi.problems.base` (``f_tau = (P/N) sum_{i in shard} ell_i + (l2/2)||x||^2``).
Gradients by backpropagation: ``dlogits = softmax(logits) - onehot(y)``,
``grad W_l = H_{l-1}^T dZ_l``, ``grad b_l = 1^T dZ_l``,
``dZ_{l-1} = (dZ_l W_l^T) * [Z_{l-1} > 0]``.

Layout of x: for l = 1..L, ``W_l`` (``n_{l-1} x n_l``, row-major) then ``b_l``.
Initialization [standard] (He et al., ICCV 2015): ``W_l ~ N(0, 2/n_{l-1})`` from the
counter-based stream ``derive(seed, MLP_STREAM, INIT, l)`` (:func:`ecmpi.problems.data.normal`),
``b_l = 0``; identical on every rank and backend.

Held-out split: row i of the dataset (global index) is a test row when
``u_i < test_fraction``, u_i the i-th uniform of ``derive(seed, MLP_STREAM, SPLIT)``;
so the split depends only on the seed, never on the rank count. Each rank keeps its
shard's training rows (``n_local``; N = ``n_global`` training rows in all) and its test
rows, on which :meth:`MLP.metrics` reports ``test_accuracy`` and ``test_loss`` (mean
cross-entropy, no l2).

The loss is not convex: L, mu and x* are unknown (:attr:`knows_optimum` is False), so
reading them raises :class:`~ecmpi.errors.UnknownConstant` naming the option that
replaces them (``--lr``), and ``f_star`` is NaN. Arrays follow x's backend: a CuPy
iterate computes on the GPU (the data are copied there once).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from .._backend import array_module
from ..errors import UnknownConstant
from ..rng import derive, uniform
from ._mpi import agree, allsum, default_comm
from .base import Problem
from .data import Shard, load, normal

__all__ = ["DEFAULT_HIDDEN", "DEFAULT_TEST_FRACTION", "MLP", "MLP_STREAM", "parse_hidden"]

#: identifier folded into the network's random streams; INIT and SPLIT below it
MLP_STREAM = 0x4D4C50  # "MLP"
_INIT, _SPLIT = 1, 2
#: ``--hidden`` when not given
DEFAULT_HIDDEN = (64, 64)
#: ``--test-fraction`` when not given
DEFAULT_TEST_FRACTION = 0.2

#: constant -> (what it is, why the network has none, what to do instead)
_UNKNOWN = {
    "L": (
        "the smoothness constant L",
        "a network's loss has no known global smoothness bound, so there is no default "
        "step size 1/L",
        "give --lr ETA (dqgd: also --L-bound and --mu-bound)",
    ),
    "mu": (
        "the strong-convexity constant mu",
        "a network's loss is not convex",
        "drivers whose parameters need mu (lkatyusha, ec-lkatyusha) do not apply; dqgd "
        "needs --mu-bound",
    ),
    "x_star": (
        "the minimizer x*",
        "a non-convex loss has no known minimizer",
        "the quantization ranges of dqgd and qgd and --x0 star+C need it and do not apply; "
        "start from --x0 init",
    ),
}


def parse_hidden(spec: Any) -> tuple[int, ...]:
    """``"64,64"`` (or a sequence of ints) -> ``(64, 64)``; ``""``/``"none"``: no hidden layer.

    Raises:
        ValueError: a width that is not a positive integer.
    """
    if spec is None:
        return DEFAULT_HIDDEN
    if isinstance(spec, str):
        s = spec.strip().lower()
        parts = [] if s in ("", "none", "0") else [p.strip() for p in s.split(",")]
    elif isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        parts = [spec]
    else:
        parts = list(spec)
    out = []
    for p in parts:
        try:
            w = int(p)
        except (TypeError, ValueError):
            raise ValueError(f"hidden layer widths must be positive integers, got {p!r}") from None
        if isinstance(p, bool) or w < 1 or str(w) != str(p).strip():
            raise ValueError(f"hidden layer widths must be positive integers, got {p!r}")
        out.append(w)
    return tuple(out)


class MLP(Problem):
    """``mlp``: see the module docstring.

    Args:
        shard: this rank's rows with labels 0..K-1 (``task="multiclass"``;
            ``shard.info["classes"]`` is K).
        comm: the communicator the shard was loaded over (None: COMM_WORLD).
        hidden: widths of the hidden layers (default 64, 64).
        l2: the regularization lambda (on every parameter).
        seed: the seed of the initialization and of the held-out split.
        test_fraction: expected share of rows held out, in [0, 1).

    Raises:
        ValueError: labels that are not classes, a bad width or fraction, no training
            rows (on every rank).
    """

    name = "mlp"
    task: ClassVar[str] = "multiclass"
    knows_optimum = False
    metric_names = ("test_accuracy", "test_loss")

    def __init__(
        self,
        shard: Shard,
        *,
        comm: Any = None,
        hidden: Any = None,
        l2: float = 0.0,
        seed: int = 0,
        test_fraction: float | None = None,
    ):
        if not isinstance(shard, Shard):
            raise TypeError(f"shard must be an ecmpi.problems.data.Shard, got {type(shard)}")
        self.comm = default_comm(comm)
        self.hidden = parse_hidden(hidden)
        l2 = float(l2)
        if not math.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be finite and non-negative, got {l2}")
        tf = DEFAULT_TEST_FRACTION if test_fraction is None else float(test_fraction)
        if not 0.0 <= tf < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        if shard.task != "multiclass" or "classes" not in shard.info:
            raise ValueError(
                f"mlp needs class labels; dataset {shard.spec!r} was loaded as {shard.task} "
                "(use sklearn:digits or synthetic:...,classes=K, or task=multiclass)"
            )
        self.l2, self.seed, self.test_fraction = l2, int(seed), tf
        self.dataset = shard.spec
        self.dtype = shard.A.dtype
        self.classes = int(shard.info["classes"])
        self.sizes = (shard.d, *self.hidden, self.classes)
        self.shapes = [(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:])]
        self.d = sum(a * b + b for a, b in self.shapes)

        key, stream = derive(self.seed, MLP_STREAM, _SPLIT)
        u = uniform(key, stream, shard.offset, shard.n_local)
        test = u < tf
        train = ~test
        labels = shard.y.astype(np.int64)
        self._host = {
            "train": (np.ascontiguousarray(shard.A[train]), labels[train]),
            "test": (np.ascontiguousarray(shard.A[test]), labels[test]),
        }
        self._device: dict[Any, dict[str, tuple[Any, Any]]] = {np: self._host}
        self.n_local = int(train.sum())
        counts = allsum(self.comm, np.array([self.n_local, int(test.sum())], dtype=np.float64))
        self.n_global, self.n_test = int(counts[0]), int(counts[1])
        err = None
        if self.n_global == 0:
            err = ValueError(f"dataset {shard.spec!r} leaves no training rows (test_fraction={tf})")
        agree(self.comm, err)
        self.weight = self.comm.size * self.n_local / self.n_global
        self._scale = self.comm.size / self.n_global  # P/N

    # -- parameters -----------------------------------------------------------------------
    def unpack(self, x: Any) -> list[tuple[Any, Any]]:
        """Views ``[(W_1, b_1), ..., (W_L, b_L)]`` into the flat vector ``x``."""
        out, k = [], 0
        for a, b in self.shapes:
            W = x[k : k + a * b].reshape(a, b)
            k += a * b
            out.append((W, x[k : k + b]))
            k += b
        return out

    def initial_point(self) -> np.ndarray:
        """He initialization (module docstring), identical on every rank."""
        x = np.zeros(self.d, dtype=np.float64)
        key, _ = derive(self.seed, MLP_STREAM, _INIT)
        for layer, (W, _b) in enumerate(self.unpack(x), start=1):
            _, stream = derive(self.seed, MLP_STREAM, _INIT, layer)
            W[...] = normal(key, stream, 0, W.size).reshape(W.shape) * math.sqrt(2.0 / W.shape[0])
        return x.astype(self.dtype)

    # -- data on x's backend ----------------------------------------------------------------
    def _x(self, x: Any) -> Any:
        if getattr(x, "shape", None) != (self.d,):
            raise ValueError(f"x must have shape ({self.d},), got {getattr(x, 'shape', None)}")
        return x

    def _rows(self, xp: Any, part: str) -> tuple[Any, Any]:
        if xp not in self._device:
            self._device[xp] = {
                k: (xp.asarray(A), xp.asarray(y)) for k, (A, y) in self._host.items()
            }
        return self._device[xp][part]

    # -- the network ------------------------------------------------------------------------
    def _forward(self, x: Any, X: Any) -> tuple[list[Any], Any]:
        """Hidden activations ``[H_0 = X, H_1, ...]`` and the logits."""
        xp = array_module(x)
        params = self.unpack(x)
        H = [X.astype(x.dtype, copy=False)]
        for W, b in params[:-1]:
            H.append(xp.maximum(H[-1] @ W + b, 0))
        W, b = params[-1]
        return H, H[-1] @ W + b

    @staticmethod
    def _log_softmax(logits: Any) -> Any:
        xp = array_module(logits)
        z = logits - logits.max(axis=1, keepdims=True)
        return z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))

    def _loss_sum(self, x: Any, X: Any, y: Any) -> float:
        """``sum_i ell_i(x)`` over the rows ``X, y``."""
        if X.shape[0] == 0:
            return 0.0
        xp = array_module(x)
        logp = self._log_softmax(self._forward(x, X)[1])
        return -float(logp[xp.arange(X.shape[0]), y].sum())

    def _grad_sum(self, x: Any, X: Any, y: Any) -> Any:
        """``sum_i grad ell_i(x)`` over the rows ``X, y`` (backpropagation)."""
        xp = array_module(x)
        g = xp.zeros(self.d, dtype=x.dtype)
        if X.shape[0] == 0:
            return g
        H, logits = self._forward(x, X)
        dZ = xp.exp(self._log_softmax(logits))
        dZ[xp.arange(X.shape[0]), y] -= 1
        params, grads = self.unpack(x), self.unpack(g)
        for layer in range(len(params) - 1, -1, -1):
            gW, gb = grads[layer]
            gW[...] = H[layer].T @ dZ
            gb[...] = dZ.sum(axis=0)
            if layer:
                dZ = (dZ @ params[layer][0].T) * (H[layer] > 0)
        return g

    def _reg(self, x: Any) -> float:
        return 0.5 * self.l2 * float((x * x).sum())

    # -- this node's objective ------------------------------------------------------------
    def local_loss(self, x: Any) -> float:
        """``f_tau(x) = (P/N) sum_{i in shard} ell_i(x) + (l2/2)||x||^2``."""
        x = self._x(x)
        return self._scale * self._loss_sum(x, *self._rows(array_module(x), "train")) + self._reg(x)

    def local_grad(self, x: Any, out: Any = None) -> Any:
        """``grad f_tau(x)``."""
        x = self._x(x)
        g = self._scale * self._grad_sum(x, *self._rows(array_module(x), "train")) + self.l2 * x
        return self._out(g, out)

    def batch_grad(self, x: Any, idx: Any, out: Any = None) -> Any:
        """``w (1/|idx|) sum_{i in idx} grad ell_i(x) + l2 x``; its mean over uniform ``idx``
        is ``local_grad(x)``. Repeated indices count repeatedly."""
        x = self._x(x)
        idx = self._idx(idx)
        if idx.size == 0:
            return self._out(self.l2 * x, out)
        xp = array_module(x)
        X, y = self._rows(xp, "train")
        i = xp.asarray(idx)
        g = self._grad_sum(x, X[i], y[i])
        return self._out((self.weight / idx.size) * g + self.l2 * x, out)

    def _out(self, g: Any, out: Any) -> Any:
        if out is None:
            return g.astype(self.dtype, copy=False)
        out[...] = g
        return out

    # -- the global objective (reduced sums divided by N) -----------------------------------
    def loss(self, x: Any) -> float:
        """``f(x) = (1/N) sum_{i in train} ell_i(x) + (l2/2)||x||^2`` (collective)."""
        x = self._x(x)
        part = self._loss_sum(x, *self._rows(array_module(x), "train"))
        return self.allsum(part) / self.n_global + self._reg(x)

    def grad(self, x: Any, out: Any = None) -> Any:
        """``grad f(x)`` (collective; identical on every rank)."""
        x = self._x(x)
        part = self._grad_sum(x, *self._rows(array_module(x), "train"))
        return self._out(self.allsum(part) / self.n_global + self.l2 * x, out)

    def metrics(self, x: Any) -> dict[str, float]:
        """``test_accuracy`` (share of held-out rows whose largest logit is their class) and
        ``test_loss`` (their mean cross-entropy); NaN without held-out rows (collective)."""
        x = self._x(x)
        xp = array_module(x)
        X, y = self._rows(xp, "test")
        correct, total = 0.0, 0.0
        if X.shape[0]:
            logits = self._forward(x, X)[1]
            correct = float((logits.argmax(axis=1) == y).sum())
            logp = self._log_softmax(logits)
            total = -float(logp[xp.arange(X.shape[0]), y].sum())
        s = self.allsum(np.array([correct, total]))
        if not self.n_test:
            return {"test_accuracy": math.nan, "test_loss": math.nan}
        return {"test_accuracy": float(s[0]) / self.n_test, "test_loss": float(s[1]) / self.n_test}

    def describe(self, *, solve: bool = True) -> dict[str, Any]:
        """The problem for a log; L, L_max, mu, kappa and f_star are NaN (unknown)."""
        nan = float("nan")
        return {
            "name": self.name,
            "dataset": self.dataset,
            "N": int(self.n_global),
            "N_test": int(self.n_test),
            "test_fraction": self.test_fraction,
            "d": int(self.d),
            "layers": list(self.sizes),
            "classes": self.classes,
            "n_ranks": int(self.comm.size),
            "l2": float(self.l2),
            "L": nan,
            "L_max": nan,
            "mu": nan,
            "kappa": nan,
            "f_star": nan,
        }

    def __repr__(self) -> str:
        return (
            f"<MLP layers={'-'.join(map(str, self.sizes))} dataset={self.dataset!r} "
            f"N={self.n_global} test={self.n_test} l2={self.l2:g} "
            f"rank {self.comm.rank}/{self.comm.size}>"
        )

    # -- constants: unknown ----------------------------------------------------------------
    def _unknown(self, name: str) -> UnknownConstant:
        what, why, fix = _UNKNOWN[name]
        return UnknownConstant(f"--problem {self.name} does not provide {what} ({why}); {fix}")

    @property
    def L(self) -> float:
        raise self._unknown("L")

    @property
    def L_local(self) -> float:
        raise self._unknown("L")

    @property
    def L_local_max(self) -> float:
        raise self._unknown("L")

    @property
    def L_max(self) -> float:
        raise self._unknown("L")

    @property
    def mu(self) -> float:
        raise self._unknown("mu")

    @property
    def x_star(self) -> Any:
        raise self._unknown("x_star")

    @property
    def f_star(self) -> float:
        """NaN: unknown for a non-convex loss (``suboptimality`` is NaN in the log)."""
        return math.nan

    @classmethod
    def from_spec(
        cls,
        dataset: str,
        *,
        comm: Any = None,
        scale: str = "none",
        bias: float | bool = False,
        dtype: Any = np.float64,
        **kwargs: Any,
    ) -> MLP:
        """Load ``dataset`` with class labels (:func:`ecmpi.problems.data.load`) and build
        the network on it (collective)."""
        shard = load(dataset, comm=comm, scale=scale, bias=bias, task=cls.task, dtype=dtype)
        return cls(shard, comm=comm, **kwargs)
