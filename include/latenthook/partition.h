/*
 * partition.h: how N rows split over P ranks.
 *
 * Contiguous row blocks in rank order; the first N mod P ranks take one row more. N < P is
 * legal: the last ranks then hold no rows. Everything that distributes rows (lh_dmat, the
 * HDF5 readers, `latenthook info`) uses these functions, so the layout is defined once.
 */
#ifndef LATENTHOOK_PARTITION_H
#define LATENTHOOK_PARTITION_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Rows held by rank r of P. Pure. */
static inline int64_t lh_part_count(int64_t N, int P, int r) {
  return N / P + (r < N % P ? 1 : 0);
}

/* Global index of the first row of rank r. Pure. */
static inline int64_t lh_part_offset(int64_t N, int P, int r) {
  int64_t q = N / P, rem = N % P;
  return (int64_t)r * q + (r < rem ? r : rem);
}

/* Rank that holds global row i (0 <= i < N). Pure. */
static inline int lh_part_owner(int64_t N, int P, int64_t i) {
  int64_t q = N / P, rem = N % P;
  int64_t big = rem * (q + 1); /* rows held by the ranks with one extra row */
  if (i < big) return (int)(i / (q + 1));
  return (int)(rem + (i - big) / q);
}

#ifdef __cplusplus
}
#endif
#endif
