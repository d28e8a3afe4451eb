/*
 * twonn.h: the TwoNN intrinsic-dimension estimator (Facco et al., Sci. Rep. 7:12140, 2017),
 * as tdhook's TwoNnDimensionEstimator (SPEC 4.2), over a distributed point cloud.
 *
 * Each point's two nearest valid neighbours r1 <= r2 (knn.h, eps rule of SPEC 4.0) give
 * mu = r2 / r1; points without two neighbours are invalid. With the Nv values of mu sorted,
 * x_i = ln mu_(i), y_i = -ln(1 - i / Nv) for i = 1 .. n_fit, and the dimension is the slope of
 * the least-squares line through the origin, sum(x y) / sum(x^2). tdhook fits every point but
 * the largest (n_fit = Nv - 1); Facco et al. and DADApy discard a fraction F of the largest mu
 * (n_fit = min(Nv - 1, floor(Nv (1 - F)))). The maximum-likelihood estimate
 * (Nv - 1) / sum(ln mu) over all valid points is reported beside it.
 *
 * The sort of mu is a distributed sample sort (no rank gathers the N values) and every sum
 * is exact (xsum.h), so results are bit-identical for any rank count.
 */
#ifndef LATENTHOOK_TWONN_H
#define LATENTHOOK_TWONN_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_twonn_opts {
  double eps;              /* neighbours within eps are ignored (default 1e-5) */
  double discard_fraction; /* F in [0, 1): fit the smallest 1 - F of mu (default 0 = tdhook) */
  bool return_xy;          /* also return the fitted x and y */
  int64_t segments;        /* > 1: run independently on S contiguous row ranges (knn.h) */
} lh_twonn_opts;

/* eps = 1e-5, F = 0, no x/y, no segments. Pure. */
lh_twonn_opts lh_twonn_defaults(void);

typedef struct lh_twonn_result {
  int64_t S;          /* segments (1 without segments) */
  double *dimension;  /* S: least-squares slope; NaN when all fitted mu are 1 */
  double *mle;        /* S: (Nv - 1) / sum(ln mu) */
  int64_t *n_valid;   /* S: Nv */
  int64_t *n_fit;     /* S */
  /* With return_xy (and S == 1): x and y as (N - 1) x 1 matrices on the input's communicator,
   * the fitted points in ascending order of mu, then NaN up to N - 1. Otherwise NULL. */
  lh_dmat *x, *y;
} lh_twonn_result;

/* Estimates the intrinsic dimension of the rows of X. Collective over X's communicator.
 * Errors (LH_ERR_VALUE, with tdhook's messages): "At least 3 points required for Two NN
 * dimension estimation" (N < 3, or a segment with fewer than 3 rows), "At least 3 valid
 * points required for Two NN dimension estimation" (Nv < 3); F outside [0, 1). */
LH_NODISCARD lh_status lh_twonn_run(const lh_dmat *X, const lh_twonn_opts *opts,
                                    lh_twonn_result **out);

void lh_twonn_result_destroy(lh_twonn_result **r);

#ifdef __cplusplus
}
#endif
#endif
