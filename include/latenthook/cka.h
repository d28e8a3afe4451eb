/*
 * cka.h: centred kernel alignment between two representations of the same N samples
 * (Kornblith, Norouzi, Lee & Hinton, ICML 2019), as tdhook's CkaEstimator (SPEC 5.1), over
 * distributed rows.
 *
 * Linear CKA in feature space: with column-centred X~ (N x Dx) and Y~ (N x Dy),
 *   CKA = ||X~^T Y~||_F^2 / sqrt(||X~^T X~||_F^2 ||Y~^T Y~||_F^2),
 * NaN when the denominator is <= eps or not finite. Two distributed paths: the Gram path
 * (each rank forms its rows' contribution to the three Gram matrices with BLAS, one
 * allreduce) when the Dx x Dx, Dy x Dy and Dx x Dy Grams fit a rank; the ScaLAPACK path
 * (rows redistributed to a 2-D block-cyclic layout, PDSYRK/PDGEMM, Frobenius norms summed
 * from the distributed products) for wide representations. Both accumulate in float64.
 *
 * Debiased linear CKA replaces each squared Frobenius norm by the unbiased HSIC estimator of
 * Song et al. (JMLR 13, 2012) in Kornblith et al.'s feature-space form; it needs N >= 4.
 */
#ifndef LATENTHOOK_CKA_H
#define LATENTHOOK_CKA_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lh_cka_path {
  LH_CKA_AUTO = 0,   /* Gram path when the three Grams fit in gram_limit_bytes */
  LH_CKA_GRAM,       /* force the Gram path */
  LH_CKA_SCALAPACK   /* force the block-cyclic path */
} lh_cka_path;

typedef struct lh_cka_opts {
  bool debiased;
  double eps;               /* default 1e-12 */
  lh_cka_path path;
  int64_t gram_limit_bytes; /* default 1 GiB */
} lh_cka_opts;

/* Linear, biased, eps 1e-12, automatic path. Pure. */
lh_cka_opts lh_cka_defaults(void);

/* Linear CKA of X (N x Dx) and Y (N x Dy), same communicator and N. Collective.
 * Errors (LH_ERR_VALUE): "Expected matching sample counts, got Nx and Ny"; debiased with
 * N < 4. N = 1 or a constant representation gives NaN (not an error). */
LH_NODISCARD lh_status lh_cka_linear(const lh_dmat *X, const lh_dmat *Y, const lh_cka_opts *opts,
                                     double *cka);

#ifdef __cplusplus
}
#endif
#endif
