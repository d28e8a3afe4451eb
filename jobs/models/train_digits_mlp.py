#!/usr/bin/env python3
"""Trains the shipped digits classifier (jobs/models/digits-mlp/) on jobs/data/digits.h5.

Run from the repository root with Debian's python3 (python3-torch, python3-numpy, python3-h5py):

    /usr/bin/python3 jobs/models/train_digits_mlp.py

CPU only, one thread, deterministic algorithms, seeded: re-running on the same torch build
rewrites identical files (2 s of training, 5 s with Python's start-up, on the project's shared
2-core machine).

Model. A PyTorch MLP whose only child is `layers`, so that its modules are named as PyTorch
names them (layers.0 ... layers.6) and a tdhook key pattern such as `layers\\.\\d+$` selects
every layer:

    layers = Sequential(Linear(64, 128), ReLU(), Linear(128, 64), ReLU(), Linear(64, 32), ReLU(),
                        Linear(32, 10))                   # 10 logits, one per digit

Input. The model takes digits.h5:/X as it is: 64 raw pixel counts 0..16 per image. It is trained
on x / 16 (pixels in [0, 1]); the scaling is then folded into layers.0 (weight / 16, bias
unchanged). Division by 16 is exact in float32, so the folded model computes the same products
as the trained one; the accuracies printed below are those of the folded model on raw pixels.

Split. Stratified: 36 images of each digit (about 20%; a seeded NumPy permutation, seed 0) are
held out for testing and never seen in training: 360 test and 1437 training images.

Training. Adam (lr 1e-3, weight decay 1e-4), cross-entropy, 60 epochs of shuffled
mini-batches of 32 (torch seed 0 for the initialisation, a generator seeded 1 for the
shuffling), eval mode has nothing to switch (no dropout, no normalisation).

Outputs:
  jobs/models/digits-mlp/model.yaml         LatentHook's YAML model (src/io/model_yaml.c)
  jobs/models/digits-mlp/model.safetensors  state_dict keys layers.<i>.weight / .bias, F32
  jobs/models/digits-mlp/split.h5           /train, /test: int64 row indices into digits.h5,
                                            sorted; root attributes test_correct, test_size,
                                            test_accuracy, train_accuracy (of the folded model)
and it prints the accuracies (quoted in digits-mlp/README.md).
"""
import os
import sys
import time

import h5py
import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_DIR = os.path.join(ROOT, "jobs", "models", "digits-mlp")
DATA = os.path.join(ROOT, "jobs", "data", "digits.h5")

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
sys.dont_write_bytecode = True

WIDTHS = [64, 128, 64, 32, 10]  # input pixels, hidden widths, classes
SCALE = 16.0  # largest pixel count: the model is trained on x / SCALE
TEST_PER_CLASS = 36  # of 174..183 images per digit
EPOCHS, BATCH, LR, WEIGHT_DECAY = 60, 32, 1e-3, 1e-4


class DigitsMLP(nn.Module):
    """layers.0 .. layers.6: Linear and ReLU alternating, 10 logits at the end."""

    def __init__(self):
        super().__init__()
        mods = []
        for i in range(len(WIDTHS) - 1):
            if i:
                mods.append(nn.ReLU())
            mods.append(nn.Linear(WIDTHS[i], WIDTHS[i + 1]))
        self.layers = nn.Sequential(*mods)

    def forward(self, x):
        return self.layers(x)


def load_digits():
    with h5py.File(DATA, "r") as f:
        X = f["X"][...]  # (1797, 64) float32, pixel counts 0..16
        y = f["y"][...]  # (1797,) int64, 0..9
    assert X.dtype == np.float32 and X.shape == (1797, 64) and X.min() == 0 and X.max() == SCALE
    return X, y


def split(y, seed=0):
    """Stratified: TEST_PER_CLASS images of each class held out."""
    rng = np.random.default_rng(seed)
    test = []
    for c in range(10):
        idx = np.flatnonzero(y == c)
        test.append(rng.permutation(idx)[:TEST_PER_CLASS])
    test = np.sort(np.concatenate(test)).astype(np.int64)
    train = np.setdiff1d(np.arange(len(y)), test).astype(np.int64)
    return train, test


def correct(model, X, y):
    with torch.no_grad():
        return int((model(torch.from_numpy(X)).argmax(1) == torch.from_numpy(y)).sum())


# ------------------------------------------------------------------------------- writers
from safetensors_write import write_safetensors  # noqa: E402 (one writer for all)


def model_yaml():
    lines = ["# Digits classifier: written by jobs/models/train_digits_mlp.py (see README.md).",
             "# Input: the 64 raw pixel counts 0..16 of digits.h5:/X (the 1/16 scaling used in",
             "# training is folded into layers.0). Output: 10 logits, one per digit.",
             "weights: model.safetensors",
             "input:",
             "  features: %d" % WIDTHS[0],
             "modules:",
             "  - name: layers",
             "    type: sequential",
             "    modules:"]
    k = 0
    for i in range(len(WIDTHS) - 1):
        if i:
            lines.append('      - {name: "%d", type: relu}' % k)
            k += 1
        lines.append('      - {name: "%d", type: linear, in_features: %d, out_features: %d}'
                     % (k, WIDTHS[i], WIDTHS[i + 1]))
        k += 1
    lines.append("forward: [layers]")
    return "\n".join(lines) + "\n"


def h5_write_split(path, train, test, attrs):
    tmp = path + ".tmp"
    with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
        for k, v in (("train", train), ("test", test)):
            f.create_dataset(k, data=v, compression="gzip", compression_opts=9, shuffle=True)
        for k, v in attrs.items():
            f.attrs[k] = v
    os.replace(tmp, path)


def main():
    t0 = time.time()
    X, y = load_digits()
    train, test = split(y)
    torch.manual_seed(0)
    model = DigitsMLP()
    Xt = torch.from_numpy(X[train] / np.float32(SCALE))
    yt = torch.from_numpy(y[train])
    opt = torch.optim.Adam(model.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    gen = torch.Generator().manual_seed(1)
    for epoch in range(EPOCHS):
        perm = torch.randperm(len(train), generator=gen)
        total = 0.0
        for s in range(0, len(train), BATCH):
            b = perm[s:s + BATCH]
            loss = nn.functional.cross_entropy(model(Xt[b]), yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        if epoch % 10 == 0 or epoch == EPOCHS - 1:
            print("epoch %2d  loss %.4f" % (epoch, total / len(train)), flush=True)
    model.eval()
    acc_scaled = correct(model, X[test] / np.float32(SCALE), y[test])

    # fold the input scaling into layers.0: W (x / 16) + b = (W / 16) x + b, exact in float32
    with torch.no_grad():
        model.layers[0].weight.div_(SCALE)
    n_test = correct(model, X[test], y[test])
    n_train = correct(model, X[train], y[train])
    assert n_test == acc_scaled, (n_test, acc_scaled)
    test_acc, train_acc = n_test / len(test), n_train / len(train)
    print("test accuracy %d/%d = %.4f, train accuracy %d/%d = %.4f (raw pixels, folded model)"
          % (n_test, len(test), test_acc, n_train, len(train), train_acc))

    os.makedirs(MODEL_DIR, exist_ok=True)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(MODEL_DIR, "model.safetensors"), sd)
    with open(os.path.join(MODEL_DIR, "model.yaml"), "w") as f:
        f.write(model_yaml())
    h5_write_split(os.path.join(MODEL_DIR, "split.h5"), train, test,
                   {"test_correct": np.int64(n_test), "test_size": np.int64(len(test)),
                    "test_accuracy": np.float64(test_acc),
                    "train_accuracy": np.float64(train_acc),
                    "about": "row indices into jobs/data/digits.h5; written by "
                             "jobs/models/train_digits_mlp.py"})
    print("parameters: %d (%s)" % (sum(v.size for v in sd.values()),
                                   ", ".join("%s %s" % (k, tuple(v.shape))
                                             for k, v in sorted(sd.items()))))
    print("wrote %s in %.1f s" % (MODEL_DIR, time.time() - t0))


if __name__ == "__main__":
    main()
