#!/usr/bin/env python3
"""Trains the shipped tiny GPT-2 (jobs/models/tiny-gpt2/) on an induction (copying) task and
writes the intervention dataset jobs/data/induction.h5.

Run from the repository root with Debian's python3 (python3-torch, python3-numpy, python3-h5py):

    /usr/bin/python3 jobs/models/train_tiny_gpt2.py

CPU only, one thread, seeded; 3000 steps (0.1-0.3 s each on the project's shared 2-core
machine; 13.5 minutes while other jobs loaded it). The model is GPT-2 re-implemented in plain
PyTorch with Hugging Face's parameter names and layout (Conv1D weights stored (in, out),
c_attn / c_proj / c_fc, ln_1 / ln_2 / ln_f, wte / wpe, lm_head tied to wte, gelu_new), so that
the folder loads wherever a Hugging Face GPT-2 folder does (config.json + model.safetensors,
keys with the "transformer." prefix, no lm_head.weight: the save_pretrained layout).

Task. Vocabulary of 38 character tokens: a-z (ids 0-25), 0-9 (26-35), "|" (36), "<bos>" (37).
A training sequence (32 tokens) repeats a segment of m = 6..14 symbols after a random gap (see
batch()); every symbol is distinct except the repeat, and only the predictions of x2..xm in the
copy are trained. A first version with the fixed layout "<bos> x1..xm | x1..xm" learnt to copy
by position instead (layer 0 read the separator's position and attended near "the same offset
in the first half"); with the copy at a random offset, the only way is an induction circuit:
previous-token heads in layer 0, induction heads in layer 1 (make_golden_tiny_gpt2.py prints
their attention scores).

Outputs (deterministic for a given torch build):
  jobs/models/tiny-gpt2/config.json, model.safetensors, vocab.json
  jobs/data/induction.h5  (see jobs/data/README.md)
and it prints the held-out copy accuracies (they are quoted in tiny-gpt2/README.md).
"""
import json
import math
import os
import sys
import time

import h5py
import numpy as np
import torch
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL_DIR = os.path.join(ROOT, "jobs", "models", "tiny-gpt2")
DATA = os.path.join(ROOT, "jobs", "data", "induction.h5")

# one thread: on the shared 2-core machine two threads contending with other jobs were ten
# times slower per step than one
torch.set_num_threads(1)
torch.manual_seed(0)
sys.dont_write_bytecode = True

SYMBOLS = [chr(ord("a") + i) for i in range(26)] + [str(i) for i in range(10)]
SEP, BOS = 36, 37
VOCAB = SYMBOLS + ["|", "<bos>"]
NSYM = len(SYMBOLS)

CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.0,
    "bos_token_id": BOS,
    "embd_pdrop": 0.0,
    "eos_token_id": BOS,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 32,
    "n_embd": 64,
    "n_head": 4,
    "n_inner": None,
    "n_layer": 2,
    "n_positions": 32,
    "reorder_and_upcast_attn": False,
    "resid_pdrop": 0.0,
    "scale_attn_by_inverse_layer_idx": False,
    "scale_attn_weights": True,
    "summary_activation": None,
    "summary_first_dropout": 0.1,
    "summary_proj_to_labels": True,
    "summary_type": "cls_index",
    "summary_use_proj": True,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "use_cache": True,
    "vocab_size": len(VOCAB),
}


# ------------------------------------------------------------------------------- the model
class Conv1D(nn.Module):
    """x @ W + b with W stored (in, out), as Hugging Face's Conv1D."""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.C = c["n_head"], c["n_embd"]
        self.c_attn = Conv1D(self.C, 3 * self.C)
        self.c_proj = Conv1D(self.C, self.C)
        n = c["n_positions"]
        self.register_buffer("mask", torch.tril(torch.ones(n, n, dtype=torch.bool)),
                             persistent=False)
        self.last_probs = None

    def forward(self, x):
        B, T, C = x.shape
        hs = C // self.nh
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.nh, hs).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        s = s.masked_fill(~self.mask[:T, :T], torch.finfo(s.dtype).min)
        p = torch.softmax(s, dim=-1)
        self.last_probs = p.detach()
        y = (p @ v).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c_fc = Conv1D(c["n_embd"], 4 * c["n_embd"])
        self.c_proj = Conv1D(4 * c["n_embd"], c["n_embd"])

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        eps = c["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(c["n_embd"], eps=eps)
        self.attn = Attention(c)
        self.ln_2 = nn.LayerNorm(c["n_embd"], eps=eps)
        self.mlp = MLP(c)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c["vocab_size"], c["n_embd"])
        self.wpe = nn.Embedding(c["n_positions"], c["n_embd"])
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)
        self.h = nn.ModuleList([Block(c) for _ in range(c["n_layer"])])
        self.ln_f = nn.LayerNorm(c["n_embd"], eps=c["layer_norm_epsilon"])

    def forward(self, ids):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        for b in self.h:
            x = b(x)
        return self.ln_f(x)


class GPT2LMHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.transformer = Transformer(c)

    def forward(self, ids):
        return self.transformer(ids) @ self.transformer.wte.weight.t()  # tied lm_head


# ------------------------------------------------------------------------------- the task
def batch(gen, n, T=32, m_lo=6, m_hi=14):
    """n training sequences (n, T) int64 and the loss mask (mask[i, t]: position t's prediction
    of ids[i, t + 1] is trained). A sequence is  <bos> A x1..xm [|] G x1..xm C  where A, G, C
    are random gaps (possibly empty), "|" is there half of the time, and every symbol is
    distinct except the repeated segment: the copy's offset is random, so only an induction
    circuit (find the earlier occurrence of the current token, predict what followed it)
    predicts x2..xm of the copy. Only those m - 1 predictions are trained."""
    ids = torch.empty(n, T, dtype=torch.int64)
    mask = torch.zeros(n, T, dtype=torch.bool)
    for i in range(n):
        m = int(torch.randint(m_lo, m_hi + 1, (1,), generator=gen))
        sep = int(torch.randint(0, 2, (1,), generator=gen))
        free = T - 1 - 2 * m - sep  # gap tokens in A, G, C
        cut = torch.sort(torch.randint(0, free + 1, (2,), generator=gen)).values
        a, g = int(cut[0]), int(cut[1] - cut[0])
        c = free - a - g
        sym = torch.randperm(NSYM, generator=gen)
        x, gaps = sym[:m], sym[m:m + free]
        parts = [torch.tensor([BOS]), gaps[:a], x] + ([torch.tensor([SEP])] if sep else []) + \
            [gaps[a:a + g], x, gaps[a + g:]]
        ids[i] = torch.cat(parts)
        start = 1 + a + m + sep + g  # first token of the copy
        mask[i, start:start + m - 1] = True
        assert c >= 0 and ids[i, start + m - 1] == x[-1]
    return ids, mask


def copy_accuracy(model, gen, n=2000):
    """Greedy accuracy of the trained predictions (x2..xm of the copy) on held-out sequences."""
    with torch.no_grad():
        ids, mask = batch(gen, n)
        pred = model(ids)[:, :-1].argmax(-1)
        ok = pred == ids[:, 1:]
        return ok[mask[:, :-1]].float().mean().item()


# ------------------------------------------------------------------------------- writers
from safetensors_write import write_safetensors  # noqa: E402 (one writer for all)


def save_model(model):
    os.makedirs(MODEL_DIR, exist_ok=True)
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    write_safetensors(os.path.join(MODEL_DIR, "model.safetensors"), sd)
    with open(os.path.join(MODEL_DIR, "config.json"), "w") as f:
        json.dump(CONFIG, f, indent=2, sort_keys=True)
        f.write("\n")
    with open(os.path.join(MODEL_DIR, "vocab.json"), "w") as f:
        json.dump({t: i for i, t in enumerate(VOCAB)}, f, indent=0)
        f.write("\n")


# intervention dataset: m = 12, the copy of x1..x7 in the second half, so the last position
# (index 20, the copy of x7) must predict x8 (index 8). Clean: x8 = "a"; corrupted: x8 = "b";
# nothing else differs. "a" and "b" appear nowhere else.
DATA_M, DATA_K, DATA_N = 12, 8, 64
TOK_A, TOK_B = 0, 1


def make_dataset(seed=7):
    gen = torch.Generator().manual_seed(seed)
    m, k, n = DATA_M, DATA_K, DATA_N
    full = torch.empty(n, 2 * m + 2, dtype=torch.int64)
    others = torch.arange(2, NSYM)  # neither "a" nor "b"
    for i in range(n):
        x = others[torch.randperm(NSYM - 2, generator=gen)[:m]]
        x[k - 1] = TOK_A
        full[i, 0] = BOS
        full[i, 1:m + 1] = x
        full[i, m + 1] = SEP
        full[i, m + 2:] = x
    T = m + 2 + (k - 1)
    clean = full[:, :T].clone()
    corrupted = clean.clone()
    corrupted[:, k] = TOK_B
    return full, clean, corrupted


def h5_write(path, datasets, attrs):
    tmp = path + ".tmp"
    with h5py.File(tmp, "w", libver="earliest", track_order=False) as f:
        for k, v in datasets.items():
            d = f.create_dataset(k, data=v)
            for ak, av in attrs.get(k, {}).items():
                d.attrs[ak] = av
    os.replace(tmp, path)


def main():
    t0 = time.time()
    model = GPT2LMHead(CONFIG)
    gen = torch.Generator().manual_seed(1)
    steps, bs = 3000, 64
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 200) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    for step in range(steps):
        ids, mask = batch(gen, bs)
        logits = model(ids)[:, :-1]
        loss = nn.functional.cross_entropy(logits[mask[:, :-1]], ids[:, 1:][mask[:, :-1]])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            acc = copy_accuracy(model, torch.Generator().manual_seed(99), n=256)
            print("step %4d  loss %.4f  copy accuracy %.3f  %.0f s" % (
                step, loss.item(), acc, time.time() - t0), flush=True)
    model.eval()
    acc = copy_accuracy(model, torch.Generator().manual_seed(12345))
    print("held-out copy accuracy (2000 sequences, x2..xm of the copy): %.4f" % acc)
    save_model(model)

    full, clean, corrupted = make_dataset()
    with torch.no_grad():
        lc = model(clean)[:, -1]
        lp = model(corrupted)[:, -1]
        pf = model(full)[:, :-1].argmax(-1)
    print("dataset: last-position logit diff a-b clean %.3f corrupted %.3f; argmax a on clean "
          "%d/%d, b on corrupted %d/%d; /full copy accuracy (x2..xm) %.4f" % (
              (lc[:, TOK_A] - lc[:, TOK_B]).mean(), (lp[:, TOK_A] - lp[:, TOK_B]).mean(),
              int((lc.argmax(-1) == TOK_A).sum()), DATA_N,
              int((lp.argmax(-1) == TOK_B).sum()), DATA_N,
              (pf[:, DATA_M + 2:] == full[:, DATA_M + 3:]).float().mean()))
    h5_write(DATA, {"clean": clean.numpy(), "corrupted": corrupted.numpy(),
                    "full": full.numpy()}, {})
    print("done in %.0f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
