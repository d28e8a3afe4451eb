/*
 * probe_lbfgs.c: full-batch L-BFGS for the linear probes.
 *
 * Minimises mean loss + (l2/2)|W|_F^2 (intercepts not penalised), which is scikit-learn's
 * LogisticRegression(C = 1/(l2 N), multi_class="multinomial") for a classifier, started from
 * zero as scikit-learn does, or from the earlier fit's parameters (lh_probe_fit_warm, as
 * LogisticRegression(warm_start=True)): from an optimum the run stops at once. The optimiser is
 * libLBFGS (Okazaki's C port of Nocedal's L-BFGS, More-Thuente line search); every rank runs it in
 * lock step on the same replicated parameters, and each evaluation of the objective is one pass
 * over fixed blocks of 4096 global rows with two DGEMMs each, exact sums of the block results and
 * one allreduce (probe_loss.c). The objective and gradient are the same bits on every rank and
 * every rank count, so the whole run is.
 *
 * Convergence: |grad| <= tol * max(1, |params|) (libLBFGS's test), or a line search stopped
 * by rounding once that relative gradient is below 1e-6: near the optimum the decrease a
 * line search asks for is below the float64 resolution of the objective.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lbfgs.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

/* Relative gradient below which a line-search stop still counts as converged. */
#define LBFGS_ACCEPT 1e-6

typedef struct eval_ctx {
  lh_probe_kind kind;
  int64_t C;
  const lh_dmat *X;
  const double *y;
  const bool *use;
  int64_t count;
  double l2;
  probe_work *w;
  lh_status st;
  int64_t iterations;
  double rel_grad; /* |g| / max(1, |x|) at the last accepted iterate (or at the start) */
  int64_t evals;
} eval_ctx;

static lbfgsfloatval_t evaluate(void *user, const lbfgsfloatval_t *x, lbfgsfloatval_t *g,
                                const int n, const lbfgsfloatval_t step) {
  eval_ctx *e = user;
  double f = NAN;
  if (e->st != LH_OK) return NAN;
  e->st = probe_objective(e->kind, e->X, e->y, e->use, e->count, e->l2, x, e->w, &f, g);
  if (e->evals++ == 0 && e->st == LH_OK) {
    /* the starting point: a warm start at the optimum ends here (already minimised) */
    double xx = 0, gg = 0;
    for (int k = 0; k < n; k++) {
      xx += x[k] * x[k];
      gg += g[k] * g[k];
    }
    e->rel_grad = sqrt(gg) / (sqrt(xx) > 1 ? sqrt(xx) : 1);
  }
  return f;
}

static int progress(void *user, const lbfgsfloatval_t *x, const lbfgsfloatval_t *g,
                    const lbfgsfloatval_t fx, const lbfgsfloatval_t xnorm,
                    const lbfgsfloatval_t gnorm, const lbfgsfloatval_t step, int n, int k, int ls) {
  eval_ctx *e = user;
  e->iterations = k;
  e->rel_grad = gnorm / (xnorm > 1 ? xnorm : 1);
  return e->st == LH_OK ? 0 : 1;
}

static const char *lbfgs_message(int ret) {
  switch (ret) {
    case LBFGS_SUCCESS:
      return "converged";
    case LBFGS_STOP:
      return "stopped";
    case LBFGS_ALREADY_MINIMIZED:
      return "already minimised at the start";
    case LBFGSERR_ROUNDING_ERROR:
      return "line search stopped by rounding errors";
    case LBFGSERR_MINIMUMSTEP:
      return "line search step below its minimum";
    case LBFGSERR_MAXIMUMSTEP:
      return "line search step above its maximum";
    case LBFGSERR_MAXIMUMLINESEARCH:
      return "line search reached its evaluation limit";
    case LBFGSERR_MAXIMUMITERATION:
      return "maximum number of iterations reached";
    case LBFGSERR_WIDTHTOOSMALL:
      return "line search interval too small";
    case LBFGSERR_INCREASEGRADIENT:
      return "line search direction does not decrease";
    case LBFGSERR_OUTOFINTERVAL:
      return "line search step out of its interval";
    case LBFGSERR_INCORRECT_TMINMAX:
      return "line search interval inconsistent";
    case LBFGSERR_INVALIDPARAMETERS:
      return "line search invalid parameters";
    case LBFGSERR_OUTOFMEMORY:
      return "out of memory";
    case LBFGSERR_CANCELED:
      return "cancelled";
  }
  return "libLBFGS error";
}

lh_status lh_probe_fit_lbfgs(const lh_dmat *X, const double *y, const bool *use,
                             const lh_probe_opts *o, lh_probe **out) {
  return probe_fit_lbfgs_from(X, y, use, o, NULL, out);
}

lh_status probe_fit_lbfgs_from(const lh_dmat *X, const double *y, const bool *use,
                               const lh_probe_opts *o, const lh_probe *init, lh_probe **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t D = lh_dmat_cols(X);
  const lh_probe_kind kind = o->kind;
  const int64_t C = kind == LH_PROBE_CLASSIFIER ? o->num_classes : 1;
  lbfgsfloatval_t *theta = NULL;
  eval_ctx e = {.kind = kind, .C = C, .X = X, .y = y, .use = use, .l2 = o->l2, .rel_grad = NAN};
  lh_probe *p = NULL;
  probe_work work = {0};
  int64_t count = 0, npar = C * D + C;
  int nparam;
  if (kind != LH_PROBE_CLASSIFIER && kind != LH_PROBE_REGRESSOR)
    LH_FAIL(LH_ERR_VALUE, "lbfgs fits linear classifiers and regressors only");
  if (kind == LH_PROBE_CLASSIFIER && C < 2)
    LH_FAIL(LH_ERR_VALUE, "num_classes must be >= 2, got %lld", (long long)C);
  if (!(o->l2 >= 0) || !isfinite(o->l2)) LH_FAIL(LH_ERR_VALUE, "l2 must be >= 0, got %g", o->l2);
  if (o->max_iter < 1)
    LH_FAIL(LH_ERR_VALUE, "max_iter must be >= 1, got %lld", (long long)o->max_iter);
  if (!(o->tol > 0)) LH_FAIL(LH_ERR_VALUE, "tol must be > 0, got %g", o->tol);
  LH_TRY(probe_check(X, y, use, kind, C, "LinearEstimator.fit", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "LinearEstimator.fit: no sample to fit");
  LH_TRY(lh_int_cast(npar, "probe parameters", &nparam));
  e.count = count;
  theta = lbfgs_malloc(nparam);
  if (!theta) local = LH_ERROR(LH_ERR_NOMEM, "no memory for %d L-BFGS parameters", nparam);
  if (local == LH_OK) local = probe_work_init(&work, C, D, PROBE_CHUNK);
  e.w = &work;
  if (local == LH_OK) local = probe_alloc(kind, C, D, &p);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(probe_work_plan(&work, X, y, use));
  /* scikit-learn's start at zero, or the earlier fit's parameters (warm start) */
  for (int64_t k = 0; k < npar; k++)
    theta[k] = !init ? 0 : k < C * D ? init->coef[k] : init->intercept[k - C * D];

  lbfgs_parameter_t param;
  lbfgs_parameter_init(&param);
  param.m = 10;
  param.epsilon = o->tol;
  param.max_iterations = o->max_iter > 2000000000 ? 2000000000 : (int)o->max_iter;
  lbfgsfloatval_t fx = 0;
  int ret = lbfgs(nparam, theta, &fx, evaluate, progress, &e, &param);
  /* every rank took the same path: ret, e.st and theta agree without communication */
  LH_TRY(e.st);
  if (ret == LBFGSERR_OUTOFMEMORY) LH_FAIL(LH_ERR_NOMEM, "L-BFGS: out of memory");
  /* codes above the parameter errors are line-search or iteration stops: theta holds the
   * best point so far, reported with converged = false */
  if (ret < 0 && ret <= LBFGSERR_INVALID_ORTHANTWISE_END)
    LH_FAIL(LH_ERR_INTERNAL, "L-BFGS rejected its parameters (code %d)", ret);
  memcpy(p->coef, theta, (size_t)(C * D) * sizeof(double));
  memcpy(p->intercept, theta + C * D, (size_t)C * sizeof(double));
  p->n_fit = count;
  p->iterations = e.iterations;
  p->objective = fx;
  /* near the optimum the decrease a line search needs falls below float64 resolution of the
   * objective: a rounding stop with a small gradient is the end of a converged run */
  p->converged = ret >= 0 || (ret != LBFGSERR_MAXIMUMITERATION && e.rel_grad <= LBFGS_ACCEPT);
  p->grad_norm = e.rel_grad;
  snprintf(p->solver_message, sizeof p->solver_message, "lbfgs: %s%s", lbfgs_message(ret),
           init ? " (warm start)" : "");
  *out = p;
  p = NULL;
done:
  lh_probe_destroy(&p);
  if (theta) lbfgs_free(theta);
  probe_work_free(&work);
  return st;
}
