#!/usr/bin/env python3
"""Offline reference values for the probes (tests/mpi/mpi_probe.c, tests/cli/test_probe.c).

Run with Debian's python3 (python3-numpy, python3-sklearn 1.2):
    /usr/bin/python3 tests/golden/make_golden_probe.py
It rewrites tests/golden/probe/probe.json (committed; the test suite never needs Python) and
the text inputs of the command-line test (tests/golden/probe/*.txt, read with h5import).
Nothing here uses LatentHook's C code. The script checks its own references (asserts) and
fails rather than write fixtures that disagree with each other.

Contents:
  logreg3  N=90, D=4, 3 classes, l2 = 0.05: scikit-learn LogisticRegression(C = 1/(l2 N),
           multi_class="multinomial", solver="lbfgs", tol=1e-12, max_iter=10000) coef (3 x 4),
           intercept (3): the minimiser of mean cross-entropy + (l2/2)|W|^2; scikit-learn
           stops early (gradient ~1e-6), so coef_opt/intercept_opt are its optimum polished by
           Newton steps (gradient < 1e-13), asserted within 1e-3 of scikit-learn's.
  logreg2  N=60, D=3, 2 classes, l2 = 0.1: the same; scikit-learn keeps one row w (class 1),
           the two-row softmax parameters are W = [-w; w], b = [-c; c] (asserted below from
           predict_proba).
  ridge    N=50, D=4, l2 = 0.1: Ridge(alpha = l2 N) coef, intercept.
  metrics  for the logreg3 model (sklearn's parameters): accuracy, balanced accuracy, macro F1,
           log loss (no clipping needed: probabilities far from 0); for ridge: MSE, R^2.
  mdiff    N=40, D=3: NumPy mean difference, normalised and raw, and predict_proba.
  adam     a re-implementation of src/analysis/probe_adam.c's schedule (SplitMix64 via
           lh_rng_u64, Fisher-Yates per epoch, torch's Adam) on logreg3's data (classifier) and
           ridge's data (regressor), with math.fsum for the exactly rounded sums the C code
           gets from xsum.h.
  adam_warm  the same schedule fitted twice (lh_probe_fit_warm): epochs1 epochs, then
           epochs2 more from those parameters with a new Adam state and the epoch numbers
           going on; asserted to differ from one fit of epochs1 + epochs2 and from a second
           fit that would replay epochs 0, 1, ...
"""
import json
import math
import os

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score, log_loss,
                             mean_squared_error, r2_score)

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe")
M64 = (1 << 64) - 1


def rng_u64(seed, counter):
    z = (seed * 0x9E3779B97F4A7C15 + counter) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rng_unit(seed, counter):
    return (rng_u64(seed, counter) >> 11) * 2.0**-53


def blobs(rs, n, d, k, sep):
    centres = rs.normal(size=(k, d)) * sep
    y = np.arange(n) % k
    rs.shuffle(y)
    X = centres[y] + rs.normal(size=(n, d))
    return f32(X), y


def f32(a):
    """Values exactly representable in float32: h5import (command-line test) parses text as
    float32, so the fixtures stay bit-exact through it."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def logreg(X, y, l2):
    N = X.shape[0]
    m = LogisticRegression(C=1.0 / (l2 * N), multi_class="multinomial", solver="lbfgs",
                           tol=1e-12, max_iter=10000)
    m.fit(X, y)
    W, b = m.coef_, m.intercept_
    if W.shape[0] == 1:
        W, b = np.vstack([-W, W]), np.concatenate([-b, b])
    assert np.allclose(softmax(X @ W.T + b), m.predict_proba(X), atol=1e-10), "parametrisation"
    # scikit-learn's lbfgs stops on a relative decrease (ftol) with gradients ~1e-6: polish its
    # optimum with Newton steps on mean CE + (l2/2)|W|^2 (pseudo-inverse: the Hessian is
    # singular along the common shift of the intercepts, which stay zero-sum)
    C, D = W.shape
    Xt = np.hstack([X, np.ones((N, 1))])
    th = np.hstack([W, b[:, None]])  # C x (D+1)
    Y = np.eye(C)[y]
    reg = np.ones(D + 1)
    reg[D] = 0
    for _ in range(20):
        p = softmax(Xt @ th.T)
        g = (p - Y).T @ Xt / N + l2 * th * reg
        H = np.zeros((C * (D + 1), C * (D + 1)))
        for i in range(N):
            A = np.diag(p[i]) - np.outer(p[i], p[i])
            H += np.kron(A, np.outer(Xt[i], Xt[i])) / N
        H += l2 * np.kron(np.eye(C), np.diag(reg))
        th = th - (np.linalg.pinv(H) @ g.ravel()).reshape(C, D + 1)
    p = softmax(Xt @ th.T)
    g = (p - Y).T @ Xt / N + l2 * th * reg
    assert np.abs(g).max() < 1e-13, "Newton polish did not converge"
    Wopt, bopt = th[:, :D], th[:, D]
    rel = np.abs(Wopt - W).max() / np.abs(Wopt).max()
    assert rel < 1e-3, "scikit-learn is %g from the optimum" % rel
    return m, W, b, Wopt, bopt


def softmax(s):
    p = np.exp(s - s.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def adam_ref(X, y, C, kind, seed, epochs, batch, lr, b1=0.9, b2=0.999, eps=1e-8, l2=0.0,
             init=None, e0=0):
    """init = (W, b) and e0 epochs done: a warm start (new Adam state, epochs e0, e0+1, ...)."""
    N, D = X.shape
    Cn = C if kind == "classifier" else 1
    s0 = rng_u64(seed, 0x1417)
    sc = 1.0 / math.sqrt(D)
    th = [(2.0 * rng_unit(s0, k) - 1.0) * sc for k in range(Cn * D + Cn)]
    if init is not None:
        th = list(init[0]) + list(init[1])
    npar = len(th)
    m = [0.0] * npar
    v = [0.0] * npar
    t = 0
    rows = [list(map(float, r)) for r in X]
    for e in range(epochs):
        perm = list(range(N))
        se = rng_u64(seed, 0x5EED0000 + e0 + e)
        for k in range(N - 1, 0, -1):
            j = rng_u64(se, k) % (k + 1)
            perm[k], perm[j] = perm[j], perm[k]
        for st in range(0, N, batch):
            idx = perm[st:st + batch]
            B = len(idx)
            terms = [[] for _ in range(npar)]
            for i in idx:
                x = rows[i]
                s = []
                for c in range(Cn):
                    a = th[Cn * D + c]
                    for jj in range(D):
                        a += th[c * D + jj] * x[jj]
                    s.append(a)
                if kind == "classifier":
                    lab = int(y[i])
                    mx = max(s)
                    z = 0.0
                    for c in range(Cn):
                        z += math.exp(s[c] - mx)
                    lse = mx + math.log(z)
                    r = [math.exp(s[c] - lse) - (1.0 if c == lab else 0.0) for c in range(Cn)]
                else:
                    r = [2.0 * (s[0] - float(y[i]))]
                for c in range(Cn):
                    if r[c] == 0:
                        continue
                    for jj in range(D):
                        terms[c * D + jj].append(r[c] * x[jj])
                    terms[Cn * D + c].append(r[c])
            g = [math.fsum(tk) / B for tk in terms]
            for k in range(Cn * D):
                g[k] += l2 * th[k]
            t += 1
            bc1 = 1.0 - b1**t
            bc2 = 1.0 - b2**t
            step = lr / bc1
            sb = math.sqrt(bc2)
            for k in range(npar):
                m[k] = b1 * m[k] + (1.0 - b1) * g[k]
                v[k] = b2 * v[k] + (1.0 - b2) * g[k] * g[k]
                th[k] -= step * m[k] / (math.sqrt(v[k]) / sb + eps)
    return th[:Cn * D], th[Cn * D:]


def write_txt(name, arr, fmt):
    with open(os.path.join(HERE, name), "w") as f:
        for row in np.atleast_2d(arr) if arr.ndim > 1 else arr[:, None]:
            f.write(" ".join(fmt % v for v in row) + "\n")


def main():
    rs = np.random.RandomState(20240607)
    doc = {}

    X3, y3 = blobs(rs, 90, 4, 3, 1.5)
    m3, W3, b3, W3o, b3o = logreg(X3, y3, 0.05)
    p3 = m3.predict_proba(X3)
    pred3 = m3.predict(X3)
    doc["logreg3"] = {"X": X3.tolist(), "y": y3.tolist(), "l2": 0.05, "C": 3,
                      "coef": W3.tolist(), "intercept": b3.tolist(),
                      "coef_opt": W3o.tolist(), "intercept_opt": b3o.tolist(),
                      "metrics": {"accuracy": accuracy_score(y3, pred3),
                                  "balanced_accuracy": balanced_accuracy_score(y3, pred3),
                                  "macro_f1": f1_score(y3, pred3, average="macro"),
                                  "cross_entropy": log_loss(y3, p3, eps=1e-300)}}

    X2, y2 = blobs(rs, 60, 3, 2, 1.0)
    _, W2, b2, W2o, b2o = logreg(X2, y2, 0.1)
    doc["logreg2"] = {"X": X2.tolist(), "y": y2.tolist(), "l2": 0.1, "C": 2,
                      "coef": W2.tolist(), "intercept": b2.tolist(),
                      "coef_opt": W2o.tolist(), "intercept_opt": b2o.tolist()}

    Xr = f32(rs.normal(size=(50, 4)))
    yr = f32(Xr @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3 + 0.1 * rs.normal(size=50))
    r = Ridge(alpha=0.1 * 50, solver="cholesky", tol=1e-12).fit(Xr, yr)
    pr = r.predict(Xr)
    # closed form of (1/N)|Xw + b - y|^2 + l2 |w|^2
    Xc, yc = Xr - Xr.mean(0), yr - yr.mean()
    w = np.linalg.solve(Xc.T @ Xc + 50 * 0.1 * np.eye(4), Xc.T @ yc)
    assert np.allclose(w, r.coef_, rtol=1e-12, atol=0), "ridge closed form"
    doc["ridge"] = {"X": Xr.tolist(), "y": yr.tolist(), "l2": 0.1, "coef": r.coef_.tolist(),
                    "intercept": float(r.intercept_),
                    "metrics": {"mse": mean_squared_error(yr, pr), "r2": r2_score(yr, pr)}}

    Xm = rs.normal(size=(40, 3)) + 0.5
    ym = (rs.uniform(size=40) < 0.5).astype(float)
    ym[:2] = [0, 1]
    mp, mn = Xm[ym == 1].mean(0), Xm[ym == 0].mean(0)
    wr = mp - mn
    br = -0.5 * (mp @ mp - mn @ mn)
    nr = np.linalg.norm(wr)
    f = Xm @ (wr / nr) + br / nr
    sig = 1 / (1 + np.exp(-f))
    doc["mdiff"] = {"X": Xm.tolist(), "y": ym.tolist(), "coef_raw": wr.tolist(),
                    "intercept_raw": br, "coef": (wr / nr).tolist(), "intercept": br / nr,
                    "proba1": sig.tolist()}

    Wa, ba = adam_ref(X3, y3, 3, "classifier", seed=7, epochs=4, batch=16, lr=0.05)
    Wr, br2 = adam_ref(Xr, yr, 1, "regressor", seed=11, epochs=3, batch=8, lr=0.05, l2=0.01)
    doc["adam"] = {"classifier": {"seed": 7, "epochs": 4, "batch": 16, "lr": 0.05,
                                  "coef": Wa, "intercept": ba},
                   "regressor": {"seed": 11, "epochs": 3, "batch": 8, "lr": 0.05, "l2": 0.01,
                                 "coef": Wr, "intercept": br2}}

    # warm start (lh_probe_fit_warm): a fit of k1 epochs, then a fit of k2 epochs from its
    # parameters with a new Adam state and the epochs numbered on (k1, k1 + 1, ...)
    warm = {}
    for kind, X, y, C, kw, k1, k2 in [
            ("classifier", X3, y3, 3, dict(seed=7, batch=16, lr=0.05), 2, 2),
            ("regressor", Xr, yr, 1, dict(seed=11, batch=8, lr=0.05, l2=0.01), 2, 1)]:
        first = adam_ref(X, y, C, kind, epochs=k1, **kw)
        W, b = adam_ref(X, y, C, kind, epochs=k2, init=first, e0=k1, **kw)
        # what the reference rules out: one fit of k1 + k2 epochs (no Adam restart), and a
        # second fit that replays epochs 0.. (no epoch numbering across fits)
        one = adam_ref(X, y, C, kind, epochs=k1 + k2, **kw)
        replay = adam_ref(X, y, C, kind, epochs=k2, init=first, e0=0, **kw)
        for other in (one, replay):
            d = np.abs(np.array(W + b) - np.array(other[0] + other[1])).max()
            assert d > 1e-4 * np.abs(np.array(W + b)).max(), "warm start indistinguishable"
        warm[kind] = dict(kw, epochs1=k1, epochs2=k2, coef=W, intercept=b)
    doc["adam_warm"] = warm

    os.makedirs(HERE, exist_ok=True)
    with open(os.path.join(HERE, "probe.json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))
    # command-line inputs: 17 significant digits round-trip float64 exactly
    write_txt("logreg3_X.txt", X3, "%.17g")
    write_txt("logreg3_y.txt", y3.astype(np.int64), "%d")
    write_txt("ridge_X.txt", Xr, "%.17g")
    write_txt("ridge_y.txt", yr, "%.17g")
    write_txt("logreg3_coef.txt", W3, "%.17g")  # scikit-learn's
    write_txt("ridge_coef.txt", r.coef_[None, :], "%.17g")
    print("wrote", HERE)


if __name__ == "__main__":
    main()
