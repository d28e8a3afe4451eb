#!/usr/bin/env python3
"""Next-token probabilities at the last position of LatentHook logits, for the README's
examples:  python3 jobs/models/last_token_probs.py OUT.h5[:/output] [TOKEN ...]
(default tokens: a b). Prints, for each token of jobs/models/tiny-gpt2/vocab.json, its mean
softmax probability over the samples and the number of samples whose top prediction it is.
Needs python3-h5py and python3-numpy."""
import json
import os
import sys

import h5py
import numpy as np

path, _, dset = sys.argv[1].partition(":")
tokens = sys.argv[2:] or ["a", "b"]
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny-gpt2",
                       "vocab.json")) as f:
    vocab = json.load(f)
with h5py.File(path, "r") as f:
    logits = f[dset or "/output"][()].astype(np.float64)
last = logits[:, -1] if logits.ndim == 3 else logits
p = np.exp(last - last.max(axis=1, keepdims=True))
p /= p.sum(axis=1, keepdims=True)
top = last.argmax(axis=1)
print("  ".join("P(%s) = %.3f (top in %d/%d)" % (t, p[:, vocab[t]].mean(),
                                                  int((top == vocab[t]).sum()), len(top))
                for t in tokens))
