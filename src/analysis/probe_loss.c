/*
 * probe_loss.c: the training objective of the linear probes (SPEC 3.6-3.7): softmax
 * cross-entropy for classifiers, squared error for regressors (torch's mean reductions),
 * plus (l2/2)|W|_F^2 on the weights only. Per-row terms are added to exact accumulators
 * (xsum.h), so the full-batch objective and gradient are the same whatever rows each rank
 * holds; one allreduce of the accumulators completes them.
 */
#include <math.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

void probe_row_loss_grad(lh_probe_kind kind, int64_t C, int64_t D, const double *theta,
                         const double *x, double y, double *s, lh_xsum *acc) {
  const double *W = theta, *b = theta + C * D;
  for (int64_t c = 0; c < C; c++) {
    double t = b[c];
    for (int64_t j = 0; j < D; j++) t += W[c * D + j] * x[j];
    s[c] = t;
  }
  if (kind == LH_PROBE_REGRESSOR) {
    double e = s[0] - y;
    lh_xsum_add(&acc[0], e * e);
    double r = 2.0 * e;
    for (int64_t j = 0; j < D; j++) lh_xsum_add(&acc[1 + j], r * x[j]);
    lh_xsum_add(&acc[1 + D], r);
    return;
  }
  const int64_t label = (int64_t)y;
  double m = s[0];
  for (int64_t c = 1; c < C; c++) m = s[c] > m ? s[c] : m;
  double z = 0;
  for (int64_t c = 0; c < C; c++) z += exp(s[c] - m);
  const double lse = m + log(z);
  lh_xsum_add(&acc[0], lse - s[label]);
  for (int64_t c = 0; c < C; c++) {
    double r = exp(s[c] - lse) - (c == label ? 1.0 : 0.0);
    if (r == 0) continue;
    lh_xsum *a = &acc[1 + c * D];
    for (int64_t j = 0; j < D; j++) lh_xsum_add(&a[j], r * x[j]);
    lh_xsum_add(&acc[1 + C * D + c], r);
  }
}

lh_status probe_objective(lh_probe_kind kind, int64_t C, const lh_dmat *X, const double *y,
                          const bool *use, int64_t count, double l2, const double *theta,
                          lh_xsum *acc, double *scratch, double *f, double *grad) {
  lh_status st = LH_OK;
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X), nacc = probe_nacc(C, D);
  double *tmp = scratch, *s = scratch + D;
  int cnt;
  LH_TRY(lh_int_cast(nacc, "probe accumulators", &cnt));
  for (int64_t k = 0; k < nacc; k++) lh_xsum_init(&acc[k]);
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i]) continue;
    probe_row_loss_grad(kind, C, D, theta, probe_row(X, i, tmp), y[i], s, acc);
  }
  LH_TRY(lh_xsum_allreduce(acc, cnt, lh_dmat_comm(X)));
  const double N = (double)count;
  double pen = 0;
  for (int64_t k = 0; k < C * D; k++) pen += theta[k] * theta[k];
  *f = lh_xsum_round(&acc[0]) / N + 0.5 * l2 * pen;
  if (grad) {
    for (int64_t k = 0; k < C * D; k++) grad[k] = lh_xsum_round(&acc[1 + k]) / N + l2 * theta[k];
    for (int64_t c = 0; c < C; c++) grad[C * D + c] = lh_xsum_round(&acc[1 + C * D + c]) / N;
  }
done:
  return st;
}
