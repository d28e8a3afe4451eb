#!/usr/bin/env python3
"""Writes jobs/data/digits.h5 from the copy of the UCI handwritten digits that Debian's
python3-sklearn ships (sklearn/datasets/data/digits.csv.gz). Run offline, once:

    /usr/bin/python3 jobs/data/make_digits.py

The HDF5 file is committed; LatentHook itself never needs Python. See jobs/data/README.md for
the data's origin and licence.
"""
import os

import h5py
import numpy as np
from sklearn.datasets import load_digits

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    digits = load_digits()
    X = digits.data.astype(np.float32)  # (1797, 64): 8x8 images, pixel counts 0..16
    y = digits.target.astype(np.int64)  # (1797,): the digit 0..9
    path = os.path.join(HERE, "digits.h5")
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, compression="gzip", compression_opts=9, shuffle=True)
        f.create_dataset("y", data=y, compression="gzip", compression_opts=9, shuffle=True)
        f.attrs["title"] = "Optical Recognition of Handwritten Digits (UCI), test set"
        f.attrs["creators"] = "E. Alpaydin, C. Kaynak"
        f.attrs["source"] = "https://doi.org/10.24432/C50P49 (copy shipped by scikit-learn)"
        f.attrs["license"] = "CC BY 4.0"
    print(f"wrote {path}: X {X.shape} float32, y {y.shape} int64")


if __name__ == "__main__":
    main()
