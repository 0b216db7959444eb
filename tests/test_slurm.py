"""The job scripts in ``jobs/`` on a real one-node Slurm cluster (``tests/slurm_cluster.py``).

One cluster (4 CPUs, 4 fake GPUs as gres) serves the whole module and is
stopped afterwards. Each script runs with ``sbatch --wait`` and small settings
given through its ``ECMPI_*`` environment overrides; the logs are checked with
:func:`ecmpi.log.open_log`. The requeue test interrupts a run with
``scancel --signal=USR1 --batch``, checks that it checkpointed (exit 75) and
requeued, releases it at once, and compares the finished log with an
uninterrupted run of the same settings, bit for bit (timings aside).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from _waiting import wait_for
from slurm_cluster import SlurmCluster, SlurmUnavailable

from ecmpi.log import open_log

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

JOBS = Path(__file__).resolve().parent.parent / "jobs"
VENV = Path(sys.prefix) if sys.prefix != sys.base_prefix else None
#: small settings shared by the run and requeue jobs, so their logs must agree
ALGORITHM = "ef-sgd"
ARGS = (
    "--problem logreg --dataset synthetic:n=200,d=8 --l2-rel 1e-2 --compressor qsgd:levels=2 "
    "--collective sra --batch-size 4 --steps 40 --seed 3"
)
#: the requeue test needs a run that lasts seconds (a few ms a step on two ranks: every
#: step logs a row), so that the signal, sent once rows appear, lands mid-run
REQUEUE_STEPS = 2000
REQUEUE_ARGS = (
    "--problem logreg --dataset synthetic:n=2000,d=50 --l2-rel 1e-2 --compressor qsgd:levels=8 "
    f"--collective sra --batch-size 4 --lr 0.3 --steps {REQUEUE_STEPS} --seed 3"
)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("the test cluster runs slurmctld/slurmd/munged as root; not root here")
    # munged runs as the munge user: its directory must be reachable (pytest's are 0700)
    root = Path(tempfile.mkdtemp(prefix="ecmpi-slurm-"))
    root.chmod(0o755)
    c = SlurmCluster(root, cpus=4, gpus=4)
    try:
        c.start()
    except SlurmUnavailable as exc:
        c.stop()
        pytest.skip(f"cannot run a Slurm cluster on this machine: {exc}")
    yield c
    subprocess.run(["scancel", "--user", "root"], env=c.env, capture_output=True)
    c.stop()
    shutil.rmtree(root, ignore_errors=True)


def _env(tmp: Path, **kw: str) -> dict[str, str]:
    env = {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **kw}
    if VENV is not None:
        env["ECMPI_ENV"] = str(VENV)
    return env


def _sbatch(cluster, script, tmp, *args, env, timeout=240):
    proc = cluster.sbatch(JOBS / script, "--chdir", str(tmp), *args, env=env, timeout=timeout)
    outs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(tmp.glob("*.out")))
    return proc, outs


def _rows(log):
    return {k: v for k, v in log.trajectory.items() if not k.endswith("_time")}


def _assert_same_rows(a, b):
    ra, rb = _rows(a), _rows(b)
    assert sorted(ra) == sorted(rb)
    for k in ra:
        np.testing.assert_array_equal(ra[k], rb[k], err_msg=k)
    np.testing.assert_array_equal(a.x_final, b.x_final)


def test_run_sbatch(cluster, tmp_path):
    out = tmp_path / "logs" / "run.h5"
    env = _env(tmp_path, ECMPI_ALGORITHM=ALGORITHM, ECMPI_ARGS=ARGS, ECMPI_OUT=str(out))
    proc, outs = _sbatch(cluster, "run.sbatch", tmp_path, "--ntasks=2", env=env)
    assert proc.returncode == 0, f"{proc.stderr}\n{outs}\n{cluster.logs()}"
    log = open_log(out)
    assert log.status == "completed" and log.attrs["n_ranks"] == 2
    assert log.attrs["algorithm"] == ALGORITHM
    np.testing.assert_array_equal(log.trajectory["step"], np.arange(41))
    assert "ecmpi run ef-sgd on 2 ranks" in outs


def test_sweep_sbatch_one_log_per_grid_point(cluster, tmp_path):
    grid = tmp_path / "grid.txt"
    grid.write_text(
        "# algorithm and options per line\n"
        "gd --compressor none\n"
        "\n"
        "ef-sgd --compressor topk:k=2 --collective ps\n"
        "qsgd --compressor qsgd:levels=4\n"
    )
    outdir = tmp_path / "sweep"
    env = _env(
        tmp_path,
        ECMPI_GRID=str(grid),
        ECMPI_OUTDIR=str(outdir),
        ECMPI_COMMON="--problem lsq --dataset synthetic:n=120,d=6 --steps 8 --seed 1",
    )
    proc, outs = _sbatch(cluster, "sweep.sbatch", tmp_path, "--array=0-2", "--ntasks=1", env=env)
    assert proc.returncode == 0, f"{proc.stderr}\n{outs}\n{cluster.logs()}"
    names = {
        "gd_compressor_none.h5": ("gd", "none", "allgather"),
        "ef-sgd_compressor_topk_k=2_collective_ps.h5": ("ef-sgd", "topk", "ps"),
        "qsgd_compressor_qsgd_levels=4.h5": ("qsgd", "qsgd", "allgather"),
    }
    assert sorted(p.name for p in outdir.iterdir()) == sorted(names)
    for name, (alg, comp, coll) in names.items():
        log = open_log(outdir / name)
        assert log.status == "completed", name
        assert log.attrs["algorithm"] == alg and log.attrs["collective"] == coll
        assert str(log.attrs["compressor"]).startswith(comp), log.attrs["compressor"]
        np.testing.assert_array_equal(log.trajectory["step"], np.arange(9))


def test_sweep_sbatch_task_without_grid_point_fails(cluster, tmp_path):
    grid = tmp_path / "grid.txt"
    grid.write_text("gd --compressor none\n")
    env = _env(tmp_path, ECMPI_GRID=str(grid), ECMPI_OUTDIR=str(tmp_path / "s"))
    proc, outs = _sbatch(cluster, "sweep.sbatch", tmp_path, "--array=1", "--ntasks=1", env=env)
    assert proc.returncode == 2
    assert "array task 1 has no grid point (the grid has 1 lines)" in outs


def _squeue_state(cluster, job):
    p = subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T"], env=cluster.env, capture_output=True, text=True
    )
    return p.stdout.strip()


def _job_output(tmp_path):
    return "".join(p.read_text() for p in sorted(tmp_path.glob("requeue-*.out")))


def _nrows(path):
    try:
        return len(open_log(path))
    except (OSError, ValueError):
        return 0


@pytest.mark.timeout(600)  # two runs of seconds each, plus Slurm's requeue cycle
def test_requeue_sbatch_checkpoints_requeues_and_resumes_exactly(cluster, tmp_path):
    ref = tmp_path / "ref.h5"
    env = _env(tmp_path, ECMPI_ALGORITHM=ALGORITHM, ECMPI_ARGS=REQUEUE_ARGS, ECMPI_OUT=str(ref))
    proc, outs = _sbatch(cluster, "run.sbatch", tmp_path, "--ntasks=2", env=env)
    assert proc.returncode == 0, f"{proc.stderr}\n{outs}"

    out = tmp_path / "requeue.h5"
    env = _env(
        tmp_path,
        ECMPI_ALGORITHM=ALGORITHM,
        ECMPI_ARGS=REQUEUE_ARGS,
        ECMPI_OUT=str(out),
        ECMPI_CHECKPOINT_EVERY="50",
    )
    full_env = {**cluster.env, **env}
    sub = subprocess.Popen(
        [
            "sbatch",
            "--wait",
            "--parsable",
            "--ntasks=2",
            "--time=10",
            "--chdir",
            str(tmp_path),
            "--output",
            str(tmp_path / "requeue-%j.out"),
            str(JOBS / "requeue.sbatch"),
        ],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        job = sub.stdout.readline().strip().split(";")[0]
        assert job.isdigit(), sub.stderr.read() if sub.poll() is not None else job
        # interrupt only once the run logs rows (the handler is in place) and before it ends
        wait_for(lambda: _nrows(out) >= 3, 150, "the first rows of the requeue job")
        assert _nrows(out) < REQUEUE_STEPS // 4, "the run is too far along to be interrupted"
        subprocess.run(["scancel", "--signal=USR1", "--batch", job], env=cluster.env, check=True)
        wait_for(
            lambda: "requeueing job" in _job_output(tmp_path),
            120,
            "the checkpoint and the requeue",
            lambda: _job_output(tmp_path),
        )
        first = open_log(out)
        assert first.status == "interrupted" and first.attrs["stop_reason"] == "signal"
        assert first.checkpoint_step is not None and 0 < first.checkpoint_step < REQUEUE_STEPS
        cut = first.checkpoint_step
        wait_for(lambda: _squeue_state(cluster, job) == "PENDING", 60, "the requeued job")
        # release it soon, not at once: slurmd refuses a credential issued in the same
        # second as the revocation of the job's previous run ("Job credential revoked")
        subprocess.run(
            ["scontrol", "update", f"jobid={job}", "StartTime=now+3"], env=cluster.env, check=True
        )
        sub.wait(timeout=240)
    finally:
        if sub.poll() is None:
            subprocess.run(["scancel", job], env=cluster.env)
            sub.kill()
    text = _job_output(tmp_path)
    assert sub.returncode == 0, f"{sub.stderr.read()}\n{text}\n{cluster.logs()}"
    assert "checkpointed (exit 75); requeueing job" in text
    assert "start 2: resuming from" in text and "run ended with exit code 0" in text
    done = open_log(out)
    assert done.status == "completed" and done.attrs["resumed"] == 1
    assert cut < REQUEUE_STEPS
    _assert_same_rows(open_log(ref), done)


def test_gpu_sbatch_binds_one_gpu_per_rank(cluster, tmp_path):
    env = _env(tmp_path, ECMPI_CHECK_ONLY="1")
    proc, outs = _sbatch(cluster, "gpu.sbatch", tmp_path, "--ntasks=4", env=env)
    assert proc.returncode == 0, f"{proc.stderr}\n{outs}\n{cluster.logs()}"
    lines = [ln.split() for ln in outs.splitlines() if ln.startswith("binding rank")]
    assert sorted(ln[2] for ln in lines) == [f"{r}/4" for r in range(4)]
    devices = [ln[5].split("=", 1)[1] for ln in lines]
    assert all(devices) and len(set(devices)) == 4, devices


def test_gpu_sbatch_refuses_ranks_without_gpu(cluster, tmp_path):
    env = _env(tmp_path, ECMPI_CHECK_ONLY="1")
    proc, outs = _sbatch(
        cluster, "gpu.sbatch", tmp_path, "--ntasks=2", "--gpus-per-task=0", env=env
    )
    assert proc.returncode == 1
    assert "a rank has no GPU" in outs
