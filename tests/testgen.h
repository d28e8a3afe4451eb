/*
 * testgen.h: the deterministic test data generator shared with tests/golden/make_golden.py.
 *
 * Value k of stream `seed` is a function of (seed, k) only, so any rank can produce any
 * element of a distributed test matrix, and the Python script reproduces the same doubles
 * bit for bit to compute reference results offline.
 *
 *   u = splitmix64_mix(seed * 0x9E3779B97F4A7C15 + k)
 *   wide:   x = (-1)^(u & 1) * (1 + (u >> 12) / 2^52) * 2^(((u >> 4) & 0xff) - 128)
 *   unit:   x = (u >> 11) / 2^53                    (uniform in [0, 1))
 */
#ifndef LH_TESTS_TESTGEN_H
#define LH_TESTS_TESTGEN_H

#include <math.h>
#include <stdint.h>

static inline uint64_t tg_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

static inline uint64_t tg_u64(uint64_t seed, uint64_t k) {
  return tg_mix(seed * UINT64_C(0x9E3779B97F4A7C15) + k);
}

/* Doubles spread over 2^-128 .. 2^128 with random signs: sums cancel massively. */
static inline double tg_wide(uint64_t seed, uint64_t k) {
  uint64_t u = tg_u64(seed, k);
  double m = 1.0 + (double)(u >> 12) / 4503599627370496.0;
  double x = ldexp(m, (int)((u >> 4) & 0xff) - 128);
  return (u & 1) ? -x : x;
}

static inline double tg_unit(uint64_t seed, uint64_t k) {
  return (double)(tg_u64(seed, k) >> 11) / 9007199254740992.0;
}

#endif
