"""A real one-node Slurm cluster under a temporary directory, for the job-script tests.

Installs Debian's ``slurmctld slurmd slurm-client munge`` when they are missing
(root and apt-get needed), starts munged (as the munge user, on a private
socket), slurmctld and slurmd with a minimal ``slurm.conf``, and stops all
three afterwards. Nothing outside the directory is changed except the
packages. The ports (16817/16818 by default) are on this machine only.

Run by hand: ``python tests/slurm_cluster.py DIR`` starts a cluster and
prints the ``SLURM_CONF`` to export; ``python tests/slurm_cluster.py --stop DIR``
stops it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]


class SlurmUnavailable(RuntimeError):
    """This machine cannot run a Slurm cluster (the reason is the message)."""


def ensure_installed() -> None:
    """Install the Slurm and munge packages if a daemon is missing."""
    if all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged")):
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable("Slurm is not installed and installing it needs root")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable("Slurm is not installed and apt-get is not available")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, capture_output=True)
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SlurmUnavailable(
            f"apt-get install {' '.join(PACKAGES)} failed:\n{proc.stderr[-2000:]}"
        )


def _free_port_pair(lo: int = 20000, hi: int = 60000) -> int:
    """A port p such that p and p + 1 can both be bound on this host now."""
    for start in range(lo + (os.getpid() * 7) % (hi - lo), hi, 2):
        socks = []
        try:
            for q in (start, start + 1):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("", q))
            return start
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SlurmUnavailable(f"no two consecutive free ports in {lo}..{hi}")


class SlurmCluster:
    """Start/stop a one-node Slurm cluster rooted at ``root``.

    Args:
        root: a directory for config, state, spool, logs and the munge socket.
        cpus: CPUs the node advertises (Slurm oversubscribes nothing beyond this).
        port: slurmctld port; slurmd uses ``port + 1`` (default: a free pair, so daemons
            left by an earlier, killed test session cannot block this one).
        gpus: number of fake GPU devices to advertise as gres (character devices
            made with mknod), so ``--gpus-per-task`` binding can be exercised.
    """

    def __init__(self, root: Path, cpus: int = 4, port: int | None = None, gpus: int = 0):
        self.root = Path(root).resolve()
        self.cpus = cpus
        self.port = _free_port_pair() if port is None else port
        self.gpus = gpus
        self.host = socket.gethostname()
        self.conf = self.root / "slurm.conf"
        # job ids name MPICH's shared-memory segments (through the PMI job id); a fresh
        # cluster starting again at job 1 could meet a segment left in /dev/shm by a killed
        # job of an earlier cluster and fail in MPI_Init: start at an unused range instead
        self.first_job_id = 1000 + (time.time_ns() // 1000) % 60_000_000

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus SLURM_CONF pointing at this cluster."""
        return dict(os.environ, SLURM_CONF=str(self.conf))

    def start(self, timeout: float = 30) -> SlurmCluster:
        ensure_installed()
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test cluster runs its daemons as root")
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._start_munge()
        self._write_conf()
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True
            )
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed", "allocated"):
                return self
            time.sleep(0.5)
        self.stop()
        raise SlurmUnavailable(f"the node did not become idle within {timeout}s: {self.logs()}")

    def _start_munge(self) -> None:
        mdir = self.root / "munge"
        mdir.mkdir(exist_ok=True)
        key = mdir / "key"
        if not key.exists():
            key.write_bytes(os.urandom(128))
        shutil.chown(mdir, "munge", "munge")
        shutil.chown(key, "munge", "munge")
        os.chmod(mdir, 0o711)
        os.chmod(key, 0o600)
        subprocess.run(
            [
                "runuser",
                "-u",
                "munge",
                "--",
                "munged",
                f"--key-file={key}",
                f"--socket={mdir / 'sock'}",
                f"--pid-file={mdir / 'pid'}",
                f"--log-file={mdir / 'log'}",
                f"--seed-file={mdir / 'seed'}",
            ],
            check=True,
        )

    def _write_conf(self) -> None:
        r = self.root
        gres_node = ""
        extra = ""
        if self.gpus:
            devs = []
            for i in range(self.gpus):
                dev = r / f"fakegpu{i}"
                if not dev.exists():
                    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
                devs.append(f"Name=gpu File={dev}")
            (r / "gres.conf").write_text("\n".join(devs) + "\n")
            gres_node = f" Gres=gpu:{self.gpus}"
            extra = "GresTypes=gpu\n"
        self.conf.write_text(
            f"""ClusterName=ecmpi-test
SlurmctldHost={self.host}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={r / "munge" / "sock"}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
{extra}StateSaveLocation={r / "state"}
SlurmdSpoolDir={r / "spool"}
SlurmctldPidFile={r / "slurmctld.pid"}
SlurmdPidFile={r / "slurmd.pid"}
SlurmctldLogFile={r / "log" / "slurmctld.log"}
SlurmdLogFile={r / "log" / "slurmd.log"}
SlurmctldPort={self.port}
SlurmdPort={self.port + 1}
JobCompType=jobcomp/none
FirstJobId={self.first_job_id}
NodeName={self.host} CPUs={self.cpus}{gres_node} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
        )

    def stop(self) -> None:
        """Stop slurmd, slurmctld and munged (by their pid files); idempotent."""
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munge/pid"):
            path = self.root / pidfile
            try:
                pid = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def logs(self) -> str:
        parts = []
        for name in ("slurmctld.log", "slurmd.log"):
            p = self.root / "log" / name
            if p.exists():
                parts.append(f"--- {name} ---\n" + p.read_text()[-3000:])
        return "\n".join(parts)

    def sbatch(
        self, script: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess:
        """``sbatch --wait`` a script; returns the CompletedProcess (returncode = job's)."""
        full = self.env
        if env:
            full.update(env)
        return subprocess.run(
            ["sbatch", "--wait", *args, str(script)],
            env=full,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--stop":
        SlurmCluster(Path(sys.argv[2])).stop()
    elif len(sys.argv) == 2:
        cluster = SlurmCluster(Path(sys.argv[1])).start()
        print(f"export SLURM_CONF={cluster.conf}")
    else:
        sys.exit(__doc__)
