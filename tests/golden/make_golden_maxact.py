#!/usr/bin/env python3
"""Offline reference values for the maximally activating samples (Chen et al. 2020).

Run with Debian's python3 (python3-torch, python3-numpy, python3-h5py, python3-yaml):
    /usr/bin/python3 tests/golden/make_golden_maxact.py
It rewrites tests/golden/maxact/ (committed, so the test suite never needs Python). Nothing here
uses LatentHook's C code. Re-running gives byte-identical files (fixed seeds, one thread, HDF5
without timestamps).

Models: the ones the C side loads. tdhook's test MLP and the small GPT-2 are rebuilt with the
classes of make_golden_nn.py (imported, not modified) from the COMMITTED
tests/golden/nn/{mlp,gpt2}/model.safetensors (checked against nn/*/expected.h5:/output bit for
bit), and the identity model of tests/golden/latent/identity (Linear(3, 3) with weight I).
Activations are taken with real PyTorch forward hooks (the last call of a module called twice:
the MLP's `activation`), float32, eval mode, no_grad.

Definition (written here independently of the C code): a module's output (B, mid..., U) is
reshaped to (B, M, U) (M = product of the middle dimensions; an output with one row, GPT-2's
position embedding (1, T, C), is broadcast to every sample). score = activation, or
|activation| with `abs`. For sample b and unit u: the best score over the M positions (NaN
ignored) and the FIRST position reaching it (numpy argmax); position -1 when the output is
(B, U). Per unit, the samples with a non-NaN score sorted by (score descending, sample
ascending, position ascending); the first k kept, the rest of the k slots padded with value NaN,
sample -1, position -1. value = the signed activation at (sample, position).

Cases (expected.h5:/<case>/<module>/{values (U, k) float32, samples (U, k) int64,
positions (U, k) int64}; each case group has attributes inputs, key_pattern, k, abs):
  mlp_k3          nn/mlp/data.h5:/inputs (7, 10), linear1, linear2, linear3, activation; k 3
  mlp_k3_abs      the same ranked by |activation|
  mlp_k10         activation only, k 10 > N = 7: padding; many exact ties at 0 (ReLU)
  mlp_small       inputs.h5:/mlp/small = the first 3 rows of the MLP inputs (N = 3 < 4 ranks),
                  linear3, k 2
  gpt2_k4         inputs.h5:/gpt2/tokens (11, 16), transformer.wpe (1, 16, 48): every sample
                  ties, so the first k samples by index win), transformer.h.0 (B, 16, 48),
                  transformer.h.0.attn.attn_dropout (B, 4, 16, 16): positions are flat
                  (head, query) indices, and unit 0 (key 0) scores exactly 1.0 in every sample
                  (query 0 sees only key 0)), transformer.h.1.mlp; k 4
  gpt2_abs        transformer.h.1, ranked by |activation|, k 3
  identity_k6     inputs.h5:/identity/inputs (6, 3) with a NaN in sample 1 (its whole output
                  row is NaN, never selected), k 6 > 5 valid samples: padding; closed form
  identity_k6_abs the same by |activation| (unit 0: |-3| = |3|, the lower sample first)

Robustness of the references: an index comparison is only meaningful where float32 rounding
cannot reorder, so the script asserts that any two neighbouring scores in each selected list
(and the k-th against the best one left out) are either exactly equal (structural ties: ReLU
zeros, the broadcast embedding, probabilities 1.0) or apart by more than 1e-5, and likewise
that each selected position beats every other position of its sample by more than 1e-5 or
ties it exactly (then the first one is kept). The float64 re-run gives the same samples and
positions (asserted); its deviation from the float32 values is printed (tolerance guidance).
"""
import collections
import copy
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

OUT = os.path.join(HERE, "maxact")
NN = os.path.join(HERE, "nn")
MARGIN = 1e-5

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def load_mlp():
    model = G.TestModel().eval()
    _, t = G.read_safetensors(os.path.join(NN, "mlp", "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in t.items()}, strict=True)
    with h5py.File(os.path.join(NN, "mlp", "data.h5"), "r") as f:
        x = torch.from_numpy(f["inputs"][()])
    with h5py.File(os.path.join(NN, "mlp", "expected.h5"), "r") as f:
        ref = f["output"][()]
    with torch.no_grad():
        assert np.array_equal(model(x).numpy(), ref), "mlp does not reproduce nn/mlp/expected.h5"
    return model, x


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
        assert np.array_equal(model(tokens).numpy(), ref), "gpt2 does not reproduce nn/gpt2"
    return model, cfg


class Identity(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(3, 3, bias=False)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(3))

    def forward(self, x):
        return self.linear(x)


def activations(model, x, modules):
    """{module: output of its last call as numpy}, with real forward hooks."""
    got, handles = {}, []
    for name in modules:
        def hook(m, args, out, name=name):
            got[name] = out.detach().numpy().copy()
        handles.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return got


def per_sample(y, B, use_abs):
    """(B, M, U) scores with NaN -> -inf, the signed values, and whether the output has a
    position axis."""
    if y.shape[0] == 1 and B > 1:
        y = np.broadcast_to(y, (B,) + y.shape[1:])
    has_pos = y.ndim >= 3
    U = y.shape[-1]
    v = y.reshape(B, -1, U)
    s = np.abs(v) if use_abs else v
    return s, v, has_pos


def top_k(y, B, k, use_abs):
    s, v, has_pos = per_sample(y, B, use_abs)
    U = s.shape[2]
    values = np.full((U, k), np.nan, dtype=v.dtype)
    samples = np.full((U, k), -1, dtype=np.int64)
    positions = np.full((U, k), -1, dtype=np.int64)
    for u in range(U):
        cands = []
        for b in range(B):
            col = s[b, :, u]
            ok = ~np.isnan(col)
            if not ok.any():
                continue
            masked = np.where(ok, col, -np.inf)
            p = int(np.argmax(masked))   # first maximum
            cands.append((-float(masked[p]), b, p if has_pos else -1, float(v[b, p, u])))
        cands.sort()
        for j, (ns, b, p, val) in enumerate(cands[:k]):
            values[u, j], samples[u, j], positions[u, j] = val, b, p
    return values, samples, positions


def check_margins(name, y, B, k, use_abs, samples, positions):
    """Float32 rounding must not be able to reorder what the C side is compared against."""
    s, _, has_pos = per_sample(y, B, use_abs)
    s = np.where(np.isnan(s), -np.inf, s)
    best = s.max(axis=1)    # (B, U)
    for u in range(s.shape[2]):
        order = sorted(range(B), key=lambda b: (-best[b, u], b))
        order = [b for b in order if np.isfinite(best[b, u])]
        for j in range(min(k, len(order) - 1) if len(order) > 1 else 0):
            a, c = best[order[j], u], best[order[j + 1], u]
            assert a == c or a - c > MARGIN, (name, u, j, a, c)
        for j in range(k):
            b = samples[u, j]
            if b < 0 or not has_pos:
                continue
            col = s[b, :, u]
            p = positions[u, j]
            others = np.delete(col, p)
            assert np.all((others == col[p]) | (col[p] - others > MARGIN)), (name, u, j)
            assert not np.any(col[:p] == col[p]), (name, u, j, "not the first maximum")


def main():
    mlp, x_mlp = load_mlp()
    gpt2, cfg = load_gpt2()
    ident = Identity().eval()
    tokens = torch.randint(0, cfg["vocab_size"], (11, cfg["n_positions"]),
                           generator=torch.Generator().manual_seed(31), dtype=torch.int64)
    x_small = x_mlp[:3].clone()
    nan = float("nan")
    x_id = torch.tensor([[1, -4, 2], [3, 2, nan], [1, 4, -2], [-3, 0, 2], [3, -4, 0],
                         [0, 0, 0]], dtype=torch.float32)
    inputs = collections.OrderedDict([("gpt2/tokens", tokens.numpy()),
                                      ("identity/inputs", x_id.numpy()),
                                      ("mlp/small", x_small.numpy())])
    MLP_IN = "tests/golden/nn/mlp/data.h5:/inputs"
    cases = [
        ("mlp_k3", mlp, x_mlp, MLP_IN, "linear|activation",
         ["linear1", "linear2", "linear3", "activation"], 3, False),
        ("mlp_k3_abs", mlp, x_mlp, MLP_IN, "linear|activation",
         ["linear1", "linear2", "linear3", "activation"], 3, True),
        ("mlp_k10", mlp, x_mlp, MLP_IN, "activation", ["activation"], 10, False),
        ("mlp_small", mlp, x_small, "tests/golden/maxact/inputs.h5:/mlp/small", "linear3",
         ["linear3"], 2, False),
        ("gpt2_k4", gpt2, tokens, "tests/golden/maxact/inputs.h5:/gpt2/tokens",
         r"transformer\.(wpe|h\.0$|h\.0\.attn\.attn_dropout|h\.1\.mlp$)",
         ["transformer.wpe", "transformer.h.0", "transformer.h.0.attn.attn_dropout",
          "transformer.h.1.mlp"], 4, False),
        ("gpt2_abs", gpt2, tokens, "tests/golden/maxact/inputs.h5:/gpt2/tokens",
         r"transformer\.h\.1$", ["transformer.h.1"], 3, True),
        ("identity_k6", ident, x_id, "tests/golden/maxact/inputs.h5:/identity/inputs",
         "linear", ["linear"], 6, False),
        ("identity_k6_abs", ident, x_id, "tests/golden/maxact/inputs.h5:/identity/inputs",
         "linear", ["linear"], 6, True),
    ]
    expected = collections.OrderedDict()
    attrs = collections.OrderedDict()
    devs = []
    for case, model, x, spec, pattern, modules, k, use_abs in cases:
        B = x.shape[0]
        acts = activations(model, x, modules)
        m64 = copy.deepcopy(model).double()
        acts64 = activations(m64, x.double() if x.is_floating_point() else x, modules)
        for name in modules:
            vals, samp, pos = top_k(acts[name], B, k, use_abs)
            check_margins(case + "/" + name, acts[name], B, k, use_abs, samp, pos)
            v64, s64, p64 = top_k(acts64[name], B, k, use_abs)
            assert np.array_equal(samp, s64) and np.array_equal(pos, p64), (case, name)
            ok = samp >= 0
            d = float(np.abs(vals[ok].astype(np.float64) - v64[ok]).max()) if ok.any() else 0.0
            devs.append((case, name, d))
            assert vals.dtype == np.float32
            expected["%s/%s/values" % (case, name)] = vals
            expected["%s/%s/samples" % (case, name)] = samp
            expected["%s/%s/positions" % (case, name)] = pos
        attrs[case] = dict(inputs=spec, key_pattern=pattern, k=k, abs=int(use_abs))

    # closed forms of the identity cases (unit = feature; sample 1 is all NaN)
    e = expected
    assert e["identity_k6/linear/samples"][0].tolist() == [4, 0, 2, 5, 3, -1]
    assert e["identity_k6/linear/values"][0, :5].tolist() == [3, 1, 1, 0, -3]
    assert e["identity_k6_abs/linear/samples"][0].tolist() == [3, 4, 0, 2, 5, -1]
    assert e["identity_k6_abs/linear/values"][0, :5].tolist() == [-3, 3, 1, 1, 0]
    assert e["identity_k6_abs/linear/samples"][1].tolist() == [0, 2, 4, 3, 5, -1]
    assert np.isnan(e["identity_k6/linear/values"][:, 5]).all()
    assert (e["identity_k6/linear/positions"] == -1).all()
    # the broadcast embedding: every sample ties, so samples 0..3 at every unit
    assert (e["gpt2_k4/transformer.wpe/samples"] == np.arange(4)).all()
    # key 0 is attended with probability exactly 1 by query 0 of every head and sample
    assert (e["gpt2_k4/transformer.h.0.attn.attn_dropout/values"][0] == 1.0).all()
    assert (e["gpt2_k4/transformer.h.0.attn.attn_dropout/samples"][0] == np.arange(4)).all()
    assert (e["gpt2_k4/transformer.h.0.attn.attn_dropout/positions"][0] == 0).all()
    # ReLU zeros: ties broken by the sample index
    z = e["mlp_k10/activation/values"] == 0
    assert z.sum() > 20, z.sum()
    print("closed forms and structural ties: as stated")

    if os.path.isdir(OUT):
        import shutil
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    G.h5_write(os.path.join(OUT, "inputs.h5"), inputs)
    G.h5_write(os.path.join(OUT, "expected.h5"), expected)
    with h5py.File(os.path.join(OUT, "expected.h5"), "a") as f:
        for case, a in attrs.items():
            for key, val in a.items():
                f[case].attrs[key] = val
    with h5py.File(os.path.join(OUT, "expected.h5"), "r") as f:
        for key, val in expected.items():
            got = f[key][()]
            assert got.dtype == val.dtype and np.array_equal(got, val, equal_nan=True), key
    dev_lines = "\n".join("| %s | %s | %.1e |" % c for c in devs)
    G.write_text(os.path.join(OUT, "README.md"), README.format(
        torch=torch.__version__, numpy=np.__version__, h5py=h5py.__version__, devs=dev_lines))
    for case, name, d in devs:
        print("%-16s %-36s float64 deviation %.1e" % (case, name, d))


README = """# Golden fixtures for the maximally activating samples

Produced offline by `tests/golden/make_golden_maxact.py` (PyTorch {torch}, NumPy {numpy},
h5py {h5py}); the test suite never runs Python. Regenerate with

    /usr/bin/python3 tests/golden/make_golden_maxact.py

The script's docstring defines the ranking and lists the cases. `inputs.h5`: `/gpt2/tokens`
int64 (11, 16) (`torch.randint(0, 64)`, generator seed 31), `/identity/inputs` float32 (6, 3)
with a NaN, `/mlp/small` float32 (3, 10) (the first 3 rows of `nn/mlp/data.h5:/inputs`).
`expected.h5`: `/<case>/<module>/values` (U, k) float32, `samples` and `positions` (U, k)
int64; each case group carries the attributes `inputs`, `key_pattern`, `k`, `abs`.

Indices are safe to compare exactly: every pair of neighbouring scores in a list is either
exactly equal (a structural tie) or more than 1e-5 apart, and so is every selected position
against the other positions of its sample (asserted by the script); a float64 re-run selects
the same samples and positions. Deviation of the float64 values from the stored float32 ones:

| case | module | max deviation |
|---|---|---|
{devs}
"""

if __name__ == "__main__":
    main()
