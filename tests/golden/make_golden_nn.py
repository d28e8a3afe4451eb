#!/usr/bin/env python3
"""Offline reference values for the hooked forward pass (model loading, layer kernels, hooks).

Run with Debian's python3 (python3-torch, python3-numpy, python3-h5py, python3-yaml):
    /usr/bin/python3 tests/golden/make_golden_nn.py
It rewrites tests/golden/nn/ (committed, so the test suite never needs Python). Nothing here uses
LatentHook's C code. Re-running gives byte-identical files (fixed seeds, one thread,
deterministic algorithms, HDF5 without timestamps, hand-written safetensors / YAML / JSON).

Hugging Face transformers is not packaged by Debian, so GPT-2 is reimplemented below in PyTorch
following transformers' modeling_gpt2.py (GPT2LMHeadModel, eager attention, eval mode) with the
same module classes, attribute names and registration order, so that named_modules() yields
exactly Hugging Face's names (asserted). Deliberate differences, as LatentHook defines them: a
GPT2Block returns its hidden state and a GPT2Attention its attn_output as a plain tensor (HF
returns tuples); no KV cache, no attention mask input, no head mask.

Models (every parameter float32; everything run in float32 in eval mode, dropout = identity):
  mlp     tdhook's test model (tests/conftest.py TestModel, built with torch.manual_seed(42)
          and PyTorch's default init as tdhook's get_model does): linear1 = Linear(10, 20),
          linear2 = Linear(20, 20), linear3 = Linear(20, 5), activation = ReLU, forward
          linear1 -> activation -> linear2 -> activation -> linear3 (activation called twice).
  mix     a YAML model using every YAML module type: linear (with and without bias),
          layernorm (affine, and elementwise_affine: false with eps 1e-6), gelu (none, tanh),
          tanh, sigmoid, relu, softmax, dropout, a sequential and a residual container; a leaf
          (act) and a container (res, hence its children) called twice. The PyTorch model is
          built from the YAML text this script writes (after parsing it back), so the two
          cannot disagree: Linear layers default-initialised under torch.manual_seed(5),
          LayerNorm affines random (1 + 0.1 randn, 0.1 randn) from a generator seeded 6, and
          the forward is checked against torch.nn.functional calls written out by hand.
  gpt2    GPT-2 with n_layer 2, n_head 4, n_embd 48, n_positions = n_ctx 16, vocab 64,
          random weights drawn in named_parameters() order from a generator seeded 3:
          embeddings N(0, 0.02^2) and c_proj N(0, (0.02 / sqrt(2 n_layer))^2) as HF's init,
          but c_attn and c_fc N(0, 1 / n_embd) (unit gain: O(1) attention scores and GELU
          inputs), every bias 0.02 randn, LayerNorm weight 1 + 0.1 randn and bias 0.1 randn,
          so that a missing or misplaced term shows (gpt2_sensitivity asserts that the scale,
          the mask, the GELU variant, the LayerNorm eps, wpe and the head split each move the
          logits by more than 1e-4).

Self-checks (the script fails rather than write fixtures that disagree): named_modules() of
the GPT-2 equals Hugging Face's list (names and classes); SPEC TV-16 names and matches; the
YAML texts parse back to their specs; every safetensors file reads back bit for bit; a fresh
GPT-2 loaded from each checkpoint (prefix stripped, legacy buffers dropped, lm_head tied)
reproduces the logits bit for bit; an independent float64 NumPy GPT-2 forward from the bare
checkpoint matches the logits to 1e-5; the mix model matches hand-written torch.nn.functional
calls; hook records are spot-checked (ReLU of linear1, probabilities causal and summing to 1).

Files (tests/golden/nn/):
  names.json                module names / regex matches (SPEC 1.1, 1.2, 1.6, TV-16), below
  README.md                 what is what, versions, float64 deviations (tolerance guidance)
  mlp/model.yaml            YAML model, weights: model.safetensors
  mlp/model_h5.yaml         the same with weights: weights.h5
  mlp/model.safetensors     state_dict keys (linear1.weight, ...), F32
  mlp/weights.h5            one float32 dataset per state_dict key at the root
  mlp/data.h5               /inputs float32 (7, 10), torch.manual_seed(1) randn
  mlp/expected.h5           see "expected.h5" below
  mix/model.yaml, mix/model.safetensors, mix/data.h5 (/inputs float32 (7, 12), seed 2),
  mix/expected.h5
  gpt2/config.json          as Hugging Face writes it (sorted keys, indent 2)
  gpt2/model.safetensors    HF save_pretrained layout: transformer.* keys, no lm_head.weight
                            (tied to transformer.wte.weight), no attention buffers
  gpt2/data.h5              /tokens int64 (5, 16), uniform in [0, 64), generator seed 4
  gpt2/expected.h5
  gpt2_bare/config.json     same as gpt2/
  gpt2_bare/model.safetensors  same weights in the original "gpt2" checkpoint layout: no
                            "transformer." prefix, no lm_head.weight, plus legacy buffers
                            h.<i>.attn.bias F32 (1, 1, 16, 16) lower-triangular ones and
                            h.<i>.attn.masked_bias F32 scalar -1e4, which loaders must ignore
  gpt2_bare/README.md       expected outputs are gpt2/expected.h5

expected.h5 (collected with real forward hooks / forward pre-hooks registered on every module
from named_modules(); the root "" is skipped, as is any module never called, e.g. the
ModuleList transformer.h; HDF5 dataset names are the dotted module names):
  /output                   model output: (7, 5) mlp, (7, 6) mix, logits (5, 16, 64) gpt2
  /fwd/<name>               output of the module's LAST call
  /fwd_pre/<name>           first positional input of the LAST call (token / position ids
                            stored as float32)
  /calls/<name>             int64 scalar, number of calls in the forward
  /fwd_first/<name>         output of the FIRST call, only for modules called more than once
  /fwd_pre_first/<name>     first positional input of the FIRST call, same modules
Every float dataset is float32, C order. Shapes are PyTorch's: in particular
transformer.wpe is called on position_ids of shape (1, T), so /fwd_pre/transformer.wpe is
(1, 16) and /fwd/transformer.wpe is (1, 16, 48), not batch-sized.

safetensors written here: 8-byte little-endian header length n, then n bytes of compact JSON
{"__metadata__":{"format":"pt"}, name: {"dtype","shape","data_offsets"}, ...} padded with
spaces to a multiple of 8, then the data; tensors ordered as the safetensors library orders
them (by dtype, larger first, then by name), data in the same order, no gaps.

names.json:
{
  "about": str,
  "<model>": {                            "mlp", "mix", "gpt2"
    "modules": [[name, type], ...],       named_modules() order, root "" skipped
    "relative": [name, ...],              the same names
    "absolute": [name, ...],              seen from tdhook's HookedModule around the raw
                                          model: "td_module", "td_module.module",
                                          "td_module.module.<name>", ... (SPEC 1.2, TV-16)
    "patterns": [ {"pattern": str,
                   "relative": [name, ...],   names of "relative" that re.match the pattern
                   "absolute": [name, ...]} ] the same over "absolute"
  }
}
Matches are lists in named_modules() order (the order hooks are registered in).
"""
import collections
import json
import math
import os
import re
import shutil
import struct
import sys

import h5py
import numpy as np
import torch
import yaml
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "jobs", "models"))
from safetensors_write import ST_DTYPES, write_safetensors as st_write  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "nn")
REGEN = "/usr/bin/python3 tests/golden/make_golden_nn.py"

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
sys.dont_write_bytecode = True


# ----------------------------------------------------------------- writers
def write_safetensors(path, tensors):
    """The shared writer (jobs/models/safetensors_write.py), then a read-back check."""
    st_write(path, tensors)
    check_safetensors(path, tensors)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    hdr = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    out = {}
    inv = {v: k for k, v in ST_DTYPES.items()}
    end = 0
    for name, info in hdr.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        assert b == end, (name, b, end)  # contiguous, in header order
        end = e
        dt = inv[info["dtype"]].newbyteorder("<")
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"])
    assert end == len(data)
    return hdr, out


def check_safetensors(path, tensors):
    hdr, got = read_safetensors(path)
    assert list(hdr)[0] == "__metadata__" and hdr["__metadata__"] == {"format": "pt"}
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
        assert np.array_equal(got[k], v), k


def h5_write(path, datasets):
    """datasets: path inside the file -> numpy array / scalar. Groups and datasets are created
    without timestamps so that re-running gives identical bytes."""
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        for key, val in datasets.items():
            parts = key.strip("/").split("/")
            g = f
            for p in parts[:-1]:
                if p in g:
                    g = g[p]
                else:
                    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
                    gcpl.set_obj_track_times(False)
                    gid = h5py.h5g.create(g.id, p.encode(), gcpl=gcpl)
                    g = h5py.Group(gid)
            g.create_dataset(parts[-1], data=np.asarray(val), track_times=False)


def state_numpy(model, skip=()):
    return collections.OrderedDict((k, v.detach().cpu().numpy().astype(np.float32))
                                   for k, v in model.state_dict().items() if k not in skip)


# ----------------------------------------------------------------- hook recording
def record(model, args):
    """Runs model(*args) under no_grad with a forward pre-hook and a forward hook on every
    module of named_modules() (root skipped) and returns (output, datasets for expected.h5)."""
    calls = collections.OrderedDict()
    first_in, last_in, first_out, last_out = {}, {}, {}, {}
    handles = []

    def as_np(t):
        t = t.detach().clone()
        return t.numpy().astype(np.float32)

    for name, mod in model.named_modules():
        if name == "":
            continue

        def pre(m, inp, name=name):
            calls[name] = calls.get(name, 0) + 1
            x = as_np(inp[0])
            if calls[name] == 1:
                first_in[name] = x
            last_in[name] = x

        def post(m, inp, out, name=name):
            assert isinstance(out, torch.Tensor), (name, type(out))
            y = as_np(out)
            if calls[name] == 1:
                first_out[name] = y
            last_out[name] = y

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))
    with torch.no_grad():
        out = model(*args)
    for h in handles:
        h.remove()
    ds = collections.OrderedDict()
    ds["output"] = out.detach().numpy().astype(np.float32)
    for name, _ in model.named_modules():
        if name == "" or name not in calls:
            continue
        ds["fwd/" + name] = last_out[name]
        ds["fwd_pre/" + name] = last_in[name]
        ds["calls/" + name] = np.int64(calls[name])
        if calls[name] > 1:
            ds["fwd_first/" + name] = first_out[name]
            ds["fwd_pre_first/" + name] = first_in[name]
    return out, ds, calls


def float64_deviation(model32, args, ds32):
    """Max |float32 - float64| over every dataset (same weights, the model run in float64)."""
    import copy
    m64 = copy.deepcopy(model32).double()
    args64 = [a.double() if a.is_floating_point() else a for a in args]
    _, ds64, _ = record(m64, args64)
    worst = (0.0, "", 0.0)
    for k, v in ds32.items():
        if k.startswith("calls/"):
            continue
        d = float(np.abs(v.astype(np.float64) - ds64[k].astype(np.float64)).max())
        scale = float(np.abs(ds64[k]).max())
        if d > worst[0]:
            worst = (d, k, scale)
    return worst


# ----------------------------------------------------------------- YAML models
class TestModel(nn.Module):
    """tdhook's tests/conftest.py TestModel."""

    def __init__(self, input_size=10, hidden_size=20, output_size=5):
        super().__init__()
        self.linear1 = nn.Linear(input_size, hidden_size)
        self.linear2 = nn.Linear(hidden_size, hidden_size)
        self.linear3 = nn.Linear(hidden_size, output_size)
        self.activation = nn.ReLU()

    def forward(self, x):
        x = self.activation(self.linear1(x))
        x = self.activation(self.linear2(x))
        x = self.linear3(x)
        return x


class Residual(nn.Module):
    """out = x + children(x), children applied in registration order."""

    def __init__(self, children):
        super().__init__()
        for name, mod in children:
            self.add_module(name, mod)

    def forward(self, x):
        y = x
        for mod in self.children():
            y = mod(y)
        return x + y


class YamlModel(nn.Module):
    """Top-level modules registered in YAML order; forward calls them in `forward:` order."""

    def __init__(self, children, order):
        super().__init__()
        for name, mod in children:
            self.add_module(name, mod)
        self.order = list(order)

    def forward(self, x):
        for name in self.order:
            x = getattr(self, name)(x)
        return x


def build_module(spec, gen):
    t = spec["type"]
    if t == "linear":
        return nn.Linear(spec["in_features"], spec["out_features"], bias=spec.get("bias", True))
    if t == "layernorm":
        affine = spec.get("elementwise_affine", True)
        m = nn.LayerNorm(spec["normalized_shape"], eps=spec.get("eps", 1e-5),
                         elementwise_affine=affine)
        if affine:
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.1 * torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
        return m
    if t == "relu":
        return nn.ReLU()
    if t == "tanh":
        return nn.Tanh()
    if t == "sigmoid":
        return nn.Sigmoid()
    if t == "gelu":
        return nn.GELU(approximate=spec.get("approximate", "none"))
    if t == "softmax":
        return nn.Softmax(dim=spec["dim"])
    if t == "dropout":
        return nn.Dropout(p=spec["p"])
    if t == "sequential":
        return nn.Sequential(collections.OrderedDict(
            (c["name"], build_module(c, gen)) for c in spec["modules"]))
    if t == "residual":
        return Residual([(c["name"], build_module(c, gen)) for c in spec["modules"]])
    raise ValueError(t)


def build_yaml_model(doc, root_cls=None, seed=0):
    """PyTorch model from a parsed model.yaml (parameters default-initialised under
    torch.manual_seed(seed), then LayerNorm affines drawn from a generator seeded seed + 1)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    if root_cls is not None:
        return root_cls()
    return YamlModel([(s["name"], build_module(s, gen)) for s in doc["modules"]], doc["forward"])


def yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        # PyYAML (YAML 1.1) reads 1e-05 as a string: keep a dot and a signed exponent
        s = "%.1e" % v if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6) else repr(v)
        assert float(s) == v, (s, v)
        return s
    return str(v)


def yaml_modules(mods, indent):
    pad = " " * indent
    lines = []
    for m in mods:
        if "modules" in m:
            keys = [k for k in m if k != "modules"]
            lines.append(pad + "- " + "name: " + yaml_scalar(m["name"]))
            for k in keys:
                if k != "name":
                    lines.append(pad + "  " + k + ": " + yaml_scalar(m[k]))
            lines.append(pad + "  modules:")
            lines += yaml_modules(m["modules"], indent + 4)
        else:
            lines.append(pad + "- {" + ", ".join(k + ": " + yaml_scalar(v)
                                                for k, v in m.items()) + "}")
    return lines


def yaml_text(doc):
    lines = ["weights: " + doc["weights"], "input:", "  features: %d" % doc["input"]["features"],
             "modules:"]
    lines += yaml_modules(doc["modules"], 2)
    lines.append("forward: [" + ", ".join(doc["forward"]) + "]")
    text = "\n".join(lines) + "\n"
    assert yaml.safe_load(text) == doc, "YAML text does not parse back to the spec"
    return text


MLP_DOC = {
    "weights": "model.safetensors",
    "input": {"features": 10},
    "modules": [
        {"name": "linear1", "type": "linear", "in_features": 10, "out_features": 20},
        {"name": "linear2", "type": "linear", "in_features": 20, "out_features": 20},
        {"name": "linear3", "type": "linear", "in_features": 20, "out_features": 5},
        {"name": "activation", "type": "relu"},
    ],
    "forward": ["linear1", "activation", "linear2", "activation", "linear3"],
}

MLP_YAML = """weights: model.safetensors
input:
  features: 10
modules:
  - {name: linear1, type: linear, in_features: 10, out_features: 20}
  - {name: linear2, type: linear, in_features: 20, out_features: 20}
  - {name: linear3, type: linear, in_features: 20, out_features: 5}
  - {name: activation, type: relu}
forward: [linear1, activation, linear2, activation, linear3]
"""

MIX_DOC = {
    "weights": "model.safetensors",
    "input": {"features": 12},
    "modules": [
        {"name": "fc_in", "type": "linear", "in_features": 12, "out_features": 16},
        {"name": "norm", "type": "layernorm", "normalized_shape": 16, "eps": 1e-5},
        {"name": "act", "type": "gelu", "approximate": "none"},
        {"name": "block", "type": "sequential", "modules": [
            {"name": "fc1", "type": "linear", "in_features": 16, "out_features": 32},
            {"name": "act", "type": "gelu", "approximate": "tanh"},
            {"name": "drop", "type": "dropout", "p": 0.1},
            {"name": "fc2", "type": "linear", "in_features": 32, "out_features": 16,
             "bias": False},
        ]},
        {"name": "res", "type": "residual", "modules": [
            {"name": "ln", "type": "layernorm", "normalized_shape": 16, "eps": 1e-6,
             "elementwise_affine": False},
            {"name": "fc", "type": "linear", "in_features": 16, "out_features": 16},
            {"name": "tanh", "type": "tanh"},
        ]},
        {"name": "gate", "type": "sigmoid"},
        {"name": "relu", "type": "relu"},
        {"name": "head", "type": "linear", "in_features": 16, "out_features": 6},
        {"name": "softmax", "type": "softmax", "dim": -1},
    ],
    "forward": ["fc_in", "norm", "act", "block", "act", "res", "gate", "res", "relu", "head",
                "softmax"],
}

MIX_TYPES = {"linear", "layernorm", "relu", "tanh", "sigmoid", "gelu", "softmax", "dropout",
             "sequential", "residual"}


def spec_types(mods):
    out = set()
    for m in mods:
        out.add(m["type"])
        out |= spec_types(m.get("modules", []))
    return out


# ----------------------------------------------------------------- GPT-2 (HF semantics)
class GPT2Config:
    def __init__(self, **kw):
        self.__dict__.update(kw)


class Conv1D(nn.Module):
    """HF Conv1D: a linear layer with the weight stored transposed, (nx, nf); x @ W + b."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class NewGELUActivation(nn.Module):
    def forward(self, input):
        return 0.5 * input * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi)
                                                * (input + 0.044715 * torch.pow(input, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, config, layer_idx=None):
        super().__init__()
        max_positions = config.n_positions
        self.register_buffer(
            "bias",
            torch.tril(torch.ones((max_positions, max_positions), dtype=torch.bool)).view(
                1, 1, max_positions, max_positions),
            persistent=False)
        self.register_buffer("masked_bias", torch.tensor(-1e4), persistent=False)
        self.embed_dim = config.n_embd
        self.num_heads = config.n_head
        self.head_dim = self.embed_dim // self.num_heads
        self.split_size = self.embed_dim
        self.scale_attn_weights = config.scale_attn_weights
        self.scale_attn_by_inverse_layer_idx = config.scale_attn_by_inverse_layer_idx
        self.layer_idx = layer_idx
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def _attn(self, query, key, value):
        attn_weights = torch.matmul(query, key.transpose(-1, -2))
        if self.scale_attn_weights:
            attn_weights = attn_weights / torch.full(
                [], value.size(-1) ** 0.5, dtype=attn_weights.dtype, device=attn_weights.device)
        if self.scale_attn_by_inverse_layer_idx:
            attn_weights = attn_weights / float(self.layer_idx + 1)
        query_length, key_length = query.size(-2), key.size(-2)
        causal_mask = self.bias[:, :, key_length - query_length:key_length, :key_length]
        mask_value = torch.finfo(attn_weights.dtype).min
        mask_value = torch.full([], mask_value, dtype=attn_weights.dtype,
                                device=attn_weights.device)
        attn_weights = torch.where(causal_mask, attn_weights.to(attn_weights.dtype), mask_value)
        attn_weights = nn.functional.softmax(attn_weights, dim=-1)
        attn_weights = attn_weights.type(value.dtype)
        attn_weights = self.attn_dropout(attn_weights)
        attn_output = torch.matmul(attn_weights, value)
        return attn_output, attn_weights

    def _split_heads(self, tensor, num_heads, attn_head_size):
        new_shape = tensor.size()[:-1] + (num_heads, attn_head_size)
        return tensor.view(new_shape).permute(0, 2, 1, 3)  # (B, H, T, hs)

    def _merge_heads(self, tensor, num_heads, attn_head_size):
        tensor = tensor.permute(0, 2, 1, 3).contiguous()
        new_shape = tensor.size()[:-2] + (num_heads * attn_head_size,)
        return tensor.view(new_shape)

    def forward(self, hidden_states):
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        query = self._split_heads(query, self.num_heads, self.head_dim)
        key = self._split_heads(key, self.num_heads, self.head_dim)
        value = self._split_heads(value, self.num_heads, self.head_dim)
        attn_output, _ = self._attn(query, key, value)
        attn_output = self._merge_heads(attn_output, self.num_heads, self.head_dim)
        attn_output = self.c_proj(attn_output)
        attn_output = self.resid_dropout(attn_output)
        return attn_output


class GPT2MLP(nn.Module):
    def __init__(self, intermediate_size, config):
        super().__init__()
        embed_dim = config.n_embd
        self.c_fc = Conv1D(intermediate_size, embed_dim)
        self.c_proj = Conv1D(embed_dim, intermediate_size)
        self.act = NewGELUActivation()
        self.dropout = nn.Dropout(config.resid_pdrop)

    def forward(self, hidden_states):
        hidden_states = self.c_fc(hidden_states)
        hidden_states = self.act(hidden_states)
        hidden_states = self.c_proj(hidden_states)
        hidden_states = self.dropout(hidden_states)
        return hidden_states


class GPT2Block(nn.Module):
    def __init__(self, config, layer_idx=None):
        super().__init__()
        hidden_size = config.n_embd
        inner_dim = config.n_inner if config.n_inner is not None else 4 * hidden_size
        self.ln_1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx=layer_idx)
        self.ln_2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(inner_dim, config)

    def forward(self, hidden_states):
        residual = hidden_states
        hidden_states = self.ln_1(hidden_states)
        attn_output = self.attn(hidden_states)
        hidden_states = attn_output + residual
        residual = hidden_states
        hidden_states = self.ln_2(hidden_states)
        feed_forward_hidden_states = self.mlp(hidden_states)
        hidden_states = residual + feed_forward_hidden_states
        return hidden_states


class GPT2Model(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_dim = config.n_embd
        self.wte = nn.Embedding(config.vocab_size, self.embed_dim)
        self.wpe = nn.Embedding(config.n_positions, self.embed_dim)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(config, layer_idx=i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(self.embed_dim, eps=config.layer_norm_epsilon)

    def forward(self, input_ids):
        input_shape = input_ids.size()
        input_ids = input_ids.view(-1, input_shape[-1])
        position_ids = torch.arange(0, input_shape[-1], dtype=torch.long).unsqueeze(0)
        inputs_embeds = self.wte(input_ids)
        position_embeds = self.wpe(position_ids)
        hidden_states = inputs_embeds + position_embeds
        hidden_states = self.drop(hidden_states)
        output_shape = (-1,) + input_shape[1:] + (hidden_states.size(-1),)
        for block in self.h:
            hidden_states = block(hidden_states)
        hidden_states = self.ln_f(hidden_states)
        return hidden_states.view(output_shape)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tie_word_embeddings

    def forward(self, input_ids):
        hidden_states = self.transformer(input_ids)
        return self.lm_head(hidden_states)


GPT2_CONFIG = {
    "activation_function": "gelu_new",
    "architectures": ["GPT2LMHeadModel"],
    "attn_pdrop": 0.1,
    "bos_token_id": 63,
    "embd_pdrop": 0.1,
    "eos_token_id": 63,
    "initializer_range": 0.02,
    "layer_norm_epsilon": 1e-05,
    "model_type": "gpt2",
    "n_ctx": 16,
    "n_embd": 48,
    "n_head": 4,
    "n_inner": None,
    "n_layer": 2,
    "n_positions": 16,
    "reorder_and_upcast_attn": False,
    "resid_pdrop": 0.1,
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
    "vocab_size": 64,
}


def hf_gpt2_names(n_layer):
    """named_modules() of transformers' GPT2LMHeadModel (eager attention), with class names."""
    out = [("", "GPT2LMHeadModel"), ("transformer", "GPT2Model"),
           ("transformer.wte", "Embedding"), ("transformer.wpe", "Embedding"),
           ("transformer.drop", "Dropout"), ("transformer.h", "ModuleList")]
    for i in range(n_layer):
        p = "transformer.h.%d" % i
        out += [(p, "GPT2Block"), (p + ".ln_1", "LayerNorm"), (p + ".attn", "GPT2Attention"),
                (p + ".attn.c_attn", "Conv1D"), (p + ".attn.c_proj", "Conv1D"),
                (p + ".attn.attn_dropout", "Dropout"), (p + ".attn.resid_dropout", "Dropout"),
                (p + ".ln_2", "LayerNorm"), (p + ".mlp", "GPT2MLP"),
                (p + ".mlp.c_fc", "Conv1D"), (p + ".mlp.c_proj", "Conv1D"),
                (p + ".mlp.act", "NewGELUActivation"), (p + ".mlp.dropout", "Dropout")]
    out += [("transformer.ln_f", "LayerNorm"), ("lm_head", "Linear")]
    return out


def build_gpt2(cfg, seed=3):
    config = GPT2Config(**cfg)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(config)
    std = cfg["initializer_range"]
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():  # tied lm_head.weight appears once (wte)
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or \
                    name.endswith("ln_f.weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif ".ln_" in name and name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(std * torch.randn(p.shape, generator=gen))
            elif name.endswith("c_attn.weight") or name.endswith("c_fc.weight"):
                # unit gain instead of 0.02: O(1) attention scores and GELU inputs, so that
                # the scale, the mask and the GELU variant all change the results visibly
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(cfg["n_embd"]))
            elif name.endswith("c_proj.weight"):
                p.copy_(std / math.sqrt(2 * cfg["n_layer"]) * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(std * torch.randn(p.shape, generator=gen))
    model.eval()
    assert model.lm_head.weight is model.transformer.wte.weight
    return model


# ----------------------------------------------------------------- names.json
def names_entry(model, patterns):
    mods = [(n, type(m).__name__) for n, m in model.named_modules() if n != ""]
    rel = [n for n, _ in mods]
    absn = ["td_module", "td_module.module"] + ["td_module.module." + n for n in rel]
    pats = []
    for p in patterns:
        rx = re.compile(p)
        pats.append({"pattern": p, "relative": [n for n in rel if rx.match(n)],
                     "absolute": [n for n in absn if rx.match(n)]})
    return {"modules": [list(t) for t in mods], "relative": rel, "absolute": absn,
            "patterns": pats}


def pat(entry, p, which="relative"):
    return [e for e in entry["patterns"] if e["pattern"] == p][0][which]


# ----------------------------------------------------------------- fixtures
def fresh_dir(*parts):
    d = os.path.join(OUT, *parts)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    return d


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def make_mlp():
    d = fresh_dir("mlp")
    doc = yaml.safe_load(MLP_YAML)
    assert doc == MLP_DOC and yaml_text(MLP_DOC) == MLP_YAML
    model = build_yaml_model(doc, root_cls=TestModel, seed=42).eval()
    # the YAML describes the same tree as tdhook's TestModel
    ref = YamlModel([(s["name"], build_module(s, None)) for s in doc["modules"]], doc["forward"])
    assert [(n, type(m).__name__) for n, m in ref.named_modules() if n] == \
        [(n, type(m).__name__) for n, m in model.named_modules() if n]
    ref.load_state_dict(model.state_dict())
    torch.manual_seed(1)
    x = torch.randn(7, 10)
    out, ds, calls = record(model, [x])
    with torch.no_grad():
        assert torch.equal(ref.eval()(x), out)
    assert dict(calls) == {"linear1": 1, "linear2": 1, "linear3": 1, "activation": 2}
    # spot checks of the hook semantics
    assert np.array_equal(ds["fwd_first/activation"], np.maximum(ds["fwd/linear1"], 0))
    assert np.array_equal(ds["fwd_pre/activation"], ds["fwd/linear2"])
    assert np.array_equal(ds["fwd_pre/linear1"], x.numpy())
    sd = state_numpy(model)
    assert list(sd) == ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                        "linear3.weight", "linear3.bias"]
    write_text(os.path.join(d, "model.yaml"), MLP_YAML)
    write_text(os.path.join(d, "model_h5.yaml"),
               MLP_YAML.replace("weights: model.safetensors", "weights: weights.h5"))
    write_safetensors(os.path.join(d, "model.safetensors"), sd)
    h5_write(os.path.join(d, "weights.h5"), sd)
    h5_write(os.path.join(d, "data.h5"), {"inputs": x.numpy()})
    h5_write(os.path.join(d, "expected.h5"), ds)
    dev = float64_deviation(model, [x], ds)
    print(f"mlp: output {tuple(out.shape)}, {len(calls)} modules hooked, "
          f"float64 deviation {dev[0]:.2e} at {dev[1]} (|max| {dev[2]:.2f})")
    return model, dev


def make_mix():
    d = fresh_dir("mix")
    assert spec_types(MIX_DOC["modules"]) == MIX_TYPES
    text = yaml_text(MIX_DOC)
    doc = yaml.safe_load(text)
    model = build_yaml_model(doc, seed=5).eval()
    expect = ["fc_in", "norm", "act", "block", "block.fc1", "block.act", "block.drop",
              "block.fc2", "res", "res.ln", "res.fc", "res.tanh", "gate", "relu", "head",
              "softmax"]
    assert [n for n, _ in model.named_modules() if n] == expect
    assert type(model.res).__name__ == "Residual" and type(model.block).__name__ == "Sequential"
    torch.manual_seed(2)
    x = torch.randn(7, 12)
    out, ds, calls = record(model, [x])
    assert [n for n in calls] and all(calls[n] == (2 if n in ("act", "res", "res.ln", "res.fc",
                                                              "res.tanh") else 1)
                                      for n in expect), dict(calls)
    # independent re-computation with torch.nn.functional, module by module
    F = nn.functional
    p = {k: v for k, v in model.state_dict().items()}
    with torch.no_grad():
        h = F.linear(x, p["fc_in.weight"], p["fc_in.bias"])
        h = F.layer_norm(h, (16,), p["norm.weight"], p["norm.bias"], 1e-5)
        h = F.gelu(h)
        h = F.linear(F.gelu(F.linear(h, p["block.fc1.weight"], p["block.fc1.bias"]),
                            approximate="tanh"), p["block.fc2.weight"])
        h = F.gelu(h)

        def res(v):
            r = F.layer_norm(v, (16,), None, None, 1e-6)
            return v + torch.tanh(F.linear(r, p["res.fc.weight"], p["res.fc.bias"]))
        h = res(torch.sigmoid(res(h)))
        h = torch.softmax(F.linear(torch.relu(h), p["head.weight"], p["head.bias"]), dim=-1)
    assert torch.allclose(h, out, rtol=0, atol=1e-6), (h - out).abs().max()
    assert np.allclose(ds["output"].sum(axis=1), 1.0, atol=1e-6)
    assert (ds["fwd/relu"] == 0).any() and (ds["fwd/relu"] > 0).any()
    assert np.array_equal(ds["fwd/block.drop"], ds["fwd_pre/block.drop"])
    sd = state_numpy(model)
    assert "block.fc2.bias" not in sd and not any(k.startswith("res.ln") for k in sd)
    write_text(os.path.join(d, "model.yaml"), text)
    write_safetensors(os.path.join(d, "model.safetensors"), sd)
    h5_write(os.path.join(d, "data.h5"), {"inputs": x.numpy()})
    h5_write(os.path.join(d, "expected.h5"), ds)
    dev = float64_deviation(model, [x], ds)
    print(f"mix: output {tuple(out.shape)}, {len(calls)} modules hooked, "
          f"float64 deviation {dev[0]:.2e} at {dev[1]} (|max| {dev[2]:.2f})")
    return model, dev


def gpt2_sensitivity(model, tokens, ref):
    """Max |logits change| when one detail of the forward is done differently: shows that the
    fixture catches each such mistake (each must exceed 1e-4, far above float32 noise)."""
    import copy
    res = {}

    def run(m):
        with torch.no_grad():
            return m(tokens)

    m = copy.deepcopy(model)
    for blk in m.transformer.h:
        blk.mlp.act = nn.GELU()  # exact erf GELU instead of the tanh one
    res["erf gelu"] = run(m)
    m = copy.deepcopy(model)
    for blk in m.transformer.h:
        blk.attn.scale_attn_weights = False
    res["no 1/sqrt(hs)"] = run(m)
    m = copy.deepcopy(model)
    for blk in m.transformer.h:
        blk.attn.bias.fill_(True)
    res["no causal mask"] = run(m)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for blk in m.transformer.h:
            blk.ln_1.eps = 1e-12
            blk.ln_2.eps = 1e-12
        m.transformer.ln_f.eps = 1e-12
    res["ln eps 1e-12"] = run(m)
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.transformer.wpe.weight.zero_()
    res["no wpe"] = run(m)
    m = copy.deepcopy(model)
    with torch.no_grad():
        for blk in m.transformer.h:
            w = blk.attn.c_attn.weight
            w.copy_(w.reshape(48, 3, 4, 12).transpose(2, 3).reshape(48, 144))
    res["heads interleaved"] = run(m)
    out = {k: float((v - ref).abs().max()) for k, v in res.items()}
    return out


def numpy_gpt2(w, ids, cfg):
    """An independent float64 NumPy forward from the bare checkpoint's tensors, written the way
    the C side computes it (llm.c style: qkv channels [q | k | v], head h owning channels
    h*hs .. h*hs+hs-1, logits = ln_f(x) @ wte^T)."""
    B, T = ids.shape
    C, NH = cfg["n_embd"], cfg["n_head"]
    hs = C // NH
    eps = cfg["layer_norm_epsilon"]
    w = {k: v.astype(np.float64) for k, v in w.items()}

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))

    x = w["wte.weight"][ids] + w["wpe.weight"][np.arange(T)][None]
    for i in range(cfg["n_layer"]):
        p = "h.%d." % i
        qkv = ln(x, p + "ln_1") @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]
        y = np.zeros((B, T, C))
        for h in range(NH):
            q = qkv[:, :, h * hs:(h + 1) * hs]
            k = qkv[:, :, C + h * hs:C + (h + 1) * hs]
            v = qkv[:, :, 2 * C + h * hs:2 * C + (h + 1) * hs]
            s = q @ k.transpose(0, 2, 1) / math.sqrt(hs)
            s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
            e = np.exp(s - s.max(-1, keepdims=True))
            y[:, :, h * hs:(h + 1) * hs] = (e / e.sum(-1, keepdims=True)) @ v
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        m = gelu(ln(x, p + "ln_2") @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + m @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    return ln(x, "ln_f") @ w["wte.weight"].T


def make_gpt2():
    d = fresh_dir("gpt2")
    db = fresh_dir("gpt2_bare")
    cfg = GPT2_CONFIG
    model = build_gpt2(cfg)
    got = [(n, type(m).__name__) for n, m in model.named_modules()]
    assert got == hf_gpt2_names(cfg["n_layer"]), got
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, cfg["vocab_size"], (5, cfg["n_ctx"]), generator=gen,
                           dtype=torch.int64)
    out, ds, calls = record(model, [tokens])
    assert "transformer.h" not in calls and all(v == 1 for v in calls.values())
    called = [n for n, _ in got if n not in ("", "transformer.h")]
    assert list(calls) != [] and set(calls) == set(called)
    assert ds["output"].shape == (5, 16, 64)
    assert ds["fwd_pre/transformer"].dtype == np.float32
    assert np.array_equal(ds["fwd_pre/transformer.wte"], tokens.numpy().astype(np.float32))
    assert np.array_equal(ds["fwd_pre/transformer.wpe"], np.arange(16, dtype=np.float32)[None])
    assert ds["fwd/transformer.wpe"].shape == (1, 16, 48)
    for i in range(cfg["n_layer"]):
        pr = ds["fwd/transformer.h.%d.attn.attn_dropout" % i]
        assert pr.shape == (5, 4, 16, 16)
        assert np.all(np.triu(pr, 1) == 0) and np.allclose(pr.sum(-1), 1, atol=1e-6)
        assert np.array_equal(ds["fwd_pre/transformer.h.%d.attn.attn_dropout" % i], pr)
    # lm_head is tied: logits = ln_f(h) @ wte^T
    with torch.no_grad():
        lg = torch.from_numpy(ds["fwd/transformer"]) @ model.transformer.wte.weight.T
    assert torch.allclose(lg, out, atol=1e-6)
    sens = gpt2_sensitivity(model, tokens, out)
    for k, v in sens.items():
        assert v > 1e-4, (k, v)

    sd = state_numpy(model, skip=("lm_head.weight",))
    # (a substring test for "attn.bias" would also hit c_attn.bias)
    assert not any(k.endswith((".attn.bias", ".attn.masked_bias")) for k in sd)
    assert len(sd) == 4 + 12 * cfg["n_layer"]
    cfg_text = json.dumps(cfg, indent=2, sort_keys=True) + "\n"
    bare = collections.OrderedDict()
    for k, v in sd.items():
        assert k.startswith("transformer.")
        bare[k[len("transformer."):]] = v
    T = cfg["n_positions"]
    for i in range(cfg["n_layer"]):
        bare["h.%d.attn.bias" % i] = np.tril(np.ones((T, T), np.float32)).reshape(1, 1, T, T)
        bare["h.%d.attn.masked_bias" % i] = np.array(-1e4, dtype=np.float32)
    for dd in (d, db):
        write_text(os.path.join(dd, "config.json"), cfg_text)
    write_safetensors(os.path.join(d, "model.safetensors"), sd)
    write_safetensors(os.path.join(db, "model.safetensors"), bare)
    h5_write(os.path.join(d, "data.h5"), {"tokens": tokens.numpy()})
    h5_write(os.path.join(d, "expected.h5"), ds)

    # round trip: a fresh model loaded from each file (HF-style loader: strip "transformer.",
    # drop the legacy buffers, tie lm_head) reproduces the logits bit for bit
    for path, prefix in ((os.path.join(d, "model.safetensors"), ""),
                         (os.path.join(db, "model.safetensors"), "transformer.")):
        _, t = read_safetensors(path)
        m2 = GPT2LMHeadModel(GPT2Config(**json.loads(cfg_text))).eval()
        st = {prefix + k: torch.from_numpy(v.copy()) for k, v in t.items()
              if not k.endswith(".attn.bias") and not k.endswith(".attn.masked_bias")}
        missing, unexpected = m2.load_state_dict(st, strict=False)
        assert missing == ["lm_head.weight"] and unexpected == [], (missing, unexpected)
        assert m2.lm_head.weight is m2.transformer.wte.weight
        with torch.no_grad():
            assert torch.equal(m2(tokens), out)
    ref = numpy_gpt2(read_safetensors(os.path.join(db, "model.safetensors"))[1],
                     tokens.numpy(), cfg)
    npdiff = float(np.abs(ref - ds["output"]).max())
    assert npdiff < 1e-5, npdiff
    dev = float64_deviation(model, [tokens], ds)
    print(f"gpt2: independent NumPy float64 forward agrees to {npdiff:.1e}")
    print(f"gpt2: logits {tuple(out.shape)}, {len(calls)} modules hooked, "
          f"float64 deviation {dev[0]:.2e} at {dev[1]} (|max| {dev[2]:.2f})")
    print("gpt2: logits change under mistakes: " +
          ", ".join(f"{k} {v:.1e}" for k, v in sens.items()))
    return model, dev, sens


def make_names(mlp, mix, gpt2):
    doc = collections.OrderedDict()
    doc["about"] = ("module names and Python re.match results over named_modules() (root "
                    "skipped); see tests/golden/make_golden_nn.py")
    doc["mlp"] = names_entry(mlp, ["linear1|linear2", "linear", "inear", "linear1$",
                                   r"td_module\.module\.linear2", "", "activation"])
    doc["mix"] = names_entry(mix, ["act", r".*act$", "block", r"block\.", r"res\.", "fc",
                                   r"\w+\.fc\d?$"])
    doc["gpt2"] = names_entry(gpt2, [r"transformer\.h\.\d+\.attn\.attn_dropout",
                                     r"transformer\.h\.1\.", "lm_head",
                                     r"transformer\.h\.\d+$"])
    m = doc["mlp"]
    # SPEC TV-16
    assert m["relative"] == ["linear1", "linear2", "linear3", "activation"]
    assert m["absolute"] == ["td_module", "td_module.module", "td_module.module.linear1",
                             "td_module.module.linear2", "td_module.module.linear3",
                             "td_module.module.activation"]
    assert pat(m, "linear1|linear2") == ["linear1", "linear2"]
    assert pat(m, "linear") == ["linear1", "linear2", "linear3"]
    assert pat(m, "inear") == [] and pat(m, "inear", "absolute") == []
    assert pat(m, "linear1$") == ["linear1"]
    assert pat(m, r"td_module\.module\.linear2", "absolute") == ["td_module.module.linear2"]
    assert pat(m, "") == m["relative"] and pat(m, "", "absolute") == m["absolute"]
    g = doc["gpt2"]
    assert pat(g, r"transformer\.h\.\d+$") == ["transformer.h.0", "transformer.h.1"]
    assert pat(g, "lm_head") == ["lm_head"]
    path = os.path.join(OUT, "names.json")
    write_text(path, json.dumps(doc, indent=1) + "\n")
    print("SPEC TV-16: names and matches agree")


README = """# Golden fixtures for the hooked forward pass

Produced offline by `tests/golden/make_golden_nn.py` (PyTorch {torch}, NumPy {numpy},
h5py {h5py} / HDF5 {hdf5}, Debian 12 packages); the test suite never runs Python. Regenerate with

    {regen}

(deterministic: re-running rewrites identical bytes). The script's docstring is the full
description of the models and formats; in short:

| path | what |
|---|---|
| `names.json` | module names (relative and absolute as seen from tdhook's HookedModule) with PyTorch class names, and the names Python `re.match` selects for a set of patterns (SPEC 1.1, 1.2, 1.6, TV-16) for mlp, mix and gpt2 |
| `mlp/model.yaml` | tdhook's test model (Linear(10,20), Linear(20,20), Linear(20,5), ReLU called twice) as a YAML model, weights in `model.safetensors` |
| `mlp/model_h5.yaml` | the same, weights in `weights.h5` (one float32 dataset per state_dict key at the root) |
| `mlp/data.h5` | `/inputs` float32 (7, 10) |
| `mix/model.yaml`, `mix/model.safetensors` | a YAML model using every module type: linear (with and without bias), layernorm (affine; and `elementwise_affine: false`, eps 1e-6), gelu (none, tanh), tanh, sigmoid, relu, softmax, dropout, `sequential` (`block`) and `residual` (`res`) containers; `act` and `res` are called twice |
| `mix/data.h5` | `/inputs` float32 (7, 12) |
| `gpt2/config.json`, `gpt2/model.safetensors` | random GPT-2 (2 layers, 4 heads, 48 channels, 16 positions, vocabulary 64) saved as Hugging Face's save_pretrained does: `transformer.*` keys, no `lm_head.weight` (tied to `transformer.wte.weight`) |
| `gpt2/data.h5` | `/tokens` int64 (5, 16) in [0, 64) |
| `gpt2_bare/` | the same weights in the original `gpt2` checkpoint layout (no `transformer.` prefix, legacy buffers `h.<i>.attn.bias` F32 (1,1,16,16) and `h.<i>.attn.masked_bias` F32 scalar to be ignored); expected outputs are `gpt2/expected.h5` |
| `*/expected.h5` | `/output`; for every module called at least once (root excluded): `/fwd/<name>` output and `/fwd_pre/<name>` first positional input of the last call, `/calls/<name>` int64; for modules called more than once also `/fwd_first/<name>` and `/fwd_pre_first/<name>` (first call) |

All float data is float32 computed by PyTorch on the CPU in float32, eval mode (dropout is the
identity), one thread. Token and position ids appear in `/fwd_pre` as float32. Shapes are
PyTorch's: `transformer.wpe` is called on position ids of shape (1, 16), so its `/fwd_pre` is
(1, 16) and its `/fwd` (1, 16, 48).

Hugging Face `transformers` is not packaged by Debian, so GPT-2 is reimplemented in PyTorch in
the script following transformers' `modeling_gpt2.py` (GPT2LMHeadModel, eager attention, eval
mode) with the same classes, attribute names and registration order; the script asserts that
`named_modules()` gives Hugging Face's names and classes. As LatentHook defines them, a
`GPT2Block` outputs its hidden state and a `GPT2Attention` its attention output (tensors, not
HF's tuples); `attn.attn_dropout` outputs the attention probabilities (5, 4, 16, 16).
The weights are random: embeddings and c_proj with HF's initialiser scale (0.02), c_attn and
c_fc with unit gain (std 1/sqrt(48)) so that attention scores and GELU inputs are O(1),
non-zero biases and random LayerNorm affines, so that a missing or misplaced term shows.
`config.json` has no `transformers_version` (it was not written by transformers).

Tolerance guidance: the same forward run in float64 deviates from these float32 values by at
most {dev_mlp:.1e} (mlp), {dev_mix:.1e} (mix) and {dev_gpt2:.1e} (gpt2, at
`{dev_gpt2_at}`, values up to {dev_gpt2_scale:.1f}).
The GPT-2 logits change by at least {sens_min:.1e} under each of these mistakes:
{sens_list}.
"""


def main():
    os.makedirs(OUT, exist_ok=True)
    mlp, dev_mlp = make_mlp()
    mix, dev_mix = make_mix()
    gpt2, dev_gpt2, sens = make_gpt2()
    make_names(mlp, mix, gpt2)
    write_text(os.path.join(OUT, "gpt2_bare", "README.md"),
               "Same weights and config as ../gpt2/ in the original `gpt2` checkpoint layout; "
               "the expected outputs are ../gpt2/expected.h5 (inputs ../gpt2/data.h5).\n"
               "Loaders must ignore exactly the keys ending in `.attn.bias` and "
               "`.attn.masked_bias`\n(a substring test for `attn.bias` would also drop "
               "`h.<i>.attn.c_attn.bias`).\n")
    write_text(os.path.join(OUT, "README.md"), README.format(
        torch=torch.__version__, numpy=np.__version__, h5py=h5py.__version__,
        hdf5=h5py.version.hdf5_version, regen=REGEN,
        dev_mlp=dev_mlp[0], dev_mix=dev_mix[0], dev_gpt2=dev_gpt2[0], dev_gpt2_at=dev_gpt2[1],
        dev_gpt2_scale=dev_gpt2[2], sens_min=min(sens.values()),
        sens_list=", ".join(sorted(sens))))
    total = 0
    for root, _, files in os.walk(OUT):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    assert total < 3 << 20, total
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
