#!/usr/bin/env python3
"""Offline reference values for attention rollout (Abnar & Zuidema 2020) on the small GPT-2.

Run with Debian's python3 (python3-torch, python3-numpy, python3-h5py):
    /usr/bin/python3 tests/golden/make_golden_rollout.py
It rewrites tests/golden/rollout/ (committed, so the test suite never needs Python). Nothing
here uses LatentHook's C code. Re-running gives byte-identical files (fixed seeds, one thread,
HDF5 without timestamps).

The model is the committed random GPT-2 of tests/golden/nn/gpt2 (2 layers, 4 heads, 16
positions, vocabulary 64), rebuilt with the PyTorch classes of make_golden_nn.py (imported, not
modified) from tests/golden/nn/gpt2/model.safetensors; the script first checks that it
reproduces tests/golden/nn/gpt2/expected.h5:/output bit for bit. The attention probabilities
are taken with real PyTorch forward hooks on transformer.h.<l>.attn.attn_dropout (eval mode:
dropout is the identity, so its output is softmax(QK^T / sqrt(d) + causal mask)), in float32.

Rollout, in float64 from those float32 probabilities, with the layers as a stacked tensor:
    Abar_l = mean over the selected heads of A_l,h
    Ahat_l = (alpha I + (1 - alpha) Abar_l) / row sums
    R = Ahat_L @ ... @ Ahat_1   (R_1 = Ahat_1)
The script also checks alpha = 0.5 against the paper's own formulation (A + I, rows
renormalised), that every row of R sums to 1, that R is lower triangular (causal attention:
information flows only from earlier tokens) and that alpha = 1 gives the identity.

Files (rollout/):
  inputs.h5    /short int64 (2, 7): token ids, generator seed 11 (sequences shorter than
               n_positions); the main inputs are tests/golden/nn/gpt2/data.h5:/tokens (5, 16)
  expected.h5  /attention        float32 (5, 2, 4, 16, 16)  probabilities (N, L, H, T, T)
               /attention_short  float32 (2, 2, 4, 7, 7)
               /rollout          float64 (5, 16, 16)  all heads, alpha 0.5
               /rollout_h13_a03  float64 (5, 16, 16)  heads 1 and 3, alpha 0.3
               /rollout_short    float64 (2, 7, 7)    all heads, alpha 0.5
               /head_mean        float64 (5, 2, 16, 16)  Abar_l (all heads), raw
"""
import json
import os
import sys

import h5py
import numpy as np
import torch

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden_nn as G  # noqa: E402  (classes, loaders and writers; never modified here)

OUT = os.path.join(HERE, "rollout")
NN = os.path.join(HERE, "nn")

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def load_gpt2():
    with open(os.path.join(NN, "gpt2", "config.json")) as f:
        cfg = json.load(f)
    model = G.GPT2LMHeadModel(G.GPT2Config(**cfg)).eval()
    _, t = G.read_safetensors(os.path.join(NN, "gpt2", "model.safetensors"))
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in t.items()}, strict=False)
    assert missing == ["lm_head.weight"] and unexpected == [], (missing, unexpected)
    with h5py.File(os.path.join(NN, "gpt2", "data.h5"), "r") as f:
        tokens = torch.from_numpy(f["tokens"][()])
    with h5py.File(os.path.join(NN, "gpt2", "expected.h5"), "r") as f:
        ref = f["output"][()]
    with torch.no_grad():
        assert np.array_equal(model(tokens).numpy(), ref), \
            "gpt2 does not reproduce nn/gpt2/expected.h5"
    return model, tokens, cfg


def attention(model, tokens, n_layer):
    """(N, L, H, T, T) float32 from forward hooks on the attention dropouts."""
    got = {}
    handles = []
    for l in range(n_layer):
        mod = dict(model.named_modules())["transformer.h.%d.attn.attn_dropout" % l]

        def hook(m, inp, out, l=l):
            got[l] = out.detach().clone()
        handles.append(mod.register_forward_hook(hook))
    with torch.no_grad():
        model(tokens)
    for h in handles:
        h.remove()
    return torch.stack([got[l] for l in range(n_layer)], dim=1).numpy()


def rollout(att, heads=None, alpha=0.5):
    """att (N, L, H, T, T) -> R (N, T, T), float64."""
    a = torch.from_numpy(att.astype(np.float64))
    if heads is not None:
        a = a[:, :, heads]
    abar = a.mean(dim=2)                                   # (N, L, T, T)
    T = abar.shape[-1]
    eye = torch.eye(T, dtype=torch.float64)
    ahat = alpha * eye + (1 - alpha) * abar
    ahat = ahat / ahat.sum(dim=-1, keepdim=True)
    r = ahat[:, 0]
    for l in range(1, ahat.shape[1]):
        r = torch.matmul(ahat[:, l], r)
    return r.numpy()


def paper_rollout(att):
    """Abnar & Zuidema's own recipe (alpha 0.5 implied): A + I, renormalise, multiply."""
    out = []
    for s in range(att.shape[0]):
        joint = None
        for l in range(att.shape[1]):
            m = att[s, l].astype(np.float64).mean(axis=0)
            aug = m + np.eye(m.shape[0])
            aug = aug / aug.sum(axis=-1)[..., None]
            joint = aug if joint is None else aug @ joint
        out.append(joint)
    return np.stack(out)


def check(r, name):
    assert np.allclose(r.sum(axis=-1), 1.0, atol=1e-12), name + ": rows do not sum to 1"
    assert np.all(np.triu(r, 1) == 0), name + ": not lower triangular"
    assert np.all(r >= 0), name


def main():
    model, tokens, cfg = load_gpt2()
    L = cfg["n_layer"]
    short = torch.randint(0, cfg["vocab_size"], (2, 7),
                          generator=torch.Generator().manual_seed(11), dtype=torch.int64)
    att = attention(model, tokens, L)
    att_s = attention(model, short, L)
    assert att.shape == (5, L, cfg["n_head"], 16, 16) and att.dtype == np.float32
    r = rollout(att)
    r13 = rollout(att, heads=[1, 3], alpha=0.3)
    rs = rollout(att_s)
    for x, nm in ((r, "rollout"), (r13, "rollout_h13_a03"), (rs, "rollout_short")):
        check(x, nm)
    d = np.abs(r - paper_rollout(att)).max()
    assert d < 1e-14, d
    assert np.array_equal(rollout(att, alpha=1.0), np.broadcast_to(np.eye(16), r.shape))
    head_mean = att.astype(np.float64).mean(axis=2)
    os.makedirs(OUT, exist_ok=True)
    G.h5_write(os.path.join(OUT, "inputs.h5"), {"short": short.numpy()})
    G.h5_write(os.path.join(OUT, "expected.h5"), {
        "attention": att, "attention_short": att_s, "rollout": r, "rollout_h13_a03": r13,
        "rollout_short": rs, "head_mean": head_mean})
    print("rollout: paper formulation agrees to %.1e; R[last row] of sample 0: %s" %
          (d, np.array2string(r[0, -1], precision=3, max_line_width=200)))
    print("rollout: max |R(all, 0.5) - R(heads 1,3, 0.3)| = %.3f" % np.abs(r - r13).max())


if __name__ == "__main__":
    main()
