#!/usr/bin/env python3
"""Reference values of the quick-start job (jobs/demo.yaml) for tests/cli/test_run.c.

Run from the repository root with Debian's python3 (python3-torch, python3-numpy, python3-h5py,
python3-sklearn 1.2, python3-yaml):

    /usr/bin/python3 tests/golden/make_golden_demo.py [--check OUT_DIR ...]

It rewrites tests/golden/demo/expected.json (committed, so the test suite never needs Python).
Nothing here uses LatentHook's C code. The job runs the shipped digits MLP
(jobs/models/digits-mlp) over jobs/data/digits.h5:/X (1797 x 64), caches layers.0 .. layers.6 and
analyses them together with the input pixels (layer "input"); this script does the same:

  activations  the training script's DigitsMLP (jobs/models/train_digits_mlp.py) loaded from
               model.safetensors, run in float32 by PyTorch (one thread, deterministic), forward
               hooks on the modules whose name re.match-es `layers\\.\\d+$`; "input" is /X
               itself. Every analysis below runs in float64 on these float32 values.
  distances    d_ij = sqrt(sum_k (x_ik - x_jk)^2) by exact differences, squares added left to
               right in column order (make_golden_id.distances / make_golden_sim.sqdist).
  twonn        SPEC 4.0/4.2 with eps 1e-5 and Facco et al.'s discard as `latenthook twonn
               --discard-fraction 0.1` defines it: mu sorted ascending, x_i = ln mu(i),
               y_i = -ln(1 - i/Nv), fit i = 1..n_fit with n_fit = min(Nv - 1, floor(0.9 Nv)),
               d = fsum(x y) / fsum(x x) (make_golden_id.twonn); dimension_mle = (Nv - 1) /
               fsum(ln mu) over all Nv.
  local_knn    SPEC 4.1 with k = 10, eps 1e-5 (make_golden_id.localknn); mean = fsum / count
               and median (numpy.median) over the finite per-point values.
  probe        the split of src/analysis/probe_metrics.c: s = u64(seed, 0x7E57), sample i is
               held out iff unit(s, i) < test_fraction (SplitMix64 as include/latenthook/rng.h;
               seed 0, 0.2: 343 test, 1454 train). Objective: mean softmax cross-entropy over
               the train rows + (l2/2)|W|_F^2, intercepts free, l2 = 0.01 = scikit-learn's
               LogisticRegression(C = 1/(l2 N_train), multi_class="multinomial", lbfgs), fitted
               with tol 1e-12 and then polished by Newton steps to a gradient below 1e-11 (the
               minimiser is unique: the objective is strictly convex up to the common shift of
               the intercepts, which changes no prediction). Accuracies are those of this
               optimum (first maximum, as torch.argmax); "min_margin" is the smallest gap
               between a sample's two largest scores at the optimum, i.e. how far the nearest
               sample of each part sits from a decision boundary.
  cka          SPEC 5.1 linear CKA on column-centred float64 copies, layer x layer.
  information_imbalance   SPEC 5.2 with LatentHook's tie rule (SPEC 9.1, make_golden_sim):
               neighbours ordered by (squared distance, index), duplicates (distance 0) are
               ordinary neighbours; matrix[a][b] = Delta(layer a -> layer b) = 2 T_ab / N^2
               with T_ab = sum_i r^b_{i, j_a(i)} (integer, stored as rank_sums); the diagonal is
               2 / N. Ranking on d instead of d^2 is checked to give the same sums.

JSON (plain JSON numbers: Python's repr, which strtod reads back to the same double), laid out
as the "results" of the runner's summary.json so that a test can walk both:
{
  "about": str, "job": "jobs/demo.yaml", "samples": 1797,
  "layers": ["input", "layers.0", ..., "layers.6"],
  "results": {
    "twonn":     {LAYER: {"dimension": f, "dimension_mle": f, "n_valid": int, "n_fit": int,
                          "discard_fraction": 0.1, "eps": 1e-05}},
    "local_knn": {LAYER: {"k": 10, "mean": f, "median": f, "nan_count": int}},
    "probe":     {LAYER: {"n_train": int, "n_test": int, "objective": f,
                          "fit_metrics":     {"n": int, "correct": int, "accuracy": f,
                                              "min_margin": f},
                          "predict_metrics": {"n": int, "correct": int, "accuracy": f,
                                              "min_margin": f}}},
    "cka":       {"layers": [...], "matrix": [[f]*8]*8},
    "information_imbalance": {"layers": [...], "k": 1, "p": 2, "matrix": [[f]*8]*8,
                              "rank_sums": [[int]*8]*8}
  },
  "tolerances": {QUANTITY: {"abs": f, "why": str}},  what a comparison with the runner needs
  "measured":   {QUANTITY: {"ranks_1": f, "ranks_2": f}} max |runner - fixture| when written
}
(accuracies in summary.json are results.probe.LAYER.fit_metrics.accuracy (train) and
.predict_metrics.accuracy (test)).

--check OUT_DIR (repeatable): after computing the fixture, compare it with OUT_DIR/summary.json
of `latenthook run jobs/demo.yaml --output-dir OUT_DIR` and print the max difference per
quantity; recompute every quantity from the runner's own activations (OUT_DIR/activations.h5)
to split each difference into "forward pass" (PyTorch vs LatentHook float32 activations) and
"analysis" (this script vs the runner on the same activations); and score the runner's probe
parameters (OUT_DIR/results/probe/LAYER.h5) to show how far its L-BFGS stopped from the
optimum. The "measured" section is filled from the --check directories whose summary says
"ranks": 1 and 2.
"""
import argparse
import json
import math
import os
import re
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one BLAS thread: the same bits every run
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "jobs", "models"))

import make_golden_nn as nnref  # noqa: E402  (safetensors reader)
import train_digits_mlp as train  # noqa: E402  (the model as trained)
from make_golden_id import localknn, twonn  # noqa: E402
from make_golden_sim import linear_cka, sqdist  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

MODEL = os.path.join(ROOT, "jobs", "models", "digits-mlp")
DATA = os.path.join(ROOT, "jobs", "data", "digits.h5")
OUT = os.path.join(HERE, "demo", "expected.json")
PATTERN = r"layers\.\d+$"
LAYERS = ["input"] + ["layers.%d" % i for i in range(7)]
EPS = 1e-5
DISCARD = 0.1
LKNN_K = 10
II_K, II_P = 1, 2
PROBE = {"num_classes": 10, "l2": 0.01, "test_fraction": 0.2, "seed": 0}
SPLIT_SALT = 0x7E57
M64 = (1 << 64) - 1

# Tolerances for comparing the runner (its own float32 forward pass) with this fixture. The
# differences --check measured on 1 and 2 ranks are kept in the fixture ("measured"); with the
# same activations the runner and this script agree to ~1e-14 or exactly, so what is left comes
# from LatentHook's float32 forward pass (activations within 1e-5 of PyTorch's, distances within
# 2e-5); "why" says how much margin each tolerance leaves.
TOLERANCES = {
    "twonn.dimension": {
        "abs": 1e-5,
        "why": "continuous in the activations (sorted neighbour distances do not jump when "
               "neighbours swap); input exact, layers <= 4.7e-7"},
    "twonn.dimension_mle": {"abs": 1e-5, "why": "as twonn.dimension; <= 8.5e-7"},
    "twonn.n_valid": {"abs": 0, "why": "integer"},
    "local_knn.mean": {"abs": 1e-5, "why": "continuous; input exact, layers <= 4.0e-7"},
    "local_knn.median": {
        "abs": 1e-4,
        "why": "continuous but one point's value (the median point may change): <= 7.2e-6"},
    "local_knn.nan_count": {"abs": 0, "why": "integer"},
    "probe.accuracy": {
        "abs": 0,
        "why": "measured equal on every layer and part, and every sample's prediction equal "
               "(compare fit_metrics.accuracy = train and predict_metrics.accuracy = test, or "
               "the correct counts). Closest calls: layers.1 train sample 794 (margin 2.4e-4 "
               "at the optimum and at the runner's solution) and input (the runner stops at "
               "1000 iterations, its scores up to 0.29 from the optimum's, smallest margin "
               "0.025): a solver change could move one of them by 1 sample (1/1454, 1/343)"},
    "probe.objective": {
        "abs": 1e-4,
        "why": "one-sided: the runner's objective is >= this optimum; converged layers are "
               "<= 6e-8 above it, input and layers.4 stop at 1000 iterations (+1.0e-5, +3.0e-7)"},
    "cka": {
        "abs": 1e-7,
        "why": "smooth and insensitive to the forward pass: <= 5.6e-10 (1 vs 2 ranks: 4e-16)"},
    "information_imbalance": {
        "abs": 1e-6,
        "why": "discrete: 2 T / N^2 with integer rank sums T (rank_sums), one rank = 2 / N^2 = "
               "6.2e-7; measured equal, but each of 12 entries has one pair whose B-distances "
               "are closer than the forward pass's distance error, so one rank may flip; no "
               "nearest neighbour is that close to a tie"},
}


# ----------------------------------------------------------------- inputs and activations
def load_data():
    with h5py.File(DATA, "r") as f:
        X = f["X"][...]  # (1797, 64) float32, raw pixel counts 0..16
        y = f["y"][...]  # (1797,) int64
    assert X.dtype == np.float32 and X.shape == (1797, 64), (X.dtype, X.shape)
    return X, y


def torch_activations(X):
    """{LAYER: (N, width) float32} from the training script's model and the shipped weights."""
    model = train.DigitsMLP()
    _, w = nnref.read_safetensors(os.path.join(MODEL, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()}, strict=True)
    model.eval()
    acts, handles = {}, []
    for name, mod in model.named_modules():
        if name and re.match(PATTERN, name):
            def hook(m, inp, out, name=name):
                assert name not in acts, name  # each layer is called once
                acts[name] = out.detach().numpy().copy()
            handles.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        out = model(torch.from_numpy(X)).numpy()
    for h in handles:
        h.remove()
    assert list(acts) == LAYERS[1:], list(acts)
    assert np.array_equal(acts["layers.6"], out)
    acts = {"input": X, **acts}
    for k, a in acts.items():
        assert a.dtype == np.float32 and a.shape[0] == X.shape[0], k
    return acts


def runner_activations(out_dir, X):
    acts = {"input": X}
    with h5py.File(os.path.join(out_dir, "activations.h5"), "r") as f:
        for k in LAYERS[1:]:
            acts[k] = f["cache"][k][...]
    return acts


# ----------------------------------------------------------------- neighbour quantities
def neighbour_stats(S):
    """TwoNN and local kNN of one layer from its squared-distance matrix S (N x N)."""
    d = np.sqrt(S)
    d = np.where(d > EPS, d, np.inf)  # SPEC 4.0: within eps -> not a neighbour
    np.fill_diagonal(d, np.inf)
    t = twonn(d, DISCARD)
    lk = np.array(localknn(d, LKNN_K))
    fin = lk[np.isfinite(lk)]
    return {
        "twonn": {"dimension": t["discard"]["d"], "dimension_mle": t["mle"]["d"],
                  "n_valid": t["Nv"], "n_fit": t["discard"]["n_fit"],
                  "discard_fraction": DISCARD, "eps": EPS},
        "local_knn": {"k": LKNN_K, "mean": math.fsum(fin) / len(fin),
                      "median": float(np.median(fin)), "nan_count": int(len(lk) - len(fin))},
    }


def nearest(S):
    """j(i) = the first of (S[i, l], l) over l != i (argmin returns the lowest index of a tie)."""
    S = S.copy()
    np.fill_diagonal(S, np.inf)
    return np.argmin(S, axis=1)


def rank_sum(S, j):
    """sum_i r_ij(i) with r_ij = 1 + #{l != i : (S[i, l], l) < (S[i, j], j)}."""
    N = S.shape[0]
    t = S[np.arange(N), j][:, None]
    cols = np.arange(N)[None, :]
    off = cols != np.arange(N)[:, None]
    before = ((S < t) | ((S == t) & (cols < j[:, None]))) & off
    return int(N + before.sum())


def ii_matrix(Ss):
    L = len(Ss)
    N = Ss[0].shape[0]
    nn_sq = [nearest(S) for S in Ss]
    nn_d = [nearest(np.sqrt(S)) for S in Ss]
    T = [[0] * L for _ in range(L)]
    for b in range(L):
        Db = np.sqrt(Ss[b])
        for a in range(L):
            T[a][b] = rank_sum(Ss[b], nn_sq[a])
            assert np.array_equal(nn_sq[a], nn_d[a]) and rank_sum(Db, nn_d[a]) == T[a][b], \
                "ranking on d and on d^2 differ: tie-rule sensitive"
    M = [[2.0 * T[a][b] / (N * N) for b in range(L)] for a in range(L)]
    for a in range(L):
        assert T[a][a] == N and M[a][a] == 2.0 / N
    return M, T


def cka_matrix(acts):
    X64 = [acts[k].astype(np.float64) for k in LAYERS]
    L = len(X64)
    M = [[1.0] * L for _ in range(L)]
    for a in range(L):
        for b in range(L):
            M[a][b] = linear_cka(X64[a], X64[b])[0]
    return M


# ----------------------------------------------------------------- probe
def rng_u64(seed, counter):
    z = (seed * 0x9E3779B97F4A7C15 + counter) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def split(N, seed, fraction):
    s = rng_u64(seed, SPLIT_SALT)
    return np.array([(rng_u64(s, i) >> 11) * 2.0**-53 < fraction for i in range(N)])


def softmax(s):
    p = np.exp(s - s.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def objective(X, y, W, b, l2):
    s = X @ W.T + b
    m = s.max(1, keepdims=True)
    lse = (m + np.log(np.exp(s - m).sum(1, keepdims=True)))[:, 0]
    return float(np.mean(lse - s[np.arange(len(y)), y]) + 0.5 * l2 * np.sum(W * W))


def fit_probe(X, y, C, l2):
    """The minimiser of mean CE + (l2/2)|W|^2: scikit-learn, then Newton steps."""
    N, D = X.shape
    m = LogisticRegression(C=1.0 / (l2 * N), multi_class="multinomial", solver="lbfgs",
                           tol=1e-12, max_iter=100000)
    m.fit(X, y)
    W, b = m.coef_.copy(), m.intercept_.copy()
    Xt = np.hstack([X, np.ones((N, 1))])
    th = np.hstack([W, b[:, None]])  # C x (D+1)
    Y = np.eye(C)[y]
    reg = np.ones(D + 1)
    reg[D] = 0.0
    P = D + 1

    def grad(th):
        p = softmax(Xt @ th.T)
        return p, (p - Y).T @ Xt / N + l2 * th * reg

    g0 = np.abs(grad(th)[1]).max()
    for it in range(50):
        p, g = grad(th)
        if np.abs(g).max() < 1e-13:
            break
        H = np.empty((C * P, C * P))
        for c in range(C):
            for e in range(c, C):
                w = p[:, c] * ((c == e) - p[:, e])
                blk = (Xt * w[:, None]).T @ Xt / N
                if c == e:
                    blk += l2 * np.diag(reg)
                H[c * P:(c + 1) * P, e * P:(e + 1) * P] = blk
                H[e * P:(e + 1) * P, c * P:(c + 1) * P] = blk.T
        step = np.linalg.lstsq(H, g.ravel(), rcond=1e-14)[0]
        th = th - step.reshape(C, P)
        th[:, D] -= th[:, D].mean()  # the free common shift of the intercepts
    p, g = grad(th)
    gmax = np.abs(g).max()
    assert gmax < 1e-11, "Newton polish stopped at gradient %g" % gmax
    Wo, bo = th[:, :D], th[:, D]
    rel = np.abs(Wo - W).max() / np.abs(Wo).max()
    return Wo, bo, {"sklearn_iter": int(m.n_iter_[0]), "sklearn_grad": float(g0),
                    "newton_iter": it, "grad": float(gmax), "sklearn_rel": float(rel)}


def part_metrics(X, y, W, b):
    s = X @ W.T + b
    pred = np.argmax(s, axis=1)
    top2 = np.sort(s, axis=1)[:, -2:]
    correct = int((pred == y).sum())
    return {"n": int(len(y)), "correct": correct, "accuracy": correct / len(y),
            "min_margin": float((top2[:, 1] - top2[:, 0]).min())}


def probe(Xf32, y, test):
    X = Xf32.astype(np.float64)
    tr = ~test
    W, b, info = fit_probe(X[tr], y[tr], PROBE["num_classes"], PROBE["l2"])
    res = {"n_train": int(tr.sum()), "n_test": int(test.sum()),
           "objective": objective(X[tr], y[tr], W, b, PROBE["l2"]),
           "fit_metrics": part_metrics(X[tr], y[tr], W, b),
           "predict_metrics": part_metrics(X[test], y[test], W, b)}
    return res, (W, b), info


# ----------------------------------------------------------------- everything
def compute(acts, y, test, log=print):
    res = {"twonn": {}, "local_knn": {}, "probe": {}}
    Ss, params = [], {}
    for k in LAYERS:
        S = sqdist(acts[k].astype(np.float64))
        Ss.append(S)
        st = neighbour_stats(S)
        res["twonn"][k] = st["twonn"]
        res["local_knn"][k] = st["local_knn"]
        res["probe"][k], params[k], info = probe(acts[k], y, test)
        pm = res["probe"][k]
        log("%-8s twonn %.6f (mle %.6f)  local_knn mean %.6f median %.6f  probe train %d/%d "
            "test %d/%d obj %.10f margins %.2e/%.2e  [sklearn %d it grad %.1e, newton %d, "
            "|W_sk - W|/|W| %.1e]" % (
                k, st["twonn"]["dimension"], st["twonn"]["dimension_mle"],
                st["local_knn"]["mean"], st["local_knn"]["median"],
                pm["fit_metrics"]["correct"], pm["n_train"], pm["predict_metrics"]["correct"],
                pm["n_test"], pm["objective"], pm["fit_metrics"]["min_margin"],
                pm["predict_metrics"]["min_margin"], info["sklearn_iter"],
                info["sklearn_grad"], info["newton_iter"], info["sklearn_rel"]))
    res["cka"] = {"layers": LAYERS, "matrix": cka_matrix(acts)}
    M, T = ii_matrix(Ss)
    res["information_imbalance"] = {"layers": LAYERS, "k": II_K, "p": II_P, "matrix": M,
                                    "rank_sums": T}
    return res, params


# ----------------------------------------------------------------- comparisons (--check)
def diffs(a, b):
    """{QUANTITY: max |a - b|} over the layers / matrix entries (a, b: results dicts)."""
    out = {}

    def put(q, v):
        out[q] = max(out.get(q, 0.0), abs(float(v)))

    for k in LAYERS:
        for f in ("dimension", "dimension_mle", "n_valid"):
            put("twonn." + f, a["twonn"][k][f] - b["twonn"][k][f])
        for f in ("mean", "median", "nan_count"):
            put("local_knn." + f, a["local_knn"][k][f] - b["local_knn"][k][f])
        for part in ("fit_metrics", "predict_metrics"):
            put("probe.accuracy", a["probe"][k][part]["accuracy"] - b["probe"][k][part]["accuracy"])
    for q in ("cka", "information_imbalance"):
        A, B = np.array(a[q]["matrix"]), np.array(b[q]["matrix"])
        put(q, np.abs(A - B).max())
    return out


def runner_results(summary):
    """The runner's results with the fields this script compares (and objective per layer)."""
    r = summary["results"]
    out = {"twonn": r["twonn"], "local_knn": r["local_knn"], "probe": {}}
    for k in LAYERS:
        p = r["probe"][k]
        out["probe"][k] = {"objective": p["fit"]["objective"], "converged": p["fit"]["converged"],
                           "iterations": p["fit"]["iterations"],
                           "fit_metrics": p["fit_metrics"], "predict_metrics": p["predict_metrics"]}
    for q in ("cka", "information_imbalance"):
        assert r[q]["layers"] == LAYERS, r[q]["layers"]
        out[q] = r[q]
    return out


def per_layer(q, a, b):
    if q.startswith("twonn.") or q.startswith("local_knn."):
        sec, f = q.split(".")
        return " ".join("%.1e" % abs(a[sec][k][f] - b[sec][k][f]) for k in LAYERS)
    if q == "probe.accuracy":
        def moved(k, part):
            pa, pb = a["probe"][k][part], b["probe"][k][part]
            return round((pa["accuracy"] - pb["accuracy"]) * pb["n"])
        return " ".join("%+d/%+d" % (moved(k, "fit_metrics"), moved(k, "predict_metrics"))
                        for k in LAYERS)
    A, B = np.array(a[q]["matrix"]), np.array(b[q]["matrix"])
    return "max per row " + " ".join("%.1e" % v for v in np.abs(A - B).max(1))


def tie_report(acts_fix, acts_lh):
    """How close the information imbalance is to a rank flip: per layer, the largest change of a
    distance between the two forward passes (dd), the smallest gap between a point's two nearest
    neighbours, and per entry a -> b the pairs (i, l) whose b-distance is within 2 dd of the
    distance to i's a-neighbour (each could swap one rank)."""
    Ds, dd = [], []
    for k in LAYERS:
        D = np.sqrt(sqdist(acts_fix[k].astype(np.float64)))
        dd.append(float(np.abs(D - np.sqrt(sqdist(acts_lh[k].astype(np.float64)))).max()))
        np.fill_diagonal(D, np.inf)
        Ds.append(D)
    nn = [np.argmin(D, axis=1) for D in Ds]
    N = Ds[0].shape[0]
    for a, k in enumerate(LAYERS):
        srt = np.partition(Ds[a], 1, axis=1)
        gap = srt[:, 1] - srt[:, 0]
        print("%-8s max |d_torch - d_LH| %.1e, smallest gap between the two nearest %.1e "
              "(exact ties %d)" % (k, dd[a], gap.min(), int((gap == 0).sum())))
    near = []
    for b in range(1, len(LAYERS)):
        for a in range(len(LAYERS)):
            if a == b:
                continue
            t = Ds[b][np.arange(N), nn[a]][:, None]
            gap = np.abs(Ds[b] - t)
            gap[np.arange(N), nn[a]] = np.inf
            c = int((gap < 2 * dd[b]).sum())
            if c:
                near.append("%s->%s: %d" % (LAYERS[a], LAYERS[b], c))
    print("II entries with pairs that could swap a rank: %s" % (", ".join(near) or "none"))


def check(out_dir, X, y, test, fixture, params_fix, acts_fix):
    with open(os.path.join(out_dir, "summary.json")) as f:
        summary = json.load(f)
    ranks = summary["ranks"]
    run = runner_results(summary)
    print("\n==== %s (%d ranks) ====" % (out_dir, ranks))
    acts_lh = runner_activations(out_dir, X)
    for k in LAYERS[1:]:
        a, t = acts_lh[k].astype(np.float64), acts_fix[k].astype(np.float64)
        print("activations %-8s max |LatentHook - PyTorch| %.2e (max |value| %.1f)" % (
            k, np.abs(a - t).max(), np.abs(t).max()))
    print("-- recomputed from the runner's activations:")
    lh, params_lh = compute(acts_lh, y, test)
    d_total, d_fwd, d_ana = diffs(run, fixture), diffs(lh, fixture), diffs(run, lh)
    print("%-24s %11s %11s %11s" % ("quantity", "runner-fix", "forward", "analysis"))
    for q in d_total:
        print("%-24s %11.3e %11.3e %11.3e   per layer (runner-fixture): %s" % (
            q, d_total[q], d_fwd[q], d_ana[q], per_layer(q, run, fixture)))
    T_fix = np.array(fixture["information_imbalance"]["rank_sums"])
    T_lh = np.array(lh["information_imbalance"]["rank_sums"])
    if not np.array_equal(T_fix, T_lh):
        print("II rank sums that move with the forward pass (a -> b: fixture vs LH acts):",
              [(LAYERS[a], LAYERS[b], int(T_fix[a, b]), int(T_lh[a, b]))
               for a, b in zip(*np.nonzero(T_fix != T_lh))])
    tie_report(acts_fix, acts_lh)
    print("-- probe: runner's L-BFGS vs the optimum (on the runner's activations)")
    for k in LAYERS:
        with h5py.File(os.path.join(out_dir, "results", "probe", k + ".h5"), "r") as f:
            Wr, br = f["coef"][...], f["intercept"][...]
        Wo, bo = params_lh[k]
        X64 = acts_lh[k].astype(np.float64)
        tr = ~test
        obj_r = objective(X64[tr], y[tr], Wr, br, PROBE["l2"])
        mr_tr = part_metrics(X64[tr], y[tr], Wr, br)
        mr_te = part_metrics(X64[test], y[test], Wr, br)
        rp = run["probe"][k]
        print("%-8s %s it %4d  objective runner %.12f (recomputed %.12f) optimum %.12f "
              "(+%.1e)  |W_r - W|/|W| %.1e  correct train %d test %d (optimum %d %d)" % (
                  k, "conv" if rp["converged"] else "STOP", rp["iterations"], rp["objective"],
                  obj_r, lh["probe"][k]["objective"], rp["objective"] - lh["probe"][k]["objective"],
                  np.abs(Wr - Wo).max() / np.abs(Wo).max(), mr_tr["correct"], mr_te["correct"],
                  lh["probe"][k]["fit_metrics"]["correct"],
                  lh["probe"][k]["predict_metrics"]["correct"]))
        Wf, bf = params_fix[k]
        sr = X64 @ Wr.T + br
        sf = acts_fix[k].astype(np.float64) @ Wf.T + bf
        dev = np.abs((sr - sr.mean(1, keepdims=True)) - (sf - sf.mean(1, keepdims=True))).max()
        print("         max |scores(runner) - scores(fixture optimum)| %.1e (centred); "
              "fixture min margins train %.1e test %.1e" % (
                  dev, fixture["probe"][k]["fit_metrics"]["min_margin"],
                  fixture["probe"][k]["predict_metrics"]["min_margin"]))
        d_total.setdefault("probe.objective", 0.0)
        d_total["probe.objective"] = max(d_total["probe.objective"],
                                         abs(rp["objective"] - fixture["probe"][k]["objective"]))
    print("probe.objective max |runner - fixture| %.3e" % d_total["probe.objective"])
    return ranks, d_total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="append", default=[], metavar="OUT_DIR")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite the fixture")
    args = ap.parse_args()

    X, y = load_data()
    test = split(len(y), PROBE["seed"], PROBE["test_fraction"])
    acts = torch_activations(X)
    print("split: %d test, %d train" % (test.sum(), (~test).sum()))
    results, params = compute(acts, y, test)

    measured = {}
    for d in args.check:
        ranks, dd = check(d, X, y, test, results, params, acts)
        for q, v in dd.items():
            measured.setdefault(q, {})["ranks_%d" % ranks] = v

    doc = {
        "about": "expected results of `latenthook run jobs/demo.yaml` (summary.json's "
                 "\"results\" layout) computed independently by tests/golden/"
                 "make_golden_demo.py (PyTorch float32 forward, NumPy/scikit-learn float64); "
                 "see that script for definitions and schema",
        "job": "jobs/demo.yaml",
        "samples": int(len(y)),
        "layers": LAYERS,
        "results": results,
        "tolerances": TOLERANCES,
        "measured": measured,
    }
    if args.no_write:
        return
    if not measured and os.path.exists(OUT):  # keep the previous measurements
        with open(OUT) as f:
            doc["measured"] = json.load(f).get("measured", {})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print("wrote %s (%d bytes)" % (OUT, os.path.getsize(OUT)))


if __name__ == "__main__":
    main()
