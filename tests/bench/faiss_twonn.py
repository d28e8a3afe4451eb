#!/usr/bin/python3
"""faiss_twonn.py: the peer comparison for bench_knn.c (issue 3).

Rebuilds bench_knn.c's synthetic cloud bit for bit in NumPy (SplitMix64 in uint64 arithmetic,
Irwin-Hall(4) variates, the same float64 operations in the same order, rounded to float32),
runs FAISS's exact IndexFlatL2 search with k = 3 (the point itself and two neighbours) on one
thread, times it, and computes TwoNN from the result as LatentHook does (tdhook's estimator:
eps = 1e-5, least squares through the origin over all but the largest mu).

FAISS ranks float32 distances ||x||^2 + ||y||^2 - 2 x.y over all N^2 ordered pairs (2 N^2 D
flops); LatentHook reports exact float64 distances and computes each pair once, so the
dimensions agree to roughly float32 accuracy (~1e-4 relative or better), not bit for bit.

Usage: faiss_twonn.py --n N --d D [--intrinsic K] [--seed S] [--json]
Needs Debian's python3-faiss (apt-get install python3-faiss) and NumPy; set
OPENBLAS_NUM_THREADS=1 (and OPENBLAS_CORETYPE as for the C benchmark) in the environment.
"""
import argparse
import ctypes
import json
import math
import sys
import time

import numpy as np

MASK = (1 << 64) - 1
GOLD, M1, M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
SQRT3 = 1.7320508075688772  # the same double as bench_knn.c's literal


def splitmix(seed, ctr):
    """lh_rng_u64(seed, ctr) for a uint64 array of counters (arithmetic mod 2^64)."""
    z = ctr + np.uint64((seed * GOLD) & MASK)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
    return z ^ (z >> np.uint64(31))


def irwin4(seed, c):
    """bench_knn.c's irwin4(seed, c) for a uint64 array c: float64, exactly as in C."""
    c4 = c * np.uint64(4)
    u = [(splitmix(seed, c4 + np.uint64(m)) >> np.uint64(40)).astype(np.float64) * 2.0**-24
         for m in range(4)]
    s = ((u[0] + u[1]) + u[2]) + u[3]  # exact: four 24-bit fractions
    return (s - 2.0) * SQRT3


def make_cloud(N, D, K, seed, chunk=4096):
    """The N x D float32 cloud of bench_knn.c (make_rows), built in row chunks."""
    x = np.empty((N, D), dtype=np.float32)
    if K > 0:
        jt = np.arange(D * K, dtype=np.uint64)
        A = irwin4((seed + 1) & MASK, jt).reshape(D, K)  # A[j, t] = irwin4(seed + 1, j K + t)
    for r0 in range(0, N, chunk):
        r1 = min(N, r0 + chunk)
        g = np.arange(r0, r1, dtype=np.uint64)[:, None]
        if K == 0:
            x[r0:r1] = irwin4(seed, g * np.uint64(D) + np.arange(D, dtype=np.uint64)[None, :])
            continue
        z = irwin4(seed, g * np.uint64(K) + np.arange(K, dtype=np.uint64)[None, :])
        acc = np.zeros((r1 - r0, D))
        for t in range(K):  # acc += A[j][t] * z[t], t ascending: the C loop's order
            acc += z[:, t:t + 1] * A[None, :, t]
        x[r0:r1] = acc.astype(np.float32)
    return x


def data_hash(x):
    """bench_knn.c's data_hash: sum of bits(x_k) * (2 k + 1) mod 2^64, k the flat index."""
    bits = x.reshape(-1).view(np.uint32)
    h = 0
    for k0 in range(0, bits.size, 1 << 22):
        b = bits[k0:k0 + (1 << 22)].astype(np.uint64)
        k = np.arange(k0, k0 + b.size, dtype=np.uint64)
        h = (h + int(np.sum(b * (k * np.uint64(2) + np.uint64(1)), dtype=np.uint64))) & MASK
    return h


def twonn(dist2, idx, eps=1e-5):
    """tdhook's TwoNN from k = 3 squared distances that include the point itself."""
    N = dist2.shape[0]
    r = np.full((N, 2), np.nan)
    for i in range(N):  # drop the point itself and neighbours within eps, keep two
        keep = [math.sqrt(max(float(d), 0.0)) for d, j in zip(dist2[i], idx[i])
                if j != i and j >= 0 and math.sqrt(max(float(d), 0.0)) > eps]
        if len(keep) >= 2:
            r[i] = keep[:2]
    ok = np.isfinite(r).all(axis=1)
    mu = np.sort(r[ok, 1] / r[ok, 0])
    nv = mu.size
    n_fit = nv - 1
    i = np.arange(1, n_fit + 1, dtype=np.float64)
    x = np.log(mu[:n_fit])
    y = -np.log1p(-i / nv)
    dim = math.fsum(x * y) / math.fsum(x * x)
    mle = (nv - 1) / math.fsum(np.log(mu))
    return dim, mle, nv


def blas_core():
    for lib in ("libblas.so.3", "libopenblas.so.0"):
        try:
            f = ctypes.CDLL(lib).openblas_get_corename
            f.restype = ctypes.c_char_p
            return f().decode()
        except (OSError, AttributeError):
            continue
    return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--intrinsic", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", action="store_true", help="print only the JSON record")
    a = ap.parse_args()
    import faiss  # after argparse, so --help works without FAISS

    faiss.omp_set_num_threads(1)
    t = time.perf_counter()
    x = make_cloud(a.n, a.d, a.intrinsic, a.seed)
    t_gen = time.perf_counter() - t

    index = faiss.IndexFlatL2(a.d)
    index.add(x)
    index.search(x[:min(a.n, 4096)], 3)  # warm-up: BLAS buffers, code paths
    t = time.perf_counter()
    dist2, idx = index.search(x, 3)
    t_search = time.perf_counter() - t
    dim, mle, nv = twonn(dist2, idx)

    rec = {"bench": "faiss_twonn", "faiss": faiss.__version__, "N": a.n, "D": a.d,
           "intrinsic": a.intrinsic, "seed": a.seed, "threads": 1, "blas_core": blas_core(),
           "search_s": round(t_search, 6), "generate_s": round(t_gen, 3),
           "gflops_allpairs": 2.0 * a.n * a.n * a.d / t_search * 1e-9,
           "dimension": dim, "mle": mle, "n_valid": nv,
           "data_hash": data_hash(x)}
    if not a.json:
        print(f"# faiss {faiss.__version__} IndexFlatL2 k=3, 1 thread, OpenBLAS core "
              f"{rec['blas_core']}: N {a.n} D {a.d} intrinsic {a.intrinsic}")
        print(f"search     {t_search:9.3f} s  ({rec['gflops_allpairs']:.2f} GFLOP/s as 2 N^2 D)"
              f"  dimension {dim:.17g}  mle {mle:.17g}")
    print(json.dumps(rec))
    return 0 if math.isfinite(dim) else 3


if __name__ == "__main__":
    sys.exit(main())
