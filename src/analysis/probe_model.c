/*
 * probe_model.c: the fitted probe (see probe.h): defaults, lifecycle, the dispatch of
 * lh_probe_fit, scores, predictions and probabilities, and what the solver files share
 * (input check, per-row loss and gradient).
 *
 * Scores are one DGEMM per block of B global rows [k B, (k+1) B) (B from D alone): a rank
 * packs the rows of a block it holds at their places in a B x D float64 buffer, zero rows for
 * the block's rows held by other ranks, and multiplies the whole block. Every sample is then
 * scored by the same call (shape, position, data of its row) on any number of ranks, so the
 * scores, predictions and every metric are the same bits on 1, 2, 3 or 4 ranks; a GEMM that
 * saw rank-dependent row counts could change a row's rounding (OpenBLAS picks kernels and
 * K-blocking by shape). The cost is at most two partly filled blocks per rank.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

lh_probe_opts lh_probe_defaults(void) {
  lh_probe_opts o = {.kind = LH_PROBE_CLASSIFIER,
                     .num_classes = 2,
                     .normalize = true,
                     .solver = LH_PROBE_ADAM,
                     .l2 = 0.0,
                     .epochs = 100,
                     .batch_size = 128,
                     .lr = 1e-3,
                     .beta1 = 0.9,
                     .beta2 = 0.999,
                     .adam_eps = 1e-8,
                     .max_iter = 1000,
                     .tol = 1e-10,
                     .ridge_scalapack_min_d = 2048,
                     .seed = 0};
  return o;
}

void lh_probe_destroy(lh_probe **p) {
  if (!p || !*p) return;
  lh_free((*p)->coef);
  lh_free((*p)->intercept);
  lh_free(*p);
  *p = NULL;
}

lh_status probe_alloc(lh_probe_kind kind, int64_t C, int64_t D, lh_probe **out) {
  lh_status st = LH_OK;
  lh_probe *p = NULL;
  LH_TRY(lh_alloc(1, sizeof *p, true, "probe", &p));
  p->kind = kind;
  p->C = C;
  p->D = D;
  p->converged = true;
  p->objective = NAN;
  p->grad_norm = NAN;
  LH_TRY(lh_alloc((size_t)(C * D), sizeof(double), true, "probe coefficients", &p->coef));
  LH_TRY(lh_alloc((size_t)C, sizeof(double), true, "probe intercepts", &p->intercept));
  *out = p;
  p = NULL;
done:
  lh_probe_destroy(&p);
  return st;
}

lh_status probe_check(const lh_dmat *X, const double *y, const bool *use, lh_probe_kind kind,
                      int64_t C, const char *what, int64_t *count) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X), row0 = lh_dmat_row_offset(X);
  double *tmp = NULL;
  int64_t mine = 0;
  local = lh_alloc((size_t)D, sizeof(double), false, "row", &tmp);
  for (int64_t i = 0; local == LH_OK && i < n; i++) {
    if (use && !use[i]) continue;
    mine++;
    const double *x = probe_row(X, i, tmp);
    for (int64_t j = 0; j < D; j++)
      if (!isfinite(x[j])) {
        local = LH_ERROR(LH_ERR_VALUE,
                         "%s: non-finite value %g in the data at sample %lld, "
                         "feature %lld",
                         what, x[j], (long long)(row0 + i), (long long)j);
        break;
      }
    if (local != LH_OK) break;
    if (!isfinite(y[i]))
      local = LH_ERROR(LH_ERR_VALUE, "%s: non-finite label %g at sample %lld", what, y[i],
                       (long long)(row0 + i));
    else if (kind == LH_PROBE_CLASSIFIER && (y[i] != floor(y[i]) || y[i] < 0 || y[i] >= (double)C))
      local = LH_ERROR(LH_ERR_VALUE,
                       "%s: label %g at sample %lld is not a class id in [0, %lld) "
                       "(num_classes = %lld)",
                       what, y[i], (long long)(row0 + i), (long long)C, (long long)C);
  }
  LH_TRY(lh_agree(comm, local));
  if (MPI_Allreduce(MPI_IN_PLACE, &mine, 1, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "%s: MPI_Allreduce of the sample count failed", what);
  *count = mine;
done:
  lh_free(tmp);
  return st;
}

lh_status lh_probe_fit(const lh_dmat *X, const double *y, const bool *use, const lh_probe_opts *o,
                       lh_probe **out) {
  if (o->kind == LH_PROBE_MEAN_DIFFERENCE)
    return lh_probe_fit_mean_difference(X, y, use, o->normalize, out);
  switch (o->solver) {
    case LH_PROBE_ADAM:
      return lh_probe_fit_adam(X, y, use, o, out);
    case LH_PROBE_LBFGS:
      return lh_probe_fit_lbfgs(X, y, use, o, out);
    case LH_PROBE_RIDGE:
      return lh_probe_fit_ridge(X, y, use, o, out);
  }
  return LH_ERROR(LH_ERR_VALUE, "unknown probe solver %d", (int)o->solver);
}

static const char *kind_name(lh_probe_kind k) {
  return k == LH_PROBE_MEAN_DIFFERENCE ? "mean difference"
         : k == LH_PROBE_CLASSIFIER    ? "classifier"
                                       : "regressor";
}

lh_status lh_probe_fit_warm(lh_probe *p, const lh_dmat *X, const double *y, const bool *use,
                            const lh_probe_opts *o) {
  lh_status st = LH_OK;
  lh_probe *q = NULL;
  if (!p) LH_FAIL(LH_ERR_VALUE, "fit_warm: no fitted probe to continue");
  const int64_t C = o->kind == LH_PROBE_CLASSIFIER ? o->num_classes : 1, D = lh_dmat_cols(X);
  /* p and opts are the same on every rank: these checks agree without communication */
  if (p->kind != o->kind || p->C != C || p->D != D)
    LH_FAIL(LH_ERR_VALUE,
            "fit_warm: the fitted probe is a %s of %lld x %lld parameters, the options and data "
            "ask for a %s of %lld x %lld",
            kind_name(p->kind), (long long)p->C, (long long)p->D, kind_name(o->kind), (long long)C,
            (long long)D);
  if (o->kind != LH_PROBE_MEAN_DIFFERENCE && o->solver == LH_PROBE_ADAM)
    LH_TRY(probe_fit_adam_from(X, y, use, o, p, &q));
  else if (o->kind != LH_PROBE_MEAN_DIFFERENCE && o->solver == LH_PROBE_LBFGS)
    LH_TRY(probe_fit_lbfgs_from(X, y, use, o, p, &q));
  else
    LH_TRY(lh_probe_fit(X, y, use, o, &q));
  /* p takes q's contents, q the old ones to release */
  const lh_probe old = *p;
  *p = *q;
  *q = old;
done:
  lh_probe_destroy(&q);
  return st;
}

int64_t probe_score_block(int64_t D) {
  return LH_MAX(INT64_C(16), LH_MIN(INT64_C(256), (INT64_C(1) << 20) / LH_MAX(D, INT64_C(1))));
}

lh_status probe_scorer_init(probe_scorer *s, const lh_probe *p, const lh_dmat *X) {
  lh_status st = LH_OK;
  memset(s, 0, sizeof *s);
  const int64_t D = p->D, C = p->C;
  if (lh_dmat_cols(X) != D)
    LH_FAIL(LH_ERR_VALUE, "the probe has %lld features, the data %lld", (long long)D,
            (long long)lh_dmat_cols(X));
  int ignored;
  s->B = probe_score_block(D);
  LH_TRY(lh_int_cast(LH_MAX(D, 1), "probe features", &ignored));
  LH_TRY(lh_int_cast(C, "probe classes", &ignored));
  s->p = p;
  s->X = X;
  LH_TRY(lh_alloc((size_t)(s->B * D + 1), sizeof(double), true, "probe scoring block", &s->xb));
  LH_TRY(lh_alloc((size_t)(s->B * C), sizeof(double), false, "probe block scores", &s->sb));
done:
  if (st != LH_OK) probe_scorer_free(s);
  return st;
}

void probe_scorer_free(probe_scorer *s) {
  lh_free(s->xb);
  lh_free(s->sb);
  memset(s, 0, sizeof *s);
}

int64_t probe_scorer_end(const probe_scorer *s, int64_t i0) {
  const int64_t g = lh_dmat_row_offset(s->X) + i0;
  return LH_MIN(lh_dmat_local_rows(s->X), i0 + s->B - g % s->B);
}

const double *probe_scorer_run(probe_scorer *s, int64_t i0, int64_t i1) {
  const lh_probe *p = s->p;
  const int64_t D = p->D, C = p->C, B = s->B, m = i1 - i0;
  const int64_t pos = (lh_dmat_row_offset(s->X) + i0) % B; /* row i0's place in its block */
  double *xb = s->xb;                                      /* B x D */
  /* the block's rows held elsewhere are zero rows (they do not touch the other rows' sums) */
  memset(xb, 0, (size_t)(pos * D) * sizeof(double));
  memset(xb + (pos + m) * D, 0, (size_t)((B - pos - m) * D) * sizeof(double));
  if (lh_dmat_dtype(s->X) == LH_F64) {
    memcpy(xb + pos * D, (const double *)lh_dmat_local_const(s->X) + i0 * D,
           (size_t)(m * D) * sizeof(double));
  } else {
    const float *a = (const float *)lh_dmat_local_const(s->X) + i0 * D;
    for (int64_t k = 0; k < m * D; k++) xb[pos * D + k] = (double)a[k];
  }
  /* S (B x C) = Xb W^T, the same call for every block */
  const int ld = (int)LH_MAX(D, 1);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)C, (int)D, 1.0, xb, ld, p->coef,
              ld, 0.0, s->sb, (int)C);
  double *sr = s->sb + pos * C;
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = 0; c < C; c++) sr[r * C + c] += p->intercept[c];
  return sr;
}

lh_status lh_probe_decision(const lh_probe *p, const lh_dmat *X, double *out) {
  lh_status st = LH_OK;
  probe_scorer s;
  const int64_t n = lh_dmat_local_rows(X), C = p->C;
  LH_TRY(probe_scorer_init(&s, p, X));
  for (int64_t i0 = 0, i1; i0 < n; i0 = i1) {
    i1 = probe_scorer_end(&s, i0);
    memcpy(out + i0 * C, probe_scorer_run(&s, i0, i1), (size_t)((i1 - i0) * C) * sizeof(double));
  }
done:
  probe_scorer_free(&s);
  return st;
}

/* The prediction from the scores of one sample: the class id (the first maximum, as
 * torch.argmax; f > 0 for the mean difference, exactly 0 -> False as SPEC 3.5) or the
 * regression value. */
double probe_score_predict(lh_probe_kind kind, int64_t C, const double *si) {
  if (kind == LH_PROBE_REGRESSOR) return si[0];
  if (kind == LH_PROBE_MEAN_DIFFERENCE) return si[0] > 0 ? 1.0 : 0.0;
  int64_t best = 0;
  for (int64_t c = 1; c < C; c++)
    if (si[c] > si[best]) best = c;
  return (double)best;
}

lh_status lh_probe_predict(const lh_probe *p, const lh_dmat *X, double *out) {
  lh_status st = LH_OK;
  probe_scorer s;
  const int64_t n = lh_dmat_local_rows(X), C = p->C;
  LH_TRY(probe_scorer_init(&s, p, X));
  for (int64_t i0 = 0, i1; i0 < n; i0 = i1) {
    i1 = probe_scorer_end(&s, i0);
    const double *sc = probe_scorer_run(&s, i0, i1);
    for (int64_t i = i0; i < i1; i++) out[i] = probe_score_predict(p->kind, C, sc + (i - i0) * C);
  }
done:
  probe_scorer_free(&s);
  return st;
}

/* Logistic function without overflow. */
static double logistic(double f) {
  if (f >= 0) return 1.0 / (1.0 + exp(-f));
  double e = exp(f);
  return e / (1.0 + e);
}

lh_status lh_probe_predict_proba(const lh_probe *p, const lh_dmat *X, double *out) {
  lh_status st = LH_OK;
  const int64_t n = lh_dmat_local_rows(X), C = p->C;
  if (p->kind == LH_PROBE_REGRESSOR)
    return LH_ERROR(LH_ERR_VALUE, "predict_proba: a regression probe has no class probabilities");
  if (p->kind == LH_PROBE_MEAN_DIFFERENCE) {
    /* the scores (n x 1) in the first half of out, then [1 - s(f), s(f)] from the back */
    LH_TRY(lh_probe_decision(p, X, out));
    for (int64_t i = n - 1; i >= 0; i--) {
      const double s = logistic(out[i]);
      out[2 * i] = 1.0 - s;
      out[2 * i + 1] = s;
    }
    return LH_OK;
  }
  LH_TRY(lh_probe_decision(p, X, out));
  for (int64_t i = 0; i < n; i++) {
    double *s = out + i * C, m = s[0], z = 0;
    for (int64_t c = 1; c < C; c++) m = s[c] > m ? s[c] : m;
    for (int64_t c = 0; c < C; c++) {
      s[c] = exp(s[c] - m);
      z += s[c];
    }
    for (int64_t c = 0; c < C; c++) s[c] /= z;
  }
done:
  return st;
}
