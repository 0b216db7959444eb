"""The emulated cluster network: refusals, setup and teardown, and link bytes against CommStats."""

import json
import os
import shutil
import subprocess
import sys

import pytest

import ecmpi
from ecmpi.bench import netns
from ecmpi.comm.sra import sra_nbytes

CAN = os.geteuid() == 0 and shutil.which("ip") and shutil.which("tc")
needs_netns = pytest.mark.skipif(
    not CAN, reason="network namespaces need root and iproute2 (ip, tc) on this machine"
)

# TCP over Ethernet with timestamps: MSS 1448 payload bytes per 1514-byte frame
FRAME_OVERHEAD = 66 / 1448


_SERVER = """
import socket
s = socket.socket(); s.bind(("10.77.0.2", 5077)); s.listen(1); print("ready", flush=True)
conn, _ = s.accept(); got = 0
while True:
    b = conn.recv(65536)
    if not b:
        break
    got += len(b)
assert got == 100_000, got
"""
_CLIENT = """
import socket
s = socket.create_connection(("10.77.0.2", 5077), timeout=30); s.sendall(bytes(100_000)); s.close()
"""


def _root_view() -> tuple[str, str]:
    """Interfaces and addresses of the root namespace, counters excluded."""
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    addrs = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
    return links, addrs


def _netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_refuses_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(netns.NetnsUnavailable, match="need root"):
        netns.check_available()
    cluster = netns.EmulatedCluster(2)
    with pytest.raises(netns.NetnsUnavailable, match="need root"):
        cluster.__enter__()
    assert cluster._created == []


@pytest.mark.parametrize("tool", ["ip", "tc"])
def test_refuses_without_tools(monkeypatch, tool):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == tool else real(name))
    with pytest.raises(netns.NetnsUnavailable, match=f"'{tool}' not found; install iproute2"):
        netns.check_available()


def test_rates_and_arguments():
    assert netns.rate_bits_per_second("1gbit") == 1e9
    assert netns.rate_bits_per_second("10gbit") == 1e10
    assert netns.rate_bits_per_second("250mbit") == 2.5e8
    assert netns.rate_bits_per_second("1mbps") == 8e6  # tc: bps = bytes per second
    with pytest.raises(ValueError, match="link rate 'fast' not understood"):
        netns.rate_bits_per_second("fast")
    with pytest.raises(ValueError, match=r"nranks must be in 1\.\.250"):
        netns.EmulatedCluster(0)
    with pytest.raises(ValueError, match="not understood"):
        netns.EmulatedCluster(2, "1 gbit")
    with pytest.raises(ValueError, match="node_size 3 does not divide the 4 ranks"):
        netns.EmulatedCluster(4, node_size=3)


def test_ranks_of_a_node_share_its_namespace():
    """2 nodes x 2 ranks: two namespaces (two links), ranks 0, 1 in the first, 2, 3 in the
    second, and the node size handed to the ranks for the hier collective."""
    c = netns.EmulatedCluster(4, node_size=2)
    assert len(c.namespaces) == 2 and c.describe()["node_size"] == 2
    cmd = c.mpmd_command(["python", "x.py"], mpiexec="mpiexec")
    used = [cmd[i + 1] for i, a in enumerate(cmd) if a == "exec"]
    assert used == [c.namespaces[0]] * 2 + [c.namespaces[1]] * 2
    assert c.env({})["ECMPI_NODE_SIZE"] == "2"
    assert "ECMPI_NODE_SIZE" not in netns.EmulatedCluster(4).env({})


@needs_netns
def test_setup_and_teardown_touch_only_own_namespaces():
    before_view, before_ns = _root_view(), _netns_list()
    with netns.EmulatedCluster(3, "100mbit") as c:
        assert _netns_list() == before_ns | {c.hub, *c.namespaces}
        for i, ns in enumerate(c.namespaces):
            addr = subprocess.run(
                ["ip", "-n", ns, "-br", "addr", "show", "dev", "eth0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert f"10.77.0.{i + 1}/24" in addr
            qdisc = subprocess.run(
                ["tc", "-n", ns, "qdisc", "show", "dev", "eth0"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            assert "tbf" in qdisc and "100Mbit" in qdisc
        # the links really carry traffic: 100 kB over TCP from rank 0 to rank 1
        zero = c.counters()
        server = subprocess.Popen(
            ["ip", "netns", "exec", c.namespaces[1], sys.executable, "-c", _SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout.readline().strip() == "ready"
            subprocess.run(
                ["ip", "netns", "exec", c.namespaces[0], sys.executable, "-c", _CLIENT],
                check=True,
                timeout=60,
            )
            assert server.wait(timeout=60) == 0
        finally:
            server.kill()
        moved = c.counters()
        assert moved[0].sent - zero[0].sent >= 100_000
        assert moved[1].received - zero[1].received >= 100_000
        assert moved[2].received - zero[2].received < 2_000  # at most broadcast chatter
        assert _root_view() == before_view
    assert _netns_list() == before_ns
    assert _root_view() == before_view


@needs_netns
def test_teardown_on_error():
    before = _netns_list()
    with pytest.raises(RuntimeError, match="boom"), netns.EmulatedCluster(2) as c:
        assert c.hub in _netns_list()
        raise RuntimeError("boom")
    assert _netns_list() == before


@needs_netns
def test_remove_stale_only_dead_owners():
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = f"ecmpitest{dead.pid}-r0"
    live = f"ecmpitest{os.getpid()}-hub"
    other = f"ecmpitest{dead.pid}-other"
    for name in (stale, live, other):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert netns.remove_stale("ecmpitest") == [stale]
        assert {live, other} <= _netns_list() and stale not in _netns_list()
    finally:
        for name in (stale, live, other):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@needs_netns
@pytest.mark.mpi
def test_bench_link_bytes_against_commstats(tmp_path):
    """``ecmpi bench allreduce --emulate``: CommStats bytes are the exact payload sizes, and
    the tc counters carry them plus TCP/IP framing (at most 66 bytes per 1448), ACKs for
    the received data (one 66-byte frame per two segments at most) and MPI's own small
    messages (below 16 KiB per call)."""
    out = tmp_path / "rows.json"
    n, P = 1 << 18, 2
    cmd = [sys.executable, "-m", "ecmpi", "bench", "allreduce", "--emulate", "1gbit"]
    cmd += ["--ranks", str(P), "--sizes", "1M", "--collectives", "allgather,sra,ring"]
    cmd += ["--compressor", "none", "--compressor", "qsgd:bits=2", "--iters", "2", "--pairs", "1"]
    proc = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MPI_Allreduce" in proc.stdout and "paired speedup" in proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 1 + 2 * 3
    for r in rows:
        assert r["n"] == n and r["P"] == P and r["iters"] == 2
        assert (r["algorithm"] == "MPI_Allreduce") != (r.get("pairs") == 1)
        if r["algorithm"] == "MPI_Allreduce":
            expect = 2 * (P - 1) / P * 4 * n
        else:
            c = ecmpi.compressor(r["compressor"])
            if r["algorithm"] == "allgather":
                expect = (P - 1) * c.wire_nbytes(n)
            else:  # sra and ring move the same payload bytes for fixed-size codecs at P=2
                expect = max(sra_nbytes(c, n, P, k) for k in range(P))
            assert r["bytes_sent"] == expect and r["bytes_received"] == expect
        ceiling = expect * (1 + FRAME_OVERHEAD) + expect * FRAME_OVERHEAD / 2 + 16384
        assert expect <= r["link_sent"] <= ceiling, r
        assert expect <= r["link_received"] <= ceiling, r
