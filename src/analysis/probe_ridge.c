/*
 * probe_ridge.c: closed-form ridge regression for a linear probe.
 *
 * Minimises (1/N)|X w + b - y|^2 + l2 |w|^2 (scikit-learn's Ridge(alpha = l2 N)): with the
 * exact column means xbar, ybar (xsum.h), w solves (Xc^T Xc + N l2 I) w = Xc^T yc on the
 * centred data and b = ybar - xbar.w. Each rank forms its part of Xc^T Xc (BLAS dsyrk) and
 * Xc^T yc; one float64 allreduce sums them, and rank 0 solves by Cholesky (LAPACK dpotrf,
 * refusing pivots below 1e-12 of their diagonal, then dpotrs) and
 * broadcasts, so every rank holds the same bits. The D x D system is replicated: for very
 * large D a block-cyclic ScaLAPACK pdposv would be the next step (not done).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

lh_status lh_probe_fit_ridge(const lh_dmat *X, const double *y, const bool *use, double l2,
                             lh_probe **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  lh_xsum *acc = NULL; /* column sums of X (D), then sum of y */
  double *mean = NULL, *xc = NULL, *sys = NULL, *tmp = NULL, *adiag = NULL;
  lh_probe *p = NULL;
  int64_t count = 0, m = 0;
  int rank, cnt, dd, nsys, info = 0;
  MPI_Comm_rank(comm, &rank);
  if (!(l2 >= 0) || !isfinite(l2)) LH_FAIL(LH_ERR_VALUE, "l2 must be >= 0, got %g", l2);
  LH_TRY(probe_check(X, y, use, LH_PROBE_REGRESSOR, 1, "ridge", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "ridge: no sample to fit");
  LH_TRY(lh_int_cast(D + 1, "ridge accumulators", &cnt));
  LH_TRY(lh_int_cast(D, "ridge features", &dd));
  LH_TRY(lh_int_cast(D * D + D, "ridge system", &nsys));
  for (int64_t i = 0; i < n; i++) m += !use || use[i];
  local = lh_alloc((size_t)(D + 1), sizeof *acc, false, "ridge sums", &acc);
  if (local == LH_OK) local = lh_alloc((size_t)(D + 1), sizeof(double), false, "means", &mean);
  if (local == LH_OK) local = lh_alloc((size_t)D, sizeof(double), false, "row", &tmp);
  if (local == LH_OK) local = lh_alloc((size_t)D, sizeof(double), false, "diagonal", &adiag);
  if (local == LH_OK)
    local = lh_alloc((size_t)(m * (D + 1)), sizeof(double), false, "centred rows", &xc);
  if (local == LH_OK)
    local = lh_alloc((size_t)(D * D + D), sizeof(double), true, "normal equations", &sys);
  if (local == LH_OK) local = probe_alloc(LH_PROBE_REGRESSOR, 1, D, &p);
  LH_TRY(lh_agree(comm, local));

  for (int64_t j = 0; j <= D; j++) lh_xsum_init(&acc[j]);
  for (int64_t i = 0; i < n; i++) {
    if (use && !use[i]) continue;
    const double *x = probe_row(X, i, tmp);
    for (int64_t j = 0; j < D; j++) lh_xsum_add(&acc[j], x[j]);
    lh_xsum_add(&acc[D], y[i]);
  }
  LH_TRY(lh_xsum_allreduce(acc, cnt, comm));
  for (int64_t j = 0; j <= D; j++) mean[j] = lh_xsum_round(&acc[j]) / (double)count;

  /* centred rows [x - xbar | y - ybar], m x (D + 1) row-major */
  for (int64_t i = 0, r = 0; i < n; i++) {
    if (use && !use[i]) continue;
    const double *x = probe_row(X, i, tmp);
    for (int64_t j = 0; j < D; j++) xc[r * (D + 1) + j] = x[j] - mean[j];
    xc[r * (D + 1) + D] = y[i] - mean[D];
    r++;
  }
  /* sys = [A (D x D, upper triangle) | r (D)]: A = Xc^T Xc, r = Xc^T yc */
  if (m > 0) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, dd, (int)m, 1.0, xc, dd + 1, 0.0, sys, dd);
    cblas_dgemv(CblasRowMajor, CblasTrans, (int)m, dd, 1.0, xc, dd + 1, xc + D, dd + 1, 0.0,
                sys + D * D, 1);
  }
  if (MPI_Allreduce(MPI_IN_PLACE, sys, nsys, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "ridge: MPI_Allreduce of the normal equations failed");
  if (rank == 0) {
    for (int64_t j = 0; j < D; j++) {
      sys[j * D + j] += (double)count * l2;
      adiag[j] = sys[j * D + j];
    }
    /* Cholesky, refusing pivots that lost all but ~1e-12 of their diagonal: exactly
     * collinear features rarely give an exact zero pivot in floating point */
    info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', dd, sys, dd);
    for (int64_t j = 0; info == 0 && j < D; j++)
      if (!(sys[j * D + j] * sys[j * D + j] > 1e-12 * adiag[j])) info = (int)(j + 1);
    if (info == 0) info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', dd, 1, sys, dd, sys + D * D, 1);
  }
  if (MPI_Bcast(&info, 1, MPI_INT, 0, comm) != MPI_SUCCESS ||
      MPI_Bcast(sys + D * D, dd, MPI_DOUBLE, 0, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "ridge: MPI_Bcast of the solution failed");
  if (info > 0)
    LH_FAIL(LH_ERR_VALUE,
            "ridge: X^T X + N l2 I is singular or nearly so (l2 = %g; features "
            "are collinear or constant): use l2 > 0",
            l2);
  if (info < 0) LH_FAIL(LH_ERR_INTERNAL, "ridge: LAPACK Cholesky argument %d invalid", -info);
  double b = mean[D];
  for (int64_t j = 0; j < D; j++) {
    p->coef[j] = sys[D * D + j];
    b -= mean[j] * p->coef[j];
  }
  p->intercept[0] = b;
  p->n_fit = count;
  snprintf(p->solver_message, sizeof p->solver_message, "ridge: closed form");
  *out = p;
  p = NULL;
done:
  lh_probe_destroy(&p);
  lh_free(acc);
  lh_free(mean);
  lh_free(xc);
  lh_free(sys);
  lh_free(tmp);
  lh_free(adiag);
  return st;
}
