/*
 * probe_mdiff.c: MeanDifferenceClassifier (SPEC 3.5), the difference-of-means concept
 * direction (Kim et al. 2018 use the normal of a trained classifier; tdhook and this file
 * use mu+ - mu-).
 *
 * The class sums and counts are accumulated exactly (xsum.h) and merged with one allreduce,
 * so the direction is bit-identical on any number of ranks. Labels are weights as in NumPy:
 * mu+ = sum y_i x_i / sum y_i, mu- = sum (1 - y_i) x_i / sum (1 - y_i).
 */
#include <math.h>
#include <stdio.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

lh_status lh_probe_fit_mean_difference(const lh_dmat *X, const double *y, const bool *use,
                                       bool normalize, lh_probe **out) {
  lh_status st = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  lh_xsum *acc = NULL; /* [S+ (D), S- (D), P, Q] */
  double *tmp = NULL, *mu = NULL;
  lh_probe *p = NULL;
  int64_t count = 0, nacc = 2 * D + 2;
  int cnt;
  LH_TRY(probe_check(X, y, use, LH_PROBE_MEAN_DIFFERENCE, 2, "MeanDifferenceClassifier.fit",
                     &count));
  LH_TRY(lh_agree(comm, lh_int_cast(nacc, "mean-difference accumulators", &cnt)));
  lh_status local = lh_alloc((size_t)nacc, sizeof *acc, false, "class sums", &acc);
  if (local == LH_OK) local = lh_alloc((size_t)D, sizeof(double), false, "row", &tmp);
  if (local == LH_OK) local = lh_alloc((size_t)(2 * D), sizeof(double), false, "means", &mu);
  if (local == LH_OK) local = probe_alloc(LH_PROBE_MEAN_DIFFERENCE, 1, D, &p);
  LH_TRY(lh_agree(comm, local));
  for (int64_t k = 0; k < nacc; k++) lh_xsum_init(&acc[k]);
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i]) continue;
    const double *x = probe_row(X, i, tmp);
    const double wp = y[i], wn = 1.0 - y[i];
    for (int64_t j = 0; j < D; j++) {
      lh_xsum_add_product(&acc[j], wp, x[j]);
      lh_xsum_add_product(&acc[D + j], wn, x[j]);
    }
    lh_xsum_add(&acc[2 * D], wp);
    lh_xsum_add(&acc[2 * D + 1], wn);
  }
  LH_TRY(lh_xsum_allreduce(acc, cnt, comm));
  const double P = lh_xsum_round(&acc[2 * D]), Q = lh_xsum_round(&acc[2 * D + 1]);
  if (P == 0 || Q == 0) LH_FAIL(LH_ERR_VALUE, "Both classes must be present in y");
  double np2 = 0, nn2 = 0;
  for (int64_t j = 0; j < D; j++) {
    mu[j] = lh_xsum_round(&acc[j]) / P;
    mu[D + j] = lh_xsum_round(&acc[D + j]) / Q;
    np2 += mu[j] * mu[j];
    nn2 += mu[D + j] * mu[D + j];
  }
  double b = -0.5 * (np2 - nn2), w2 = 0;
  for (int64_t j = 0; j < D; j++) {
    p->coef[j] = mu[j] - mu[D + j];
    w2 += p->coef[j] * p->coef[j];
  }
  const double norm = sqrt(w2);
  if (normalize && norm > 0) {
    for (int64_t j = 0; j < D; j++) p->coef[j] /= norm;
    b /= norm;
  }
  p->intercept[0] = b;
  p->n_fit = count;
  snprintf(p->solver_message, sizeof p->solver_message, "closed form");
  *out = p;
  p = NULL;
done:
  lh_probe_destroy(&p);
  lh_free(acc);
  lh_free(tmp);
  lh_free(mu);
  return st;
}
