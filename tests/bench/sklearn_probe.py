#!/usr/bin/env python3
"""The scikit-learn peer of lh_bench_probe (issue 7, point 6).

Rebuilds lh_bench_probe's synthetic activations bit for bit (SplitMix64 counters as in
bench_probe.c, float64 arithmetic, rounded to float32) and fits
LogisticRegression(multi_class="multinomial", solver="lbfgs", C = 1/(l2 N)) on one thread
(run it with OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1), then prints one JSON record: the fit
time, iterations, the objective mean cross-entropy + (l2/2)|W|^2 of its solution evaluated
in float64 (comparable with LatentHook's), the training accuracy, the peak RSS.

    /usr/bin/python3 tests/bench/sklearn_probe.py --n 200000 --d 768 --classes 10 --l2 1e-4
"""
import argparse
import json
import resource
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

M64 = np.uint64((1 << 64) - 1)


def rng_u64(seed, counter):
    """lh_rng_u64 on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + counter.astype(np.uint64)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def rng_u64_scalar(seed, counter):
    z = (seed * 0x9E3779B97F4A7C15 + counter) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return z ^ (z >> 31)


def centred(seed, counter):
    u = (rng_u64(seed, counter) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    return (2.0 * u - 1.0) * np.sqrt(3.0)


def make(N, D, C, sep, seed):
    sy, smu, sx = (rng_u64_scalar(seed, k) for k in (1, 2, 3))
    mu = sep * centred(smu, np.arange(C * D, dtype=np.uint64)).reshape(C, D)
    y = (rng_u64(sy, np.arange(N, dtype=np.uint64)) % np.uint64(C)).astype(np.int64)
    X = np.empty((N, D), dtype=np.float32)
    step = 8192
    cols = np.arange(D, dtype=np.uint64)
    for r0 in range(0, N, step):
        rows = np.arange(r0, min(N, r0 + step), dtype=np.uint64)
        cnt = rows[:, None] * np.uint64(D) + cols[None, :]
        X[r0:r0 + len(rows)] = (mu[y[r0:r0 + len(rows)]] + centred(sx, cnt)).astype(np.float32)
    return X, y


def objective(X, y, W, b, l2):
    s = np.empty((X.shape[0], W.shape[0]))
    total = 0.0
    for r0 in range(0, X.shape[0], 65536):
        s = X[r0:r0 + 65536].astype(np.float64) @ W.T + b
        m = s.max(1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(s - m).sum(1))
        total += float((lse - s[np.arange(len(s)), y[r0:r0 + 65536]]).sum())
    return total / X.shape[0] + 0.5 * l2 * float((W * W).sum())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--l2", type=float, default=1e-4)
    ap.add_argument("--sep", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tol", type=float, default=1e-4, help="scikit-learn's tol (max |proj g|)")
    ap.add_argument("--max-iter", type=int, default=1000)
    ap.add_argument("--dtype", default="float64",
                    help="float64 (default: the precision of LatentHook's arithmetic) or float32")
    a = ap.parse_args()
    t0 = time.perf_counter()
    X, y = make(a.n, a.d, a.classes, a.sep, a.seed)
    x0 = [float(v) for v in X[0, :3]]
    if a.dtype == "float64":
        X = X.astype(np.float64)
    t_gen = time.perf_counter() - t0
    clf = LogisticRegression(multi_class="multinomial", solver="lbfgs", C=1.0 / (a.l2 * a.n),
                             tol=a.tol, max_iter=a.max_iter)
    t0 = time.perf_counter()
    clf.fit(X, y)
    t_fit = time.perf_counter() - t0
    W, b = clf.coef_.astype(np.float64), clf.intercept_.astype(np.float64)
    acc = float((clf.predict(X) == y).mean())
    rec = {"bench": "probe_sklearn", "N": a.n, "D": a.d, "C": a.classes, "l2": a.l2, "tol": a.tol,
           "x0": x0, "gen_s": t_gen, "fit_s": t_fit,
           "iterations": int(clf.n_iter_[0]), "objective": objective(X, y, W, b, a.l2),
           "accuracy": acc, "dtype": str(X.dtype),
           "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
           "coef_norm2": float((W * W).sum()), "coef_sum": float(W.sum())}
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
