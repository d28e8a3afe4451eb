#!/usr/bin/env python3
"""Offline reference values for the LowRankBilinearEstimator training (SPEC 3.6, 3.8):
tests/mpi/mpi_bilinear.c and tests/cli/test_probe_bilinear.c.

Run with Debian's python3 and PyTorch 1.13 (CPU):
    python3 tests/golden/make_golden_bilinear.py
It rewrites tests/golden/bilinear/bilinear.json and the text inputs of the command-line test
(tests/golden/bilinear/*.txt, read with h5import). Nothing here uses LatentHook's C code.

The estimator is tdhook's: y = (U h1 + u) * (V h2 + v) + b, U and V with their own biases u, v,
b = 0 at start (absent with bias=False), trained by torch.optim.Adam on the batch-mean
cross-entropy (or MSE) in float64. The only departures from tdhook are the random numbers,
which follow src/analysis/probe_bilinear_fit.c's schedule so that C and Python visit the same
mini-batches from the same start:
  init:  s0 = rng_u64(seed, 0xB111); U, u ~ (2 unit(s0, k) - 1)/sqrt(d1) for k = 0 .. C d1 + C - 1
         (U row-major, then u); V, v likewise with 1/sqrt(d2) for the next C d2 + C counters;
  epoch: Fisher-Yates of 0..N-1 with se = rng_u64(seed, 0x5EED0000 + e), j = rng_u64(se, k) % (k+1),
         k = N-1 .. 1; mini-batches of `batch` in that order, the last one partial.
"""
import json
import math
import os

import numpy as np
import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bilinear")
M64 = (1 << 64) - 1


def rng_u64(seed, counter):
    z = (seed * 0x9E3779B97F4A7C15 + counter) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def rng_unit(seed, counter):
    return (rng_u64(seed, counter) >> 11) * 2.0**-53


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def train(H1, H2, y, C, cls, bias, seed, epochs, batch, lr):
    N, d1 = H1.shape
    d2 = H2.shape[1]
    s0 = rng_u64(seed, 0xB111)
    a1, a2 = 1.0 / math.sqrt(d1), 1.0 / math.sqrt(d2)
    first = [(2.0 * rng_unit(s0, k) - 1.0) * a1 for k in range(C * d1 + C)]
    second = [(2.0 * rng_unit(s0, k) - 1.0) * a2 for k in range(C * d1 + C, C * d1 + C + C * d2 + C)]
    U = torch.tensor(first[:C * d1], dtype=torch.float64).reshape(C, d1).requires_grad_()
    u = torch.tensor(first[C * d1:], dtype=torch.float64).requires_grad_()
    V = torch.tensor(second[:C * d2], dtype=torch.float64).reshape(C, d2).requires_grad_()
    v = torch.tensor(second[C * d2:], dtype=torch.float64).requires_grad_()
    b = torch.zeros(C, dtype=torch.float64, requires_grad=bias)
    params = [U, u, V, v] + ([b] if bias else [])
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    X1 = torch.tensor(H1, dtype=torch.float64)
    X2 = torch.tensor(H2, dtype=torch.float64)
    Y = torch.tensor(y, dtype=torch.int64 if cls else torch.float64)

    def forward(a, c):
        return (a @ U.T + u) * (c @ V.T + v) + b

    def loss_fn(out, t):
        if cls:
            return torch.nn.functional.cross_entropy(out, t)
        return torch.nn.functional.mse_loss(out, t[:, None])

    steps = 0
    for e in range(epochs):
        perm = list(range(N))
        se = rng_u64(seed, 0x5EED0000 + e)
        for k in range(N - 1, 0, -1):
            j = rng_u64(se, k) % (k + 1)
            perm[k], perm[j] = perm[j], perm[k]
        for st in range(0, N, batch):
            idx = torch.tensor(perm[st:st + batch])
            loss = loss_fn(forward(X1[idx], X2[idx]), Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    with torch.no_grad():
        out = forward(X1, X2)
        final = float(loss_fn(out, Y))
        pred = out.argmax(-1) if cls else out[:, 0]
    return {"U": U.detach().tolist(), "u": u.detach().tolist(), "V": V.detach().tolist(),
            "v": v.detach().tolist(), "b": b.detach().tolist() if bias else None,
            "loss": final, "steps": steps, "pred": pred.tolist()}


def write_txt(name, arr):
    arr = np.asarray(arr)
    with open(os.path.join(HERE, name), "w") as f:
        for row in (arr if arr.ndim > 1 else arr[:, None]):
            f.write(" ".join(repr(float(v)) if arr.dtype.kind == "f" else str(int(v)) for v in row) + "\n")


def main():
    rs = np.random.RandomState(20261127)
    os.makedirs(HERE, exist_ok=True)
    doc = {}

    # classification: 3 classes decided by a rank-1 bilinear score per class plus noise
    N, d1, d2, C = 60, 5, 4, 3
    H1 = f32(rs.normal(size=(N, d1)))
    H2 = f32(rs.normal(size=(N, d2)))
    A = rs.normal(size=(C, d1))
    B = rs.normal(size=(C, d2))
    y = np.argmax((H1 @ A.T) * (H2 @ B.T) + 0.3 * rs.normal(size=(N, C)), axis=1)
    cfg = {"num_classes": C, "bias": True, "seed": 3, "epochs": 100, "batch": 16, "lr": 1e-3}
    r = train(H1, H2, y, C, True, True, cfg["seed"], cfg["epochs"], cfg["batch"], cfg["lr"])
    # a second run with a larger step, for the command-line test (accuracy well above chance)
    cfg2 = dict(cfg, lr=0.05, seed=5)
    r2 = train(H1, H2, y, C, True, True, cfg2["seed"], cfg2["epochs"], cfg2["batch"], cfg2["lr"])
    acc2 = float(np.mean(np.array(r2["pred"]) == y))
    assert acc2 > 0.6, acc2
    doc["classifier"] = {"H1": H1.tolist(), "H2": H2.tolist(), "y": y.tolist(), **cfg, **r}
    doc["classifier_cli"] = {**cfg2, **r2, "accuracy": acc2}
    write_txt("cls_H1.txt", H1)
    write_txt("cls_H2.txt", H2)
    write_txt("cls_y.txt", y)
    write_txt("cls_U.txt", np.array(r2["U"]))
    write_txt("cls_V.txt", np.array(r2["V"]))
    with open(os.path.join(HERE, "cls_accuracy.txt"), "w") as fh:
        fh.write(repr(acc2) + "\n")

    # regression without the additive bias, one full batch per epoch (tdhook's batch 128 > N)
    N, d1, d2 = 40, 3, 2
    G1 = f32(rs.normal(size=(N, d1)))
    G2 = f32(rs.normal(size=(N, d2)))
    t = f32((G1 @ np.array([1.0, -0.5, 0.2]) + 0.3) * (G2 @ np.array([0.7, 0.4]) - 0.2)
            + 0.05 * rs.normal(size=N))
    cfg = {"num_classes": 0, "bias": False, "seed": 9, "epochs": 60, "batch": 128, "lr": 1e-2}
    r = train(G1, G2, t, 1, False, False, cfg["seed"], cfg["epochs"], cfg["batch"], cfg["lr"])
    doc["regressor"] = {"H1": G1.tolist(), "H2": G2.tolist(), "y": t.tolist(), **cfg, **r}

    with open(os.path.join(HERE, "bilinear.json"), "w") as fh:
        json.dump(doc, fh, separators=(",", ":"))


if __name__ == "__main__":
    main()
