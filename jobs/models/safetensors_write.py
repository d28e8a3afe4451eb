"""Writes tensors in the safetensors format: an 8-byte little-endian header length, a compact
JSON header padded with spaces to 8 bytes, then the raw little-endian data, in the order the
safetensors library writes (larger dtypes first, then by name). Debian 12 packages no
safetensors library for Python, so the offline scripts that ship or check models share this
one writer: jobs/models/train_*.py and tests/golden/make_golden_nn.py (which also reads every
file back and checks it)."""
import collections
import json
import struct

import numpy as np

ST_DTYPES = {np.dtype("float32"): "F32", np.dtype("uint8"): "U8", np.dtype("int64"): "I64",
             np.dtype("float64"): "F64"}
# safetensors' Dtype enum order (the library writes larger dtypes first)
ST_RANK = {"BOOL": 0, "U8": 1, "I8": 2, "I16": 3, "U16": 4, "F16": 5, "BF16": 6, "I32": 7,
           "U32": 8, "F32": 9, "F64": 10, "I64": 11, "U64": 12}


def write_safetensors(path, tensors):
    """tensors: name -> numpy array (any shape, incl. 0-d); written little-endian, C order."""
    items = []
    for name, a in tensors.items():
        a = np.array(a, order="C")  # (np.ascontiguousarray would make a scalar 1-d)
        items.append((name, ST_DTYPES[a.dtype], a))
    items.sort(key=lambda t: (-ST_RANK[t[1]], t[0]))
    header = collections.OrderedDict([("__metadata__", {"format": "pt"})])
    blobs = []
    off = 0
    for name, dt, a in items:
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes(order="C")
        header[name] = collections.OrderedDict([("dtype", dt), ("shape", list(a.shape)),
                                                ("data_offsets", [off, off + len(b)])])
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
