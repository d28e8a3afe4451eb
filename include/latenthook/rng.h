/*
 * rng.h: counter-based random numbers.
 *
 * Everything random in LatentHook (subsets, shuffles, initialisations) is a function of a
 * seed and a global counter (usually a global row index), never of a stream consumed in rank
 * order: so the same seed gives the same subsets and the same results on any number of ranks.
 * The generator is the SplitMix64 finaliser (Steele, Lea & Flood, OOPSLA 2014) applied to
 * seed * golden-ratio + counter: fast, statistically sound for these uses, not cryptographic.
 */
#ifndef LATENTHOOK_RNG_H
#define LATENTHOOK_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 64 random bits for (seed, counter). Pure. */
static inline uint64_t lh_rng_u64(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * UINT64_C(0x9E3779B97F4A7C15) + counter;
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* A double uniform in [0, 1) for (seed, counter). Pure. */
static inline double lh_rng_unit(uint64_t seed, uint64_t counter) {
  return (double)(lh_rng_u64(seed, counter) >> 11) * 0x1p-53;
}

#ifdef __cplusplus
}
#endif
#endif
