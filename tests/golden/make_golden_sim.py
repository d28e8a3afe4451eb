#!/usr/bin/env python3
"""Offline reference values for representation similarity: CKA and information imbalance.

Run with Debian's python3 (python3-numpy):  /usr/bin/python3 tests/golden/make_golden_sim.py
It rewrites tests/golden/sim.json (committed, so the test suite never needs Python). Nothing here
uses LatentHook's C code. The data generator (tests/testgen.h mirror: u64, unit, normal, the
"gauss" cloud) is imported from make_golden_id.py, which has no side effects at import time.
The script asserts SPEC TV-9, TV-10 and TV-11 (to 1e-9) and a number of internal identities;
it fails (AssertionError) rather than write a JSON that disagrees with the SPEC.

Definitions (float64 numpy unless stated; eps = 1e-12; "NaN rule": a similarity num/den is NaN
when den is not finite or den <= eps, and also when num/den is not finite):

 1. Linear CKA (SPEC 5.1). Xc = X - column means (mean over the N rows), same for Y;
    num = ||Xc^T Yc||_F^2, a = ||Xc^T Xc||_F^2, b = ||Yc^T Yc||_F^2, den = sqrt(a b),
    CKA = num / den with the NaN rule. N = 1 and constant X give Xc = 0 -> NaN.

 2. Debiased linear CKA: the unbiased HSIC estimator of Song et al. (2012) in the form of
    Kornblith et al. (2019) on the Gram matrices K = X X^T, L = Y Y^T (X, Y NOT centred).
    K~, L~ = K, L with the diagonal set to 0; 1 = ones(n);
      HSIC_1(K, L) = [ tr(K~ L~) + (1^T K~ 1)(1^T L~ 1) / ((n-1)(n-2))
                       - 2/(n-2) 1^T K~ L~ 1 ] / (n (n-3)),
      CKA_deb = HSIC_1(K, L) / sqrt(HSIC_1(K, K) HSIC_1(L, L))   (NaN rule on that den).
    Requires n >= 4; n < 4 is reported as NaN here (a C port may raise instead).
    Second way ("unbiased centring", Kornblith's center_gram(unbiased=True)): zero the diagonal;
    means = column sums / (n-2); means -= sum(means) / (2 (n-1)); K' = K~ - means[None, :]
    - means[:, None]; zero the diagonal again; CKA_deb = <K', L'>_F / (||K'||_F ||L'||_F).
    Asserted: both ways agree to 1e-10, and HSIC_1(K, L) = <K', L'>_F / (n (n-3)).
    HSIC_1(K, K) = ||K'||^2 / (n(n-3)) >= 0, so the square root is always real.
    The eps of the NaN rule is applied to the HSIC_1 form's den (scale 1/(n(n-3)) of the
    centred form's den). A constant view has K' = 0 mathematically; the rounding residue is
    not reproducible, so a view whose rows are all identical is declared NaN explicitly
    (for ones(64, 8) HSIC_1(K, K) evaluates to exactly 0 here, but ||K'||_F = 1.1e-13, which
    the centred form would not catch with eps = 1e-12).

 3. RBF CKA (Kornblith et al. 2019). S_ij = sum_k (x_ik - x_jk)^2 by exact differences, the
    squares added left to right in column order (each op rounded, no FMA); m = median of ALL
    n^2 entries of S (diagonal zeros included; numpy.median: with s = sorted entries, for an
    even count m = (s[n^2/2 - 1] + s[n^2/2]) / 2, for an odd count s[(n^2-1)/2]);
    K = exp(-S / (2 t^2 m)) (denominator (2.0 * t * t) * m, exact for t = 1, 0.5);
    m == 0 (all rows equal, or N = 1) gives NaN. Biased: H = I - 11^T/n,
    CKA = <HKH, HLH>_F / (||HKH||_F ||HLH||_F); debiased: the unbiased centring of item 2
    applied to the RBF Grams (cross-checked against HSIC_1 on the same Grams to 1e-10).
    Thresholds t in {1.0, 0.5}.

 4. Information imbalance with LatentHook's tie rule (SPEC 9.1): neighbours ordered by
    (distance, global index). r^B_ij = 1 + #{l != i : (d_B(i,l), l) < (d_B(i,j), j)} (self
    excluded; duplicates, distance 0, are ordinary neighbours). For A -> B the k nearest
    A-neighbours of i are the first k of A's order; Delta_k(A->B) = (2/N) * mean over i and over
    those k neighbours j of r^B_ij; k = 1 is SPEC 5.2's Delta (j*(i) = first in A's order).
    Delta_k(B->A) symmetric. Value stored = exact rational 2 T / (N^2 k) (T = integer sum of the
    ranks), correctly rounded. Minkowski distances, element by element, columns left to right:
      p=1: s += |d|;  p=2: s += d*d, sqrt(s);  p=inf: max |d|;
      p=3: s += pow(|d|, 3.0), pow(s, 1.0/3.0)   (C libm pow; Python's math.pow is the same).
    (p=2 is asserted bit-identical to make_golden_id.distances.)
    For every pair and p the ranks are recomputed with alternative formulas (p=2: ranking on s
    without sqrt; p=3: |d|*|d|*|d| and cbrt, and ranking on s); "formula_sensitive" tells
    whether any k-NN rank sum changes (if false, any of these formulas reproduces the values).
    Subsampled queries: given M and seed S, the queries are the M rows i with the smallest
    key u64(S, i) (testgen.h tg_u64; ties by lower i), stored ascending. Ranks use the full
    rows (all N points), values v_q = (2/N) r_q; reported mean(v) and the standard error
    std(v, ddof=1) / sqrt(M) (computed exactly with fractions, then rounded / sqrt).

Datasets (every matrix is also stored in full as float.hex, row-major lists):
  * TV-9 CKA cases; "const": X = ones(64, 8) vs Y = gauss D=8 seed 71 N=64 -> NaN (all CKAs);
    "n1": X = [[1, 2]], Y = [[3, 4, 5]] -> NaN; "arange": arange(512).reshape(128, 4) (as
    float64) with itself -> 1; "self"/"scaled": TV-9 case 3's X with X / with 7.5 X -> 1.
  * TV-10 / TV-11 information imbalance cases (+ TV-10 identical views -> 0.4, N = 2 -> 1).
  * pairs: "identical": A = B = gauss D=8 seed 71 N=64 (II = 2/64 both ways for k = 1);
    "random": A = gauss D=8 seed 72 N=60, B = gauss D=5 seed 73 N=60 (gauss: x_ij =
    normal(seed, D i + j)); "ties": N=120, D=1, a_i = numpy.linspace(-1, 1, 120), which numpy
    1.24 computes as step = (1.0 - (-1.0)) / 119 (rounded), a_i = (double)i * step + (-1.0)
    (two roundings), a_119 = 1.0 exactly; asserted bit for bit (and NOT equal everywhere to
    -1 + (2 i) / 119.0); b_i = round(4 a_i) / 4 (4 a_i is exact, and no 4 a_i is within 1e-3 of
    a half-integer, so round-half-even and round-half-away agree; asserted);
    "integer": A_ij = floor(10 * unit(74, 3 i + j)), D=3, N=40; B_ij = A_ij +
    floor(3 * unit(75, 2 i + j)), j < 2, D=2 (ties and duplicate rows are frequent).
    Each pair: linear, debiased linear, RBF biased/debiased for t = 1, 0.5; II for p in
    {1, 2, 3, inf}, k in {1, 3}; subsampled II for p=2, k=1, M=20, seed 5.
  * orth: X = gauss D=6 seed 76 N=50; Q = numpy QR of G = gauss D=6 seed 78 N=6 (stored);
    Y = X Q computed as Y_ij = sum_k X_ik Q_kj left to right (k = 0..5, each op rounded);
    Z = 7.5 * X. All CKAs of (X, Y) and (X, Z) are 1 within 1e-12 (asserted; values stored).

JSON (floats are float.hex strings; NaN "nan", inf "inf"; ints plain):
{
  "about": str, "eps": hex,
  "cka_cases": [ {"name": str, "N": int, "X": [[hex]], "Y": [[hex]],
                  "cka": CKA} ],        TV-9 cases and orth/scaled checks
  CKA = {"linear": hex, "num": hex, "a": hex, "b": hex, "debiased": hex,
         "rbf": [ {"t": hex, "median_x": hex, "median_y": hex, "biased": hex,
                   "debiased": hex} ] }
  "ii_cases": [ {"name": str, "N": int, "A": [[hex]], "B": [[hex]], "II": II} ],  TV-10/11
  II = {"ii": [ {"p": 1|2|3|"inf", "k": int, "a_to_b": hex, "b_to_a": hex,
                 "rank_sums_a_to_b": [int]*N,   sum over i's k A-neighbours of r^B
                 "rank_sums_b_to_a": [int]*N, "formula_sensitive": bool} ],
        "sub": {"p": 2, "k": 1, "M": 20, "seed": 5, "queries": [int]*M,
                "ranks_a_to_b": [int]*M, "ranks_b_to_a": [int]*M,
                "a_to_b": {"mean": hex, "se": hex}, "b_to_a": {"mean": hex, "se": hex}} }
        (k > N-1 and "sub" with M > N are omitted)
  "tv10_ranks": {"rA": [[int]], "rB": [[int]]},        full rank matrices (self = 0)
  "pairs": [ {"name": str, "build": str, "N": int, "A": [[hex]], "B": [[hex]],
              "cka": CKA, "II": II} ],
  "orth": {"X": [[hex]], "Q": [[hex]], "Y": [[hex]], "scale": hex,
           "cka_xq": CKA, "cka_scaled": CKA}
}
"""
import json
import math
import os
import sys
from fractions import Fraction

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # importing make_golden_id leaves no __pycache__
sys.path.insert(0, HERE)
from make_golden_id import distances, hx, make_cloud, u64, unit  # noqa: E402

EPS = 1e-12
THRESHOLDS = (1.0, 0.5)
PS = (1, 2, 3, "inf")
KS = (1, 3)
NAN = float("nan")


def mat(rows):
    return np.array(rows, dtype=np.float64)


def hmat(X):
    return [[hx(v) for v in r] for r in np.asarray(X)]


def gauss(seed, N, D):
    return make_cloud("gauss", seed, N, D)[0]


def nan_rule(num, den):
    if not math.isfinite(den) or den <= EPS:
        return NAN
    v = num / den
    return v if math.isfinite(v) else NAN


def all_rows_equal(X):
    return bool(np.all(X == X[0:1, :]))


# ----------------------------------------------------------------- CKA
def linear_cka(X, Y):
    Xc = X - X.mean(axis=0)
    Yc = Y - Y.mean(axis=0)
    num = float(np.sum((Xc.T @ Yc) ** 2))
    a = float(np.sum((Xc.T @ Xc) ** 2))
    b = float(np.sum((Yc.T @ Yc) ** 2))
    return nan_rule(num, math.sqrt(a * b)), num, a, b


def hsic1(K, L):
    n = K.shape[0]
    Kt = K.copy()
    Lt = L.copy()
    np.fill_diagonal(Kt, 0.0)
    np.fill_diagonal(Lt, 0.0)
    one = np.ones(n)
    t1 = float(np.trace(Kt @ Lt))
    t2 = float(one @ Kt @ one) * float(one @ Lt @ one) / ((n - 1) * (n - 2))
    t3 = 2.0 / (n - 2) * float(one @ Kt @ Lt @ one)
    return (t1 + t2 - t3) / (n * (n - 3))


def unbiased_centre(K):
    n = K.shape[0]
    G = K.copy()
    np.fill_diagonal(G, 0.0)
    means = G.sum(axis=0) / (n - 2)
    means = means - means.sum() / (2 * (n - 1))
    G = G - means[None, :] - means[:, None]
    np.fill_diagonal(G, 0.0)
    return G


def debiased_gram_cka(K, L, constant):
    """Both debiased forms; returns the HSIC_1 one after asserting agreement."""
    n = K.shape[0]
    if n < 4:
        return NAN
    hkl, hkk, hll = hsic1(K, L), hsic1(K, K), hsic1(L, L)
    v1 = nan_rule(hkl, math.sqrt(hkk * hll)) if hkk * hll >= 0 else NAN
    Kp, Lp = unbiased_centre(K), unbiased_centre(L)
    ckl = float(np.sum(Kp * Lp))
    nk, nl = float(np.linalg.norm(Kp)), float(np.linalg.norm(Lp))
    if constant:
        # K' = 0 mathematically; whatever the residue gives is not a reference value
        assert nk * nl <= 1e-6 * (1.0 + float(np.abs(K).max()) * float(np.abs(L).max())), (nk, nl)
        return NAN
    v2 = nan_rule(ckl, nk * nl)
    c = 1.0 / (n * (n - 3))
    for h, ref in ((hkl, ckl), (hkk, nk * nk), (hll, nl * nl)):
        assert abs(h - c * ref) <= 1e-10 * max(1.0, abs(h), abs(c * ref)), (h, c * ref)
    assert abs(v1 - v2) <= 1e-10, (v1, v2)
    return v1


def sqdist(X):
    N, D = X.shape
    acc = np.zeros((N, N))
    for k in range(D):
        diff = X[:, None, k] - X[None, :, k]
        acc = acc + diff * diff
    return acc


def median_all(S):
    s = np.sort(S.ravel())
    c = s.size
    m = (s[c // 2 - 1] + s[c // 2]) / 2 if c % 2 == 0 else s[(c - 1) // 2]
    assert float(m) == float(np.median(S)), (m, np.median(S))
    return float(m)


def rbf_gram(X, t):
    S = sqdist(X)
    m = median_all(S)
    with np.errstate(invalid="ignore", divide="ignore"):
        K = np.exp(-S / ((2.0 * t * t) * m))
    return K, m


def centred_cka(K, L):
    n = K.shape[0]
    H = np.eye(n) - np.ones((n, n)) / n
    Kc, Lc = H @ K @ H, H @ L @ H
    return nan_rule(float(np.sum(Kc * Lc)), float(np.linalg.norm(Kc)) * float(np.linalg.norm(Lc)))


def cka_all(X, Y):
    X, Y = mat(X), mat(Y)
    lin, num, a, b = linear_cka(X, Y)
    const = all_rows_equal(X) or all_rows_equal(Y)
    out = {"linear": lin, "num": num, "a": a, "b": b,
           "debiased": debiased_gram_cka(X @ X.T, Y @ Y.T, const), "rbf": []}
    # the biased Gram form must reproduce linear CKA
    if X.shape[0] > 1:
        g = centred_cka(X @ X.T, Y @ Y.T)
        assert (math.isnan(g) and math.isnan(lin)) or abs(g - lin) <= 1e-10, (g, lin)
    for t in THRESHOLDS:
        K, mx = rbf_gram(X, t)
        L, my = rbf_gram(Y, t)
        if mx == 0.0 or my == 0.0:
            biased = debiased = NAN
        else:
            biased = centred_cka(K, L)
            debiased = debiased_gram_cka(K, L, False)
        out["rbf"].append({"t": t, "median_x": mx, "median_y": my,
                           "biased": biased, "debiased": debiased})
    return out


def hcka(c):
    return {"linear": hx(c["linear"]), "num": hx(c["num"]), "a": hx(c["a"]), "b": hx(c["b"]),
            "debiased": hx(c["debiased"]),
            "rbf": [{k: hx(v) for k, v in r.items()} for r in c["rbf"]]}


# ----------------------------------------------------------------- information imbalance
def minkowski(X, p, variant=""):
    """Distance matrix, element by element in Python floats (libm pow/sqrt/cbrt)."""
    rows = [[float(v) for v in r] for r in X]
    N = len(rows)
    d = [[0.0] * N for _ in range(N)]
    for i in range(N):
        for j in range(N):
            s = 0.0
            for xa, xb in zip(rows[i], rows[j]):
                t = abs(xa - xb)
                if p == 1:
                    s += t
                elif p == 2:
                    s += (xa - xb) * (xa - xb)
                elif p == 3:
                    s += t * t * t if variant == "cube" else math.pow(t, 3.0)
                else:
                    s = max(s, t)
            if p == 2 and variant != "noroot":
                s = math.sqrt(s)
            elif p == 3 and variant == "cube":
                s = np.cbrt(s)
            elif p == 3 and variant != "noroot":
                s = math.pow(s, 1.0 / 3.0)
            d[i][j] = float(s)
    return d


def orders(d):
    """For each i: the other points sorted by (distance, index)."""
    N = len(d)
    return [sorted((j for j in range(N) if j != i), key=lambda j: (d[i][j], j)) for i in range(N)]


def rank_matrix(d):
    N = len(d)
    r = [[0] * N for _ in range(N)]
    for i, o in enumerate(orders(d)):
        for pos, j in enumerate(o):
            r[i][j] = pos + 1
    return r


def rank_sums(dA, dB, k):
    """rank_sums[i] = sum over the first k of A's order of r^B_ij."""
    rB = rank_matrix(dB)
    return [sum(rB[i][j] for j in o[:k]) for i, o in enumerate(orders(dA))]


def ii_value(sums, N, k):
    T = sum(sums)
    v = float(Fraction(2 * T, N * N * k))
    lit = 2.0 / N * (T / (N * k))
    assert abs(v - lit) <= 1e-15, (v, lit)
    return v


def subsample(dA, dB, M, seed):
    N = len(dA)
    q = sorted(sorted(range(N), key=lambda i: (u64(seed, i), i))[:M])
    rAB = rank_sums(dA, dB, 1)
    rBA = rank_sums(dB, dA, 1)
    out = {"p": 2, "k": 1, "M": M, "seed": seed, "queries": q,
           "ranks_a_to_b": [rAB[i] for i in q], "ranks_b_to_a": [rBA[i] for i in q]}
    for key, r in (("a_to_b", out["ranks_a_to_b"]), ("b_to_a", out["ranks_b_to_a"])):
        vals = [Fraction(2 * x, N) for x in r]
        mean = sum(vals) / M
        var = sum((v - mean) ** 2 for v in vals) / (M - 1)
        se = math.sqrt(float(var / M))
        v64 = np.array([2.0 / N * x for x in r])
        assert abs(float(mean) - v64.mean()) <= 1e-14
        assert abs(se - v64.std(ddof=1) / math.sqrt(M)) <= 1e-14
        out[key] = {"mean": hx(float(mean)), "se": hx(se)}
    return out


VARIANTS = {1: (), 2: ("noroot",), 3: ("cube", "noroot"), "inf": ()}


def ii_all(A, B, sub=True):
    A, B = mat(A), mat(B)
    N = A.shape[0]
    res = {"ii": []}
    d2 = {}
    for p in PS:
        dA, dB = minkowski(A, p), minkowski(B, p)
        if p == 2:
            assert np.array_equal(np.array(dA), distances(A)) and \
                np.array_equal(np.array(dB), distances(B)), "p=2 differs from make_golden_id"
            d2 = (dA, dB)
        alt = [(minkowski(A, p, v), minkowski(B, p, v)) for v in VARIANTS[p]]
        for k in KS:
            if k > N - 1:
                continue
            sab, sba = rank_sums(dA, dB, k), rank_sums(dB, dA, k)
            sens = any(rank_sums(a, b, k) != sab or rank_sums(b, a, k) != sba for a, b in alt)
            res["ii"].append({"p": p, "k": k, "a_to_b": ii_value(sab, N, k),
                              "b_to_a": ii_value(sba, N, k), "rank_sums_a_to_b": sab,
                              "rank_sums_b_to_a": sba, "formula_sensitive": sens})
    if sub and N >= 20:
        res["sub"] = subsample(d2[0], d2[1], 20, 5)
    return res


def hii(res):
    out = {"ii": [dict(e, a_to_b=hx(e["a_to_b"]), b_to_a=hx(e["b_to_a"])) for e in res["ii"]]}
    if "sub" in res:
        out["sub"] = res["sub"]
    return out


def ii_get(res, p, k):
    e = [e for e in res["ii"] if e["p"] == p and e["k"] == k]
    return e[0]["a_to_b"], e[0]["b_to_a"]


# ----------------------------------------------------------------- SPEC checks
def close(a, b, tol=1e-9):
    if math.isnan(b):
        return math.isnan(a)
    return abs(a - b) <= tol


def want(name, got, val):
    assert close(got, val), f"{name}: got {got!r}, SPEC says {val!r}"


def tv9(ident):
    cases = []

    def case(name, X, Y):
        c = cka_all(X, Y)
        cases.append({"name": name, "N": len(X), "X": hmat(mat(X)), "Y": hmat(mat(Y)),
                      "cka": c})
        return c

    c = case("TV-9 1d", [[0], [1], [2], [3]], [[0], [1], [4], [9]])
    for k, v in (("num", 225), ("a", 25), ("b", 2401), ("linear", 0.9183673469)):
        want("TV-9 1d " + k, c[k], v)
    X2 = [[1, 0], [0, 1], [-1, 0], [0, -1]]
    c = case("TV-9 diag", X2, (mat(X2) @ np.diag([2.0, 1.0])).tolist())
    for k, v in (("num", 20), ("a", 8), ("b", 68), ("linear", 0.8574929257)):
        want("TV-9 diag " + k, c[k], v)
    X3 = [[1, 2], [3, 1], [0, 0], [2, 5]]
    Y3 = [[1, 0, 2], [0, 1, 1], [2, 2, 0], [1, 3, 1]]
    c = case("TV-9 rect", X3, Y3)
    for k, v in (("num", 31), ("a", 239), ("b", 45), ("linear", 0.2989210413)):
        want("TV-9 rect " + k, c[k], v)
    for name, Y in (("TV-9 self", X3), ("TV-9 scaled", (7.5 * mat(X3)).tolist())):
        c = case(name, X3, Y)
        for v in [c["linear"], c["debiased"]] + [r[s] for r in c["rbf"]
                                                 for s in ("biased", "debiased")]:
            want(name, v, 1.0)
    c = case("TV-9 const", np.ones((64, 8)).tolist(), ident.tolist())
    for v in [c["linear"], c["debiased"]] + [r[s] for r in c["rbf"] for s in ("biased", "debiased")]:
        want("TV-9 const", v, NAN)
    c = case("TV-9 n1", [[1, 2]], [[3, 4, 5]])
    for v in [c["linear"], c["debiased"]] + [r[s] for r in c["rbf"] for s in ("biased", "debiased")]:
        want("TV-9 n1", v, NAN)
    ar = np.arange(512, dtype=np.float64).reshape(128, 4)
    c = case("TV-9 arange", ar.tolist(), ar.tolist())
    want("TV-9 arange", c["linear"], 1.0)
    want("TV-9 arange debiased", c["debiased"], 1.0)
    print("SPEC TV-9: recomputed values match to 1e-9")
    return cases


def tv_ii():
    cases = []

    def case(name, A, B):
        r = ii_all(A, B, sub=False)
        cases.append({"name": name, "N": len(A), "A": hmat(mat(A)), "B": hmat(mat(B)), "II": r})
        return r

    A = [[0], [1], [3], [7], [15]]
    B = [[0], [6], [1], [13], [4]]
    rA, rB = rank_matrix(minkowski(mat(A), 2)), rank_matrix(minkowski(mat(B), 2))
    assert rA == [[0, 1, 2, 3, 4], [1, 0, 2, 3, 4], [2, 1, 0, 3, 4], [3, 2, 1, 0, 4],
                  [4, 3, 2, 1, 0]], rA
    assert rB == [[0, 3, 1, 4, 2], [3, 0, 2, 4, 1], [1, 3, 0, 4, 2], [4, 1, 3, 0, 2],
                  [3, 1, 2, 4, 0]], rB
    r = case("TV-10", A, B)
    for p in PS:
        ab, ba = ii_get(r, p, 1)
        want(f"TV-10 p={p} A->B", ab, 1.28)
        want(f"TV-10 p={p} B->A", ba, 1.04)
    r = case("TV-10 identical", A, A)
    for p in PS:
        for v in ii_get(r, p, 1):
            want("TV-10 identical", v, 0.4)
    r = case("TV-10 n2", [[0], [1]], [[5], [2]])
    for p in PS:
        for v in ii_get(r, p, 1):
            want("TV-10 N=2", v, 1.0)
    r = case("TV-11", [[0], [1], [2]], [[0], [2], [1]])
    assert rank_matrix(minkowski(mat([[0], [1], [2]]), 2)) == [[0, 1, 2], [1, 0, 2], [2, 1, 0]]
    assert rank_matrix(minkowski(mat([[0], [2], [1]]), 2)) == [[0, 2, 1], [2, 0, 1], [1, 2, 0]]
    for p in PS:
        for v in ii_get(r, p, 1):
            want("TV-11", v, 4.0 / 3.0)
    print("SPEC TV-10, TV-11: recomputed values match to 1e-9")
    return cases, {"rA": rA, "rB": rB}


# ----------------------------------------------------------------- datasets
def linspace_pair():
    n = 120
    step = (1.0 - (-1.0)) / (n - 1)
    a = [float(i) * step + (-1.0) for i in range(n - 1)] + [1.0]
    ref = np.linspace(-1, 1, n)
    assert [x.hex() for x in a] == [float(x).hex() for x in ref], "linspace formula"
    naive = [-1.0 + (2.0 * i) / 119.0 for i in range(n)]
    ndiff = sum(x != y for x, y in zip(a, naive))
    b = []
    for x in a:
        y = 4.0 * x
        assert abs(y - math.floor(y) - 0.5) > 1e-3, y
        b.append(float(np.round(y)) / 4.0)
        assert b[-1] == math.floor(y + 0.5) / 4.0
    print(f"ties: linspace(-1,1,120) = i*step - 1 bit for bit; differs from -1+(2i)/119 "
          f"at {ndiff} of 120 points")
    return mat([[x] for x in a]), mat([[y] for y in b])


def integer_pair():
    N = 40
    A = [[float(math.floor(10.0 * unit(74, 3 * i + j))) for j in range(3)] for i in range(N)]
    B = [[A[i][j] + float(math.floor(3.0 * unit(75, 2 * i + j))) for j in range(2)]
         for i in range(N)]
    A, B = mat(A), mat(B)
    dupA = N - len({tuple(r) for r in A.tolist()})
    dupB = N - len({tuple(r) for r in B.tolist()})
    print(f"integer: duplicate rows A {dupA}, B {dupB}")
    return A, B


def pair(name, build, A, B):
    c = cka_all(A, B)
    r = ii_all(A, B)
    ab, ba = ii_get(r, 2, 1)
    sens = [f"p={e['p']},k={e['k']}" for e in r["ii"] if e["formula_sensitive"]]
    print(f"{name}: lin={c['linear']:.10f} deb={c['debiased']:.10f} "
          f"rbf1={c['rbf'][0]['biased']:.10f}/{c['rbf'][0]['debiased']:.10f} "
          f"rbf.5={c['rbf'][1]['biased']:.10f}/{c['rbf'][1]['debiased']:.10f} "
          f"II(p2,k1)={ab:.10f}/{ba:.10f} sub={float.fromhex(r['sub']['a_to_b']['mean']):.6f}"
          f"+-{float.fromhex(r['sub']['a_to_b']['se']):.6f} sensitive={sens}")
    return {"name": name, "build": build, "N": A.shape[0], "A": hmat(A), "B": hmat(B),
            "cka": hcka(c), "II": hii(r)}, c, r


def orth_case():
    X = gauss(76, 50, 6)
    G = gauss(78, 6, 6)
    Q, _ = np.linalg.qr(G)
    assert np.abs(Q.T @ Q - np.eye(6)).max() < 1e-15 * 10
    Y = np.zeros((50, 6))
    for k in range(6):
        Y = Y + X[:, k:k + 1] * Q[k:k + 1, :]
    Z = 7.5 * X
    cq, cz = cka_all(X, Y), cka_all(X, Z)
    for nm, c in (("XQ", cq), ("7.5X", cz)):
        vals = [c["linear"], c["debiased"]] + [r[s] for r in c["rbf"] for s in ("biased", "debiased")]
        assert all(abs(v - 1.0) <= 1e-12 for v in vals), (nm, vals)
        print(f"orth {nm}: max |CKA - 1| = {max(abs(v - 1.0) for v in vals):.3e}")
    return {"X": hmat(X), "Q": hmat(Q), "Y": hmat(Y), "scale": hx(7.5),
            "cka_xq": hcka(cq), "cka_scaled": hcka(cz)}


def main():
    ident = gauss(71, 64, 8)
    cases = tv9(ident)
    for c in cases:
        c["cka"] = hcka(c["cka"])
    iic, ranks = tv_ii()
    for c in iic:
        c["II"] = hii(c["II"])

    pairs = []
    p, c, r = pair("identical", "A = B = gauss D=8 seed 71 N=64", ident, ident)
    for e in r["ii"]:
        if e["k"] == 1:
            assert e["a_to_b"] == e["b_to_a"] == 2.0 / 64, e
    assert abs(c["linear"] - 1.0) <= 1e-12 and abs(c["debiased"] - 1.0) <= 1e-12
    pairs.append(p)
    pairs.append(pair("random", "A = gauss D=8 seed 72 N=60; B = gauss D=5 seed 73 N=60",
                      gauss(72, 60, 8), gauss(73, 60, 5))[0])
    A, B = linspace_pair()
    p, c, r = pair("ties", "a = linspace(-1,1,120): a_i = i*(2.0/119) + (-1.0), a_119 = 1.0; "
                   "b = round(4a)/4", A, B)
    ab, ba = ii_get(r, 2, 1)
    assert ba > ab, "SPEC 5.2 asymmetry"
    pairs.append(p)
    A, B = integer_pair()
    pairs.append(pair("integer", "A_ij = floor(10*unit(74, 3i+j)), D=3, N=40; "
                      "B_ij = A_ij + floor(3*unit(75, 2i+j)), j<2", A, B)[0])

    doc = {
        "about": "CKA / information-imbalance references; see tests/golden/make_golden_sim.py "
                 "for definitions and schema; floats are float.hex",
        "eps": hx(EPS),
        "cka_cases": cases,
        "ii_cases": iic,
        "tv10_ranks": ranks,
        "pairs": pairs,
        "orth": orth_case(),
    }
    path = os.path.join(HERE, "sim.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    size = os.path.getsize(path)
    assert size < 1 << 20, size
    print(f"wrote {path} ({size} bytes)")


if __name__ == "__main__":
    main()
