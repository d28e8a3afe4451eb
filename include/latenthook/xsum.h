/*
 * xsum.h: exact, order-independent summation of float64 values.
 *
 * LatentHook promises the same answer on any number of ranks. A floating-point sum depends
 * on the order of its terms, and the order depends on how rows are split; so sums that cross
 * ranks (column means, traces, the sums of a least-squares fit) are accumulated exactly in a
 * fixed-point "superaccumulator" wide enough for every double (Kulisch's long accumulator,
 * in carry-save form with 32-bit digits held in int64), merged across ranks with one
 * MPI_SUM allreduce of integers, and rounded once, to nearest even. The result is the
 * correctly rounded exact sum: independent of order, of the rank count, and more accurate
 * than any compensated summation.
 *
 * Products can be accumulated exactly too (lh_xsum_add_product uses an FMA to split a*b into
 * two doubles whose sum is exact, barring underflow below 2^-1022).
 *
 * NaN and infinities are counted apart: the result is NaN if any NaN or both infinities
 * were added, otherwise the infinity if one was added.
 */
#ifndef LATENTHOOK_XSUM_H
#define LATENTHOOK_XSUM_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 32-bit digits from 2^-1088 up to 2^1152: every double, with 2^64 terms of headroom. */
#define LH_XSUM_DIGITS 70
/* Slots of an accumulator as an int64 array: digits, then NaN, +inf, -inf counts, then the
 * number of adds since the last normalisation. */
#define LH_XSUM_SLOTS (LH_XSUM_DIGITS + 4)

typedef struct lh_xsum {
  int64_t slot[LH_XSUM_SLOTS];
} lh_xsum;

/* Sets the accumulator to zero. Pure. */
void lh_xsum_init(lh_xsum *acc);

/* Adds x exactly. Pure. */
void lh_xsum_add(lh_xsum *acc, double x);

/* Adds a*b exactly (except when the product underflows). Pure. */
void lh_xsum_add_product(lh_xsum *acc, double a, double b);

/* Adds the value of `other` into `acc`. Pure. */
void lh_xsum_merge(lh_xsum *acc, const lh_xsum *other);

/* The exact sum rounded to the nearest double (ties to even). Pure; `acc` is normalised. */
double lh_xsum_round(lh_xsum *acc);

/* Sums `count` accumulators element-wise over `comm` (in place, one MPI_Allreduce of
 * int64). Collective. Every rank ends with the same accumulators. */
LH_NODISCARD lh_status lh_xsum_allreduce(lh_xsum *acc, int count, MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif
