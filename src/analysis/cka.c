/*
 * cka.c: linear CKA over distributed rows, Gram and ScaLAPACK paths (see cka.h).
 *
 * Debiased form (Kornblith et al. 2019, after Song et al. 2012), with centred features, row
 * squared norms r_i = ||x~_i||^2, s_i = ||y~_i||^2 and totals R = sum r_i, S = sum s_i:
 *   hsic(X, Y) = ||X~^T Y~||_F^2 - N / (N - 2) * sum_i r_i s_i + R S / ((N - 1)(N - 2)),
 * a multiple of the unbiased HSIC estimator; the multiple cancels in the ratio
 *   CKA = hsic(X, Y) / sqrt(hsic(X, X) hsic(Y, Y)).
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "core/check.h"
#include "latenthook/bcmat.h"
#include "latenthook/cka.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/timer.h"
#include "linalg/scalapack.h"

lh_cka_opts lh_cka_defaults(void) {
  lh_cka_opts o = {.debiased = false, .eps = 1e-12, .path = LH_CKA_AUTO,
                   .gram_limit_bytes = INT64_C(1) << 30};
  return o;
}

/* Column-centred float64 copy of a matrix (the column means exact, xsum.h). */
static lh_status centred(const lh_dmat *X, lh_dmat **out) {
  lh_status st = LH_OK;
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  double *mean = NULL;
  lh_dmat *C = NULL;
  LH_TRY(lh_agree(lh_dmat_comm(X), lh_alloc((size_t)D, sizeof *mean, false, "column means", &mean)));
  LH_TRY(lh_dmat_col_reduce(X, LH_COL_MEAN, mean));
  LH_TRY(lh_dmat_create(lh_dmat_comm(X), LH_F64, lh_dmat_rows(X), D, &C));
  LH_TRY(lh_dmat_copy(X, C));
  double *c = lh_dmat_local(C);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++) c[i * D + j] -= mean[j];
  *out = C;
  C = NULL;
done:
  lh_free(mean);
  lh_dmat_destroy(&C);
  return st;
}

/* Sum of squares of a Dx x Dy matrix; for a symmetric one held in its upper triangle
 * (column-major), diagonal once and off-diagonal twice. */
static double frob2(const double *g, int64_t rows, int64_t cols, bool upper_sym) {
  double s = 0;
  for (int64_t j = 0; j < cols; j++)
    for (int64_t i = 0; i < (upper_sym ? j + 1 : rows); i++) {
      double v = g[i + j * rows];
      s += (upper_sym && i != j ? 2.0 : 1.0) * v * v;
    }
  return s;
}

/* The three squared Frobenius norms by local Gram contributions and one allreduce. */
static lh_status gram_path(const lh_dmat *Xc, const lh_dmat *Yc, double f[3]) {
  lh_status st = LH_OK;
  const int64_t n = lh_dmat_local_rows(Xc), dx = lh_dmat_cols(Xc), dy = lh_dmat_cols(Yc);
  double *g = NULL;
  int64_t total = dx * dx + dy * dy + dx * dy;
  int cnt;
  LH_TRY(lh_int_cast(total, "Gram matrix elements", &cnt));
  LH_TRY(lh_agree(lh_dmat_comm(Xc), lh_alloc((size_t)total, sizeof *g, true, "Gram matrices", &g)));
  double *gxx = g, *gyy = g + dx * dx, *gxy = gyy + dy * dy; /* column-major */
  const double *x = lh_dmat_local_const(Xc), *y = lh_dmat_local_const(Yc);
  if (n > 0) {
    /* rows are row-major n x D = column-major D x n: X~^T X~ = A A^T with A = D x n */
    if (dx) cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)dx, (int)n, 1.0, x, (int)dx, 0.0, gxx, (int)dx);
    if (dy) cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)dy, (int)n, 1.0, y, (int)dy, 0.0, gyy, (int)dy);
    if (dx && dy)
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)dx, (int)dy, (int)n, 1.0, x,
                  (int)dx, y, (int)dy, 0.0, gxy, (int)dx);
  }
  MPI_Allreduce(MPI_IN_PLACE, g, cnt, MPI_DOUBLE, MPI_SUM, lh_dmat_comm(Xc));
  f[0] = frob2(gxy, dx, dy, false);
  f[1] = frob2(gxx, dx, dx, true);
  f[2] = frob2(gyy, dy, dy, true);
done:
  lh_free(g);
  return st;
}

/* The same through ScaLAPACK on a 2-D block-cyclic layout. */
static lh_status scalapack_path(const lh_dmat *Xc, const lh_dmat *Yc, double f[3]) {
  lh_status st = LH_OK;
  MPI_Comm comm = lh_dmat_comm(Xc);
  const int64_t N = lh_dmat_rows(Xc), dx = lh_dmat_cols(Xc), dy = lh_dmat_cols(Yc);
  lh_blacs *g = NULL;
  lh_bcmat *A = NULL, *B = NULL, *Gxx = NULL, *Gyy = NULL, *Gxy = NULL;
  const int nb = 64;
  LH_TRY(lh_blacs_create(comm, 0, 0, &g));
  LH_TRY(lh_dmat_to_bcmat(Xc, g, nb, nb, &A));
  LH_TRY(lh_dmat_to_bcmat(Yc, g, nb, nb, &B));
  LH_TRY(lh_bcmat_create(g, dx, dx, nb, nb, &Gxx));
  LH_TRY(lh_bcmat_create(g, dy, dy, nb, nb, &Gyy));
  LH_TRY(lh_bcmat_create(g, dx, dy, nb, nb, &Gxy));
  int one = 1, n = (int)N, ix = (int)dx, iy = (int)dy;
  double alpha = 1.0, beta = 0.0;
  if (N > 0) {
    if (dx) pdsyrk_("U", "T", &ix, &n, &alpha, lh_bcmat_local(A), &one, &one, lh_bcmat_desc(A),
                    &beta, lh_bcmat_local(Gxx), &one, &one, lh_bcmat_desc(Gxx));
    if (dy) pdsyrk_("U", "T", &iy, &n, &alpha, lh_bcmat_local(B), &one, &one, lh_bcmat_desc(B),
                    &beta, lh_bcmat_local(Gyy), &one, &one, lh_bcmat_desc(Gyy));
    if (dx && dy)
      pdgemm_("T", "N", &ix, &iy, &n, &alpha, lh_bcmat_local(A), &one, &one, lh_bcmat_desc(A),
              lh_bcmat_local(B), &one, &one, lh_bcmat_desc(B), &beta, lh_bcmat_local(Gxy), &one,
              &one, lh_bcmat_desc(Gxy));
  }
  /* Frobenius norms from the local blocks (upper triangles of the symmetric ones) */
  lh_bcmat *mats[3] = {Gxy, Gxx, Gyy};
  for (int t = 0; t < 3; t++) {
    lh_bcmat *M = mats[t];
    const int lr = lh_bcmat_local_rows(M), lc = lh_bcmat_local_cols(M);
    const int lld = lh_bcmat_desc(M)[LH_DESC_LLD];
    double s = 0;
    for (int lj = 0; lj < lc; lj++)
      for (int li = 0; li < lr; li++) {
        int64_t gi, gj;
        lh_bcmat_global_index(M, li, lj, &gi, &gj);
        if (t > 0 && gi > gj) continue; /* lower triangle of a PDSYRK result: not computed */
        double v = lh_bcmat_local(M)[li + (int64_t)lj * lld];
        s += (t > 0 && gi != gj ? 2.0 : 1.0) * v * v;
      }
    f[t] = s;
  }
  MPI_Allreduce(MPI_IN_PLACE, f, 3, MPI_DOUBLE, MPI_SUM, comm);
done:
  lh_bcmat_destroy(&A);
  lh_bcmat_destroy(&B);
  lh_bcmat_destroy(&Gxx);
  lh_bcmat_destroy(&Gyy);
  lh_bcmat_destroy(&Gxy);
  lh_blacs_destroy(&g);
  return st;
}

lh_status lh_cka_linear(const lh_dmat *X, const lh_dmat *Y, const lh_cka_opts *opts,
                        double *cka) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t N = lh_dmat_rows(X), dx = lh_dmat_cols(X), dy = lh_dmat_cols(Y);
  lh_dmat *Xc = NULL, *Yc = NULL;
  static lh_event ev = -2;
  if (ev == -2) ev = lh_event_get("cka.linear");
  lh_event_begin(ev);
  int same = MPI_UNEQUAL;
  MPI_Comm_compare(comm, lh_dmat_comm(Y), &same);
  if (same != MPI_IDENT)
    local = LH_ERROR(LH_ERR_INTERNAL, "CKA: X and Y live on different communicators");
  else if (lh_dmat_rows(Y) != N)
    local = LH_ERROR(LH_ERR_VALUE, "Expected matching sample counts, got %lld and %lld",
                     (long long)N, (long long)lh_dmat_rows(Y));
  else if (opts->debiased && N < 4)
    local = LH_ERROR(LH_ERR_VALUE, "debiased CKA needs at least 4 samples, got %lld", (long long)N);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(centred(X, &Xc));
  LH_TRY(centred(Y, &Yc));
  double f[3]; /* ||X~^T Y~||^2, ||X~^T X~||^2, ||Y~^T Y~||^2 */
  bool gram = opts->path == LH_CKA_GRAM ||
              (opts->path == LH_CKA_AUTO &&
               (dx * dx + dy * dy + dx * dy) * 8 <= opts->gram_limit_bytes);
  if (gram)
    LH_TRY(gram_path(Xc, Yc, f));
  else
    LH_TRY(scalapack_path(Xc, Yc, f));
  if (opts->debiased) {
    /* sum_i r_i s_i, sum r_i^2, sum s_i^2, R, S */
    double v[5] = {0, 0, 0, 0, 0};
    const double *x = lh_dmat_local_const(Xc), *y = lh_dmat_local_const(Yc);
    for (int64_t i = 0; i < lh_dmat_local_rows(Xc); i++) {
      double r = 0, s = 0;
      for (int64_t j = 0; j < dx; j++) r += x[i * dx + j] * x[i * dx + j];
      for (int64_t j = 0; j < dy; j++) s += y[i * dy + j] * y[i * dy + j];
      v[0] += r * s;
      v[1] += r * r;
      v[2] += s * s;
      v[3] += r;
      v[4] += s;
    }
    MPI_Allreduce(MPI_IN_PLACE, v, 5, MPI_DOUBLE, MPI_SUM, comm);
    double n = (double)N, c1 = n / (n - 2), c2 = 1.0 / ((n - 1) * (n - 2));
    f[0] = f[0] - c1 * v[0] + v[3] * v[4] * c2;
    f[1] = f[1] - c1 * v[1] + v[3] * v[3] * c2;
    f[2] = f[2] - c1 * v[2] + v[4] * v[4] * c2;
  }
  double den = sqrt(f[1] * f[2]);
  /* sqrt of a negative debiased estimate is NaN: undefined, as a zero denominator */
  *cka = (!isfinite(den) || den <= opts->eps) ? NAN : f[0] / den;
done:
  lh_dmat_destroy(&Xc);
  lh_dmat_destroy(&Yc);
  lh_event_end(ev);
  return st;
}
