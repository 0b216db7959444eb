"""The alpha-beta-gamma model: counts and times against hand computations, and the fits."""

import math

import pytest

import ecmpi
from ecmpi.bench import model as m

C = m.Codec("c", header=10.0, per_entry=0.5)


def test_counts_by_hand():
    # sra, n=1000, P=4: chunks of 250 -> w = 10 + 125 = 135 bytes
    k = m.counts("sra", 1000, 4, C)
    assert (k.messages, k.bytes, k.encoded, k.decoded) == (6, 2 * 3 * 135, 1250, 2000)
    # MPI (Rabenseifner): 2 log2 P messages, 2(P-1)/P of 4n bytes, (P-1)/P n additions
    k = m.counts("MPI_Allreduce", 1000, 4)
    assert (k.messages, k.bytes, k.decoded) == (4, 6000, 750)
    k = m.counts("MPI_Allreduce", 1000, 5)  # ceil(log2 5) = 3
    assert (k.messages, k.bytes) == (6, pytest.approx(6400))
    # allgather, P=3: 2 messages of w(100) = 104, 100 encoded, 300 decoded
    k = m.counts("allgather", 100, 3, m.Codec("c", 4.0, 1.0))
    assert (k.messages, k.bytes, k.encoded, k.decoded) == (2, 208, 100, 300)
    # ring, P=2, segment 100: chunk 500 = 5 segments of w(100) = 60 bytes
    k = m.counts("ring", 1000, 2, C, segment=100)
    assert (k.messages, k.bytes, k.encoded, k.decoded) == (10, 600, 1500, 1500)
    # ps, P=4: root receives 3 w(n) and broadcasts 2*3/4 w(n); 2n encoded, (P+1)n decoded
    k = m.counts("ps", 100, 4, m.Codec("c", 0.0, 4.0))
    assert (k.messages, k.bytes, k.encoded, k.decoded) == (8, 1800, 200, 500)
    assert m.counts("sra", 10, 1, C) == m.Counts(0, 0, 0, 0)


def test_predict_by_hand():
    net = m.Network(alpha=1e-5, beta=1e-8)
    c = m.Codec("c", 10.0, 0.5, gamma_encode=1e-9, gamma_decode=2e-9, delta_encode=1e-4)
    t = m.predict("sra", 1000, 4, net, c)
    assert t == pytest.approx(6e-5 + 810e-8 + 1250e-9 + 1e-4 + 4000e-9, rel=1e-12)
    assert m.Network.from_rate(10, 2e-6) == m.Network(alpha=2e-6, beta=8e-10)


def test_codec_matches_wire_sizes():
    for spec, per in [("none", 4.0), ("fp16", 2.0), ("qsgd:bits=2", 2 / 8 + 4 / 512)]:
        c = m.codec(spec)
        assert c.per_entry == per and c.header == 48
        for n in (512 * 4, 1 << 22):
            assert c.wire(n) == ecmpi.compressor(spec).wire_nbytes(n)
    # sign: 1 bit and one float32 l1 scale per 512 entries
    assert m.codec("sign").per_entry == 1 / 8 + 4 / 512
    # topk 1%: uint32 index + float32 value per kept entry, k = ceil(0.01 n)
    assert m.codec("topk:ratio=0.01").per_entry == pytest.approx(0.08, rel=1e-4)


def test_ideal_speedup_and_break_even_by_hand():
    c = m.Codec("q", 0.0, 0.25)
    # MPI moves 1.5 * 4n bytes per link at P=4; sra moves 6 * 0.25 * n/4 = 0.375 n
    assert m.ideal_speedup("sra", 1e6, 4, c) == pytest.approx(6e6 / 375e3)
    net = m.Network(alpha=0.0, beta=1e-9)
    # T_mpi = 6e-3 s, T_comm = 3.75e-4 s, E + D = 1.25e6 + 2e6 entries
    want = 4 * 3.25e6 / (6e-3 - 3.75e-4)
    assert m.break_even_throughput("sra", 1e6, 4, net, c) == pytest.approx(want, rel=1e-12)
    # uncompressed allgather moves 3 * 4n > 1.5 * 4n: it can never tie
    assert math.isinf(m.break_even_throughput("allgather", 1e6, 4, net, m.FLOAT32))


def _rows(net, codecs, P, sizes, algorithms):
    rows = []
    for n in sizes:
        k = m.counts("MPI_Allreduce", n, P)
        rows.append(
            {
                "algorithm": "MPI_Allreduce",
                "compressor": "none",
                "n": n,
                "P": P,
                "rate": "r",
                "seconds": net.alpha * k.messages + net.beta * k.bytes,
                "bytes_sent": k.bytes,
            }
        )
        for c in codecs:
            for alg in algorithms:
                k = m.counts(alg, n, P, c)
                rows.append(
                    {
                        "algorithm": alg,
                        "compressor": c.name,
                        "n": n,
                        "P": P,
                        "rate": "r",
                        "messages": k.messages,
                        "bytes_sent": k.bytes,
                        "bytes_received": k.bytes,
                        "communicate_seconds": net.alpha * k.messages + net.beta * k.bytes,
                        "encode_seconds": c.delta_encode + c.gamma_encode * k.encoded,
                        "decode_seconds": c.delta_decode + c.gamma_decode * k.decoded,
                    }
                )
    return rows


def test_fits_recover_the_generating_parameters():
    net = m.Network(alpha=3e-5, beta=8e-9)
    q = m.codec("qsgd:bits=2", gamma_encode=4e-9, gamma_decode=7e-9, delta_encode=2e-4)
    rows = _rows(net, [q], 4, [1 << 14, 1 << 18, 1 << 22], ["allgather", "sra", "ring"])
    got = m.fit_network(rows)
    assert got.alpha == pytest.approx(net.alpha, rel=1e-6)
    assert got.beta == pytest.approx(net.beta, rel=1e-6)
    g = m.fit_gamma(rows, "qsgd:bits=2", P=4)
    assert g.gamma_encode == pytest.approx(4e-9, rel=1e-6)
    assert g.gamma_decode == pytest.approx(7e-9, rel=1e-6)
    assert g.delta_encode == pytest.approx(2e-4, rel=1e-6)
    assert g.delta_decode == pytest.approx(0.0, abs=1e-12)
    pred = m.predict_rows(rows, {"r": net}, {("qsgd:bits=2", 4): q})
    meas = [
        r.get("seconds", 0) or sum(r[f"{p}_seconds"] for p in ("encode", "communicate", "decode"))
        for r in rows
    ]
    assert pred == pytest.approx(meas, rel=1e-9)
    mg = m.fit_mpi_gamma(rows, net, 4)
    assert mg.gamma_decode == pytest.approx(0.0, abs=1e-15)


def test_bad_input():
    with pytest.raises(
        ValueError, match="unknown collective 'tree'; choose from MPI_Allreduce, all"
    ):
        m.counts("tree", 10, 2)
    with pytest.raises(ValueError, match="n must be positive"):
        m.counts("sra", 0, 2)
    with pytest.raises(ValueError, match="P must be a positive int"):
        m.counts("sra", 10, 0)
    with pytest.raises(ValueError, match="rate must be positive"):
        m.Network.from_rate(0, 1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        m.fit_network([])
    with pytest.raises(ValueError, match="at least 2 rows"):
        m.fit_gamma([], "sign")


def test_counts_come_from_the_registry():
    """The model's rows are the collectives' own ``counts``; the names are the registry's."""
    from ecmpi.comm import COLLECTIVES

    assert m.MODEL_COLLECTIVES == ("MPI_Allreduce", *COLLECTIVES)
    for name, entry in COLLECTIVES.items():
        kw = {"segment": 100} if "segment" in entry.options else {}
        assert m.counts(name, 1000, 4, C, segment=100) == entry.counts(1000, 4, C.wire, **kw)
    with pytest.warns(DeprecationWarning, match="MODEL_COLLECTIVES"):
        assert m.MODEL_ALGORITHMS == m.MODEL_COLLECTIVES
