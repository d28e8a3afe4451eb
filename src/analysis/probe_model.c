/*
 * probe_model.c: the fitted probe (see probe.h): defaults, lifecycle, the dispatch of
 * lh_probe_fit, scores, predictions and probabilities, and what the solver files share
 * (input check, per-row loss and gradient).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

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

/* Score of class c for local row i, accumulated in float64 in feature order (the same on
 * every rank count). */
static double row_score(const lh_probe *p, const lh_dmat *X, int64_t i, int64_t c) {
  const int64_t D = p->D;
  const double *w = p->coef + c * D;
  double t = p->intercept[c];
  if (lh_dmat_dtype(X) == LH_F64) {
    const double *x = (const double *)lh_dmat_local_const(X) + i * D;
    for (int64_t j = 0; j < D; j++) t += w[j] * x[j];
  } else {
    const float *x = (const float *)lh_dmat_local_const(X) + i * D;
    for (int64_t j = 0; j < D; j++) t += w[j] * (double)x[j];
  }
  return t;
}

void lh_probe_decision(const lh_probe *p, const lh_dmat *X, double *out) {
  const int64_t n = lh_dmat_local_rows(X), C = p->C;
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < C; c++) out[i * C + c] = row_score(p, X, i, c);
}

void lh_probe_predict(const lh_probe *p, const lh_dmat *X, double *out) {
  const int64_t n = lh_dmat_local_rows(X);
  for (int64_t i = 0; i < n; i++) {
    if (p->kind == LH_PROBE_REGRESSOR) {
      out[i] = row_score(p, X, i, 0);
    } else if (p->kind == LH_PROBE_MEAN_DIFFERENCE) {
      out[i] = row_score(p, X, i, 0) > 0 ? 1.0 : 0.0; /* exactly 0 -> False (SPEC 3.5) */
    } else {
      int64_t best = 0; /* the first maximum, as torch.argmax */
      double bestv = row_score(p, X, i, 0);
      for (int64_t c = 1; c < p->C; c++) {
        double t = row_score(p, X, i, c);
        if (t > bestv) {
          bestv = t;
          best = c;
        }
      }
      out[i] = (double)best;
    }
  }
}

/* Logistic function without overflow. */
static double logistic(double f) {
  if (f >= 0) return 1.0 / (1.0 + exp(-f));
  double e = exp(f);
  return e / (1.0 + e);
}

lh_status lh_probe_predict_proba(const lh_probe *p, const lh_dmat *X, double *out) {
  const int64_t n = lh_dmat_local_rows(X), C = p->C;
  if (p->kind == LH_PROBE_REGRESSOR)
    return LH_ERROR(LH_ERR_VALUE, "predict_proba: a regression probe has no class probabilities");
  if (p->kind == LH_PROBE_MEAN_DIFFERENCE) {
    for (int64_t i = 0; i < n; i++) {
      double s = logistic(row_score(p, X, i, 0));
      out[2 * i] = 1.0 - s;
      out[2 * i + 1] = s;
    }
    return LH_OK;
  }
  lh_probe_decision(p, X, out);
  for (int64_t i = 0; i < n; i++) {
    double *s = out + i * C, m = s[0], z = 0;
    for (int64_t c = 1; c < C; c++) m = s[c] > m ? s[c] : m;
    for (int64_t c = 0; c < C; c++) {
      s[c] = exp(s[c] - m);
      z += s[c];
    }
    for (int64_t c = 0; c < C; c++) s[c] /= z;
  }
  return LH_OK;
}
