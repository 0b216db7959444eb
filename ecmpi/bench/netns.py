"""An emulated cluster network on one machine: one network namespace and one shaped link per node.

Each rank runs in its own namespace ``<prefix>-r<i>`` holding one end of a veth
pair (``eth0``, address ``10.77.0.<i+1>/24``, valid only inside these
namespaces); the other end (``h<i>``) sits in a bridge ``br0`` inside a hub
namespace ``<prefix>-hub``. Both ends are shaped with a token bucket
(``tc qdisc add dev DEV root tbf rate RATE burst 256kb latency 50ms``), so
every rank has its own full-duplex link of the given rate, as a cluster node
has its own NIC.

With ``node_size = L`` (default 1) ranks ``kL .. kL+L-1`` share namespace
``k``: their traffic to each other goes over that namespace's loopback,
unshaped (a node's shared memory), and ``ECMPI_NODE_SIZE=L`` tells
:mod:`ecmpi.comm.hier` the same nodes.

MPICH is launched MPMD, one ``ip netns exec NS python ...`` per rank; the
launcher hands PMI to each rank through an inherited file descriptor, so it
crosses namespaces. ``MPIR_CVAR_CH4_NETMOD=ofi MPIR_CVAR_NOLOCAL=1
FI_PROVIDER=tcp`` force real TCP (with either alone traffic stays in shared
memory). The ``tc -s qdisc`` byte counters of both link ends give the bytes
each rank really sent and received.

Only interfaces inside the namespaces created here are touched; everything is
removed on exit, on Ctrl-C and on errors. Needs root, ``ip`` and ``tc``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import NetnsUnavailable

__all__ = [
    "MPICH_TCP_ENV",
    "EmulatedCluster",
    "LinkCounters",
    "NetnsUnavailable",
    "check_available",
    "rate_bits_per_second",
    "read_counters",
    "remove_stale",
]

#: environment that makes MPICH use TCP between the namespaces
MPICH_TCP_ENV = {"MPIR_CVAR_CH4_NETMOD": "ofi", "MPIR_CVAR_NOLOCAL": "1", "FI_PROVIDER": "tcp"}
SUBNET = "10.77.0"
_RATE = re.compile(r"^\d+(\.\d+)?(bit|kbit|mbit|gbit|tbit|bps|kbps|mbps|gbps)$", re.I)


def check_available() -> None:
    """Raise :class:`NetnsUnavailable` with the reason unless namespaces and tc can be used."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("emulated links need root (network namespaces and tc)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise NetnsUnavailable(f"'{tool}' not found; install iproute2")


def rate_bits_per_second(rate: str) -> float:
    """``"1gbit"`` -> 1e9 (tc's units: bit/kbit/mbit/gbit, bps = bytes per second)."""
    if not _RATE.match(rate):
        raise ValueError(f"link rate {rate!r} not understood; use e.g. 100mbit, 1gbit, 10gbit")
    num = float(re.match(r"[\d.]+", rate).group())
    unit = rate[len(re.match(r"[\d.]+", rate).group()) :].lower()
    scale = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12}
    if unit in scale:
        return num * scale[unit]
    return num * 8 * {"bps": 1, "kbps": 1e3, "mbps": 1e6, "gbps": 1e9}[unit]


@dataclass
class LinkCounters:
    """Bytes a rank's link carried: ``sent`` (rank to hub) and ``received`` (hub to rank)."""

    sent: int
    received: int


def _run(args: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


class EmulatedCluster:
    """Context manager creating ``nranks`` namespaces with shaped links (see module docstring).

    Args:
        nranks: number of ranks (namespaces), 1..250.
        rate: link rate in tc syntax (``"1gbit"``, ``"10gbit"``).
        burst: tbf bucket size.
        latency: tbf queueing latency bound.
        prefix: namespace name prefix; the process id is appended so concurrent
            runs never collide.
    """

    def __init__(
        self,
        nranks: int,
        rate: str = "1gbit",
        *,
        burst: str = "256kb",
        latency: str = "50ms",
        prefix: str = "ecmpi",
        node_size: int = 1,
    ):
        if not 1 <= nranks <= 250:
            raise ValueError(f"nranks must be in 1..250, got {nranks}")
        if isinstance(node_size, bool) or not isinstance(node_size, int) or node_size < 1:
            raise ValueError(f"node_size must be a positive int, got {node_size!r}")
        if nranks % node_size:
            raise ValueError(f"node_size {node_size} does not divide the {nranks} ranks")
        rate_bits_per_second(rate)
        self.nranks = nranks
        self.node_size = node_size
        self.rate = rate
        self.burst = burst
        self.latency = latency
        self.tag = f"{prefix}{os.getpid()}"
        self.hub = f"{self.tag}-hub"
        self.namespaces = [f"{self.tag}-r{i}" for i in range(nranks // node_size)]
        self._created: list[str] = []
        self._old_handlers: dict[int, Any] = {}

    # -- lifecycle ------------------------------------------------------------------
    def __enter__(self) -> EmulatedCluster:
        check_available()
        if threading.current_thread() is threading.main_thread():  # signals: main thread only
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.teardown()
        raise KeyboardInterrupt(f"signal {signum}: emulated network removed")

    def _ns(self, ns: str, *args: str) -> None:
        _run(["ip", "netns", "exec", ns, *args])

    def _shape(self, ns: str, dev: str) -> None:
        self._ns(
            ns,
            "tc",
            "qdisc",
            "add",
            "dev",
            dev,
            "root",
            "tbf",
            "rate",
            self.rate,
            "burst",
            self.burst,
            "latency",
            self.latency,
        )

    def _setup(self) -> None:
        _run(["ip", "netns", "add", self.hub])
        self._created.append(self.hub)
        self._ns(self.hub, "ip", "link", "add", "br0", "type", "bridge")
        self._ns(self.hub, "ip", "link", "set", "br0", "up")
        self._ns(self.hub, "ip", "link", "set", "lo", "up")
        for i, ns in enumerate(self.namespaces):
            _run(["ip", "netns", "add", ns])
            self._created.append(ns)
            # create the pair inside the rank namespace, then move the hub end
            self._ns(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", f"h{i}")
            self._ns(ns, "ip", "link", "set", f"h{i}", "netns", self.hub)
            self._ns(ns, "ip", "addr", "add", f"{SUBNET}.{i + 1}/24", "dev", "eth0")
            self._ns(ns, "ip", "link", "set", "eth0", "up")
            self._ns(ns, "ip", "link", "set", "lo", "up")
            self._ns(self.hub, "ip", "link", "set", f"h{i}", "master", "br0")
            self._ns(self.hub, "ip", "link", "set", f"h{i}", "up")
            self._shape(ns, "eth0")
            self._shape(self.hub, f"h{i}")

    def teardown(self) -> None:
        """Delete every namespace this object created (idempotent)."""
        for ns in reversed(self._created):
            _run(["ip", "netns", "del", ns], check=False)
        self._created.clear()
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    # -- use --------------------------------------------------------------------
    def address(self, rank: int) -> str:
        return f"{SUBNET}.{rank + 1}"

    def mpmd_command(self, argv: Sequence[str], mpiexec: str | None = None) -> list[str]:
        """An ``mpiexec`` MPMD command running ``argv`` once per rank, each in its namespace."""
        exe = mpiexec or shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or "mpiexec"
        cmd = [exe]
        for i in range(self.nranks):
            if i:
                cmd.append(":")
            cmd += ["-n", "1", "ip", "netns", "exec", self.namespaces[i // self.node_size], *argv]
        return cmd

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: os.environ) plus the variables forcing MPICH onto TCP."""
        env = dict(os.environ if base is None else base)
        env.update(MPICH_TCP_ENV)
        if self.node_size > 1:
            from ..comm.hier import ENV_NODE_SIZE

            env[ENV_NODE_SIZE] = str(self.node_size)
        return env

    def run(self, argv: Sequence[str], *, timeout: float = 600, capture: bool = True, **kw: Any):
        """Run ``argv`` on every rank (MPMD) and return the CompletedProcess.

        ``capture=False`` lets the job write to this process's stdout/stderr.
        """
        return subprocess.run(
            self.mpmd_command(argv),
            env=self.env(),
            timeout=timeout,
            capture_output=capture,
            text=True,
            **kw,
        )

    def counters(self) -> list[LinkCounters]:
        """Bytes through each rank's link so far (from the tbf qdiscs on both ends)."""
        return read_counters(self.namespaces, self.hub)

    def describe(self) -> dict[str, Any]:
        """Namespaces, hub and link parameters, e.g. for a worker that reads the counters."""
        return {
            "namespaces": list(self.namespaces),
            "hub": self.hub,
            "rate": self.rate,
            "rate_bps": rate_bits_per_second(self.rate),
            "burst": self.burst,
            "latency": self.latency,
            "node_size": self.node_size,
        }


def _qdisc_bytes(ns: str, dev: str) -> int:
    text = _run(["tc", "-n", ns, "-s", "qdisc", "show", "dev", dev]).stdout
    m = re.search(r"Sent (\d+) bytes", text)
    if m is None:
        raise RuntimeError(f"no tc counters for {dev} in {ns}:\n{text}")
    return int(m.group(1))


def read_counters(namespaces: Sequence[str], hub: str) -> list[LinkCounters]:
    """Bytes through each rank's link so far: ``eth0`` in rank namespace ``i`` (sent) and
    ``h<i>`` in the hub (received). Callable from any namespace (``tc -n``), e.g. by rank 0."""
    return [
        LinkCounters(sent=_qdisc_bytes(ns, "eth0"), received=_qdisc_bytes(hub, f"h{i}"))
        for i, ns in enumerate(namespaces)
    ]


def remove_stale(prefix: str = "ecmpi") -> list[str]:
    """Delete namespaces ``<prefix><pid>-*`` left by a process that no longer runs (kill -9).

    Only names of that exact form are touched; namespaces of live processes stay.
    Returns the names removed.
    """
    check_available()
    listing = _run(["ip", "netns", "list"], check=False).stdout
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-(hub|r\d+)$")
    removed = []
    for line in listing.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pattern.match(name)
        if m is None or _alive(int(m.group(1))):
            continue
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
