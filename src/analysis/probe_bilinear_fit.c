/*
 * probe_bilinear_fit.c: training of tdhook's LowRankBilinearEstimator (SPEC 3.6, 3.8) over
 * two distributed activation sets, data-parallel Adam; scores, predictions and metrics.
 *
 * Model: s = (U h1 + u) * (V h2 + v) + b over C outputs. With p = U h1 + u, q = V h2 + v and
 * the residual r = dL/ds of one sample (softmax(s) - onehot(y) for cross-entropy, 2 (s - y)
 * for squared error), the gradient is dU_c = r_c q_c h1^T, du_c = r_c q_c, dV_c = r_c p_c h2^T,
 * dv_c = r_c p_c, db_c = r_c; the batch loss is the mean over the batch. Per chunk of the
 * batch members a rank owns: P = H1c U^T, Q = H2c V^T (two DGEMMs), then gU += (R*Q)^T H1c and
 * gV += (R*P)^T H2c (two more), and one MPI_Allreduce (MPI_SUM, float64) per step.
 *
 * Schedule (for reference implementations, tests/golden/make_golden_bilinear.py):
 *   init:    s0 = lh_rng_u64(seed, 0xB111), u(k) = lh_rng_unit(s0, k), a1 = 1/sqrt(d1),
 *            a2 = 1/sqrt(d2): U[c][j] = (2u(c d1 + j) - 1) a1, u[c] = (2u(C d1 + c) - 1) a1,
 *            V[c][j] = (2u(C d1 + C + c d2 + j) - 1) a2, v[c] = (2u(C d1 + C + C d2 + c) - 1) a2,
 *            b = 0 (torch's nn.Linear law; tdhook's zero bias);
 *   epoch e: the permutation of probe_adam.c (Fisher-Yates of the selected global indices,
 *            ascending, with se = lh_rng_u64(seed, 0x5EED0000 + e), j = lh_rng_u64(se, k) mod
 *            (k + 1) for k = M-1 down to 1); mini-batches of batch_size in that order;
 *   step t:  torch's Adam (bias corrections; eps added to sqrt(v_hat)); b is not trained when
 *            bias = false.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/bilinear.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/rng.h"

#define INIT_SALT UINT64_C(0xB111)
#define EPOCH_SALT UINT64_C(0x5EED0000)

lh_bilinear_opts lh_bilinear_defaults(void) {
  lh_bilinear_opts o = {.num_classes = 0,
                        .bias = true,
                        .epochs = 100,
                        .batch_size = 128,
                        .lr = 1e-3,
                        .beta1 = 0.9,
                        .beta2 = 0.999,
                        .adam_eps = 1e-8,
                        .seed = 0};
  return o;
}

void lh_bilinear_destroy(lh_bilinear **m) {
  if (!m || !*m) return;
  lh_free((*m)->U); /* u, V, v, b are views into the same block */
  lh_free(*m);
  *m = NULL;
}

/* A zeroed estimator; its parameters are one block [U, u, V, v, b] (b always allocated). */
static lh_status model_alloc(int64_t C, int64_t d1, int64_t d2, bool cls, bool bias,
                             lh_bilinear **out) {
  lh_status st = LH_OK;
  lh_bilinear *m = NULL;
  LH_TRY(lh_alloc(1, sizeof *m, true, "bilinear estimator", &m));
  LH_TRY(lh_alloc((size_t)(C * d1 + C * d2 + 3 * C), sizeof(double), true, "bilinear parameters",
                  &m->U));
  m->C = C;
  m->d1 = d1;
  m->d2 = d2;
  m->classification = cls;
  m->u = m->U + C * d1;
  m->V = m->u + C;
  m->v = m->V + C * d2;
  m->b = bias ? m->v + C : NULL;
  *out = m;
  m = NULL;
done:
  lh_bilinear_destroy(&m);
  return st;
}

typedef struct work {
  int64_t C, d1, d2, chunk;
  int64_t *idx;          /* chunk local rows */
  double *h1, *h2;       /* chunk x d1, chunk x d2 */
  double *P, *Q, *R, *A; /* chunk x C each */
  double *part;          /* 1 + npar: loss, then the gradient in the parameter layout */
} work;

static void work_free(work *w) {
  lh_free(w->idx);
  lh_free(w->h1);
  lh_free(w->h2);
  lh_free(w->P);
  lh_free(w->Q);
  lh_free(w->R);
  lh_free(w->A);
  lh_free(w->part);
}

static lh_status work_init(work *w, int64_t C, int64_t d1, int64_t d2, int64_t chunk) {
  lh_status st = LH_OK;
  memset(w, 0, sizeof *w);
  w->C = C;
  w->d1 = d1;
  w->d2 = d2;
  w->chunk = chunk;
  const size_t c = (size_t)chunk, cc = (size_t)(chunk * C);
  LH_TRY(lh_alloc(c, sizeof *w->idx, false, "bilinear rows", &w->idx));
  LH_TRY(lh_alloc(c * (size_t)d1, sizeof(double), false, "bilinear h1 chunk", &w->h1));
  LH_TRY(lh_alloc(c * (size_t)d2, sizeof(double), false, "bilinear h2 chunk", &w->h2));
  LH_TRY(lh_alloc(cc, sizeof(double), false, "bilinear P", &w->P));
  LH_TRY(lh_alloc(cc, sizeof(double), false, "bilinear Q", &w->Q));
  LH_TRY(lh_alloc(cc, sizeof(double), false, "bilinear R", &w->R));
  LH_TRY(lh_alloc(cc, sizeof(double), false, "bilinear A", &w->A));
  LH_TRY(lh_alloc((size_t)(1 + C * d1 + C * d2 + 3 * C), sizeof(double), true, "bilinear gradient",
                  &w->part));
done:
  if (st != LH_OK) work_free(w);
  return st;
}

/* Local rows idx[0..m) of X into out (m x D) as float64. */
static void pack(const lh_dmat *X, const int64_t *idx, int64_t m, double *out) {
  const int64_t D = lh_dmat_cols(X);
  if (lh_dmat_dtype(X) == LH_F64) {
    const double *src = lh_dmat_local_const(X);
    for (int64_t r = 0; r < m; r++) memcpy(out + r * D, src + idx[r] * D, (size_t)D * sizeof(double));
    return;
  }
  const float *src = lh_dmat_local_const(X);
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = 0; j < D; j++) out[r * D + j] = (double)src[idx[r] * D + j];
}

/* Adds the loss and gradient sums of the m local rows idx to w->part under theta. Local. */
static void chunk_loss_grad(bool cls, const lh_dmat *H1, const lh_dmat *H2, const double *y,
                            int64_t m, const double *theta, work *w) {
  const int64_t C = w->C, d1 = w->d1, d2 = w->d2;
  const double *U = theta, *u = U + C * d1, *V = u + C, *v = V + C * d2, *b = v + C;
  double *gU = w->part + 1, *gu = gU + C * d1, *gV = gu + C, *gv = gV + C * d2, *gb = gv + C;
  double *P = w->P, *Q = w->Q, *R = w->R, *A = w->A;
  if (m <= 0) return;
  pack(H1, w->idx, m, w->h1);
  pack(H2, w->idx, m, w->h2);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)C, (int)d1, 1.0, w->h1,
              (int)d1, U, (int)d1, 0.0, P, (int)C);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)C, (int)d2, 1.0, w->h2,
              (int)d2, V, (int)d2, 0.0, Q, (int)C);
  double loss = 0;
  for (int64_t r = 0; r < m; r++) {
    double *pr = P + r * C, *qr = Q + r * C, *rr = R + r * C;
    for (int64_t c = 0; c < C; c++) {
      pr[c] += u[c];
      qr[c] += v[c];
      rr[c] = pr[c] * qr[c] + b[c];
    }
    const double yr = y[w->idx[r]];
    if (!cls) {
      const double e = rr[0] - yr;
      loss += e * e;
      rr[0] = 2.0 * e;
    } else {
      const int64_t label = (int64_t)yr;
      double mx = rr[0], z = 0;
      for (int64_t c = 1; c < C; c++) mx = rr[c] > mx ? rr[c] : mx;
      for (int64_t c = 0; c < C; c++) z += exp(rr[c] - mx);
      const double lse = mx + log(z);
      loss += lse - rr[label];
      for (int64_t c = 0; c < C; c++) rr[c] = exp(rr[c] - lse) - (c == label ? 1.0 : 0.0);
    }
    for (int64_t c = 0; c < C; c++) {
      A[r * C + c] = rr[c] * qr[c]; /* dL/dp */
      qr[c] = rr[c] * pr[c];        /* dL/dq, over Q */
      gb[c] += rr[c];
      gu[c] += A[r * C + c];
      gv[c] += qr[c];
    }
  }
  w->part[0] += loss;
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)d1, (int)m, 1.0, A, (int)C,
              w->h1, (int)d1, 1.0, gU, (int)d1);
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)d2, (int)m, 1.0, Q, (int)C,
              w->h2, (int)d2, 1.0, gV, (int)d2);
}

/* Checks and counts the selection on both sets. Collective. */
static lh_status check_pair(const lh_dmat *H1, const lh_dmat *H2, const double *y,
                            const bool *use, bool cls, int64_t C, const char *what,
                            int64_t *count) {
  lh_status st = LH_OK, local = LH_OK;
  if (lh_dmat_rows(H1) != lh_dmat_rows(H2))
    LH_FAIL(LH_ERR_VALUE, "%s: the two activation sets have %lld and %lld samples", what,
            (long long)lh_dmat_rows(H1), (long long)lh_dmat_rows(H2));
  if (lh_dmat_local_rows(H1) != lh_dmat_local_rows(H2) ||
      lh_dmat_row_offset(H1) != lh_dmat_row_offset(H2))
    local = LH_ERROR(LH_ERR_VALUE, "%s: the two activation sets are distributed differently "
                     "over the ranks", what);
  LH_TRY(lh_agree(lh_dmat_comm(H1), local));
  const lh_probe_kind kind = cls ? LH_PROBE_CLASSIFIER : LH_PROBE_REGRESSOR;
  LH_TRY(probe_check(H1, y, use, kind, C, what, count));
  LH_TRY(probe_check(H2, y, use, kind, C, what, count));
done:
  return st;
}

lh_status lh_bilinear_fit(const lh_dmat *H1, const lh_dmat *H2, const double *y,
                          const bool *use, const lh_bilinear_opts *o, lh_bilinear **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(H1);
  const bool cls = o->num_classes != 0;
  const int64_t C = cls ? o->num_classes : 1, d1 = lh_dmat_cols(H1), d2 = lh_dmat_cols(H2);
  const int64_t n = lh_dmat_local_rows(H1), row0 = lh_dmat_row_offset(H1), N = lh_dmat_rows(H1);
  const int64_t npar = C * d1 + C * d2 + 3 * C;
  int64_t count = 0, *perm = NULL;
  double *theta = NULL, *mom = NULL, *vel = NULL;
  bool *all = NULL;
  int *counts = NULL, *displs = NULL;
  lh_bilinear *m = NULL;
  work w = {0};
  int P, nn, dummy;
  MPI_Comm_size(comm, &P);
  if (cls && C < 2) LH_FAIL(LH_ERR_VALUE, "num_classes must be >= 2 (or 0 for regression), got %lld",
                            (long long)C);
  if (o->epochs < 0) LH_FAIL(LH_ERR_VALUE, "epochs must be >= 0, got %lld", (long long)o->epochs);
  if (o->batch_size < 1)
    LH_FAIL(LH_ERR_VALUE, "batch_size must be >= 1, got %lld", (long long)o->batch_size);
  if (!(o->lr > 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) ||
      !(o->adam_eps >= 0))
    LH_FAIL(LH_ERR_VALUE, "Adam needs lr > 0, 0 <= betas < 1, eps >= 0 (got lr %g, betas (%g, "
            "%g), eps %g)", o->lr, o->beta1, o->beta2, o->adam_eps);
  LH_TRY(check_pair(H1, H2, y, use, cls, C, "LowRankBilinearEstimator.fit", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "LowRankBilinearEstimator.fit: no sample to fit");
  LH_TRY(lh_int_cast(1 + npar, "bilinear parameters", &dummy));
  LH_TRY(lh_int_cast(N, "samples (the schedule keeps the selection of every sample)", &dummy));
  LH_TRY(lh_int_cast(n, "local rows", &nn));
  local = lh_alloc((size_t)npar, sizeof(double), false, "parameters", &theta);
  if (local == LH_OK) local = lh_alloc((size_t)npar, sizeof(double), true, "Adam m", &mom);
  if (local == LH_OK) local = lh_alloc((size_t)npar, sizeof(double), true, "Adam v", &vel);
  if (local == LH_OK) local = lh_alloc((size_t)count, sizeof *perm, false, "sample order", &perm);
  if (local == LH_OK) local = lh_alloc((size_t)N, sizeof *all, false, "selection", &all);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof *counts, false, "counts", &counts);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof *displs, false, "displs", &displs);
  if (local == LH_OK)
    local = work_init(&w, C, d1, d2, LH_MIN(o->batch_size, (int64_t)PROBE_CHUNK));
  if (local == LH_OK) local = model_alloc(C, d1, d2, cls, o->bias, &m);
  LH_TRY(lh_agree(comm, local));

  /* the global selection, known to every rank (O(N) flags, no data) */
  for (int64_t i = 0; i < n; i++) all[row0 + i] = !use || use[i];
  MPI_Allgather(&nn, 1, MPI_INT, counts, 1, MPI_INT, comm);
  for (int r = 0, off = 0; r < P; off += counts[r], r++) displs[r] = off;
  if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all, counts, displs, MPI_C_BOOL, comm) !=
      MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "bilinear: MPI_Allgatherv of the selection failed");

  const uint64_t s0 = lh_rng_u64(o->seed, INIT_SALT);
  const double a1 = 1.0 / sqrt((double)d1), a2 = 1.0 / sqrt((double)d2);
  const int64_t offV = C * d1 + C;
  for (int64_t k = 0; k < offV; k++) theta[k] = (2.0 * lh_rng_unit(s0, (uint64_t)k) - 1.0) * a1;
  for (int64_t k = offV; k < offV + C * d2 + C; k++)
    theta[k] = (2.0 * lh_rng_unit(s0, (uint64_t)k) - 1.0) * a2;
  for (int64_t c = 0; c < C; c++) theta[npar - C + c] = 0.0;
  const int64_t ntrain = o->bias ? npar : npar - C;

  int64_t t = 0;
  for (int64_t e = 0; e < o->epochs; e++) {
    int64_t M = 0;
    for (int64_t g = 0; g < N; g++)
      if (all[g]) perm[M++] = g;
    const uint64_t se = lh_rng_u64(o->seed, EPOCH_SALT + (uint64_t)e);
    for (int64_t k = M - 1; k >= 1; k--) {
      int64_t j = (int64_t)(lh_rng_u64(se, (uint64_t)k) % (uint64_t)(k + 1));
      int64_t sw = perm[k];
      perm[k] = perm[j];
      perm[j] = sw;
    }
    for (int64_t start = 0; start < M; start += o->batch_size) {
      const int64_t B = LH_MIN(o->batch_size, M - start);
      memset(w.part, 0, (size_t)(1 + npar) * sizeof(double));
      int64_t mm = 0;
      for (int64_t k = start; k < start + B; k++) {
        int64_t i = perm[k] - row0;
        if (i < 0 || i >= n) continue;
        w.idx[mm++] = i;
        if (mm == w.chunk) {
          chunk_loss_grad(cls, H1, H2, y, mm, theta, &w);
          mm = 0;
        }
      }
      chunk_loss_grad(cls, H1, H2, y, mm, theta, &w);
      if (MPI_Allreduce(MPI_IN_PLACE, w.part, (int)(1 + npar), MPI_DOUBLE, MPI_SUM, comm) !=
          MPI_SUCCESS)
        LH_FAIL(LH_ERR_MPI, "bilinear: MPI_Allreduce of the gradient failed");
      t++;
      const double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
      const double step = o->lr / bc1, sbc2 = sqrt(bc2);
      for (int64_t k = 0; k < ntrain; k++) {
        const double g = w.part[1 + k] / (double)B;
        mom[k] = o->beta1 * mom[k] + (1.0 - o->beta1) * g;
        vel[k] = o->beta2 * vel[k] + (1.0 - o->beta2) * g * g;
        theta[k] -= step * mom[k] / (sqrt(vel[k]) / sbc2 + o->adam_eps);
      }
    }
  }
  /* final mean training loss, by chunks of the selected local rows */
  memset(w.part, 0, (size_t)(1 + npar) * sizeof(double));
  {
    int64_t mm = 0;
    for (int64_t i = 0; i < n; i++) {
      if (use && !use[i]) continue;
      w.idx[mm++] = i;
      if (mm == w.chunk) {
        chunk_loss_grad(cls, H1, H2, y, mm, theta, &w);
        mm = 0;
      }
    }
    chunk_loss_grad(cls, H1, H2, y, mm, theta, &w);
  }
  if (MPI_Allreduce(MPI_IN_PLACE, w.part, 1, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "bilinear: MPI_Allreduce of the loss failed");
  memcpy(m->U, theta, (size_t)(o->bias ? npar : npar - C) * sizeof(double));
  m->n_fit = count;
  m->iterations = t;
  m->objective = w.part[0] / (double)count;
  *out = m;
  m = NULL;
done:
  lh_bilinear_destroy(&m);
  lh_free(theta);
  lh_free(mom);
  lh_free(vel);
  lh_free(perm);
  lh_free(all);
  lh_free(counts);
  lh_free(displs);
  work_free(&w);
  return st;
}

/* Row i of X, element j, as float64. */
static inline double at(const lh_dmat *X, int64_t i, int64_t j) {
  const int64_t D = lh_dmat_cols(X);
  if (lh_dmat_dtype(X) == LH_F64) return ((const double *)lh_dmat_local_const(X))[i * D + j];
  return (double)((const float *)lh_dmat_local_const(X))[i * D + j];
}

void lh_bilinear_decision(const lh_bilinear *m, const lh_dmat *H1, const lh_dmat *H2,
                          double *out) {
  const int64_t n = lh_dmat_local_rows(H1), C = m->C;
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < C; c++) {
      double p = m->u[c], q = m->v[c];
      for (int64_t j = 0; j < m->d1; j++) p += m->U[c * m->d1 + j] * at(H1, i, j);
      for (int64_t j = 0; j < m->d2; j++) q += m->V[c * m->d2 + j] * at(H2, i, j);
      out[i * C + c] = p * q + (m->b ? m->b[c] : 0.0);
    }
}

void lh_bilinear_predict(const lh_bilinear *m, const lh_dmat *H1, const lh_dmat *H2,
                         double *out) {
  const int64_t n = lh_dmat_local_rows(H1), C = m->C;
  double s[1];
  for (int64_t i = 0; i < n; i++) {
    double best = 0, bestv = 0;
    for (int64_t c = 0; c < C; c++) {
      double p = m->u[c], q = m->v[c];
      for (int64_t j = 0; j < m->d1; j++) p += m->U[c * m->d1 + j] * at(H1, i, j);
      for (int64_t j = 0; j < m->d2; j++) q += m->V[c * m->d2 + j] * at(H2, i, j);
      s[0] = p * q + (m->b ? m->b[c] : 0.0);
      if (c == 0 || s[0] > bestv) { /* the first maximum, as torch.argmax */
        bestv = s[0];
        best = (double)c;
      }
    }
    out[i] = m->classification ? best : bestv;
  }
}

lh_status lh_bilinear_evaluate(const lh_bilinear *m, const lh_dmat *H1, const lh_dmat *H2,
                               const double *y, const bool *use, lh_probe_metrics *out) {
  lh_status st = LH_OK;
  lh_probe_metrics r = {0};
  int64_t count = 0;
  double *s = NULL; /* n x C */
  if (lh_dmat_cols(H1) != m->d1 || lh_dmat_cols(H2) != m->d2)
    LH_FAIL(LH_ERR_VALUE, "evaluate: the estimator takes %lld and %lld features, the data has "
            "%lld and %lld", (long long)m->d1, (long long)m->d2, (long long)lh_dmat_cols(H1),
            (long long)lh_dmat_cols(H2));
  LH_TRY(check_pair(H1, H2, y, use, m->classification, m->C, "evaluate", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "evaluate: no sample to evaluate");
  const int64_t n = lh_dmat_local_rows(H1);
  LH_TRY(lh_agree(lh_dmat_comm(H1), lh_alloc((size_t)(n * m->C), sizeof *s, false, "scores", &s)));
  lh_bilinear_decision(m, H1, H2, s);
  LH_TRY(probe_score_metrics(m->classification ? LH_PROBE_CLASSIFIER : LH_PROBE_REGRESSOR, m->C,
                             lh_dmat_comm(H1), n, s, y, use, count, &r));
  *out = r;
done:
  lh_free(s);
  return st;
}
