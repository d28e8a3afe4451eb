#!/usr/bin/env python3
"""Reference values for the shipped digits classifier (jobs/models/digits-mlp) on the shipped
digits (jobs/data/digits.h5:/X, all 1797 images), for tests/cli/test_digits_mlp.c.

Run from the repository root with Debian's python3 (python3-torch, python3-numpy, python3-h5py,
python3-yaml):

    /usr/bin/python3 tests/golden/make_golden_digits_mlp.py

The PyTorch model is built from the shipped model.yaml by make_golden_nn.py's YAML builder and
loaded from model.safetensors (strict: every key, every shape), not taken from the training
script; it is checked against the training script's DigitsMLP (same module names and classes,
bit-identical outputs). Forward hooks on the modules whose name re.match-es `layers\\.\\d+$`
(as tdhook selects them) record what `latenthook cache --key-pattern 'layers\\.\\d+$'` writes.
The full activations would take 3.3 MB, so the fixture keeps a checksum-like subset.

tests/golden/digits_mlp/expected.h5 (K = layers.0 .. layers.6, and "output" for the model's
output; widths 128, 128, 64, 64, 32, 32, 10 and 10):
  /head/<K>      (20, width) float32   the first 20 rows, as PyTorch computes them in float32
  /colsum/<K>    (width,) float64      column sums over all 1797 rows of PyTorch's float32
                                       values, accumulated in float64 (math.fsum)
  /argmax        (1797,) int64         PyTorch's predicted digit (argmax of the output)
  root attributes: rows (20), samples (1797), test_correct (PyTorch's correct predictions on
  jobs/models/digits-mlp/split.h5:/test, asserted equal to the attribute the training script
  recorded there), min_margin (smallest gap between the two largest logits of a row: an
  implementation within float32 rounding of PyTorch has the same argmax on every row when this
  is well above its deviation).
It prints the float64 deviation of the float32 values (tolerance guidance for the test).
"""
import math
import os
import re
import sys

import h5py
import numpy as np
import torch
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "jobs", "models"))
sys.dont_write_bytecode = True

import make_golden_nn as ref  # noqa: E402  (YAML model builder, safetensors reader, h5_write)
import train_digits_mlp as train  # noqa: E402

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
MODEL = os.path.join(ROOT, "jobs", "models", "digits-mlp")
DATA = os.path.join(ROOT, "jobs", "data", "digits.h5")
OUT = os.path.join(HERE, "digits_mlp", "expected.h5")
PATTERN = r"layers\.\d+$"
ROWS = 20


def load_model():
    with open(os.path.join(MODEL, "model.yaml")) as f:
        doc = yaml.safe_load(f)
    assert doc["weights"] == "model.safetensors"
    model = ref.build_yaml_model(doc)
    _, w = ref.read_safetensors(os.path.join(MODEL, doc["weights"]))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in w.items()}, strict=True)
    model.eval()
    return model


def run(model, X):
    """(output, {name: output of the module}) for the modules selected by PATTERN."""
    acts, handles = {}, []
    for name, mod in model.named_modules():
        if name and re.match(PATTERN, name):
            def hook(m, inp, out, name=name):
                assert name not in acts, name  # each layer is called once
                acts[name] = out.detach().clone()
            handles.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        out = model(X)
    for h in handles:
        h.remove()
    return out, acts


def main():
    with h5py.File(DATA, "r") as f:
        X = torch.from_numpy(f["X"][...])  # (1797, 64) float32, raw pixel counts 0..16
        y = f["y"][...]  # (1797,) int64
    with h5py.File(os.path.join(MODEL, "split.h5"), "r") as f:
        test = f["test"][...]
        recorded = int(f.attrs["test_correct"])

    model = load_model()
    names = [n for n, _ in model.named_modules() if n]
    classes = [type(m).__name__ for n, m in model.named_modules() if n]
    theirs = train.DigitsMLP()
    assert names == [n for n, _ in theirs.named_modules() if n], names
    assert classes == [type(m).__name__ for n, m in theirs.named_modules() if n], classes
    theirs.load_state_dict(model.state_dict(), strict=True)

    out, acts = run(model, X)
    with torch.no_grad():
        assert torch.equal(out, theirs(X)), "YAML-built model and training script's differ"
    selected = [n for n in names if re.match(PATTERN, n)]
    assert selected == ["layers.%d" % i for i in range(7)], selected
    assert torch.equal(acts["layers.6"], out)

    pred = out.argmax(1).numpy().astype(np.int64)
    correct = int((pred[test] == y[test]).sum())
    assert correct == recorded, (correct, recorded)
    top2 = out.topk(2, dim=1).values
    margin = float((top2[:, 0] - top2[:, 1]).min())

    ds = {}
    for k, t in list(acts.items()) + [("output", out)]:
        a = t.numpy()
        assert a.dtype == np.float32 and a.shape[0] == X.shape[0]
        ds["head/" + k] = np.ascontiguousarray(a[:ROWS])
        ds["colsum/" + k] = np.array([math.fsum(a[:, j].astype(np.float64))
                                      for j in range(a.shape[1])], dtype=np.float64)
    ds["argmax"] = pred
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    ref.h5_write(OUT, ds)
    with h5py.File(OUT, "r+") as f:
        f.attrs["rows"] = np.int64(ROWS)
        f.attrs["samples"] = np.int64(X.shape[0])
        f.attrs["test_correct"] = np.int64(correct)
        f.attrs["min_margin"] = np.float64(margin)

    # tolerance guidance: the same weights run in float64
    m64 = load_model().double()
    out64, acts64 = run(m64, X.double())
    for k, t in list(acts.items()) + [("output", out)]:
        t64 = (acts64[k] if k != "output" else out64).numpy()
        a = t.numpy().astype(np.float64)
        print("%-9s width %3d  max |value| %7.3f  max |float32 - float64| %.2e  "
              "column sums: max |sum| %9.3f, max deviation %.2e" % (
                  k, a.shape[1], np.abs(a).max(), np.abs(a - t64).max(),
                  np.abs(a.sum(0)).max(), np.abs(a.sum(0) - t64.sum(0)).max()))
    print("test accuracy %d/%d = %.4f (recorded by the training script: %d); smallest top-2 "
          "logit margin %.3g" % (correct, len(test), correct / len(test), recorded, margin))
    print("wrote %s" % OUT)


if __name__ == "__main__":
    main()
