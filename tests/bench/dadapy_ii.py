#!/usr/bin/python3
"""dadapy_ii.py: the peer comparison for bench_sim.c's information imbalance (issue 4).

A stand-in for DADApy's exact information imbalance, NOT DADApy itself: DADApy is neither
packaged by Debian nor installable here (no PyPI access), so this script re-implements, on
NumPy and scikit-learn (Debian's python3-sklearn, the library DADApy calls), the code path of

    MetricComparisons(coordinates=np.hstack([A, B]), maxk=N - 1)
        .return_inf_imb_two_selected_coords(coords_A, coords_B, k=1)

in DADApy (dadapy/metric_comparisons.py, dadapy/_utils/utils.py and
dadapy/_utils/metric_comparisons.py, read for this purpose): for each space, all N - 1
neighbours of every point are found with sklearn's NearestNeighbors(n_neighbors=N).kneighbors
(every N x N distance, each row sorted), then for every point a Python loop locates its
nearest neighbour in one space within its sorted list in the other (np.where), and the
imbalance is mean(rank) / (N / 2). That is O(N^2 D) for the distances plus O(N^2 log N) for
the sorts plus O(N^2) for the rank look-ups, in N^2 memory. Without scikit-learn
(--neighbours numpy) the sorted lists come from a NumPy float64 distance matrix and argsort.

The data are bench_sim.c's pair (A, B), rebuilt bit for bit (the data hashes are printed by
both programs): A is bench_knn.c's cloud (faiss_twonn.py's make_cloud), B mixes a latent that
shares its first K/2 coordinates with A's. The rank sums should equal LatentHook's (which
ranks by exact float64 distances with ties to the lower index; sklearn ranks by its own
float32/float64 formula, so a near-tie could in principle differ).

Usage: dadapy_ii.py --n N --d D [--intrinsic K] [--seed S] [--neighbours sklearn|numpy]
Set OPENBLAS_NUM_THREADS=1 and OMP_NUM_THREADS=1 for one thread (the script also limits
thread pools through threadpoolctl when it is available).
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faiss_twonn import MASK, blas_core, data_hash, irwin4  # noqa: E402  (no FAISS needed)


def make_pair(N, D, K, seed, chunk=4096):
    """bench_sim.c's make_rows for all N rows: A = M_a z, B = M_b w (float32)."""
    jt = np.arange(D * K, dtype=np.uint64)
    Ma = irwin4((seed + 1) & MASK, jt).reshape(D, K)  # Ma[j, t] = irwin4(seed + 1, j K + t)
    Mb = irwin4((seed + 2) & MASK, jt).reshape(D, K)
    a = np.empty((N, D), dtype=np.float32)
    b = np.empty((N, D), dtype=np.float32)
    for r0 in range(0, N, chunk):
        r1 = min(N, r0 + chunk)
        c = np.arange(r0, r1, dtype=np.uint64)[:, None] * np.uint64(K) + \
            np.arange(K, dtype=np.uint64)[None, :]
        z = irwin4(seed, c)
        w = z.copy()
        w[:, K // 2:] = irwin4((seed + 3) & MASK, c[:, K // 2:])
        for out, M, lat in ((a, Ma, z), (b, Mb, w)):
            acc = np.zeros((r1 - r0, D))
            for t in range(K):  # acc += M[j][t] * lat[t], t ascending: the C loop's order
                acc += lat[:, t:t + 1] * M[None, :, t]
            out[r0:r1] = acc.astype(np.float32)
    return a, b


def compute_nn_distances(X, maxk, how):
    """DADApy's compute_nn_distances(X, maxk) for the Euclidean metric, no periodicity:
    the maxk + 1 nearest points of every point (itself first), sorted."""
    if how == "sklearn":
        from sklearn.neighbors import NearestNeighbors

        nbrs = NearestNeighbors(n_neighbors=maxk + 1, metric="euclidean").fit(X)
        return nbrs.kneighbors(X)
    x = X.astype(np.float64)
    sq = np.einsum("ij,ij->i", x, x)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
    idx = np.argsort(d2, axis=1)[:, :maxk + 1]
    return np.sqrt(np.maximum(np.take_along_axis(d2, idx, axis=1), 0.0)), idx


def return_ranks(dist_indices_1, dist_indices_2, k=1):
    """DADApy's _return_ranks: the position, in each point's sorted list in space 2, of its
    k nearest neighbours in space 1 (a random rank beyond maxk never happens: maxk = N - 1)."""
    N = dist_indices_1.shape[0]
    conditional_ranks = np.zeros((N, k))
    for i in range(N):
        idx_k_d1 = dist_indices_1[i, 1:k + 1]
        wr = [np.where(idx_k_d1[q] == dist_indices_2[i])[0] for q in range(k)]
        for q in range(k):
            conditional_ranks[i, q] = wr[q][0]
    return conditional_ranks


def return_imbalance(dist_indices_1, dist_indices_2, k=1):
    """DADApy's _return_imbalance: mean rank / (N / 2). Also returns the integer rank sum."""
    N = dist_indices_1.shape[0]
    ranks = return_ranks(dist_indices_1, dist_indices_2, k=k)
    return np.mean(ranks) / (N / 2.0), int(ranks.sum())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--d", type=int, required=True)
    ap.add_argument("--intrinsic", type=int, default=16)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--neighbours", choices=("sklearn", "numpy"), default="sklearn")
    ap.add_argument("--json", action="store_true", help="print only the JSON record")
    a = ap.parse_args()
    how = a.neighbours
    if how == "sklearn":
        try:
            import sklearn  # noqa: F401
        except ImportError:
            how = "numpy"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass

    t = time.perf_counter()
    A, B = make_pair(a.n, a.d, a.intrinsic, a.seed)
    t_gen = time.perf_counter() - t
    maxk = a.n - 1  # DADApy's exact imbalance: every neighbour

    # warm-up on a small slice: imports, BLAS buffers, code paths
    m = min(a.n, 512)
    compute_nn_distances(A[:m], m - 1, how)

    t0 = time.perf_counter()
    _, ia = compute_nn_distances(A, maxk, how)
    _, ib = compute_nn_distances(B, maxk, how)
    t1 = time.perf_counter()
    ab, sab = return_imbalance(ia, ib)
    ba, sba = return_imbalance(ib, ia)
    t2 = time.perf_counter()

    rec = {"bench": "dadapy_ii", "impl": f"stand-in ({how})", "N": a.n, "D": a.d,
           "intrinsic": a.intrinsic, "seed": a.seed, "threads": 1, "blas_core": blas_core(),
           "wall_s": round(t2 - t0, 6), "neighbours_s": round(t1 - t0, 6),
           "ranks_s": round(t2 - t1, 6), "generate_s": round(t_gen, 3),
           "a_to_b": float(ab), "b_to_a": float(ba), "sum_a_to_b": sab, "sum_b_to_a": sba,
           "hash_a": data_hash(A), "hash_b": data_hash(B)}
    if not a.json:
        print(f"# DADApy exact information imbalance, NumPy/scikit-learn stand-in ({how}), 1 "
              f"thread, OpenBLAS core {rec['blas_core']}: N {a.n} D {a.d} intrinsic {a.intrinsic}")
        print(f"ii         wall {t2 - t0:9.3f} s (all-neighbour lists {t1 - t0:.3f} s, rank "
              f"look-ups {t2 - t1:.3f} s)  A->B {ab:.17g}  B->A {ba:.17g}")
        print(f"validated  rank sums {sab} and {sba}; data hashes {rec['hash_a']} {rec['hash_b']}")
    print(json.dumps(rec))
    return 0 if math.isfinite(ab) and math.isfinite(ba) else 3


if __name__ == "__main__":
    sys.exit(main())
