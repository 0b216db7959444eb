"""Sharding invariance under any number of ranks: rows, loss, gradient, constants, x*."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from mpi4py import MPI

from ecmpi.problems import load, make

SPECS = [
    "synthetic:n=37,d=5,seed=3",
    "syn:d=6,n=41",
    "quadratic:d=6,kappa=20,n=23",
    "sklearn:breast_cancer",
]


@pytest.fixture
def shared_dir(comm):
    """A directory every rank sees: ECMPI_TEST_TMP, or rank 0's temporary directory."""
    base = os.environ.get("ECMPI_TEST_TMP")
    path = None
    if comm.rank == 0:
        path = tempfile.mkdtemp(dir=base)
    path = Path(comm.bcast(path, root=0))
    yield path
    comm.Barrier()


def write_files(comm, where: Path) -> dict[str, str]:
    """Rank 0 writes a LibSVM and an HDF5 file; everyone waits for them."""
    rng = np.random.default_rng(7)
    X = np.round(rng.standard_normal((29, 4)), 3)
    X[X < 0.2] = 0.0
    y = np.where(rng.standard_normal(29) > 0, 1.0, 2.0)
    svm, h5 = where / "d.svm", where / "d.h5"
    if comm.rank == 0:
        lines = ["# header comment"]
        for k in range(29):
            feats = " ".join(f"{j + 1}:{float(X[k, j])!r}" for j in range(4) if X[k, j] != 0)
            lines.append(f"{y[k]:g} {feats}")
            if k % 5 == 0:
                lines.append("")
        svm.write_text("\n".join(lines) + "\n")
        with h5py.File(h5, "w") as f:
            f["feat"], f["lab"] = X, y
    comm.Barrier()
    return {"libsvm": f"libsvm:{svm},n_features=4", "hdf5": f"hdf5:{h5},x=feat,y=lab"}


def gather_rows(comm, shard):
    parts = comm.allgather((shard.offset, shard.A, shard.y))
    return np.vstack([p[1] for p in parts]), np.concatenate([p[2] for p in parts]), parts


def check_same_rows(comm, spec, **kwargs):
    shard = load(spec, comm=comm, **kwargs)
    whole = load(spec, comm=MPI.COMM_SELF, **kwargs)
    A, y, parts = gather_rows(comm, shard)
    offsets = [p[0] for p in parts]
    sizes = [p[1].shape[0] for p in parts]
    # contiguous shards covering every row exactly once, in rank order
    assert offsets == [sum(sizes[:r]) for r in range(comm.size)]
    assert sum(sizes) == shard.n_global == whole.n_global
    assert shard.d == whole.d and shard.task == whole.task
    return A, y, whole


@pytest.mark.parametrize("spec", SPECS)
def test_same_rows_for_any_number_of_ranks(comm, spec):
    A, y, whole = check_same_rows(comm, spec)
    assert np.array_equal(A, whole.A) and np.array_equal(y, whole.y)


def test_file_sources_read_the_same_rows(comm, shared_dir):
    for spec in write_files(comm, shared_dir).values():
        A, y, whole = check_same_rows(comm, spec)
        assert np.array_equal(A, whole.A) and np.array_equal(y, whole.y)
        assert set(np.unique(y)) == {-1.0, 1.0}


@pytest.mark.parametrize("scale", ["standard", "maxabs", "rownorm"])
def test_scaling_statistics_are_global(comm, scale):
    A, y, whole = check_same_rows(comm, "sklearn:breast_cancer", scale=scale, bias=True)
    assert np.allclose(A, whole.A, rtol=1e-13, atol=1e-13) and np.array_equal(y, whole.y)


CASES = [
    ("lsq", "synthetic:n=37,d=5,seed=3", {"l2": 0.01}),
    ("lsq", "sklearn:diabetes", {"scale": "standard", "bias": True}),
    ("logreg", "synthetic:n=45,d=4,seed=1", {"l2_rel": 1e-3, "bias": True}),
    ("logreg", "sklearn:breast_cancer", {"scale": "standard", "l2": 1e-3}),
    ("quadratic", None, {"kappa": 50.0, "dim": 6, "n": 23}),
]


@pytest.mark.parametrize(("name", "spec", "kw"), CASES)
def test_problem_matches_the_single_process_one(comm, name, spec, kw):
    p = make(name, spec, comm=comm, **kw)
    ref = make(name, spec, comm=MPI.COMM_SELF, **kw)
    x = np.random.default_rng(4).standard_normal(p.d)

    f, g = p.loss(x), p.grad(x)
    assert f == pytest.approx(ref.loss(x), rel=1e-13)
    assert np.allclose(g, ref.grad(x), rtol=1e-12, atol=1e-14)
    # identical on every rank, bit for bit
    allf, allg = comm.allgather(f), comm.allgather(g)
    assert all(v == allf[0] for v in allf) and all(np.array_equal(v, allg[0]) for v in allg)

    # f = mean of the node objectives, also with unequal shards
    assert np.mean(comm.allgather(p.local_loss(x))) == pytest.approx(f, rel=1e-13)
    mean_g = np.mean(comm.allgather(p.local_grad(x)), axis=0)
    assert np.allclose(mean_g, g, rtol=1e-12, atol=1e-14)

    assert p.L == pytest.approx(ref.L, rel=1e-12) and p.mu == pytest.approx(ref.mu, rel=1e-9)
    assert p.l2 == pytest.approx(ref.l2, rel=1e-12)
    assert p.weight == pytest.approx(comm.size * p.n_local / p.n_global)
    assert p.L_local_max >= p.L_local
    # L_max: the largest scaled row smoothness over all ranks
    c = 0.25 if name == "logreg" else 1.0
    rows = (p.A * p.A).sum(axis=1).max() if p.n_local else 0.0
    assert p.L_max >= c * p.weight * rows + p.l2 - 1e-12
    assert all(v == p.L_max for v in comm.allgather(p.L_max))

    xs = p.x_star
    assert all(np.array_equal(v, xs) for v in comm.allgather(xs))
    assert np.linalg.norm(p.grad(xs)) <= 1e-11
    assert np.allclose(xs, ref.x_star, rtol=1e-9, atol=1e-11)
    assert p.f_star == pytest.approx(ref.f_star, rel=1e-12, abs=1e-25)


def test_batch_grad_is_unbiased_for_the_node_gradient(comm):
    p = make("logreg", "synthetic:n=30,d=3,seed=5", comm=comm, l2=0.1)
    x = np.linspace(-1, 1, p.d)
    if p.n_local:
        singles = np.mean([p.batch_grad(x, [i]) for i in range(p.n_local)], axis=0)
        assert np.allclose(singles, p.local_grad(x), rtol=1e-12, atol=1e-14)
    else:
        assert np.array_equal(p.batch_grad(x, []), 0.1 * x)


def test_a_bad_line_on_one_rank_raises_everywhere(comm, shared_dir):
    path = shared_dir / "bad.svm"
    if comm.rank == 0:
        path.write_text("1 1:1\n" * 9 + "1 1:oops\n")  # the last row: owned by the last rank
    comm.Barrier()
    with pytest.raises(ValueError, match="line 10: malformed"):
        load(f"libsvm:{path}", comm=comm)


def test_more_ranks_than_rows(comm):
    p = make("lsq", "synthetic:n=2,d=2,seed=1", comm=comm, l2=0.5)
    ref = make("lsq", "synthetic:n=2,d=2,seed=1", comm=MPI.COMM_SELF, l2=0.5)
    x = np.array([0.3, -0.7])
    assert sum(comm.allgather(p.n_local)) == 2
    assert p.loss(x) == pytest.approx(ref.loss(x), rel=1e-14)
    assert np.allclose(p.x_star, ref.x_star, rtol=1e-12)
