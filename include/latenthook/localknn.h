/*
 * localknn.h: per-point local intrinsic dimension from k-NN distances, as tdhook's
 * LocalKnnDimensionEstimator (SPEC 4.1; Farahmand, Szepesvari & Audibert, ICML 2007, with the
 * k-th and 2k-th neighbours): d_i = ln 2 / ln(R_2k / R_k), NaN where a point lacks 2k valid
 * neighbours or R_2k = R_k. The output is one value per point, distributed like the input
 * rows, never gathered.
 */
#ifndef LATENTHOOK_LOCALKNN_H
#define LATENTHOOK_LOCALKNN_H

#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tdhook's k = "auto": max(2, min(floor(sqrt(N)), floor((N - 1) / 2))). Pure. */
int64_t lh_localknn_auto_k(int64_t N);

/* Writes into `dim` (an N x 1 float64 matrix on X's communicator, rows as X's) the local
 * dimension of every row of X, using k neighbours (k = 0 means "auto") and tdhook's eps rule.
 * Collective. Errors (LH_ERR_VALUE): "k must be greater than 1" (k = 1 or negative),
 * "At least 2k+1 points required for local KNN (k=K), got N". */
LH_NODISCARD lh_status lh_localknn_run(const lh_dmat *X, int64_t k, double eps, lh_dmat *dim);

/* Summary of per-point values (an N x 1 float64 matrix): mean and median of the finite
 * values (NaN if none; the median of an even count is the mean of the two middle values) and
 * the number of non-finite ones. Exact mean, distributed selection for the median: identical
 * for any rank count. Collective. */
LH_NODISCARD lh_status lh_localknn_summary(const lh_dmat *dim, double *mean, double *median,
                                           int64_t *nonfinite);

#ifdef __cplusplus
}
#endif
#endif
