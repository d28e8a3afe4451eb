#!/usr/bin/env python3
"""Offline reference values for the latent contexts: ActivationPatching (SPEC 2.2), a patching
sweep, SteeringVectors (SPEC 2.3), ActivationAddition (SPEC 2.4) and SPEC TV-14 / TV-15.

Run with Debian's python3 (python3-torch, python3-numpy, python3-h5py, python3-yaml):
    /usr/bin/python3 tests/golden/make_golden_latent.py
It rewrites tests/golden/latent/ (committed, so the test suite never needs Python). Nothing here
uses LatentHook's C code. Re-running gives byte-identical files (fixed seeds, one thread,
deterministic algorithms, HDF5 without timestamps, hand-written safetensors / YAML).

The models are the ones the C side loads: tdhook's test MLP and the small GPT-2 are rebuilt with
the classes of make_golden_nn.py (imported, not modified) and loaded from the COMMITTED
tests/golden/nn/mlp/model.safetensors and tests/golden/nn/gpt2/model.safetensors (+ config.json);
the script first checks that they reproduce tests/golden/nn/*/expected.h5:/output bit for bit.
Clean inputs are tests/golden/nn/mlp/data.h5:/inputs (7, 10) and tests/golden/nn/gpt2/data.h5:
/tokens (5, 16); the other inputs are drawn here (latent/inputs.h5).

Every intervention is done as tdhook does it, with real PyTorch forward hooks on the named
submodule (registered per module in the order "setting hook, then caching hook", which is what
tdhook's prepend=True setting hook amounts to), in float32, eval mode, under no_grad. The whole
computation is repeated in float64 (same weights and inputs, cast) only to report the float32
rounding noise per dataset in README.md (tolerance guidance); the float64 values are not stored.

Self-checks (the script fails rather than write fixtures that disagree): full replacement of a
module whose output alone determines the model output gives the clean output bit for bit
(mlp linear2, linear2+linear3; gpt2 blocks in the sweep); the unit / position patches and the
steering outputs agree with an independent re-computation (torch.nn.functional for the MLP,
causality for GPT-2: positions before the patched window keep the corrupted logits, a patch at
a position of the last block other than the last one leaves the last-position metric at its
corrupted value); the projection leaves activations orthogonal to v; the MLP additions agree
with W (mean P - mean N) (linear layers commute with the mean); TV-14 / TV-15 give exactly the
SPEC's values.
"""
import collections
import json
import os
import sys

import h5py
import numpy as np
import torch
import yaml

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_golden_nn as G  # noqa: E402  (classes, loaders and writers; never modified here)

OUT = os.path.join(HERE, "latent")
NN = os.path.join(HERE, "nn")
REGEN = "/usr/bin/python3 tests/golden/make_golden_latent.py"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

SWEEP_MODULES = ["transformer.h.0", "transformer.h.1", "transformer.h.0.attn",
                 "transformer.h.1.mlp"]


# ----------------------------------------------------------------- models and inputs
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
    assert model.lm_head.weight is model.transformer.wte.weight
    with h5py.File(os.path.join(NN, "gpt2", "data.h5"), "r") as f:
        tokens = torch.from_numpy(f["tokens"][()])
    with h5py.File(os.path.join(NN, "gpt2", "expected.h5"), "r") as f:
        ref = f["output"][()]
    with torch.no_grad():
        assert np.array_equal(model(tokens).numpy(), ref), \
            "gpt2 does not reproduce nn/gpt2/expected.h5"
    return model, tokens, cfg


def make_inputs(cfg):
    def randn(seed, *shape):
        return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))

    def tokens(seed):
        return torch.randint(0, cfg["vocab_size"], (5, cfg["n_positions"]),
                             generator=torch.Generator().manual_seed(seed), dtype=torch.int64)

    d = collections.OrderedDict()
    d["mlp/patched"] = randn(11, 7, 10)
    d["mlp/positive"] = randn(12, 7, 10)
    d["mlp/negative"] = randn(13, 7, 10)
    d["mlp/v"] = randn(14, 20) / np.sqrt(20.0)   # norm near 1, not exactly 1
    d["gpt2/patched_tokens"] = tokens(21)
    d["gpt2/positive_tokens"] = tokens(22)
    d["gpt2/negative_tokens"] = tokens(23)
    d["gpt2/v"] = randn(24, cfg["n_embd"]) / np.sqrt(cfg["n_embd"])
    for k, v in d.items():
        assert v.dtype == (torch.int64 if "tokens" in k else torch.float32), k
    return d


# ----------------------------------------------------------------- hooked runs (tdhook semantics)
def submodule(model, path):
    return model if path == "" else model.get_submodule(path)


def run(model, x, hooks=()):
    """model(x) under no_grad with forward hooks [(path, fn(output) -> replacement or None)]
    registered in list order; all removed afterwards."""
    handles = []
    try:
        for path, fn in hooks:
            handles.append(submodule(model, path).register_forward_hook(
                lambda m, args, out, fn=fn: fn(out)))
        with torch.no_grad():
            return model(x)
    finally:
        for h in handles:
            h.remove()


def patching(model, clean, patched, modules, patch_fn=None, cache=None):
    """ActivationPatching (SPEC 2.2): returns (clean output, patched output). Per module: a
    setting hook (first) and a caching hook (second); the cache is empty in the clean pass.
    Afterwards `cache` (if given, a dict) holds each module's output in the patched run as
    replaced (the caching hook runs after the setting hook and overwrites the clean entry)."""
    cache = {} if cache is None else cache
    hooks = []
    for key in modules:
        def setter(out, key=key):
            cached = cache.get(key)
            if cached is None:
                return out
            if patch_fn is not None:
                r = patch_fn(module_key=key, output=out, output_to_patch=cached)
                return cached if r is None else r
            return cached

        def store(out, key=key):
            cache[key] = out
        hooks += [(key, setter), (key, store)]
    y_clean = run(model, clean, hooks)
    y_patched = run(model, patched, hooks)
    return y_clean, y_patched


def replace_units(units):
    def fn(module_key, output, output_to_patch):
        out = output.clone()
        out[..., units] = output_to_patch[..., units]
        return out
    return fn


def replace_positions(positions):
    def fn(module_key, output, output_to_patch):
        out = output.clone()
        out[:, positions] = output_to_patch[:, positions]
        return out
    return fn


def steering(model, x, modules, steer_fn):
    """SteeringVectors (SPEC 2.3): one forward, each listed module's output -> steer_fn(...)."""
    return run(model, x, [(m, lambda out, m=m: steer_fn(module_key=m, output=out))
                          for m in modules])


def addition(model, positive, negative, modules, cache_callback=None):
    """ActivationAddition (SPEC 2.4): steer[m] = mean over the (one) batch dim of P_m - N_m."""
    caches = []
    for x in (positive, negative):
        cache = {}
        hooks = []
        for m in modules:
            def store(out, m=m):
                cache[m] = out if cache_callback is None else cache_callback(output=out, key=m)
            hooks.append((m, store))
        run(model, x, hooks)
        caches.append(cache)
    P, N = caches
    return {m: (P[m] - N[m]).mean(dim=0) for m in modules}


def project_out(v):
    vhat = v / v.norm()
    return lambda module_key, output: output - (output @ vhat).unsqueeze(-1) * vhat


def metric(logits):
    return logits[:, -1, 1] - logits[:, -1, 2]


# ----------------------------------------------------------------- expected values
def compute(mlp, gpt2, x_mlp, tok, inp):
    """Every expected dataset (name -> tensor) for one dtype of the models / float inputs."""
    e = collections.OrderedDict()
    # ---- patching
    for case, mods, fn in (("linear2", ["linear2"], None),
                           ("linear2+linear3", ["linear2", "linear3"], None),
                           ("linear2@units=0,3", ["linear2"], replace_units([0, 3])),
                           ("linear2@units=12,13", ["linear2"], replace_units([12, 13]))):
        cache = {}
        c, p = patching(mlp, x_mlp, inp["mlp/patched"], mods, fn, cache)
        e["mlp/patch/%s/clean_output" % case] = c
        e["mlp/patch/%s/patched_output" % case] = p
        if "@" in case:
            # linear2's channels 0 and 3 are negative for every clean and patched sample, so the
            # ReLU hides the units=0,3 patch from the output: the patched activation shows it
            e["mlp/patch/%s/patched_linear2" % case] = cache["linear2"]
    for case, mods, fn in (("transformer.h.1.attn", ["transformer.h.1.attn"], None),
                           ("transformer.h.0@positions=3:7", ["transformer.h.0"],
                            replace_positions(slice(3, 7))),
                           ("transformer.h.0.mlp@units=0:5", ["transformer.h.0.mlp"],
                            replace_units(slice(0, 5)))):
        c, p = patching(gpt2, tok, inp["gpt2/patched_tokens"], mods, fn)
        e["gpt2/patch/%s/clean_output" % case] = c
        e["gpt2/patch/%s/patched_output" % case] = p
    # ---- sweep
    T = tok.shape[1]
    clean_logits = run(gpt2, tok)
    corrupted_logits = run(gpt2, inp["gpt2/patched_tokens"])
    e["gpt2/sweep/clean_metric"] = metric(clean_logits)
    e["gpt2/sweep/corrupted_metric"] = metric(corrupted_logits)
    full, per_pos = [], []
    for m in SWEEP_MODULES:
        c, p = patching(gpt2, tok, inp["gpt2/patched_tokens"], [m])
        assert torch.equal(c, clean_logits)
        full.append(metric(p))
        row = []
        for t in range(T):
            _, p = patching(gpt2, tok, inp["gpt2/patched_tokens"], [m],
                            replace_positions(slice(t, t + 1)))
            row.append(metric(p))
        per_pos.append(torch.stack(row))
    e["gpt2/sweep/metric"] = torch.stack(full)                  # (4, 5)
    e["gpt2/sweep/metric_positions"] = torch.stack(per_pos)     # (4, 16, 5)
    # ---- steering
    v = inp["mlp/v"]
    e["mlp/steer/add/output"] = steering(mlp, x_mlp, ["linear2"],
                                         lambda module_key, output: output + 2.0 * v)
    e["mlp/steer/project/output"] = steering(mlp, x_mlp, ["linear2"], project_out(v))
    e["mlp/steer/scale/output"] = steering(mlp, x_mlp, ["linear2"],
                                           lambda module_key, output: output * 0.5)
    w = inp["gpt2/v"]
    e["gpt2/steer/add/output"] = steering(gpt2, tok, ["transformer.h.0"],
                                          lambda module_key, output: output + 4.0 * w)
    e["gpt2/steer/project/output"] = steering(gpt2, tok, ["transformer.h.1.mlp"], project_out(w))
    # ---- activation addition
    s = addition(mlp, inp["mlp/positive"], inp["mlp/negative"], ["linear1", "linear2"])
    e["mlp/addition/linear1"] = s["linear1"]
    e["mlp/addition/linear2"] = s["linear2"]
    pos, neg = inp["gpt2/positive_tokens"], inp["gpt2/negative_tokens"]
    e["gpt2/addition/transformer.h.1"] = addition(gpt2, pos, neg,
                                                  ["transformer.h.1"])["transformer.h.1"]
    e["gpt2/addition_mean/transformer.h.1"] = addition(
        gpt2, pos, neg, ["transformer.h.1"],
        lambda output, key: output.mean(dim=1))["transformer.h.1"]
    e["gpt2/addition_last/transformer.h.0.mlp"] = addition(
        gpt2, pos, neg, ["transformer.h.0.mlp"],
        lambda output, key: output[:, -1, :])["transformer.h.0.mlp"]
    return e, clean_logits, corrupted_logits


def check(mlp, gpt2, x_mlp, tok, inp, e, clean_logits, corrupted_logits):
    """Independent cheap checks of the float32 values (see the docstring)."""
    F = torch.nn.functional
    p = dict(mlp.state_dict())
    xp = inp["mlp/patched"]
    with torch.no_grad():
        clean = mlp(x_mlp)
        for case in ("linear2", "linear2+linear3", "linear2@units=0,3", "linear2@units=12,13"):
            assert torch.equal(e["mlp/patch/%s/clean_output" % case], clean)
        # full replacement of linear2 (and of linear2 + linear3) reproduces the clean output
        assert torch.equal(e["mlp/patch/linear2/patched_output"], clean)
        assert torch.equal(e["mlp/patch/linear2+linear3/patched_output"], clean)
        assert not torch.allclose(mlp(xp), clean, atol=1e-3)

        def lin(x, n):
            return F.linear(x, p[n + ".weight"], p[n + ".bias"])
        y2c = lin(torch.relu(lin(x_mlp, "linear1")), "linear2")
        y2p = lin(torch.relu(lin(xp, "linear1")), "linear2")
        for units in ([0, 3], [12, 13]):
            case = "linear2@units=%d,%d" % tuple(units)
            y2 = y2p.clone()
            y2[:, units] = y2c[:, units]
            act = e["mlp/patch/%s/patched_linear2" % case]
            assert torch.allclose(act, y2, rtol=0, atol=1e-6), (act - y2).abs().max()
            assert (act - y2p).abs().max() > 1e-2
            ref = lin(torch.relu(y2), "linear3")
            got = e["mlp/patch/%s/patched_output" % case]
            assert torch.allclose(got, ref, rtol=0, atol=1e-6), (got - ref).abs().max()
            assert (got - clean).abs().max() > 1e-3
            if units == [0, 3]:
                assert (y2c[:, units] < 0).all() and (y2p[:, units] < 0).all()
                assert torch.allclose(got, mlp(xp), rtol=0, atol=1e-6)
            else:
                assert (got - mlp(xp)).abs().max() > 1e-3

        def head(y):
            return lin(torch.relu(y), "linear3")
        y2c0 = y2c
        v = inp["mlp/v"]
        vh = v / v.norm()
        for key, y in (("add", y2c0 + 2.0 * v), ("scale", 0.5 * y2c0),
                       ("project", y2c0 - torch.outer(y2c0 @ vh, vh))):
            ref = head(y)
            got = e["mlp/steer/%s/output" % key]
            assert torch.allclose(got, ref, rtol=0, atol=1e-6), (key, (got - ref).abs().max())
            assert (got - clean).abs().max() > 1e-3, key
        yproj = y2c0 - torch.outer(y2c0 @ vh, vh)
        assert (yproj @ vh).abs().max() < 1e-5

        # additions: linear layers commute with the mean over samples
        dx = inp["mlp/positive"].mean(0) - inp["mlp/negative"].mean(0)
        ref = p["linear1.weight"] @ dx
        assert torch.allclose(e["mlp/addition/linear1"], ref, rtol=0, atol=1e-5)
        h_pos = torch.relu(lin(inp["mlp/positive"], "linear1"))
        h_neg = torch.relu(lin(inp["mlp/negative"], "linear1"))
        ref = p["linear2.weight"] @ (h_pos.mean(0) - h_neg.mean(0))
        assert torch.allclose(e["mlp/addition/linear2"], ref, rtol=0, atol=1e-5)

    # GPT-2
    for case in ("transformer.h.1.attn", "transformer.h.0@positions=3:7",
                 "transformer.h.0.mlp@units=0:5"):
        assert torch.equal(e["gpt2/patch/%s/clean_output" % case], clean_logits)
        got = e["gpt2/patch/%s/patched_output" % case]
        assert (got - clean_logits).abs().max() > 1e-3, case
        assert (got - corrupted_logits).abs().max() > 1e-3, case
    # causality: a patch at positions 3..6 leaves positions 0..2 at their corrupted logits
    got = e["gpt2/patch/transformer.h.0@positions=3:7/patched_output"]
    assert torch.allclose(got[:, :3], corrupted_logits[:, :3], rtol=0, atol=1e-6)
    assert (got[:, 3:] - corrupted_logits[:, 3:]).abs().max() > 1e-3
    cm, km = e["gpt2/sweep/clean_metric"], e["gpt2/sweep/corrupted_metric"]
    assert (cm - km).abs().min() > 1e-3, "clean and corrupted metrics too close"
    M, MP = e["gpt2/sweep/metric"], e["gpt2/sweep/metric_positions"]
    # whole blocks: full replacement restores the clean run exactly
    assert torch.equal(M[0], cm) and torch.equal(M[1], cm)
    assert (M[2] - cm).abs().max() > 1e-4 and (M[2] - km).abs().max() > 1e-4
    assert (M[3] - cm).abs().max() > 1e-4 and (M[3] - km).abs().max() > 1e-4
    # the last block and its MLP only reach the last position's logits through position 15
    for i in (1, 3):
        assert torch.allclose(MP[i, :15], km.expand(15, -1), rtol=0, atol=1e-6), i
    assert torch.allclose(MP[1, 15], cm, rtol=0, atol=1e-6)
    assert torch.allclose(MP[3, 15], M[3], rtol=0, atol=1e-6)
    # position 15 alone is every position the metric sees for a per-position module of layer 1;
    # for layer 0 the earlier positions matter through attention
    assert (MP[0, :15] - km).abs().max() > 1e-4
    # steering changes the logits; the projected activations are orthogonal to v
    for key in ("add", "project"):
        assert (e["gpt2/steer/%s/output" % key] - clean_logits).abs().max() > 1e-3, key
    w = inp["gpt2/v"]
    seen = {}
    steer = project_out(w)
    run(gpt2, tok, [("transformer.h.1.mlp", lambda out: steer(None, out)),
                    ("transformer.h.1.mlp", lambda out: seen.__setitem__("y", out))])
    assert (seen["y"] @ (w / w.norm())).abs().max() < 1e-6
    # additions: per-position means of the (16, 48) result equal the mean-first variant
    a = e["gpt2/addition/transformer.h.1"]
    assert torch.allclose(a.mean(0), e["gpt2/addition_mean/transformer.h.1"], rtol=0, atol=1e-6)
    b = addition(gpt2, inp["gpt2/positive_tokens"], inp["gpt2/negative_tokens"],
                 ["transformer.h.0.mlp"])["transformer.h.0.mlp"]
    assert torch.allclose(b[-1], e["gpt2/addition_last/transformer.h.0.mlp"], rtol=0, atol=1e-6)


# ----------------------------------------------------------------- TV-14 / TV-15
IDENTITY_DOC = {
    "weights": "model.safetensors",
    "input": {"features": 3},
    "modules": [{"name": "linear", "type": "linear", "in_features": 3, "out_features": 3,
                 "bias": False}],
    "forward": ["linear"],
}


def make_identity(d):
    text = G.yaml_text(IDENTITY_DOC)
    G.write_text(os.path.join(d, "model.yaml"), text)
    G.write_safetensors(os.path.join(d, "model.safetensors"),
                        {"linear.weight": np.eye(3, dtype=np.float32)})
    doc = yaml.safe_load(text)
    model = G.YamlModel([(s["name"], G.build_module(s, None)) for s in doc["modules"]],
                        doc["forward"]).eval()
    _, t = G.read_safetensors(os.path.join(d, "model.safetensors"))
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in t.items()}, strict=True)
    assert [n for n, _ in model.named_modules()] == ["", "linear"]

    def T(rows):
        return torch.tensor(rows, dtype=torch.float32)

    e = collections.OrderedDict()
    # TV-14, batch 2 and batch 1
    for grp, pos, neg, want in (("addition", [[1, 2, 5], [0, 0, 0]], [[1, 2, 1], [2, 2, 2]],
                                 [-1, -1, 1]),
                                ("addition_b1", [[1, 2, 5]], [[1, 2, 1]], [0, 0, 4])):
        s = addition(model, T(pos), T(neg), ["linear"])["linear"]
        assert torch.equal(s, T(want)), (grp, s)
        e["identity/%s/positive" % grp] = T(pos)
        e["identity/%s/negative" % grp] = T(neg)
        e["identity/%s/linear" % grp] = s
    # TV-15: path "" (the root) as in the SPEC; path "linear" gives the same (asserted)
    x, xp = T([[1, 2, 3]]), T([[10, 20, 30]])

    def col0(module_key, output, output_to_patch):
        output[:, 0] = output_to_patch[:, 0]
        return output

    def none_fn(module_key, output, output_to_patch):
        return None

    e["identity/patch/input"] = x
    e["identity/patch/patched_input"] = xp
    for grp, fn, want in (("patch", None, [[1, 2, 3]]), ("patch_col0", col0, [[1, 20, 30]]),
                          ("patch_none", none_fn, [[1, 2, 3]])):
        for path in ("", "linear"):
            c, p = patching(model, x, xp, [path], fn)
            assert torch.equal(c, x) and torch.equal(p, T(want)), (grp, path, c, p)
        e["identity/%s/clean_output" % grp] = c
        e["identity/%s/patched_output" % grp] = p
    v = T([1, 0, 0])
    for path in ("", "linear"):
        y = steering(model, x, [path], lambda module_key, output: output + v)
        assert torch.equal(y, T([[2, 2, 3]])), (path, y)
    e["identity/steer/input"] = x
    e["identity/steer/v"] = v
    e["identity/steer/output"] = y
    print("SPEC TV-14 and TV-15: values as stated (paths \"\" and \"linear\")")
    return e


# ----------------------------------------------------------------- README
README = """# Golden fixtures for the latent contexts (patching, steering, activation addition)

Produced offline by `tests/golden/make_golden_latent.py` (PyTorch {torch}, NumPy {numpy},
h5py {h5py} / HDF5 {hdf5}, Debian 12 packages); the test suite never runs Python. Regenerate with

    {regen}

(deterministic: re-running rewrites identical bytes). The script imports
`tests/golden/make_golden_nn.py` for the model classes and readers, and loads the weights from
the committed `tests/golden/nn/mlp/model.safetensors` and `tests/golden/nn/gpt2/model.safetensors`
(+ `config.json`), i.e. exactly what the C side loads (it checks that they reproduce
`nn/*/expected.h5:/output` bit for bit). Every value is float32 computed by PyTorch on the CPU in
float32, eval mode, one thread, with real forward hooks on the named submodule (module paths are
the dotted names of `tests/golden/nn/names.json`).

Models: **mlp** = tdhook's test model (`linear1` Linear(10,20) → ReLU → `linear2` Linear(20,20)
→ ReLU → `linear3` Linear(20,5)), output (B, 5). **gpt2** = the 2-layer GPT-2 of `nn/gpt2`
(48 channels, 16 positions, vocabulary 64), output logits (B, 16, 64); `transformer.h.<i>` is
the block's hidden-state output, `transformer.h.<i>.attn` and `.mlp` the attention / MLP outputs
(B, 16, 48) before they are added to the residual stream.

## Files

| file | what |
|---|---|
| `inputs.h5` | the inputs drawn here (below) |
| `expected.h5` | expected outputs (below) |
| `identity/model.yaml`, `identity/model.safetensors` | SPEC TV-14/TV-15 model: one module `linear` = Linear(3, 3, bias: false) with weight I (`linear.weight` F32 (3, 3)), `forward: [linear]` |

Clean inputs (not copied here): mlp `tests/golden/nn/mlp/data.h5:/inputs` float32 (7, 10);
gpt2 `tests/golden/nn/gpt2/data.h5:/tokens` int64 (5, 16).

## inputs.h5

| dataset | dtype, shape | how |
|---|---|---|
| `/mlp/patched` | float32 (7, 10) | `torch.randn`, generator seed 11 |
| `/mlp/positive` | float32 (7, 10) | randn, seed 12 |
| `/mlp/negative` | float32 (7, 10) | randn, seed 13 |
| `/mlp/v` | float32 (20,) | randn(20) / sqrt(20), seed 14 (norm {mlp_vnorm:.6f}, deliberately not 1) |
| `/gpt2/patched_tokens` | int64 (5, 16) | `torch.randint(0, 64)`, seed 21 |
| `/gpt2/positive_tokens` | int64 (5, 16) | randint, seed 22 |
| `/gpt2/negative_tokens` | int64 (5, 16) | randint, seed 23 |
| `/gpt2/v` | float32 (48,) | randn(48) / sqrt(48), seed 24 (norm {gpt2_vnorm:.6f}) |

## expected.h5

Dataset names contain `@`, `=`, `,`, `:` and `+` literally (they are HDF5 link names, not
syntax). Everything is float32 unless stated.

### Activation patching (SPEC 2.2, interchange intervention)

For each case `<case>`: the clean run on the clean inputs caches the listed modules' forward
outputs; the patched run on the patched inputs (`/mlp/patched`, `/gpt2/patched_tokens`) replaces
those modules' outputs by the cached clean ones (full replacement unless stated; the partial
cases are a `patch_fn` that copies the named part of the clean activation into the patched run's
own output and leaves the rest). Stored per case: `<case>/clean_output` (model output of the
clean run, identical for every case of a model) and `<case>/patched_output`.

| group | shape of both datasets | replacement |
|---|---|---|
| `/mlp/patch/linear2/` | (7, 5) | `linear2` output, full (so patched_output == clean_output exactly) |
| `/mlp/patch/linear2+linear3/` | (7, 5) | `linear2` and `linear3` outputs, both full, in one run (== clean_output) |
| `/mlp/patch/linear2@units=0,3/` | (7, 5) | `linear2` output, only channels (last dim) 0 and 3; the other 18 keep the patched run's values. Channels 0 and 3 are negative in both runs for every sample, so the ReLU hides this patch: patched_output equals the unpatched run on `/mlp/patched` (to float32 noise), which is why `patched_linear2` is stored too |
| `/mlp/patch/linear2@units=12,13/` | (7, 5) | as above with channels 12 and 13 (which do reach the output) |
| `/mlp/patch/linear2@units=*/patched_linear2` | (7, 20) | `linear2`'s output in the patched run after the replacement (what the caching hook stores in the patched pass) |
| `/gpt2/patch/transformer.h.1.attn/` | (5, 16, 64) | `transformer.h.1.attn` output, full |
| `/gpt2/patch/transformer.h.0@positions=3:7/` | (5, 16, 64) | `transformer.h.0` output at positions 3, 4, 5, 6 (all 48 channels, every sample); positions 0-2 and 7-15 keep the patched run's values |
| `/gpt2/patch/transformer.h.0.mlp@units=0:5/` | (5, 16, 64) | `transformer.h.0.mlp` output, channels 0..4 at every position and sample |

### Patching sweep (GPT-2)

metric(logits) = `logits[:, -1, 1] - logits[:, -1, 2]` (logit of token 1 minus logit of token 2
at the last position, per sample), shape (5,).

| dataset | shape | what |
|---|---|---|
| `/gpt2/sweep/clean_metric` | (5,) | metric of the clean run (clean tokens) |
| `/gpt2/sweep/corrupted_metric` | (5,) | metric of the run on `/gpt2/patched_tokens`, no patching |
| `/gpt2/sweep/modules` | (4,) fixed-length ASCII strings (`H5T_STRING`, size 20, NULLPAD: `transformer.h.0.attn` fills all 20 bytes, no terminating NUL) | `transformer.h.0`, `transformer.h.1`, `transformer.h.0.attn`, `transformer.h.1.mlp`: the order of the first axis below |
| `/gpt2/sweep/metric` | (4, 5) | [m, i]: metric of sample i when module m's output is fully replaced by its clean value (rows 0, 1 equal clean_metric exactly) |
| `/gpt2/sweep/metric_positions` | (4, 16, 5) | [m, t, i]: metric when only position t of module m's output (all 48 channels) is replaced |

### Steering (SPEC 2.3)

One forward on the clean inputs with one module's output replaced by `steer_fn(output)`;
stored: the model output. v̂ = v / ‖v‖ (v from inputs.h5, ‖v‖ ≠ 1).

| dataset | shape | steer_fn on which module |
|---|---|---|
| `/mlp/steer/add/output` | (7, 5) | `linear2`: y + 2.0 · v |
| `/mlp/steer/project/output` | (7, 5) | `linear2`: y − (y · v̂) v̂ (per sample) |
| `/mlp/steer/scale/output` | (7, 5) | `linear2`: 0.5 · y |
| `/gpt2/steer/add/output` | (5, 16, 64) | `transformer.h.0`: y + 4.0 · v, v broadcast over samples and positions |
| `/gpt2/steer/project/output` | (5, 16, 64) | `transformer.h.1.mlp`: y − (y · v̂) v̂ at every sample and position |

### Activation addition (SPEC 2.4)

steer[m] = mean over the 7 (mlp) / 5 (gpt2) samples of (P_m[i] − N_m[i]), P_m / N_m the module's
forward output (optionally reduced per sample first) on `/<model>/positive*` / `/<model>/negative*`.

| dataset | shape | module, per-sample reduction |
|---|---|---|
| `/mlp/addition/linear1` | (20,) | `linear1`, none |
| `/mlp/addition/linear2` | (20,) | `linear2`, none |
| `/gpt2/addition/transformer.h.1` | (16, 48) | `transformer.h.1`, none (mean over samples only) |
| `/gpt2/addition_mean/transformer.h.1` | (48,) | `transformer.h.1`, each activation first averaged over the 16 positions |
| `/gpt2/addition_last/transformer.h.0.mlp` | (48,) | `transformer.h.0.mlp`, last position (15) only |

### SPEC TV-14 / TV-15 (model `identity/`; exact values)

| dataset | shape | value |
|---|---|---|
| `/identity/addition/positive`, `/identity/addition/negative` | (2, 3) | [[1,2,5],[0,0,0]], [[1,2,1],[2,2,2]] |
| `/identity/addition/linear` | (3,) | ActivationAddition(["linear"]) = [−1, −1, 1] |
| `/identity/addition_b1/positive`, `/identity/addition_b1/negative` | (1, 3) | [[1,2,5]], [[1,2,1]] |
| `/identity/addition_b1/linear` | (3,) | [0, 0, 4] |
| `/identity/patch/input`, `/identity/patch/patched_input` | (1, 3) | [[1,2,3]], [[10,20,30]] |
| `/identity/patch/clean_output`, `/identity/patch/patched_output` | (1, 3) | no patch_fn: [[1,2,3]], [[1,2,3]] |
| `/identity/patch_col0/clean_output`, `/identity/patch_col0/patched_output` | (1, 3) | patch_fn copies column 0 of the clean value into the patched run's output and returns it: [[1,2,3]], [[1,20,30]] |
| `/identity/patch_none/clean_output`, `/identity/patch_none/patched_output` | (1, 3) | patch_fn returns None (→ full replacement): [[1,2,3]], [[1,2,3]] |
| `/identity/steer/input`, `/identity/steer/v` | (1, 3), (3,) | [[1,2,3]], [1,0,0] |
| `/identity/steer/output` | (1, 3) | SteeringVectors, steer_fn = output + v: [[2,2,3]] |

The SPEC patches and steers path `""` (the root); with `forward: [linear]` the root's output is
`linear`'s output, and the script asserts that paths `""` and `"linear"` give the same values.

## Tolerance guidance

The same computation in float64 (same weights and inputs) deviates from the stored float32
values by at most (max |float32 − float64|, largest |value| in brackets):

{devs}

Two exact properties a C port can also assert: full replacement of `linear2` (mlp) or of a whole
block (gpt2 sweep rows 0 and 1) reproduces the clean output bit for bit, and
`metric_positions[1, t, :]` and `metric_positions[3, t, :]` equal `corrupted_metric` for t < 15
to within 1e-6 (layer-1 modules reach the last position's logits only through position 15).
"""


def main():
    mlp, x_mlp = load_mlp()
    gpt2, tok, cfg = load_gpt2()
    inp = make_inputs(cfg)
    e, clean_logits, corrupted_logits = compute(mlp, gpt2, x_mlp, tok, inp)
    check(mlp, gpt2, x_mlp, tok, inp, e, clean_logits, corrupted_logits)
    print("mlp / gpt2: self-checks passed")

    # float64 re-run for the tolerance table
    import copy
    mlp64, gpt64 = copy.deepcopy(mlp).double(), copy.deepcopy(gpt2).double()
    inp64 = {k: (v.double() if v.is_floating_point() else v) for k, v in inp.items()}
    e64, _, _ = compute(mlp64, gpt64, x_mlp.double(), tok, inp64)
    devs = []
    for k, v in e.items():
        d = float((v.double() - e64[k]).abs().max())
        devs.append("| `/%s` | %.1e (%.2f) |" % (k, d, float(e64[k].abs().max())))
        assert d < 1e-4, (k, d)
    devs = "| dataset | deviation |\n|---|---|\n" + "\n".join(devs)

    if os.path.isdir(OUT):
        import shutil
        shutil.rmtree(OUT)
    os.makedirs(os.path.join(OUT, "identity"))
    ident = make_identity(os.path.join(OUT, "identity"))

    inputs = collections.OrderedDict((k, v.numpy()) for k, v in inp.items())
    expected = collections.OrderedDict()
    for k, v in list(e.items()) + list(ident.items()):
        a = v.detach().numpy()
        assert a.dtype == np.float32, k
        expected[k] = np.ascontiguousarray(a)
        if k == "gpt2/sweep/corrupted_metric":
            expected["gpt2/sweep/modules"] = np.array([m.encode("ascii") for m in SWEEP_MODULES],
                                                      dtype="S20")
    G.h5_write(os.path.join(OUT, "inputs.h5"), inputs)
    G.h5_write(os.path.join(OUT, "expected.h5"), expected)
    G.write_text(os.path.join(OUT, "README.md"), README.format(
        torch=torch.__version__, numpy=np.__version__, h5py=h5py.__version__,
        hdf5=h5py.version.hdf5_version, regen=REGEN, devs=devs,
        mlp_vnorm=float(inp["mlp/v"].norm()), gpt2_vnorm=float(inp["gpt2/v"].norm())))

    # read back: every dataset as written
    for path, ds in (("inputs.h5", inputs), ("expected.h5", expected)):
        with h5py.File(os.path.join(OUT, path), "r") as f:
            seen = []
            f.visititems(lambda n, o: seen.append(n) if isinstance(o, h5py.Dataset) else None)
            assert sorted(seen) == sorted(ds), (path, set(seen) ^ set(ds))
            for k, v in ds.items():
                got = f[k][()]
                assert got.dtype == v.dtype and got.shape == v.shape and \
                    np.array_equal(got, v), (path, k)
    total = 0
    for root, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    assert total < 2 << 20, total
    for k, v in expected.items():
        print("  /%s %s %s" % (k, v.dtype, v.shape))
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
