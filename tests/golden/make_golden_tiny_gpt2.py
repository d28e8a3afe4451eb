#!/usr/bin/env python3
"""Reference values for the shipped tiny GPT-2 (jobs/models/tiny-gpt2) on the induction data
(jobs/data/induction.h5), for tests/cli/test_tiny_gpt2.c.

Run from the repository root with Debian's python3 (python3-torch, python3-numpy, python3-h5py):

    /usr/bin/python3 tests/golden/make_golden_tiny_gpt2.py

The model is run by make_golden_nn.py's transcription of transformers' GPT2LMHeadModel (eager
attention, eval mode), loaded from the shipped config.json and model.safetensors, not by the
training script's own implementation (which is checked against it here: same logits to 1e-5).
Forward hooks on named modules record and patch activations as tdhook's hooks do.

tests/golden/tiny_gpt2/expected.h5:
  /cache/output            (64, 38) float32  last-position logits of /clean
                                             (latenthook cache --output-reduce last)
  /cache/transformer.h.L.attn.attn_dropout   (64, 4, 21) float32  attention probabilities of
                                             the last query position (--reduce last), L = 0, 1
  /sweep/...               the patching sweep of `latenthook patch --sweep --per-position
                           --metric logit-diff --tokens 0,1` with --inputs /clean and
                           --patched-inputs /corrupted over MODULES (patch.h):
     clean_metric, corrupted_metric (64) float32: logits[T-1, 0] - logits[T-1, 1] (float32
         subtraction) of the clean run and of the unpatched run on /corrupted
     effects_per_sample (M, 64) float32: the metric of the run on /corrupted with module m's
         output replaced by the clean run's (every position)
     effects_positions_per_sample (M, T, 64) float32: the same with only position t replaced
     effects (M), effects_positions (M, T) float64: means over the samples (math.fsum / N)
     normalised_effects (M), normalised_effects_positions (M, T) float64:
         (effect - mean corrupted) / (mean clean - mean corrupted)
It also prints the attention-pattern scores used to choose the heads and samples of the
README's attention heatmaps (previous-token score of layer 0, induction score of layer 1).
"""
import math
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "jobs", "models"))
sys.dont_write_bytecode = True

import make_golden_nn as ref  # noqa: E402  (HF-faithful GPT-2, safetensors reader)
import train_tiny_gpt2 as train  # noqa: E402

torch.set_num_threads(1)
MODEL = os.path.join(ROOT, "jobs", "models", "tiny-gpt2")
DATA = os.path.join(ROOT, "jobs", "data", "induction.h5")
OUT = os.path.join(HERE, "tiny_gpt2", "expected.h5")
MODULES = ["transformer.h.0", "transformer.h.0.attn", "transformer.h.1", "transformer.h.1.attn",
           "transformer.h.1.mlp"]
TOK_A, TOK_B = 0, 1


def load():
    import json
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    model = ref.GPT2LMHeadModel(ref.GPT2Config(**cfg))
    _, sd = ref.read_safetensors(os.path.join(MODEL, "model.safetensors"))
    sd = {k: torch.from_numpy(np.array(v)) for k, v in sd.items()}
    assert "lm_head.weight" not in sd and all(k.startswith("transformer.") for k in sd)
    sd["lm_head.weight"] = sd["transformer.wte.weight"]
    model.load_state_dict(sd, strict=True)
    model.eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    # the training script's own implementation gives the same logits
    mine = train.GPT2LMHead(cfg)
    mine.load_state_dict({k: v for k, v in sd.items() if k != "lm_head.weight"}, strict=True)
    mine.eval()
    return model, mine


def metric(logits):
    last = logits[:, -1]
    return (last[:, TOK_A] - last[:, TOK_B]).numpy().astype(np.float32)  # float32 subtraction


def run_patched(model, ids, clean_acts, module, pos=None):
    def hook(mod, inp, out):
        out = out.clone()
        if pos is None:
            out[...] = clean_acts[module]
        else:
            out[:, pos] = clean_acts[module][:, pos]
        return out
    h = model.get_submodule(module).register_forward_hook(hook)
    with torch.no_grad():
        y = model(ids)
    h.remove()
    return y


def exact_mean(v):
    return math.fsum(float(x) for x in v) / len(v)


def main():
    model, mine = load()
    with h5py.File(DATA, "r") as f:
        clean = torch.from_numpy(f["clean"][()])
        corrupted = torch.from_numpy(f["corrupted"][()])
        full = torch.from_numpy(f["full"][()])
    N, T = clean.shape
    with torch.no_grad():
        dev = (model(full) - mine(full)).abs().max().item()
    assert dev < 1e-5, dev
    print("training implementation vs HF transcription: max |logit difference| %.2e" % dev)

    # cache: last-position logits and last-row attention probabilities
    acts = {}
    hooks = []
    for name, mod in model.named_modules():
        if name in MODULES or name.endswith("attn.attn_dropout"):
            hooks.append(mod.register_forward_hook(
                lambda m, i, o, name=name: acts.__setitem__(name, o.detach().clone())))
    with torch.no_grad():
        logits_clean = model(clean)
    for h in hooks:
        h.remove()
    ds = {"/cache/output": logits_clean[:, -1].numpy()}
    for L in range(2):
        k = "transformer.h.%d.attn.attn_dropout" % L
        ds["/cache/" + k] = acts[k][:, :, -1, :].numpy()

    # sweep
    with torch.no_grad():
        m_clean = metric(logits_clean)
        m_corr = metric(model(corrupted))
    M = len(MODULES)
    eff = np.zeros((M, N), np.float32)
    effp = np.zeros((M, T, N), np.float32)
    for i, mod in enumerate(MODULES):
        eff[i] = metric(run_patched(model, corrupted, acts, mod))
        for t in range(T):
            effp[i, t] = metric(run_patched(model, corrupted, acts, mod, t))
    cm, km = exact_mean(m_clean), exact_mean(m_corr)
    den = cm - km
    means = np.array([exact_mean(eff[i]) for i in range(M)])
    means_p = np.array([[exact_mean(effp[i, t]) for t in range(T)] for i in range(M)])
    ds.update({"/sweep/clean_metric": m_clean, "/sweep/corrupted_metric": m_corr,
               "/sweep/effects_per_sample": eff, "/sweep/effects_positions_per_sample": effp,
               "/sweep/effects": means, "/sweep/normalised_effects": (means - km) / den,
               "/sweep/effects_positions": means_p,
               "/sweep/normalised_effects_positions": (means_p - km) / den})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    ref.h5_write(OUT, ds)

    np.set_printoptions(precision=2, suppress=True, linewidth=200)
    print("clean metric %.4f, corrupted %.4f" % (cm, km))
    for i, mod in enumerate(MODULES):
        print("%-24s %.4f  per position: %s" % (mod, (means[i] - km) / den,
                                                 (means_p[i] - km) / den))

    # attention scores on /full (m = 12: x at 1..12, "|" at 13, the copy at 14..25)
    acts.clear()
    hooks = [model.get_submodule("transformer.h.%d.attn.attn_dropout" % L).register_forward_hook(
        lambda m, i, o, L=L: acts.__setitem__(L, o.detach().clone())) for L in range(2)]
    with torch.no_grad():
        model(full)
    for h in hooks:
        h.remove()
    m = (full.shape[1] - 2) // 2
    q = torch.arange(m + 2, 2 * m + 2)  # copies of x1..xm
    prev = torch.arange(1, full.shape[1])
    for L in range(2):
        a = acts[L]  # (N, H, T, T)
        prev_score = a[:, :, prev, prev - 1].mean(-1)          # (N, H)
        ind_score = a[:, :, q, q - m].mean(-1)                 # to the token after the original
        print("layer %d previous-token score per head %s, induction score per head %s" % (
            L, prev_score.mean(0).numpy(), ind_score.mean(0).numpy()))
        h = int(ind_score.mean(0).argmax()) if L == 1 else int(prev_score.mean(0).argmax())
        s = ind_score[:, h] if L == 1 else prev_score[:, h]
        print("  best head %d; samples by score: %s (scores %s)" % (
            h, s.argsort(descending=True)[:5].tolist(), s.sort(descending=True)[0][:5].numpy()))


if __name__ == "__main__":
    main()
