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

/* The L x L matrix of linear CKA over L representations of the same N samples (same
 * communicator), on every rank: each layer is centred and its ||X~^T X~||^2 computed once,
 * then one cross Gram per pair. Collective. Errors as lh_cka_linear. */
LH_NODISCARD lh_status lh_cka_linear_matrix(const lh_dmat *const *layers, int64_t L,
                                            const lh_cka_opts *opts, double *M);

/* ---- kernel CKA ------------------------------------------------------------------------ */

/* Kernels on the samples: linear, K_ij = x~_i . x~_j (column-centred features), or the RBF
 * kernel of Kornblith et al., K_ij = exp(-S_ij / (2 t^2 m)) with S_ij = ||x_i - x_j||^2 and
 * m the median of all N^2 entries of S (the N zeros of the diagonal included, as in their
 * reference code). */
typedef enum lh_kernel_kind { LH_KERNEL_LINEAR, LH_KERNEL_RBF } lh_kernel_kind;

/* How the N x N kernels are handled: held as ScaLAPACK block-cyclic matrices (lh_kmat) when
 * both fit in held_limit_bytes per rank, else streamed: kernel blocks are computed on the fly
 * around the ring of ranks, in passes (the median by selection passes, then one pass for the
 * kernel statistics), in O(N/P * D) memory. */
typedef enum lh_kmat_mode { LH_KMAT_AUTO = 0, LH_KMAT_HELD, LH_KMAT_STREAM } lh_kmat_mode;

typedef struct lh_kcka_opts {
  lh_kernel_kind kernel;
  double threshold;         /* RBF bandwidth factor t (default 1) */
  bool debiased;            /* unbiased HSIC (Song et al. 2012); needs N >= 4 */
  double eps;               /* NaN when the denominator <= eps (default 1e-12) */
  lh_kmat_mode mode;
  int64_t held_limit_bytes; /* default 512 MiB per rank for the two kernels */
  /* Streaming median selection: pair values sampled to bracket the median (default 2^20) and
   * values collected per rank and pass (default 2^22); smaller values cost more passes. */
  int64_t select_sample, select_cap;
} lh_kcka_opts;

/* RBF, t = 1, biased, eps 1e-12, automatic mode. Pure. */
lh_kcka_opts lh_kcka_defaults(void);

/* Kernel CKA of X and Y: <K', L'>_F / (||K'||_F ||L'||_F) with K', L' the centred kernels
 * (H K H, or the unbiased centring when debiased). Also returns the RBF medians (NaN for the
 * linear kernel; either pointer may be NULL). A zero median or non-finite input gives NaN.
 * Collective. Errors as lh_cka_linear. */
LH_NODISCARD lh_status lh_cka_kernel(const lh_dmat *X, const lh_dmat *Y, const lh_kcka_opts *opts,
                                     double *cka, double *median_x, double *median_y);

#ifdef __cplusplus
}
#endif
#endif
