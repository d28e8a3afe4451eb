/*
 * infoimb.h: the information imbalance between two representations of the same N samples
 * (Glielmo, Zeni, Cheng, Csanyi & Laio, PNAS Nexus 1:pgac039, 2022), as tdhook's
 * InformationImbalanceEstimator (SPEC 5.2), computed without any N x N matrix.
 *
 * Delta(A -> B) = (2 / N) < r^B_ij | j nearest to i in A >: how far, in B's ranking, the
 * nearest neighbours in A are. Ranks follow LatentHook's tie rule: neighbours ordered by
 * (distance, global index), so r^B_ij = 1 + #{l != i : (d_B(i,l), l) < (d_B(i,j), j)}.
 * Three passes of the ring engine: nearest neighbours in A; nearest in B while counting the
 * B-rank of each A-neighbour; the A-rank of each B-neighbour. Integer rank sums make the
 * result the same on every rank count.
 *
 * Beyond tdhook: the k nearest neighbours (DADApy's average over k, floor (k + 1) / N) and
 * any Minkowski exponent p (p = 2 screened through GEMM, others computed directly).
 */
#ifndef LATENTHOOK_INFOIMB_H
#define LATENTHOOK_INFOIMB_H

#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_ii_opts {
  double p;  /* Minkowski exponent >= 1 or INFINITY (default 2) */
  int64_t k; /* neighbours averaged over (default 1 = tdhook) */
  /* > 0: only this many query points, the ones with the smallest keys rng(seed, index) (the
   * same for any rank count), ranked against all N points: the estimate is the mean of the
   * queries' values, with its standard error. 0 (default): every point. */
  int64_t subsample;
  uint64_t seed;
} lh_ii_opts;

/* p = 2, k = 1, no subsampling. Pure. */
lh_ii_opts lh_ii_defaults(void);

typedef struct lh_ii_result {
  double a_to_b, b_to_a; /* NaN when no query qualifies */
  double floor;          /* (k + 1) / N: the value of identical neighbourhoods */
  double se_a_to_b, se_b_to_a; /* standard errors with subsampling, else NaN */
  int64_t pairs_a_to_b, pairs_b_to_a; /* (query, neighbour) pairs averaged over */
} lh_ii_result;

/* Both directions for A (N x Da) and B (N x Db) on the same communicator. A query i counts
 * in Delta(A -> B) when its rows in A and B are finite and so is its A-neighbour's row in B;
 * rows with NaN/inf are never neighbours. Collective.
 * Errors (LH_ERR_VALUE): "Expected at least 2 samples, got N"; "Expected matching sample
 * counts, got Na and Nb"; k outside [1, N - 1]; p < 1. */
LH_NODISCARD lh_status lh_ii_run(const lh_dmat *A, const lh_dmat *B, const lh_ii_opts *opts,
                                 lh_ii_result *out);

/* The L x L matrix M[a][b] = Delta(layer a -> layer b) over L representations of the same N
 * samples (same communicator), on every rank; the diagonal is (k + 1) / N. Each layer's
 * neighbour lists are found once, and one ring pass per target layer ranks every other
 * layer's neighbours in it: 2L passes in all. Collective. Errors as lh_ii_run. */
LH_NODISCARD lh_status lh_ii_matrix(const lh_dmat *const *layers, int64_t L,
                                    const lh_ii_opts *opts, double *M);

#ifdef __cplusplus
}
#endif
#endif
