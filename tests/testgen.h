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
 *   normal: Box-Muller on unit(seed, 2k) and unit(seed, 2k + 1):
 *           sqrt(-2 log(1 - u1)) * cos(6.283185307179586 * u2)
 *
 * Point clouds of known intrinsic dimension (row i, column j), evaluated in exactly this
 * order of operations (no FMA contraction: the build uses ISO C11, where GCC does not fuse):
 *   plane10 (D = 10): a = unit(s, 2i), b = unit(s, 2i + 1),
 *                     x_ij = a * A_j0 + b * A_j1,  A_jc = unit(s + 1000, 2j + c) - 0.5
 *   sphere3 (D = 4):  g_j = normal(s, 4i + j), x_ij = g_j / sqrt(((g0^2 + g1^2) + g2^2) + g3^2)
 *   cube5 (D = 5):    x_ij = unit(s, 5i + j)
 *   gauss (any D):    x_ij = normal(s, D i + j)
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

static inline double tg_normal(uint64_t seed, uint64_t k) {
  double u1 = tg_unit(seed, 2 * k), u2 = tg_unit(seed, 2 * k + 1);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

typedef enum { TG_PLANE10, TG_SPHERE3, TG_CUBE5, TG_GAUSS } tg_cloud;

/* Columns of a cloud (D for TG_GAUSS is the caller's). */
static inline int tg_cloud_dim(tg_cloud c, int D) {
  return c == TG_PLANE10 ? 10 : c == TG_SPHERE3 ? 4 : c == TG_CUBE5 ? 5 : D;
}

/* Writes row i of cloud c (seed s) into x[0..dim). */
static inline void tg_cloud_row(tg_cloud c, uint64_t s, int64_t i, int D, double *x) {
  uint64_t u = (uint64_t)i;
  switch (c) {
    case TG_PLANE10: {
      double a = tg_unit(s, 2 * u), b = tg_unit(s, 2 * u + 1);
      for (int j = 0; j < 10; j++) {
        double a0 = tg_unit(s + 1000, 2 * (uint64_t)j) - 0.5;
        double a1 = tg_unit(s + 1000, 2 * (uint64_t)j + 1) - 0.5;
        x[j] = a * a0 + b * a1;
      }
      break;
    }
    case TG_SPHERE3: {
      double g[4];
      for (int j = 0; j < 4; j++) g[j] = tg_normal(s, 4 * u + (uint64_t)j);
      double nrm = sqrt(((g[0] * g[0] + g[1] * g[1]) + g[2] * g[2]) + g[3] * g[3]);
      for (int j = 0; j < 4; j++) x[j] = g[j] / nrm;
      break;
    }
    case TG_CUBE5:
      for (int j = 0; j < 5; j++) x[j] = tg_unit(s, 5 * u + (uint64_t)j);
      break;
    case TG_GAUSS:
      for (int j = 0; j < D; j++) x[j] = tg_normal(s, (uint64_t)D * u + (uint64_t)j);
      break;
  }
}

#endif
