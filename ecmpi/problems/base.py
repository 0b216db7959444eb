"""The problem interface: a finite-sum objective whose rows are sharded over MPI ranks.

    f(x) = (1/N) sum_{i=1..N} f_i(x) + (l2/2) ||x||^2

Rank ``tau`` holds ``m_tau`` rows. Its *node objective* is

    f_tau(x) = (P / N) sum_{i in shard tau} f_i(x) + (l2/2) ||x||^2

so that ``f = (1/P) sum_tau f_tau`` holds exactly even when shards are
unequal: an algorithm that averages the ranks' node gradients gets the true
gradient. With equal shards ``f_tau`` is the plain shard average.

Concrete problems (``lsq``, ``logreg``, ``quadratic``) implement the per-row
loss and gradient; this class adds the MPI reductions and the constants.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

__all__ = ["Problem"]


class Problem(ABC):
    """Base class of the sharded objectives. See the module docstring for the math.

    Attributes (set by subclasses at construction):
        name: ``"lsq"``, ``"logreg"`` or ``"quadratic"``.
        comm: the communicator the rows are sharded over (library-owned duplicate).
        d: dimension of x.
        n_local: rows on this rank (m_tau); n_global: N.
        weight: ``P * n_local / n_global``, the factor in f_tau.
        l2: the l2 regularization lambda.
        dtype: float64 unless asked otherwise.
        dataset: the dataset spec string the data came from.
    """

    name: ClassVar[str]

    # -- this node's objective f_tau -------------------------------------------------
    @abstractmethod
    def local_loss(self, x: Any) -> float:
        """f_tau(x)."""

    @abstractmethod
    def local_grad(self, x: Any, out: Any = None) -> Any:
        """grad f_tau(x)."""

    @abstractmethod
    def batch_grad(self, x: Any, idx: Any, out: Any = None) -> Any:
        """Unbiased estimate of grad f_tau(x) from the local rows ``idx``:
        ``weight * (1/|idx|) sum_{i in idx} grad f_i(x) + l2 * x``."""

    # -- the global objective f (collective: every rank must call) -------------------
    @abstractmethod
    def loss(self, x: Any) -> float:
        """f(x), reduced over all ranks; identical on every rank."""

    @abstractmethod
    def grad(self, x: Any, out: Any = None) -> Any:
        """grad f(x), reduced over all ranks; identical on every rank."""

    # -- constants -----------------------------------------------------------------
    @property
    @abstractmethod
    def L(self) -> float:
        """Smoothness constant of f."""

    @property
    @abstractmethod
    def L_local(self) -> float:
        """Smoothness of this rank's f_tau."""

    @property
    @abstractmethod
    def L_max(self) -> float:
        """Largest smoothness of a single scaled row term ``weight*f_i + l2/2||x||^2``."""

    @property
    @abstractmethod
    def mu(self) -> float:
        """Strong convexity of f (l2, or the smallest eigenvalue for lsq/quadratic)."""

    @property
    @abstractmethod
    def x_star(self) -> Any:
        """The minimizer (computed once, to high accuracy; identical on every rank)."""

    @property
    @abstractmethod
    def f_star(self) -> float:
        """f(x_star)."""
