"""Soak test: many short compressed allreduces with random sizes, compressors and algorithms.

All choices come from one fixed-seed generator, identical on every rank (so
every rank makes the same call); each rank's vector comes from its own
generator. Every result is checked against the exact float64 sum within a
bound derived from the compressor, and for being identical on every rank.

Per-entry error bounds of one compression ``y = C(v)`` given ``U >= |v|``
entrywise (``docs/compressors.md``):

- qsgd with ``s`` levels and bucket scale ``r`` (l2: ``||v_b||_2``, linf:
  ``max |v_b|``): the level is ``floor(p)`` or ``floor(p) + 1`` with
  ``p = |v_i| s / r``, so ``|y_i - v_i| <= r/s`` (stochastic) and ``<= r/(2s)``
  (nearest); terngrad is qsgd with ``s = 1``, linf;
- sign with scale ``r = mean |v_b| <= max |v_b|``: ``y_i = ±r`` with the sign of
  ``v_i``, so ``|y_i - v_i| <= max(r, |v_i|) <= max |v_b|``;
- topk and biased randk keep entries exactly and drop the rest: ``<= |v_i|``;
  unbiased randk scales kept entries by ``n/k``: ``<= |v_i| max(1, n/k - 1)``;
- fp16 / bf16 round to nearest: ``<= |v_i| 2^-11`` / ``2^-8`` (plus half the
  smallest subnormal); none: 0.

A collective composes them: ``allgather`` compresses each rank's vector once
(``E = sum_r e_r``, buckets exact); ``ps`` then re-encodes the sum at the root
(``+ e(sum_r (|x_r| + e_r))``); ``sra`` compresses chunks and re-encodes each
owner's chunk sum (the same two stages, with bucket-independent bounds since
buckets restart at each chunk: the scale of any bucket is at most the norm of
the whole vector); ``ring`` compresses partial sums at P hops in series, each
bounded with ``U = sum_r |x_r| + E``. Floating-point summation of at most
``P + 2`` rounded terms adds at most ``2 (P + 2) eps sum |terms|``.
"""

from __future__ import annotations

import hashlib

import numpy as np

import ecmpi

SEED = 20240611
CALLS = 200
ALGORITHMS = ("allgather", "sra", "ring", "ps")


def _draw_spec(rng: np.random.Generator, n: int) -> tuple[str, dict]:
    kind = rng.choice(["none", "fp16", "bf16", "qsgd", "terngrad", "sign", "topk", "randk"])
    bucket = int(rng.choice([8, 64, 512]))
    if kind == "qsgd":
        p = {
            "levels": int(rng.choice([1, 2, 4, 7, 127])),
            "bucket": bucket,
            "norm": str(rng.choice(["l2", "linf"])),
            "stochastic": bool(rng.random() < 0.7),
        }
    elif kind in ("terngrad", "sign"):
        p = {"bucket": bucket}
    elif kind == "topk":
        p = {"k": int(rng.integers(1, n + 1))}
    elif kind == "randk":
        p = {"k": int(rng.integers(1, n + 1)), "unbiased": bool(rng.random() < 0.5)}
    else:
        p = {}
    return str(kind), p


def _spec_string(kind: str, p: dict) -> str:
    if not p:
        return kind
    return kind + ":" + ",".join(f"{k}={str(v).lower()}" for k, v in p.items())


def _buckets(u: np.ndarray, b: int, reduce) -> np.ndarray:
    n = len(u)
    out = np.empty(n)
    for s in range(0, n, b):
        out[s : s + b] = reduce(u[s : s + b])
    return out


def _stage(kind: str, p: dict, u: np.ndarray, exact_buckets: bool) -> np.ndarray:
    """Per-entry error bound of one compression of any v with |v| <= u."""
    n = len(u)
    b = p.get("bucket", n) if exact_buckets else n
    if kind == "none":
        return np.zeros(n)
    if kind == "fp16":
        return u * 2.0**-11 + 2.0**-25
    if kind == "bf16":
        return u * 2.0**-8 + 2.0**-134
    if kind in ("qsgd", "terngrad"):
        s = p.get("levels", 1)
        norm = p.get("norm", "linf")
        reduce = (lambda a: np.sqrt(np.sum(a * a))) if norm == "l2" else np.max
        r = _buckets(u, b, reduce) * (1 + 2.0**-20)  # the scale is rounded to float32
        return r / s if p.get("stochastic", True) else r / (2 * s)
    if kind == "sign":
        return _buckets(u, b, np.max) * (1 + 2.0**-20)
    if kind == "topk" or (kind == "randk" and not p["unbiased"]):
        return u
    if kind == "randk":
        return u * max(1.0, n / p["k"] - 1.0)
    raise AssertionError(kind)


def _bound(kind, p, alg, absx: list[np.ndarray]) -> np.ndarray:
    P = len(absx)
    s_abs = np.sum(absx, axis=0)
    if alg == "ring":
        E = np.zeros_like(s_abs)
        for _ in range(P):
            E = E + _stage(kind, p, s_abs + E, exact_buckets=False)
        return E
    exact = alg in ("allgather", "ps")
    errs = [_stage(kind, p, a, exact_buckets=exact) for a in absx]
    E = np.sum(errs, axis=0)
    if alg == "allgather":
        return E
    v = s_abs + E
    return E + _stage(kind, p, v, exact_buckets=exact)


def test_soak_random_allreduce_within_bounds(comm):
    P, rank = comm.size, comm.rank
    choices = np.random.default_rng(SEED)  # identical on every rank
    seen = set()
    for call in range(CALLS):
        n = int(choices.integers(1, 2000)) if call % 10 else int(choices.integers(1, P + 2))
        dtype = np.float32 if choices.random() < 0.7 else np.float64
        kind, params = _draw_spec(choices, n)
        alg = str(choices.choice(ALGORITHMS))
        average = bool(choices.random() < 0.3)
        scale = float(10.0 ** choices.uniform(-3, 2))
        root = int(choices.integers(P))
        spec = _spec_string(kind, params)
        seen.add((kind, alg))

        mine = np.random.default_rng([SEED, call, rank])
        x = (scale * mine.standard_normal(n)).astype(dtype)
        if n > 4 and mine.random() < 0.2:
            x[mine.integers(n)] = 0.0  # zeros: sign maps them to +r
        kw = {"root": root} if alg == "ps" else {}
        y = ecmpi.allreduce(
            x, spec, comm=comm, collective=alg, average=average, seed=(SEED, call), **kw
        )
        assert y.dtype == x.dtype and y.shape == x.shape, (call, spec, alg)

        xs = [a.astype(np.float64) for a in comm.allgather(x)]
        exact = np.sum(xs, axis=0)
        absx = [np.abs(a) for a in xs]
        E = _bound(kind, params, alg, absx)
        eps = float(np.finfo(dtype).eps)
        slack = 2 * (P + 2) * eps * (np.sum(absx, axis=0) + E)
        tol = E + slack
        if average:
            exact, tol = exact / P, tol / P
        err = np.abs(y.astype(np.float64) - exact)
        worst = int(np.argmax(err - tol))
        assert np.all(err <= tol), (
            f"call {call}: {spec} via {alg} (n={n}, P={P}, {np.dtype(dtype).name}, "
            f"average={average}): entry {worst} error {err[worst]:.3e} > bound {tol[worst]:.3e}"
        )
        digest = hashlib.sha256(np.ascontiguousarray(y).tobytes()).hexdigest()
        assert len(set(comm.allgather(digest))) == 1, f"call {call}: ranks disagree ({spec})"
    assert len(seen) >= 20  # the draw covers most compressor/algorithm pairs
