#!/usr/bin/python3
"""torch_gpt2.py: the PyTorch peer of bench_gpt2.c (issue 5, point 7): GPT-2 forward tokens/s.

Two commands:

  torch_gpt2.py write DIR [--seed S]
      Writes a random GPT-2-small model directory as Hugging Face's save_pretrained lays it
      out: DIR/config.json (sorted keys, indent 2; n_layer 12, n_head 12, n_embd 768,
      n_positions = n_ctx 1024, vocab 50257) and DIR/model.safetensors ("transformer."-prefixed
      keys, no lm_head.weight: tied to transformer.wte.weight, no attention buffers), about
      500 MB, plus DIR/torch_gpt2.json (how it was made; run_bench_gpt2.sh caches on it).
      The model and its weights are tests/golden/make_golden_nn.py's (imported, not copied):
      its GPT2LMHeadModel (transformers' modeling_gpt2.py semantics and module names) and its
      build_gpt2() initialisation, drawn from a generator seeded S (default 3): embeddings
      N(0, 0.02^2), c_proj N(0, (0.02 / sqrt(2 n_layer))^2), c_attn and c_fc unit gain
      N(0, 1 / n_embd), biases 0.02 randn, LayerNorm weight 1 + 0.1 randn, bias 0.1 randn.
      The safetensors writer is make_golden_nn.write_safetensors (it reads the file back and
      compares it bit for bit).

  torch_gpt2.py time DIR [--batch 8] [--tokens 128] [--seed 1] [--reps 3] [--threads 1]
                         [--ref-out FILE --ref-batches P]
      Loads DIR (the weights come from the file, so they are the C side's by construction),
      builds the token batch, runs the forward (eval, torch.inference_mode, float32) once to
      warm up and then --reps times, each timed alone with perf_counter, and prints a JSON
      line: tokens/s (mean and best), GFLOP/s, torch version, threads, OpenBLAS core and
      threads, peak RSS and a checksum of the logits. --ref-out also writes the checksums of
      batches 0 .. P-1 (batch 0 from the timed runs, the others computed after the timing)
      in the text format bench_gpt2.c --ref reads, so that each of its P ranks, which runs
      batch = its rank, is validated against PyTorch.

Tokens (identical in bench_gpt2.c): sample s (global: batch b holds samples b B .. b B + B - 1)
at position t holds token lh_rng_u64(seed, s 2^32 + t) mod vocab, lh_rng_u64 being SplitMix64
(include/latenthook/rng.h).

Checksum of one batch's logits (B, T, V), float32, flat index i in C order (same in C):
  sum     sum of the logits in float64      compared within 1e-4 of sum |logits|
  sumsq   sum of their squares in float64  compared within 1e-4 relative
  values  logits[idx_k], idx_k = lh_rng_u64(0xC4EC, k) mod (B T V), k = 0 .. 15, compared
          within 1e-4 of max(|value|, rms), rms = sqrt(sumsq / (B T V)).

Threads: --threads N sets OPENBLAS_NUM_THREADS and OMP_NUM_THREADS before torch is imported
(PyTorch's CPU float32 matmuls go to OpenBLAS's sgemm, which does not follow
torch.set_num_threads) and calls torch.set_num_threads(N). Set OPENBLAS_CORETYPE in the
environment as for the C benchmark (tests/bench/README.md). Use Debian's /usr/bin/python3
(python3-torch 1.13, python3-numpy, and python3-h5py / python3-yaml, which make_golden_nn.py
imports).
"""
import argparse
import json
import math
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "golden")

MASK = (1 << 64) - 1
GOLD, M1, M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
CHECK_SEED = 0xC4EC  # the checksum's value positions (bench_gpt2.c: CHECK_SEED)
CHECK_VALUES = 16
REF_MAGIC = "lh_gpt2_ref"

# GPT-2 small, as Hugging Face's "gpt2" config.json has it (the keys make_golden_nn.py uses)
SMALL = {"n_layer": 12, "n_head": 12, "n_embd": 768, "n_positions": 1024, "n_ctx": 1024,
         "vocab_size": 50257, "bos_token_id": 50256, "eos_token_id": 50256}


def splitmix(np, seed, ctr):
    """lh_rng_u64(seed, ctr) for a uint64 array of counters (arithmetic mod 2^64)."""
    z = ctr + np.uint64((seed * GOLD) & MASK)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(M1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(M2)
    return z ^ (z >> np.uint64(31))


def make_tokens(np, seed, sample0, B, T, V):
    """(B, T) int64: token(s, t) = lh_rng_u64(seed, s 2^32 + t) mod V, s = sample0 + row."""
    s = np.arange(sample0, sample0 + B, dtype=np.uint64)[:, None]
    t = np.arange(T, dtype=np.uint64)[None, :]
    with np.errstate(over="ignore"):
        u = splitmix(np, seed, (s << np.uint64(32)) | t)
    return (u % np.uint64(V)).astype(np.int64)


def check_indices(np, numel):
    with np.errstate(over="ignore"):
        u = splitmix(np, CHECK_SEED, np.arange(CHECK_VALUES, dtype=np.uint64))
    return [int(i) for i in u % np.uint64(numel)]


def checksum(np, logits):
    """The checksum of module docstring: sum, sum of squares, values at check_indices."""
    x = logits.reshape(-1)
    s = ss = 0.0
    for i0 in range(0, x.size, 1 << 22):  # float64 in chunks: no 400 MB float64 copy
        c = x[i0:i0 + (1 << 22)].astype(np.float64)
        s += float(c.sum())
        ss += float(np.dot(c, c))
    idx = check_indices(np, x.size)
    return {"sum": s, "sumsq": ss, "abs_max": float(np.abs(x).max()),
            "values": [[i, float(x[i])] for i in idx]}


def forward_flops(cfg, T):
    """Flops of one forward per token (the same count as bench_gpt2.c): 2 C (3C + C + 4C + 4C)
    per layer for the four matrix products, 2 * 2 T C per layer for q k^T and probs v over the
    full T x T (as PyTorch computes them; a causal kernel could skip half), 2 C V for lm_head.
    LayerNorm, GELU, softmax and the adds are not counted."""
    L, C, V = cfg["n_layer"], cfg["n_embd"], cfg["vocab_size"]
    return L * (2 * C * 12 * C + 4 * T * C) + 2 * C * V


def blas_lib():
    import ctypes
    for lib in ("libblas.so.3", "libopenblas.so.0"):
        try:
            h = ctypes.CDLL(lib)
            h.openblas_get_corename.restype = ctypes.c_char_p
            return h
        except (OSError, AttributeError):
            continue
    return None


def golden():
    sys.path.insert(0, GOLDEN)
    import make_golden_nn as g  # sets torch threads to 1 and deterministic mode: undone below
    import torch
    torch.use_deterministic_algorithms(False)
    return g


def small_config(g):
    cfg = dict(g.GPT2_CONFIG)
    cfg.update(SMALL)
    return cfg


# ----------------------------------------------------------------- write
def cmd_write(a):
    import numpy as np
    import torch
    g = golden()
    torch.set_num_threads(a.threads)
    os.makedirs(a.dir, exist_ok=True)
    cfg = small_config(g)
    t0 = time.perf_counter()
    model = g.build_gpt2(cfg, seed=a.seed)
    names = [(n, type(m).__name__) for n, m in model.named_modules()]
    assert names == g.hf_gpt2_names(cfg["n_layer"]), "module names differ from Hugging Face's"
    sd = g.state_numpy(model, skip=("lm_head.weight",))
    del model
    assert len(sd) == 4 + 12 * cfg["n_layer"] and all(k.startswith("transformer.") for k in sd)
    path = os.path.join(a.dir, "model.safetensors")
    for f in ("model.safetensors", "torch_gpt2.json"):  # an interrupted write leaves no cache
        if os.path.exists(os.path.join(a.dir, f)):
            os.remove(os.path.join(a.dir, f))
    g.write_text(os.path.join(a.dir, "config.json"),
                 json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    g.write_safetensors(path + ".tmp", sd)
    os.replace(path + ".tmp", path)
    nparam = sum(v.size for v in sd.values())
    info = {"made_by": "tests/bench/torch_gpt2.py write", "seed": a.seed,
            "init": "make_golden_nn.build_gpt2", "torch": torch.__version__,
            "numpy": np.__version__, "parameters": nparam,
            "bytes": os.path.getsize(path), "config": SMALL}
    g.write_text(os.path.join(a.dir, "torch_gpt2.json"), json.dumps(info, indent=1) + "\n")
    print(f"wrote {a.dir}: {nparam} parameters, {info['bytes'] / 2**20:.0f} MiB, "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


# ----------------------------------------------------------------- time
def load_model(g, np, torch, d):
    """GPT2LMHeadModel from DIR: config.json, then the safetensors tensors copied one by one
    from a read-only memory map into the parameters (no second full copy in memory)."""
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    model = g.GPT2LMHeadModel(g.GPT2Config(**cfg)).eval()
    params = dict(model.named_parameters())  # lm_head.weight is wte's: listed once
    path = os.path.join(d, "model.safetensors")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    n = int(mm[:8].view("<u8")[0])
    hdr = json.loads(bytes(mm[8:8 + n]).decode("utf-8"))
    seen = set()
    with torch.no_grad():
        for name, info in hdr.items():
            if name == "__metadata__":
                continue
            assert info["dtype"] == "F32", (name, info["dtype"])
            b, e = info["data_offsets"]
            v = mm[8 + n + b:8 + n + e].view("<f4").reshape(info["shape"])
            p = params[name]
            assert tuple(p.shape) == tuple(v.shape), name
            p.copy_(torch.from_numpy(np.array(v)))
            seen.add(name)
    assert seen == set(params), sorted(set(params) ^ seen)
    assert model.lm_head.weight is model.transformer.wte.weight
    del mm
    return model, cfg


def write_ref(path, a, cfg, sums, torch_version):
    B, T, V = a.batch, a.tokens, cfg["vocab_size"]
    with open(path + ".tmp", "w") as f:
        f.write(f"# torch_gpt2.py reference logits checksums, PyTorch {torch_version}, "
                f"model {os.path.abspath(a.dir)}\n")
        f.write(f"{REF_MAGIC} 1 {B} {T} {V} {a.seed} {len(sums)} {CHECK_VALUES}\n")
        for b, c in enumerate(sums):
            f.write(f"batch {b} {c['sum']!r} {c['sumsq']!r}\n")
            for i, v in c["values"]:
                f.write(f"{i} {v!r}\n")
    os.replace(path + ".tmp", path)


def cmd_time(a):
    import numpy as np
    import torch
    g = golden()
    torch.set_num_threads(a.threads)
    lib = blas_lib()
    core = lib.openblas_get_corename().decode() if lib else "unknown"
    blas_threads = lib.openblas_get_num_threads() if lib else -1
    model, cfg = load_model(g, np, torch, a.dir)
    B, T, V = a.batch, a.tokens, cfg["vocab_size"]
    if not 1 <= T <= cfg["n_positions"]:
        raise SystemExit(f"--tokens must be in [1, {cfg['n_positions']}]")
    ids = torch.from_numpy(make_tokens(np, a.seed, 0, B, T, V))

    times = []
    with torch.inference_mode():
        logits = model(ids)  # warm-up: OpenBLAS buffers, allocator, page faults
        for _ in range(a.reps):
            del logits
            t0 = time.perf_counter()
            logits = model(ids)
            times.append(time.perf_counter() - t0)
    lg = logits.numpy()
    assert lg.shape == (B, T, V) and lg.dtype == np.float32
    finite = bool(np.isfinite(lg).all())
    sums = [checksum(np, lg)]
    del logits, lg
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with torch.inference_mode():
        for b in range(1, a.ref_batches):
            x = model(torch.from_numpy(make_tokens(np, a.seed, b * B, B, T, V))).numpy()
            finite = finite and bool(np.isfinite(x).all())
            sums.append(checksum(np, x))
            del x
    if a.ref_out:
        write_ref(a.ref_out, a, cfg, sums, torch.__version__)

    fl = forward_flops(cfg, T) * B * T
    mean, best = sum(times) / len(times), min(times)
    rec = {"bench": "torch_gpt2", "torch": torch.__version__, "threads": a.threads,
           "torch_threads": torch.get_num_threads(), "openblas_threads": blas_threads,
           "blas_core": core, "B": B, "T": T, "seed": a.seed, "reps": a.reps,
           "n_layer": cfg["n_layer"], "n_head": cfg["n_head"], "n_embd": cfg["n_embd"],
           "vocab": V, "forward_s_mean": round(mean, 6), "forward_s_min": round(best, 6),
           "forward_s_max": round(max(times), 6),
           "tokens_per_s": B * T / mean, "tokens_per_s_best": B * T / best,
           "flops_per_forward": fl, "gflops": fl / mean * 1e-9,
           "peak_rss_bytes": rss, "finite": finite,
           "malloc_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")},
           "logits_sum": sums[0]["sum"], "logits_sumsq": sums[0]["sumsq"],
           "logits_abs_max": sums[0]["abs_max"], "logits_values": sums[0]["values"][:4]}
    if not a.json:
        print(f"# torch {torch.__version__} GPT-2 forward (eval, inference_mode, float32): "
              f"B {B} T {T}, n_layer {cfg['n_layer']} n_head {cfg['n_head']} n_embd "
              f"{cfg['n_embd']} vocab {V}; {a.threads} thread(s) (torch {rec['torch_threads']}, "
              f"OpenBLAS {blas_threads}), OpenBLAS core {core}")
        print(f"forward    mean {mean:8.3f} s  best {best:8.3f}  worst {max(times):8.3f} "
              f"({a.reps} reps)  {rec['tokens_per_s']:.1f} tokens/s (best "
              f"{rec['tokens_per_s_best']:.1f}), {rec['gflops']:.2f} GFLOP/s")
        print(f"logits     sum {sums[0]['sum']:.17g}  sumsq {sums[0]['sumsq']:.17g}  |max| "
              f"{sums[0]['abs_max']:.6g}  finite {finite}"
              + (f"; reference of {len(sums)} batch(es) in {a.ref_out}" if a.ref_out else ""))
    print(json.dumps(rec))
    return 0 if finite else 3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write", help="write a random GPT-2-small model directory")
    w.add_argument("dir", nargs="?", default="/tmp/lh_gpt2_small")
    w.add_argument("--seed", type=int, default=3)
    w.add_argument("--threads", type=int, default=1)
    t = sub.add_parser("time", help="time the PyTorch forward of a model directory")
    t.add_argument("dir", nargs="?", default="/tmp/lh_gpt2_small")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--tokens", type=int, default=128)
    t.add_argument("--seed", type=int, default=1, help="token seed")
    t.add_argument("--reps", type=int, default=3)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--ref-out", help="write the logits checksums for bench_gpt2.c --ref")
    t.add_argument("--ref-batches", type=int, default=1,
                   help="batches 0 .. P-1 in --ref-out (bench_gpt2.c rank r runs batch r)")
    t.add_argument("--json", action="store_true", help="print only the JSON record")
    a = ap.parse_args()
    if a.threads < 1 or (a.cmd == "time" and (a.batch < 1 or a.reps < 1 or a.ref_batches < 1)):
        ap.error("--threads, --batch, --reps and --ref-batches must be >= 1")
    # before torch (and its OpenBLAS) is loaded: OpenBLAS reads these once, at load time
    os.environ["OPENBLAS_NUM_THREADS"] = str(a.threads)
    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    sys.dont_write_bytecode = True
    return cmd_write(a) if a.cmd == "write" else cmd_time(a)


if __name__ == "__main__":
    sys.exit(main())
