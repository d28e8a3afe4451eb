/*
 * rollout.c: attention rollout for one sample (rollout.h; Abnar & Zuidema 2020, eq. for
 * "attention rollout": R = Â_L ... Â_1 with Â = rows-normalised 0.5 A + 0.5 I).
 *
 * The layer product is accumulated one layer at a time (lh_rollout_step), which is also how
 * the data-parallel driver (attention.c) uses it from inside the forward hooks, so it never
 * keeps more than one layer of a sample's attention. lh_attention_rollout is the same
 * sequence of calls over an (L, H, T, T) array, so the two give bit-identical results.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/rollout.h"

lh_rollout_opts lh_rollout_defaults(void) {
  lh_rollout_opts o = {.alpha = 0.5, .heads = NULL, .nheads = 0};
  return o;
}

lh_status lh_rollout_check(const lh_rollout_opts *o, int64_t H) {
  if (!(o->alpha >= 0.0 && o->alpha <= 1.0))
    return LH_ERROR(LH_ERR_VALUE, "alpha (the residual weight) must be in [0, 1], got %g",
                    o->alpha);
  if (!o->heads) return LH_OK;
  if (o->nheads < 1) return LH_ERROR(LH_ERR_VALUE, "an empty list of heads");
  for (int64_t i = 0; i < o->nheads; i++) {
    if (o->heads[i] < 0 || o->heads[i] >= H)
      return LH_ERROR(LH_ERR_VALUE,
                      "head %lld out of range: the attention has %lld heads (0 to %lld)",
                      (long long)o->heads[i], (long long)H, (long long)H - 1);
    for (int64_t j = 0; j < i; j++)
      if (o->heads[j] == o->heads[i])
        return LH_ERROR(LH_ERR_VALUE, "head %lld given twice", (long long)o->heads[i]);
  }
  return LH_OK;
}

void lh_attention_head_mean(int64_t H, int64_t T, const float *A, const int64_t *heads,
                            int64_t nheads, double *out) {
  const int64_t n = heads ? nheads : H, TT = T * T;
  memset(out, 0, (size_t)TT * sizeof *out);
  for (int64_t k = 0; k < n; k++) {
    const float *a = A + (heads ? heads[k] : k) * TT; /* (T, T) of one head */
    for (int64_t e = 0; e < TT; e++) out[e] += (double)a[e];
  }
  const double s = 1.0 / (double)n;
  for (int64_t e = 0; e < TT; e++) out[e] *= s;
}

lh_status lh_rollout_mix(int64_t T, double alpha, double *A) {
  for (int64_t i = 0; i < T; i++) {
    double *row = A + i * T, sum = 0.0;
    for (int64_t j = 0; j < T; j++) {
      row[j] = (1.0 - alpha) * row[j] + (j == i ? alpha : 0.0);
      sum += row[j];
    }
    if (!(sum > 0.0) || !isfinite(sum))
      return LH_ERROR(LH_ERR_VALUE,
                      "attention rollout: row %lld of a layer sums to %g after the residual "
                      "mix (alpha %g); cannot renormalise",
                      (long long)i, sum, alpha);
    const double inv = 1.0 / sum;
    for (int64_t j = 0; j < T; j++) row[j] *= inv;
  }
  return LH_OK;
}

void lh_rollout_step(int64_t T, const double *Ahat, double *R, double *work) {
  if (T >= LH_ROLLOUT_GEMM_MIN_T && T <= INT32_MAX) {
    const int t = (int)T;
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t, t, t, 1.0, Ahat, t, R, t, 0.0, work,
                t);
  } else { /* work[i, :] = sum_k Â[i, k] R[k, :] */
    memset(work, 0, (size_t)(T * T) * sizeof *work);
    for (int64_t i = 0; i < T; i++)
      for (int64_t k = 0; k < T; k++) {
        const double a = Ahat[i * T + k];
        const double *r = R + k * T;
        double *w = work + i * T;
        for (int64_t j = 0; j < T; j++) w[j] += a * r[j];
      }
  }
  memcpy(R, work, (size_t)(T * T) * sizeof *R);
}

lh_status lh_attention_rollout(int64_t L, int64_t H, int64_t T, const float *attn,
                               const lh_rollout_opts *o, double *out) {
  lh_status st = LH_OK;
  double *ahat = NULL, *work = NULL, *r = NULL;
  if (L < 1 || H < 1 || T < 1)
    LH_FAIL(LH_ERR_VALUE, "attention rollout needs L, H, T >= 1, got %lld, %lld, %lld",
            (long long)L, (long long)H, (long long)T);
  LH_TRY(lh_rollout_check(o, H));
  LH_TRY(lh_alloc((size_t)(T * T), sizeof *ahat, false, "rollout layer", &ahat));
  LH_TRY(lh_alloc((size_t)(T * T), sizeof *work, false, "rollout workspace", &work));
  LH_TRY(lh_alloc((size_t)(T * T), sizeof *r, false, "rollout", &r));
  for (int64_t l = 0; l < L; l++) {
    lh_attention_head_mean(H, T, attn + l * H * T * T, o->heads, o->nheads, ahat);
    LH_TRY(lh_rollout_mix(T, o->alpha, ahat));
    if (l == 0)
      memcpy(r, ahat, (size_t)(T * T) * sizeof *r);
    else
      lh_rollout_step(T, ahat, r, work);
  }
  memcpy(out, r, (size_t)(T * T) * sizeof *out); /* written only on success */
done:
  lh_free(r);
  lh_free(ahat);
  lh_free(work);
  return st;
}
