#!/usr/bin/env python3
"""Offline reference values for the kNN search and the intrinsic-dimension estimators.

Run with Debian's python3 (python3-numpy):  /usr/bin/python3 tests/golden/make_golden_id.py
It rewrites tests/golden/id.json (committed, so the test suite never needs Python). Nothing here
uses LatentHook's C code. The point clouds mirror tests/testgen.h bit for bit (Python floats,
math.log / math.sqrt / math.cos = the same libm as the C side, evaluated element by element in
the documented order); the first and last row of every cloud are stored (and the first row
printed) as float.hex so the C side can check its generator.

Numerics of the references (float64 throughout):
  * distances: d_ij = sqrt(sum_k (x_ik - x_jk)^2), the squared differences added left to right
    in column order (k = 0, 1, ...), each operation rounded (no FMA), sqrt correctly rounded.
  * neighbour table (SPEC 4.0): d_ii = inf; d_ij <= eps or NaN -> inf (test d > eps on the
    distance, not on its square). kNN ranks by (distance, index): ties go to the lower index;
    an absent neighbour (fewer than k finite entries) has dist "inf" and index -1.
  * local kNN (SPEC 4.1): R_k = row[k-1], R_2k = row[2k-1] of the sorted row; valid iff both
    finite and R_2k > R_k; d_i = math.log(2.0) / math.log(R_2k / R_k), else NaN.
    k = "auto" -> k = max(2, min(floor(sqrt(N)), floor((N-1)/2))) with N = all rows (also
    rows with NaN).
  * TwoNN (SPEC 4.2): r1 = row[0], r2 = row[1]; valid iff both finite; mu = r2 / r1 over valid
    points, sorted ascending mu(1) <= ... <= mu(Nv); x_i = math.log(mu(i)),
    y_i = -math.log(1.0 - i / Nv) (i / Nv a rounded double division). The sums below are
    math.fsum (correctly rounded sums of the individually rounded products x_i*y_i, x_i*x_i).
      spec:    fit i = 1..Nv-1,  d = sum_xy / sum_xx
      discard: discard_fraction F = 0.1: n_fit = min(Nv - 1, floor(Nv * (1.0 - F))) with the
               product evaluated in doubles (for the Nv used here it equals floor(9 Nv / 10)
               exactly), fit i = 1..n_fit with the same y_i, d = sum_xy / sum_xx
      mle:     (Nv - 1) / fsum(log mu) over all Nv valid mu (log mu = x_i incl. the largest)

JSON (every float is a float.hex string; NaN is "nan", +inf is "inf"; indices are plain ints):
{
  "about": str,
  "eps": hex,                        eps of every cloud case (1e-5)
  "clouds": [ {                      one entry per test cloud
     "name": str,                    "plane10_s1_n300", "sphere3_s2_n300", "cube5_s3_n300",
                                     "gauss8_s4_n200", "cube5_s3_n60", "cube5_s3_n60_dup",
                                     "gauss3_s5_n40_nan"
     "cloud": "plane10"|"sphere3"|"cube5"|"gauss",   testgen.h TG_* cloud
     "seed": int, "N": int, "D": int,
     "copy_rows": [[dst, src], ...], after generation row dst := generated row src (src < 10,
                                     so sources are never overwritten); [] if none
     "nan_at": [[row, col], ...],    after copying, x[row][col] := NaN; [] if none
     "first_row": [hex]*D, "last_row": [hex]*D,     final matrix rows 0 and N-1
     "knn": [ {"k": int,
               "index": [[int]*k]*N,  neighbours of row i, ascending (distance, index), -1 absent
               "dist":  [[hex]*k]*N } ],              matching distances, "inf" absent
     "twonn": {"Nv": int,
               "mu_sorted": [hex]*Nv,
               "spec":    {"n_fit": Nv-1, "sum_xy": hex, "sum_xx": hex, "d": hex},
               "discard": {"fraction": hex, "n_fit": int, "sum_xy": hex, "sum_xx": hex,
                           "d": hex},
               "mle":     {"sum_log_mu": hex, "d": hex}},
     "localknn": [ {"k_arg": 5 | "auto", "k": int,   k actually used
                    "d": [hex]*N,                    per point, "nan" where invalid
                    "n_finite": int, "mean_finite": hex (fsum / n_finite)} ]
  } ],
  "auto_k": [[N, k], ...],           SPEC TV-1 (N = 3, 4 raise in forward; listed anyway)
  "tv": [ {                          SPEC TV-2..TV-8, recomputed here (asserted to 1e-9)
     "name": "TV-2".., "estimator": "localknn"|"twonn", "eps": hex, "N": int, "D": int,
     "X": [[hex]*D]*N,
     localknn: "k": int, "d": [hex]*N
     twonn:    "d": hex (float64, before the reference's float32 cast), "Nv": int,
               "x": [hex]*(N-1), "y": [hex]*(N-1) (return_xy rows, NaN padding at the end),
               "discard": {...}, "mle": {...}   (as in clouds, for completeness)
  } ]
}
"""
import json
import math
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
M64 = (1 << 64) - 1
EPS = 1e-5
TWO_PI = 6.283185307179586


# ----------------------------------------------------------------- testgen.h mirror
def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def u64(seed, k):
    return mix((seed * 0x9E3779B97F4A7C15 + k) & M64)


def unit(seed, k):
    return (u64(seed, k) >> 11) / 9007199254740992.0


def normal(seed, k):
    u1 = unit(seed, 2 * k)
    u2 = unit(seed, 2 * k + 1)
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(TWO_PI * u2)


CLOUD_DIM = {"plane10": 10, "sphere3": 4, "cube5": 5}


def cloud_row(cloud, s, i, D):
    if cloud == "plane10":
        a = unit(s, 2 * i)
        b = unit(s, 2 * i + 1)
        row = []
        for j in range(10):
            a0 = unit(s + 1000, 2 * j) - 0.5
            a1 = unit(s + 1000, 2 * j + 1) - 0.5
            row.append(a * a0 + b * a1)
        return row
    if cloud == "sphere3":
        g = [normal(s, 4 * i + j) for j in range(4)]
        nrm = math.sqrt(((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2]) + g[3] * g[3])
        return [g[j] / nrm for j in range(4)]
    if cloud == "cube5":
        return [unit(s, 5 * i + j) for j in range(5)]
    if cloud == "gauss":
        return [normal(s, D * i + j) for j in range(D)]
    raise ValueError(cloud)


def make_cloud(cloud, seed, N, D=None, copy_rows=(), nan_at=()):
    D = CLOUD_DIM.get(cloud, D)
    rows = [cloud_row(cloud, seed, i, D) for i in range(N)]
    gen = [list(r) for r in rows]
    for dst, src in copy_rows:
        rows[dst] = list(gen[src])
    for r, c in nan_at:
        rows[r][c] = float("nan")
    return np.array(rows, dtype=np.float64), D


# ----------------------------------------------------------------- references
def hx(v):
    v = float(v)
    return "nan" if math.isnan(v) else v.hex()


def distances(X):
    """Exact-difference distances, squares accumulated left to right in column order."""
    X = np.asarray(X, dtype=np.float64)
    N, D = X.shape
    acc = np.zeros((N, N))
    with np.errstate(invalid="ignore"):
        for k in range(D):
            diff = X[:, None, k] - X[None, :, k]
            acc = acc + diff * diff  # two separately rounded numpy ops: no FMA
        d = np.sqrt(acc)
    return d


def table(X, eps):
    """SPEC 4.0 masked distance matrix (unsorted)."""
    d = distances(X)
    with np.errstate(invalid="ignore"):
        d = np.where(d > eps, d, np.inf)  # NaN > eps is False -> inf
    np.fill_diagonal(d, np.inf)
    return d


def knn(d, k):
    N = d.shape[0]
    idx = np.empty((N, k), dtype=np.int64)
    dist = np.empty((N, k))
    for i in range(N):
        order = np.argsort(d[i], kind="stable")[:k]  # stable: ties by lower index
        dd = d[i][order]
        dist[i] = dd
        idx[i] = np.where(np.isfinite(dd), order, -1)
    return idx, dist


def auto_k(N):
    return max(2, min(math.isqrt(N), (N - 1) // 2))


def localknn(d, k):
    N = d.shape[0]
    if N < 2 * k + 1:
        raise ValueError("At least 2k+1 points required")
    srt = np.sort(d, axis=1)
    out = []
    for i in range(N):
        rk = float(srt[i, k - 1])
        r2k = float(srt[i, 2 * k - 1])
        if math.isfinite(rk) and math.isfinite(r2k) and r2k > rk:
            out.append(math.log(2.0) / math.log(r2k / rk))
        else:
            out.append(float("nan"))
    return out


def fit(xs, ys):
    sxy = math.fsum(a * b for a, b in zip(xs, ys))
    sxx = math.fsum(a * a for a in xs)
    return sxy, sxx, sxy / sxx


def twonn(d, frac=0.1):
    N = d.shape[0]
    if N < 3:
        raise ValueError("At least 3 points")
    srt = np.sort(d, axis=1)
    mus = []
    for i in range(N):
        r1, r2 = float(srt[i, 0]), float(srt[i, 1])
        if math.isfinite(r1) and math.isfinite(r2):
            mus.append(r2 / r1)
    Nv = len(mus)
    if Nv < 3:
        raise ValueError("At least 3 valid points")
    mus.sort()
    xs = [math.log(m) for m in mus]
    ys = [-math.log(1.0 - i / Nv) for i in range(1, Nv)]  # i = 1..Nv-1
    sxy, sxx, dd = fit(xs[:Nv - 1], ys)
    n_fit = min(Nv - 1, math.floor(Nv * (1.0 - frac)))
    assert n_fit == min(Nv - 1, (9 * Nv) // 10), "discard boundary depends on rounding"
    dxy, dxx, dd2 = fit(xs[:n_fit], ys[:n_fit])
    slog = math.fsum(xs)
    mle = (Nv - 1) / slog if slog != 0.0 else float("nan")
    pad = [float("nan")] * (N - Nv)
    return {
        "Nv": Nv, "mus": mus, "x": xs[:Nv - 1] + pad, "y": ys + pad,
        "spec": {"n_fit": Nv - 1, "sum_xy": sxy, "sum_xx": sxx, "d": dd},
        "discard": {"fraction": frac, "n_fit": n_fit, "sum_xy": dxy, "sum_xx": dxx, "d": dd2},
        "mle": {"sum_log_mu": slog, "d": mle},
    }


def hexdict(dct):
    return {k: (v if isinstance(v, int) else hx(v)) for k, v in dct.items()}


# ----------------------------------------------------------------- cases
def cloud_case(name, cloud, seed, N, D=None, copy_rows=(), nan_at=(), knn_ks=()):
    X, D = make_cloud(cloud, seed, N, D, copy_rows, nan_at)
    print(f"{name}: first row = [{', '.join(float(v).hex() for v in X[0])}]")
    d = table(X, EPS)
    case = {"name": name, "cloud": cloud, "seed": seed, "N": N, "D": D,
            "copy_rows": [list(p) for p in copy_rows], "nan_at": [list(p) for p in nan_at],
            "first_row": [hx(v) for v in X[0]], "last_row": [hx(v) for v in X[-1]]}
    case["knn"] = []
    for k in knn_ks:
        idx, dist = knn(d, k)
        case["knn"].append({"k": k, "index": idx.tolist(),
                            "dist": [[hx(v) for v in r] for r in dist]})
    t = twonn(d)
    case["twonn"] = {"Nv": t["Nv"], "mu_sorted": [hx(m) for m in t["mus"]],
                     "spec": hexdict(t["spec"]), "discard": hexdict(t["discard"]),
                     "mle": hexdict(t["mle"])}
    summ = [f"Nv={t['Nv']} twonn={t['spec']['d']:.6f} discard({t['discard']['n_fit']})="
            f"{t['discard']['d']:.6f} mle={t['mle']['d']:.6f}"]
    case["localknn"] = []
    for karg in (5, "auto"):
        k = auto_k(N) if karg == "auto" else karg
        ld = localknn(d, k)
        fin = [v for v in ld if math.isfinite(v)]
        mean = math.fsum(fin) / len(fin)
        case["localknn"].append({"k_arg": karg, "k": k, "d": [hx(v) for v in ld],
                                 "n_finite": len(fin), "mean_finite": hx(mean)})
        summ.append(f"lknn(k={k}) mean={mean:.6f} finite={len(fin)}/{N}")
    print("    " + "; ".join(summ))
    return case


def close(a, b, tol=1e-9):
    if isinstance(b, float) and math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= tol


def check(name, got, want):
    assert len(got) == len(want), (name, got, want)
    for g, w in zip(got, want):
        assert close(g, w), f"{name}: got {got}, SPEC says {want}"


def tv_cases():
    nan = float("nan")
    L2 = math.log(2.0)
    out = []

    def lk(name, X, k, want):
        X = np.array(X, dtype=np.float64)
        d = localknn(table(X, EPS), k)
        check(name, d, want)
        out.append({"name": name, "estimator": "localknn", "eps": hx(EPS), "N": X.shape[0],
                    "D": X.shape[1], "X": [[hx(v) for v in r] for r in X], "k": k,
                    "d": [hx(v) for v in d]})

    def tn(name, X, eps, want_d, want_x, want_y):
        X = np.array(X, dtype=np.float64)
        t = twonn(table(X, eps))
        check(name + " d", [t["spec"]["d"]], [want_d])
        check(name + " x", t["x"], want_x)
        check(name + " y", t["y"], want_y)
        out.append({"name": name, "estimator": "twonn", "eps": hx(eps), "N": X.shape[0],
                    "D": X.shape[1], "X": [[hx(v) for v in r] for r in X],
                    "d": hx(t["spec"]["d"]), "Nv": t["Nv"],
                    "x": [hx(v) for v in t["x"]], "y": [hx(v) for v in t["y"]],
                    "discard": hexdict(t["discard"]), "mle": hexdict(t["mle"])})

    # TV-2: both the closed forms and the printed decimals
    want = [L2 / math.log(5), L2 / math.log(7), 0.5, L2 / math.log(4 / 3), L2 / math.log(1.25)]
    check("TV-2 closed form", want,
          [0.4306765581, 0.3562071871, 0.5, 2.4094208397, 3.1062837195])
    lk("TV-2", [[0], [1], [3], [7], [15]], 2, want)
    lk("TV-3", [[1, 1], [1, -1], [-1, 1], [-1, -1], [0, 0]], 2, [2.0, 2.0, 2.0, 2.0, nan])
    lk("TV-4", [[0], [1], [2], [3], [4]], 2, [1.0, 0.6309297536, 1.0, 0.6309297536, 1.0])
    y5 = [0.2231435513, 0.5108256238, 0.9162907319, 1.6094379124]
    tn("TV-5", [[0], [1], [3], [7], [15]], 1e-5, 1.8329829960,
       [0.4054651081] * 3 + [0.6931471806], y5)
    tn("TV-6", [[0], [-0.4], [0.4], [5]], 0.5, 0.6376662205,
       [0.0833816089, 1.7491998548, nan], [0.4054651081, 1.0986122887, nan])
    tn("TV-7", [[0], [0], [1], [3], [7], [15]], 1e-5, 1.6818155818,
       [0.0] + [0.4054651081] * 3 + [1.0986122887],
       [0.1823215568, 0.4054651081, 0.6931471806, 1.0986122887, 1.7917594692])
    tn("TV-8", [[0, 0], [1, 0], [0, 2], [3, 1], [1, 1]], 1e-5, 3.6898997605,
       [0.0, 0.1115717757, 0.3465735903, 0.3465735903], y5)
    # error cases of TV-7's note
    for X, msg in ((np.ones((5, 3)), "At least 3 valid points"), (np.zeros((2, 4)), "At least 3 points")):
        try:
            twonn(table(X, EPS))
        except ValueError as e:
            assert msg in str(e), e
        else:
            raise AssertionError(msg)
    print("SPEC TV-2..TV-8: recomputed values match to 1e-9")
    return out


def main():
    auto = [[3, 2], [4, 2], [5, 2], [7, 2], [9, 3], [10, 3], [16, 4], [50, 7], [100, 10],
            [1000, 31]]
    for n, k in auto:
        assert auto_k(n) == k, (n, k)
    tvs = tv_cases()
    dup = [(i, i - 10) for i in range(10, 20)]
    clouds = [
        cloud_case("plane10_s1_n300", "plane10", 1, 300, knn_ks=(5,)),
        cloud_case("sphere3_s2_n300", "sphere3", 2, 300, knn_ks=(5,)),
        cloud_case("cube5_s3_n300", "cube5", 3, 300, knn_ks=(5,)),
        cloud_case("gauss8_s4_n200", "gauss", 4, 200, D=8, knn_ks=(5,)),
        cloud_case("cube5_s3_n60", "cube5", 3, 60, knn_ks=(5,)),
        cloud_case("cube5_s3_n60_dup", "cube5", 3, 60, copy_rows=dup, knn_ks=(5,)),
        cloud_case("gauss3_s5_n40_nan", "gauss", 5, 40, D=3, nan_at=[(7, 1)], knn_ks=(5, 39)),
    ]
    doc = {
        "about": "kNN / TwoNN / local-kNN references for tests/testgen.h clouds; "
                 "see tests/golden/make_golden_id.py for the schema; floats are float.hex",
        "eps": hx(EPS),
        "clouds": clouds,
        "auto_k": auto,
        "tv": tvs,
    }
    path = os.path.join(HERE, "id.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


if __name__ == "__main__":
    main()
