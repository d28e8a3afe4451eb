/*
 * rollout.h: attention rollout (Abnar & Zuidema 2020, "Quantifying Attention Flow in
 * Transformers", ACL), the pure kernels for one sample.
 *
 * Per layer l = 1..L the attention probabilities A_l,h (T x T, rows = query positions,
 * columns = key positions, each row summing to 1) of the selected heads h in S are averaged
 * and mixed with the residual connection, then the layers are multiplied:
 *
 *   Ā_l  = (1/|S|) sum_{h in S} A_l,h
 *   Â_l  = D_l^-1 (alpha I + (1 - alpha) Ā_l),   D_l = diag(row sums), so rows sum to 1
 *   R_1  = Â_1,   R_l = Â_l R_{l-1},   R = R_L = Â_L ... Â_1
 *
 * R[i, j] is the share of output position i's information that comes from input token j
 * through all the layers. alpha = 0.5 is the paper's choice (A + I, renormalised); alpha = 1
 * gives R = I; alpha = 0 multiplies the raw head means.
 *
 * Everything is computed in float64 from the float32 probabilities: the head mean sums the
 * heads in index order; the product is a naive i-k-j loop for T < LH_ROLLOUT_GEMM_MIN_T and
 * BLAS dgemm from there on (the same path for every sample of a given T, so the result of a
 * sample does not depend on where or with what else it is computed).
 *
 * All functions are Pure (no MPI, no allocation except lh_attention_rollout's workspace).
 */
#ifndef LATENTHOOK_ROLLOUT_H
#define LATENTHOOK_ROLLOUT_H

#include <stdint.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LH_ROLLOUT_GEMM_MIN_T 64

typedef struct lh_rollout_opts {
  double alpha;         /* residual weight in [0, 1]; default 0.5 */
  const int64_t *heads; /* head indices averaged (distinct, in [0, H)); NULL: all heads */
  int64_t nheads;       /* entries of heads (ignored when heads is NULL) */
} lh_rollout_opts;

/* alpha 0.5, all heads. Pure. */
lh_rollout_opts lh_rollout_defaults(void);

/* Checks alpha and the head list against H heads: LH_ERR_VALUE for alpha outside [0, 1] or
 * NaN, an empty list, a head outside [0, H) or given twice. Pure. */
LH_NODISCARD lh_status lh_rollout_check(const lh_rollout_opts *o, int64_t H);

/* Ā: out (T x T) = mean over the selected heads of A (H x T x T, float32). heads NULL: all H.
 * The list must have passed lh_rollout_check. Pure. */
void lh_attention_head_mean(int64_t H, int64_t T, const float *A, const int64_t *heads,
                            int64_t nheads, double *out);

/* Â from Ā in place (T x T): alpha I + (1 - alpha) Ā, each row divided by its sum.
 * LH_ERR_VALUE naming the row when a row sum is not positive and finite (e.g. alpha = 0 and
 * an all-zero attention row). Pure. */
LH_NODISCARD lh_status lh_rollout_mix(int64_t T, double alpha, double *A);

/* One layer of the product: R <- Â R (all T x T; work: T x T scratch). Pure. */
void lh_rollout_step(int64_t T, const double *Ahat, double *R, double *work);

/* The rollout of one sample: attn is (L, H, T, T) float32 probabilities (layer 0 the first
 * applied to the input), out is R (T x T, float64). L >= 1. Errors: those of
 * lh_rollout_check and lh_rollout_mix; LH_ERR_VALUE for L, H or T < 1; LH_ERR_NOMEM for the
 * workspace. Pure. */
LH_NODISCARD lh_status lh_attention_rollout(int64_t L, int64_t H, int64_t T, const float *attn,
                                            const lh_rollout_opts *o, double *out);

#ifdef __cplusplus
}
#endif
#endif
