#!/usr/bin/env python3
"""Offline generator of the reference values the C tests compare against.

Run with Debian's python3 (python3-numpy):  /usr/bin/python3 tests/golden/make_golden.py
It rewrites the small JSON files in tests/golden/; they are committed, so the test suite never
needs Python. Every value here is computed independently of LatentHook's C code: exact sums
with fractions.Fraction (float(Fraction) rounds correctly to nearest even).

The data generator mirrors tests/testgen.h bit for bit.
"""
import json
import math
import os
from fractions import Fraction

HERE = os.path.dirname(os.path.abspath(__file__))
M64 = (1 << 64) - 1


def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def u64(seed, k):
    return mix((seed * 0x9E3779B97F4A7C15 + k) & M64)


def wide(seed, k):
    u = u64(seed, k)
    m = 1.0 + (u >> 12) / 4503599627370496.0
    x = math.ldexp(m, ((u >> 4) & 0xFF) - 128)
    return -x if (u & 1) else x


def exact_sum(xs):
    return float(sum((Fraction(x) for x in xs), Fraction(0)))


def exact_sumsq(xs):
    return float(sum((Fraction(x) ** 2 for x in xs), Fraction(0)))


def xsum_cases():
    cases = []
    for seed, n in [(1, 1), (2, 7), (3, 1000), (4, 20000)]:
        xs = [wide(seed, k) for k in range(n)]
        cases.append({"seed": seed, "n": n, "sum": exact_sum(xs).hex(),
                      "naive": sum(xs).hex()})
    return cases


def colsum_case(seed, N, D):
    cols = [[wide(seed, i * D + j) for i in range(N)] for j in range(D)]
    return {"seed": seed, "N": N, "D": D,
            "sum": [exact_sum(c).hex() for c in cols],
            "sumsq": [exact_sumsq(c).hex() for c in cols]}


def main():
    doc = {
        "about": "exact sums of tests/testgen.h tg_wide streams (fractions.Fraction), float.hex",
        "sums": xsum_cases(),
        "colsum": [colsum_case(7, 1001, 5), colsum_case(8, 3, 4)],
    }
    with open(os.path.join(HERE, "xsum.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
