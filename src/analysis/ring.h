/*
 * ring.h (private): the pairwise engine behind the neighbour searches (knn.c) and the rank
 * counts of information imbalance (infoimb.c).
 *
 * Every rank holds a row block of X. The blocks travel around a ring so that every pair of
 * rows meets once: at step s rank r holds rank (r + s)'s block, the transfer for step s + 1
 * running while step s computes. With symmetry, a pair of blocks {a, b} is handled by one of
 * the two ranks for both ends: the rows of the visiting block accumulate per-row state
 * (neighbour heaps, counts) that travels back to their owner after the step; the own block is
 * handled as a triangle (j > i). Without symmetry each rank takes its own rows against every
 * block. A visitor supplies the per-pair work; the engine supplies the data: the raw rows
 * (for exact distances), a column-centred copy in the working precision with squared norms
 * (for GEMM screening), validity flags, and an optional per-row payload that travels with the
 * rows (e.g. thresholds).
 *
 * Memory per rank: O((N/P) * (D + payload + state)) plus fixed-size GEMM tiles.
 */
#ifndef LH_ANALYSIS_RING_H
#define LH_ANALYSIS_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/timer.h"

#define RING_TILE_Q 256  /* query rows per GEMM tile */
#define RING_TILE_C 2048 /* candidate rows per GEMM tile */

/* One block of rows as a visitor sees it. */
typedef struct ring_block {
  int64_t m, row0;
  const int64_t *gid;  /* global indices of query rows (ring_run_queries), else NULL: row0 + i */
  const void *raw;     /* m x D, input dtype */
  const void *extra;   /* m x extra_bytes: the travelling payload, or NULL */
  void *w;             /* m x D, working dtype, centred; rows of invalid points are zero */
  double *norm;        /* m: squared norms of w */
  double *lbn;         /* m: norm * (1 - cu), +inf for invalid rows (lower-bound term) */
  float *lbnf;         /* m: lbn rounded down to float */
  double *ubn;         /* m: norm * (1 + cu), +inf for invalid rows (upper-bound term) */
  float *ubnf;         /* m: ubn rounded up to float */
  unsigned char *ok;   /* m: all values finite */
} ring_block;

/* What the engine computed for a visitor. */
typedef struct ring_ctx {
  lh_dtype in, wt;     /* input and working (GEMM) precision */
  int64_t N, D;
  int64_t nseg;        /* pairs only within contiguous segments (knn.h), 1 = all pairs */
  double cu;           /* rounding bound factor: |a - d^2| <= cu * (n_x + n_y) (knn.c) */
  bool gemm;           /* centred copies and norms prepared, tiles get G */
  void *G;             /* RING_TILE_Q x RING_TILE_C dot products of the current tile */
  lh_event ev_gemm, ev_visit;
} ring_ctx;

/* A tile: q rows [i0, i0 + tq) against c rows [j0, j0 + tc), G filled when gemm. */
typedef void (*ring_tile_fn)(ring_ctx *rc, void *user, const ring_block *q, int64_t i0,
                             int64_t tq, const ring_block *c, int64_t j0, int64_t tc, bool both,
                             bool tri);

typedef struct ring_ops {
  ring_tile_fn tile;
  size_t extra_bytes;     /* per-row travelling payload, 0 for none */
  const void *own_extra;  /* this rank's rows' payload (n x extra_bytes) */
  size_t state_bytes;     /* per-row state returned to the owner; 0: never symmetric */
  /* visiting-side state: reset for the rows of block c, pack into buf (m x state_bytes),
   * and merge a packed state received for this rank's n rows */
  void (*vis_reset)(void *user, const ring_block *c);
  void (*vis_pack)(void *user, int64_t m, void *buf);
  void (*own_merge)(void *user, int64_t n, const void *buf);
} ring_ops;

/* Runs the ring over X: every pair once (symmetric, when ops->state_bytes > 0) or every
 * ordered pair (i own, j any). With `gemm`, tiles come with G = x~_i . y~_j in the working
 * precision (float32 for float32 input). `label` names the progress bar. Collective. */
LH_NODISCARD lh_status ring_run(const lh_dmat *X, const ring_ops *ops, void *user, bool gemm,
                                int64_t nseg, const char *label);

/* Query rows Q (with their global indices `qid` among X's rows, e.g. a random subset of X)
 * against every row of X: each rank takes its query rows against every block of X (no
 * symmetry; segments not supported). Collective over X's communicator, which Q shares. */
LH_NODISCARD lh_status ring_run_queries(const lh_dmat *Q, const int64_t *qid, const lh_dmat *X,
                                        const ring_ops *ops, void *user, bool gemm,
                                        const char *label);

/* Global index of row i of a block. Pure. */
static inline int64_t ring_gid(const ring_block *b, int64_t i) {
  return b->gid ? b->gid[i] : b->row0 + i;
}

/* The columns [*jlo, *jhi) of tile c[j0, j0 + tc) that row qi of q may pair with (segments,
 * triangle). Pure. */
void ring_row_range(const ring_ctx *rc, const ring_block *q, int64_t qi, const ring_block *c,
                    int64_t j0, int64_t tc, bool tri, int64_t *jlo, int64_t *jhi);

/* The reported squared Euclidean distance of two raw rows: float64 differences squared and
 * summed in eight interleaved partial sums combined in a fixed order, a function of the two
 * rows alone (hence the same on every rank count). Pure. */
double ring_exact_d2(const void *x, const void *y, int64_t D, lh_dtype in);

/* tau rounded up to a float, for float32 screening that must never reject what the exact
 * test keeps. Pure. */
float ring_up_to_float(double t);

#endif
