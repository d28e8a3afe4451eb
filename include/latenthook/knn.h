/*
 * knn.h: distributed exact k-nearest-neighbour search (Euclidean).
 *
 * For every row of a distributed N x D matrix, the k nearest other rows, with the semantics
 * of tdhook's neighbour table (SPEC 4.0): the row itself, rows at distance <= eps and rows
 * holding NaN or infinity are never neighbours; what is left is ordered by (distance, global
 * index), so ties go to the lower index. Missing neighbours (fewer than k valid ones) have
 * distance +inf and index -1.
 *
 * The answer is exact and does not depend on the rank count: every reported distance is
 * computed from the input values as sqrt(sum_k (x_k - y_k)^2) in float64 (the squares summed
 * in eight interleaved partial sums, combined in a fixed order: a function of the two rows
 * alone), and candidates are ranked by that value. The fast part only screens: row
 * blocks travel around a ring of ranks (the next block's transfer overlapping the current
 * computation), each rank takes distances between its rows and the visiting block through
 * BLAS GEMM on column-centred data (||x||^2 + ||y||^2 - 2 x.y, in float32 for float32 input),
 * and a rigorous bound on that formula's rounding error decides which candidates can still
 * enter a row's top k; only those are recomputed exactly. Near-duplicates, eps boundaries and
 * near-ties therefore come out right where the GEMM formula alone cancels catastrophically.
 *
 * Memory per rank: O((N/P) * (D + k)) plus fixed-size GEMM tiles.
 */
#ifndef LATENTHOOK_KNN_H
#define LATENTHOOK_KNN_H

#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_knn_opts {
  int64_t k;      /* neighbours per row, >= 1 */
  double eps;     /* distances <= eps are not neighbours (tdhook default 1e-5); eps < 0 keeps
                   * every other row, exact duplicates included */
  /* Optional restriction to segments: the N rows are cut into `segments` contiguous ranges
   * of near-equal size, [floor(j N / S), floor((j + 1) N / S)), and a row's neighbours are
   * searched in its own range only. 0 or 1 = no restriction. */
  int64_t segments;
  /* Minkowski exponent: 2 (Euclidean, screened through GEMM), or any p >= 1 and INFINITY
   * (computed directly, every pair exactly). */
  double p;
} lh_knn_opts;

/* Defaults: k = 1, eps = 1e-5, no segments, p = 2. Pure. */
lh_knn_opts lh_knn_defaults(void);

/* Neighbours of this rank's rows. */
typedef struct lh_knn_result {
  int64_t n, k;   /* local rows, neighbours per row */
  int64_t row0;   /* global index of local row 0 */
  double *dist;   /* n x k, ascending per row; +inf where absent */
  int64_t *index; /* n x k, global row indices; -1 where absent */
} lh_knn_result;

/* Runs the search over X. Collective over X's communicator.
 * Errors: k < 1 or eps NaN (LH_ERR_VALUE), allocation (LH_ERR_NOMEM). */
LH_NODISCARD lh_status lh_knn_run(const lh_dmat *X, const lh_knn_opts *opts,
                                  lh_knn_result **out);

/* Releases a result; accepts NULL. Local. */
void lh_knn_result_destroy(lh_knn_result **r);

/* The quantity neighbours are ranked by, for two rows x, y of D values of type `dt`: the sum
 * of squared differences for p = 2, of |x_k - y_k|^p for finite p, the largest |x_k - y_k|
 * for p = INFINITY; every term in float64, summed in eight interleaved partial sums combined
 * in a fixed order (a function of the two rows alone). Pure. */
double lh_knn_key(const void *x, const void *y, int64_t D, lh_dtype dt, double p);

/* The distance of a key: sqrt for p = 2, key^(1/p) for finite p, the key for 1 and INFINITY.
 * Pure. */
double lh_knn_key_distance(double key, double p);

/* Rank counting alongside a search: for every local row i and each of its nt thresholds
 * (key[i][t], index[i][t]), the number of other rows l with finite values and
 * (key(i, l), l) < (key[i][t], index[i][t]) in lexicographic order. The eps rule does not
 * apply to counting (duplicates count). Thresholds of a row must be in ascending order. */
typedef struct lh_knn_ranks {
  int64_t nt;
  const double *key;    /* n x nt */
  const int64_t *index; /* n x nt */
  int64_t *count;       /* n x nt, written */
} lh_knn_ranks;

/* The search with optional rank counting (ranks may be NULL) and optional neighbours (out may
 * be NULL when only counting). Both come from the same pass over the data. Collective.
 * Errors as lh_knn_run, and p < 1 or NaN (LH_ERR_VALUE). */
LH_NODISCARD lh_status lh_knn_search(const lh_dmat *X, const lh_knn_opts *opts,
                                     lh_knn_ranks *ranks, lh_knn_result **out);

/* The same for the rows of Q (queries: rows of X, e.g. a random subset, with global indices
 * qid[] among X's rows, distributed like any matrix on X's communicator) against all rows of
 * X: each query's neighbours in X exclude the query's own row. The result's row0 is -1 (rows
 * follow Q). No segments. Collective. */
LH_NODISCARD lh_status lh_knn_search_queries(const lh_dmat *Q, const int64_t *qid,
                                             const lh_dmat *X, const lh_knn_opts *opts,
                                             lh_knn_ranks *ranks, lh_knn_result **out);

/* First global row of segment j of S over N rows (see lh_knn_opts). Pure. */
static inline int64_t lh_knn_segment_start(int64_t N, int64_t S, int64_t j) {
  return j * (N / S) + (j * (N % S)) / S; /* = floor(j N / S) without overflowing j N */
}

/* The segment (of S over N rows) holding global row i. Pure. */
int64_t lh_knn_segment_of(int64_t N, int64_t S, int64_t i);

#ifdef __cplusplus
}
#endif
#endif
