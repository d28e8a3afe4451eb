/*
 * probe_ridge.c: closed-form ridge regression for a linear probe.
 *
 * Minimises (1/N)|X w + b - y|^2 + l2 |w|^2 (scikit-learn's Ridge(alpha = l2 N)): with the
 * exact column means xbar, ybar (xsum.h), w solves (Xc^T Xc + N l2 I) w = Xc^T yc on the
 * centred data and b = ybar - xbar.w. Two ways to form and solve the D x D system, chosen by
 * D alone (the same choice on every rank):
 *
 *   replicated (D < opts.ridge_scalapack_min_d): each rank forms its part of Xc^T Xc (BLAS
 *     dsyrk) and Xc^T yc; one float64 allreduce sums them, rank 0 solves by Cholesky (LAPACK
 *     dpotrf, then dpotrs) and broadcasts. Every rank holds the D x D system.
 *   distributed (D >= opts.ridge_scalapack_min_d, default 2048): the augmented Gram matrix
 *     G = [Xc | yc]^T [Xc | yc] ((D+1) x (D+1); its last column is Xc^T yc) lives block-cyclic
 *     on a BLACS grid (bcmat.h) and ScaLAPACK solves it (pdposv). G is formed where it lives:
 *     for each grid process q in turn, every rank multiplies the columns of its own centred
 *     rows that q's blocks need (DGEMMs over panels of r rows, upper triangle only) and one
 *     MPI_Reduce sums the contributions on q. That is a reduce-scatter of the Gram: no row
 *     moves, a rank holds two shares of about (D+1)^2 / P (its own and the one being summed),
 *     and the D^2 values are reduced once, where the replicated way also broadcasts all of them
 *     to every rank. (Converting the rows to block-cyclic panels for a pdsyrk instead took longer
 *     than the whole replicated solve at N = 4000, D = 2048 on one rank: bcmat.c's row
 *     transpositions and redistributions.)
 * Both refuse Cholesky pivots that lost all but ~1e-12 of their diagonal (exactly collinear
 * features rarely give an exact zero pivot in floating point). The solution is the same bits
 * on every rank; it agrees across rank counts and between the two ways to rounding (1e-12
 * relative in tests/mpi/mpi_probe.c), not bit for bit.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cblas.h>
#include <lapacke.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/bcmat.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "linalg/scalapack.h"

/* A Cholesky pivot u_jj of a diagonal a_jj is accepted when u_jj^2 > PIVOT_FLOOR a_jj. */
#define PIVOT_FLOOR 1e-12

/* Values of one panel of centred rows (distributed path): r (D + 1) <= 2^21 doubles = 16 MiB
 * (at least 256 rows). */
#define PANEL_VALUES (INT64_C(1) << 21)

int64_t probe_ridge_panel_rows = 0;

/* The replicated system: w (D) on every rank, or *info > 0 (the failing pivot, 1-based). */
static lh_status solve_replicated(const lh_dmat *X, const double *y, const bool *use,
                                  const double *mean, int64_t count, double l2, double *w,
                                  int *info_out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  double *xc = NULL, *sys = NULL, *tmp = NULL, *adiag = NULL;
  int64_t m = 0;
  int rank, dd, nsys, info = 0;
  MPI_Comm_rank(comm, &rank);
  LH_TRY(lh_int_cast(D, "ridge features", &dd));
  LH_TRY(lh_int_cast(D * D + D, "ridge system (use the distributed solver)", &nsys));
  for (int64_t i = 0; i < n; i++) m += !use || use[i];
  local = lh_alloc((size_t)D, sizeof(double), false, "row", &tmp);
  if (local == LH_OK) local = lh_alloc((size_t)D, sizeof(double), false, "diagonal", &adiag);
  if (local == LH_OK)
    local = lh_alloc((size_t)(m * (D + 1)), sizeof(double), false, "centred rows", &xc);
  if (local == LH_OK)
    local = lh_alloc((size_t)(D * D + D), sizeof(double), true, "normal equations", &sys);
  LH_TRY(lh_agree(comm, local));

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
    info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', dd, sys, dd);
    for (int64_t j = 0; info == 0 && j < D; j++)
      if (!(sys[j * D + j] * sys[j * D + j] > PIVOT_FLOOR * adiag[j])) info = (int)(j + 1);
    if (info == 0) info = LAPACKE_dpotrs(LAPACK_ROW_MAJOR, 'U', dd, 1, sys, dd, sys + D * D, 1);
  }
  if (MPI_Bcast(&info, 1, MPI_INT, 0, comm) != MPI_SUCCESS ||
      MPI_Bcast(sys + D * D, dd, MPI_DOUBLE, 0, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "ridge: MPI_Bcast of the solution failed");
  if (info < 0) LH_FAIL(LH_ERR_INTERNAL, "ridge: LAPACK Cholesky argument %d invalid", -info);
  memcpy(w, sys + D * D, (size_t)D * sizeof(double));
  *info_out = info;
done:
  lh_free(xc);
  lh_free(sys);
  lh_free(tmp);
  lh_free(adiag);
  return st;
}

/* Block size of the distributed system: 64, smaller for small D so that the blocks still
 * spread over the larger grid dimension (when the solver is forced at small D in tests). */
static int block_size(int64_t D, int nprow, int npcol) {
  const int64_t per = (D + 1 + 2 * LH_MAX(nprow, npcol) - 1) / (2 * LH_MAX(nprow, npcol));
  return (int)LH_MAX(2, LH_MIN(64, per));
}

/* Global indices of the local rows (or columns) of grid row (column) q in a block-cyclic
 * dimension of n with blocks nb over np processes; returns their count. */
static int64_t cyclic_indices(int64_t n, int nb, int q, int np, int64_t *idx) {
  int64_t k = 0;
  for (int64_t b0 = (int64_t)q * nb; b0 < n; b0 += (int64_t)np * nb)
    for (int64_t g = b0; g < LH_MIN(n, b0 + nb); g++) idx[k++] = g;
  return k;
}

/* Packs the centred values of columns cols[0..nc) ([x - xbar | y - ybar]: column D is y) of the
 * next m selected local rows from row *i on into out (m x nc row-major); returns m <= r and
 * moves *i past them. */
static int64_t pack_centred(const lh_dmat *X, const double *y, const bool *use, const double *mean,
                            int64_t r, const int64_t *cols, int64_t nc, int64_t *i, double *tmp,
                            double *out) {
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  int64_t m = 0;
  for (; *i < n && m < r; (*i)++) {
    if (use && !use[*i]) continue;
    const double *x = probe_row(X, *i, tmp);
    for (int64_t t = 0; t < nc; t++) {
      const int64_t j = cols[t];
      out[m * nc + t] = j < D ? x[j] - mean[j] : y[*i] - mean[D];
    }
    m++;
  }
  return m;
}

/* The distributed system (see the top of the file): same contract as solve_replicated. */
static lh_status solve_distributed(const lh_dmat *X, const double *y, const bool *use,
                                   const double *mean, int64_t count, double l2, double *w,
                                   int *info_out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t D = lh_dmat_cols(X);
  lh_blacs *g = NULL;
  lh_bcmat *G = NULL, *R = NULL;
  double *tmp = NULL, *adiag = NULL, *A = NULL, *B = NULL, *T = NULL;
  int64_t *ri = NULL, *ci = NULL; /* global rows and columns of grid process q */
  int P, me, nprow, npcol, d, one = 1, info = 0;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &me);
  LH_TRY(lh_int_cast(D, "ridge features", &d));
  LH_TRY(lh_blacs_create(comm, 0, 0, &g));
  lh_blacs_info(g, &nprow, &npcol, NULL, NULL);
  const int nb = block_size(D, nprow, npcol), jr = d + 1;
  const int64_t r = probe_ridge_panel_rows > 0 ? probe_ridge_panel_rows
                                               : LH_MAX(INT64_C(256), PANEL_VALUES / (D + 1));
  LH_TRY(lh_bcmat_create(g, D + 1, D + 1, nb, nb, &G));
  LH_TRY(lh_bcmat_create(g, D, 1, nb, nb, &R));
  /* the largest share of the Gram a process holds: block rows/columns of grid row/column 0 */
  const int64_t lr0 = ((D + 1 + (int64_t)nb * nprow - 1) / ((int64_t)nb * nprow)) * nb;
  const int64_t lc0 = ((D + 1 + (int64_t)nb * npcol - 1) / ((int64_t)nb * npcol)) * nb;
  LH_TRY(lh_int_cast(lr0 * lc0, "ridge Gram share of one process", &(int){0}));
  local = lh_alloc((size_t)D, sizeof(double), false, "row", &tmp);
  if (local == LH_OK) local = lh_alloc((size_t)D, sizeof(double), false, "diagonal", &adiag);
  if (local == LH_OK) local = lh_alloc((size_t)lr0, sizeof *ri, false, "Gram rows", &ri);
  if (local == LH_OK) local = lh_alloc((size_t)lc0, sizeof *ci, false, "Gram columns", &ci);
  if (local == LH_OK) local = lh_alloc((size_t)(r * lr0), sizeof(double), false, "panel", &A);
  if (local == LH_OK) local = lh_alloc((size_t)(r * lc0), sizeof(double), false, "panel", &B);
  if (local == LH_OK) local = lh_alloc((size_t)(lr0 * lc0), sizeof(double), false, "Gram", &T);
  LH_TRY(lh_agree(comm, local));

  /* G's share of process q (upper triangle) = sum over ranks of their rows' products, summed
   * to q by one MPI_Reduce: a reduce-scatter of [Xc | yc]^T [Xc | yc] into the block-cyclic
   * layout, without moving rows and without a D x D matrix on any rank */
  for (int q = 0; q < P; q++) {
    const int qr = q / npcol, qc = q % npcol; /* BLACS "Row" order */
    const int64_t lr = cyclic_indices(D + 1, nb, qr, nprow, ri);
    const int64_t lc = cyclic_indices(D + 1, nb, qc, npcol, ci);
    if (lr == 0 || lc == 0) continue; /* the same on every rank */
    memset(T, 0, (size_t)(lr * lc) * sizeof(double));
    for (int64_t ia = 0, ib = 0;;) {
      const int64_t m = pack_centred(X, y, use, mean, r, ri, lr, &ia, tmp, A);
      pack_centred(X, y, use, mean, r, ci, lc, &ib, tmp, B);
      if (m == 0) break;
      /* per block of q's columns, only q's rows up to that block's last column (upper) */
      for (int64_t c0 = 0; c0 < lc; c0 += nb) {
        const int64_t nc = LH_MIN((int64_t)nb, lc - c0), last = ci[c0 + nc - 1];
        int64_t top = 0;
        while (top < lr && ri[top] <= last) top++;
        if (top == 0) continue;
        /* T[0:top, c0:c0+nc] (column-major, ld lr) += A[:, 0:top]^T B[:, c0:c0+nc] */
        cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)top, (int)nc, (int)m, 1.0, A,
                    (int)lr, B + c0, (int)lc, 1.0, T + c0 * lr, (int)lr);
      }
    }
    if (MPI_Reduce(T, q == me ? lh_bcmat_local(G) : NULL, (int)(lr * lc), MPI_DOUBLE, MPI_SUM, q,
                   comm) != MPI_SUCCESS)
      LH_FAIL(LH_ERR_MPI, "ridge: MPI_Reduce of the Gram matrix failed");
  }

  /* + N l2 on the diagonal of the D x D part; the right-hand side is G's last column */
  const int *dg = lh_bcmat_desc(G);
  const int lld = dg[LH_DESC_LLD], lr = lh_bcmat_local_rows(G), lc = lh_bcmat_local_cols(G);
  double *gl = lh_bcmat_local(G);
  for (int lj = 0; lj < lc; lj++)
    for (int li = 0; li < lr; li++) {
      int64_t gi, gj;
      lh_bcmat_global_index(G, li, lj, &gi, &gj);
      if (gi != gj || gi >= D) continue;
      gl[li + (int64_t)lj * lld] += (double)count * l2;
      adiag[gi] = gl[li + (int64_t)lj * lld];
    }
  pdgemr2d_(&d, &one, gl, &one, &jr, dg, lh_bcmat_local(R), &one, &one, lh_bcmat_desc(R),
            &dg[LH_DESC_CTXT]);
  pdposv_("U", &d, &one, gl, &one, &one, dg, lh_bcmat_local(R), &one, &one, lh_bcmat_desc(R),
          &info);
  if (info < 0) LH_FAIL(LH_ERR_INTERNAL, "ridge: ScaLAPACK pdposv argument %d invalid", -info);
  /* the pivot test of the replicated path, on the diagonal blocks each rank holds */
  int bad = INT_MAX;
  for (int lj = 0; info == 0 && lj < lc; lj++)
    for (int li = 0; li < lr; li++) {
      int64_t gi, gj;
      lh_bcmat_global_index(G, li, lj, &gi, &gj);
      if (gi != gj || gi >= D) continue;
      const double u = gl[li + (int64_t)lj * lld];
      if (!(u * u > PIVOT_FLOOR * adiag[gi]) && gi + 1 < bad) bad = (int)(gi + 1);
    }
  if (MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "ridge: MPI_Allreduce of the pivot check failed");
  if (info == 0 && bad != INT_MAX) info = bad;

  /* the solution, owned by process column 0, to every rank: x + 0 = x, so the same bits */
  memset(w, 0, (size_t)D * sizeof(double));
  for (int li = 0; info == 0 && li < lh_bcmat_local_rows(R) && lh_bcmat_local_cols(R) > 0; li++) {
    int64_t gi, gj;
    lh_bcmat_global_index(R, li, 0, &gi, &gj);
    w[gi] = lh_bcmat_local(R)[li];
  }
  if (MPI_Allreduce(MPI_IN_PLACE, w, d, MPI_DOUBLE, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "ridge: MPI_Allreduce of the solution failed");
  *info_out = info;
done:
  lh_bcmat_destroy(&G);
  lh_bcmat_destroy(&R);
  lh_blacs_destroy(&g);
  lh_free(tmp);
  lh_free(adiag);
  lh_free(A);
  lh_free(B);
  lh_free(T);
  lh_free(ri);
  lh_free(ci);
  return st;
}

lh_status lh_probe_fit_ridge(const lh_dmat *X, const double *y, const bool *use,
                             const lh_probe_opts *o, lh_probe **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  const double l2 = o->l2;
  lh_xsum *acc = NULL; /* column sums of X (D), then sum of y */
  double *mean = NULL, *tmp = NULL;
  lh_probe *p = NULL;
  int64_t count = 0;
  int cnt, info = 0;
  if (o->kind != LH_PROBE_REGRESSOR)
    LH_FAIL(LH_ERR_VALUE,
            "solver ridge fits regression only (a probe without num_classes); "
            "use lbfgs or adam for classification");
  if (!(l2 >= 0) || !isfinite(l2)) LH_FAIL(LH_ERR_VALUE, "l2 must be >= 0, got %g", l2);
  LH_TRY(probe_check(X, y, use, LH_PROBE_REGRESSOR, 1, "ridge", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "ridge: no sample to fit");
  LH_TRY(lh_int_cast(D + 1, "ridge accumulators", &cnt));
  local = lh_alloc((size_t)(D + 1), sizeof *acc, false, "ridge sums", &acc);
  if (local == LH_OK) local = lh_alloc((size_t)(D + 1), sizeof(double), false, "means", &mean);
  if (local == LH_OK) local = lh_alloc((size_t)D, sizeof(double), false, "row", &tmp);
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

  const bool distributed = D >= o->ridge_scalapack_min_d;
  if (distributed)
    LH_TRY(solve_distributed(X, y, use, mean, count, l2, p->coef, &info));
  else
    LH_TRY(solve_replicated(X, y, use, mean, count, l2, p->coef, &info));
  if (info > 0)
    LH_FAIL(LH_ERR_VALUE,
            "ridge: X^T X + N l2 I is singular or nearly so (l2 = %g; features are collinear or "
            "constant): use l2 > 0",
            l2);
  double b = mean[D];
  for (int64_t j = 0; j < D; j++) b -= mean[j] * p->coef[j];
  p->intercept[0] = b;
  p->n_fit = count;
  snprintf(p->solver_message, sizeof p->solver_message, "ridge: closed form (%s)",
           distributed ? "ScaLAPACK pdposv" : "LAPACK dpotrf");
  *out = p;
  p = NULL;
done:
  lh_probe_destroy(&p);
  lh_free(acc);
  lh_free(mean);
  lh_free(tmp);
  return st;
}
