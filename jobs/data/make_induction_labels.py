#!/usr/bin/env python3
"""Writes jobs/data/induction_labels.h5: sequences in the layout of induction.h5:/clean with a
copy target that varies, and that target as a label, for probing the shipped tiny GPT-2
(README "### Probes"). Run offline, once, from anywhere:

    /usr/bin/python3 jobs/data/make_induction_labels.py

Each row is  <bos> x1..x12 | x1..x7  (21 tokens; ids as jobs/models/tiny-gpt2/vocab.json:
a-z = 0-25, 0-9 = 26-35, | = 36, <bos> = 37), twelve distinct symbols as in
jobs/models/train_tiny_gpt2.py's make_dataset (m = 12, k = 8). The last position (the copy
of x7) must predict x8; x8 is drawn uniformly from the eight letters a..h (the label, 0..7 =
its token id), the eleven other symbols uniformly without replacement from the 35 symbols
left. So x8 is not in the last position's own token: a probe can read it there only after the
model has copied it from position 8 (induction). Seeded (NumPy PCG64, seed 2026).
"""
import os

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
N, M, K = 1024, 12, 8  # sequences, symbols, copied index (x8)
NSYM, SEP, BOS = 36, 36, 37
NCLASS = 8  # x8 in a..h


def main():
    rng = np.random.default_rng(2026)
    T = M + 2 + (K - 1)
    x = np.empty((N, T), dtype=np.int64)
    y = np.empty(N, dtype=np.int64)
    for i in range(N):
        target = int(rng.integers(0, NCLASS))
        others = np.array([s for s in range(NSYM) if s != target])
        sym = rng.permutation(others)[:M - 1]
        seq = np.concatenate([sym[:K - 1], [target], sym[K - 1:]])
        x[i, 0] = BOS
        x[i, 1:M + 1] = seq
        x[i, M + 1] = SEP
        x[i, M + 2:] = seq[:K - 1]
        y[i] = target
    assert (x[:, K] == y).all() and (x[:, -1] == x[:, K - 1]).all()
    path = os.path.join(HERE, "induction_labels.h5")
    tmp = path + ".tmp"
    with h5py.File(tmp, "w") as f:
        f.create_dataset("x", data=x, compression="gzip", compression_opts=9, shuffle=True)
        f.create_dataset("y", data=y, compression="gzip", compression_opts=9, shuffle=True)
        f.attrs["description"] = ("<bos> x1..x12 | x1..x7 (tokens of jobs/models/tiny-gpt2); "
                                  "y = x8 in a..h (0..7), the copy target")
        f.attrs["generator"] = "jobs/data/make_induction_labels.py (NumPy default_rng(2026))"
    os.replace(tmp, path)
    print("wrote %s: x %s, y %s, label counts %s" % (path, x.shape, y.shape,
                                                    np.bincount(y, minlength=NCLASS).tolist()))


if __name__ == "__main__":
    main()
