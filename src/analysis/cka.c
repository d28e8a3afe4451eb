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
  lh_cka_opts o = {
      .debiased = false, .eps = 1e-12, .path = LH_CKA_AUTO, .gram_limit_bytes = INT64_C(1) << 30};
  return o;
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

/* Rows centred per chunk on the Gram path: the float64 copies exist for CHUNK rows at a time,
 * never for the whole matrix, and each chunk's DSYRK/DGEMM still has CHUNK as its inner
 * dimension, long enough for BLAS to run at its peak. */
#define CHUNK 2048

/* Rows [i0, i0 + c) of X (float32 or float64) minus the column means, into out (c x D). */
static void centre_rows(const lh_dmat *X, const double *mean, int64_t i0, int64_t c, double *out) {
  const int64_t d = lh_dmat_cols(X);
  if (lh_dmat_dtype(X) == LH_F32) {
    const float *x = (const float *)lh_dmat_local_const(X) + i0 * d;
    for (int64_t i = 0; i < c; i++)
      for (int64_t j = 0; j < d; j++) out[i * d + j] = (double)x[i * d + j] - mean[j];
  } else {
    const double *x = (const double *)lh_dmat_local_const(X) + i0 * d;
    for (int64_t i = 0; i < c; i++)
      for (int64_t j = 0; j < d; j++) out[i * d + j] = x[i * d + j] - mean[j];
  }
}

/* Squared row norms of c centred rows. */
static void chunk_norms(const double *x, int64_t c, int64_t d, double *r) {
  for (int64_t i = 0; i < c; i++) {
    double s = 0;
    for (int64_t j = 0; j < d; j++) s += x[i * d + j] * x[i * d + j];
    r[i] = s;
  }
}

/* ||A~^T B~||_F^2 by local Gram contributions and one allreduce (sym: B is A, DSYRK), the
 * rows centred CHUNK at a time with the given column means; with sym, the squared row norms
 * of A~ go to r (local rows) when r is not NULL. */
static lh_status frob_gram(const lh_dmat *A, const lh_dmat *B, const double *ma, const double *mb,
                           bool sym, double *r, double *f) {
  lh_status st = LH_OK;
  const int64_t n = lh_dmat_local_rows(A), da = lh_dmat_cols(A), db = lh_dmat_cols(B);
  const int64_t cmax = LH_MIN(n, CHUNK);
  double *g = NULL, *xa = NULL, *xb = NULL;
  int cnt;
  LH_TRY(lh_int_cast(da * db, "Gram matrix elements", &cnt));
  lh_status local = lh_alloc((size_t)(da * db), sizeof *g, true, "Gram matrix", &g);
  if (local == LH_OK) local = lh_alloc((size_t)(cmax * da), sizeof *xa, false, "centred rows", &xa);
  if (local == LH_OK && !sym)
    local = lh_alloc((size_t)(cmax * db), sizeof *xb, false, "centred rows", &xb);
  LH_TRY(lh_agree(lh_dmat_comm(A), local));
  /* row-major c x D is column-major D x c: A~^T B~ = sum over chunks of Xa Xb^T */
  for (int64_t i0 = 0; i0 < n && da > 0 && db > 0; i0 += CHUNK) {
    const int64_t c = LH_MIN(CHUNK, n - i0);
    centre_rows(A, ma, i0, c, xa);
    if (sym) {
      cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, (int)da, (int)c, 1.0, xa, (int)da, 1.0,
                  g, (int)da);
      if (r) chunk_norms(xa, c, da, r + i0);
    } else {
      centre_rows(B, mb, i0, c, xb);
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, (int)da, (int)db, (int)c, 1.0, xa,
                  (int)da, xb, (int)db, 1.0, g, (int)da);
    }
  }
  if (sym && r && da == 0)
    for (int64_t i = 0; i < n; i++) r[i] = 0;
  MPI_Allreduce(MPI_IN_PLACE, g, cnt, MPI_DOUBLE, MPI_SUM, lh_dmat_comm(A));
  *f = frob2(g, da, db, sym);
done:
  lh_free(g);
  lh_free(xa);
  lh_free(xb);
  return st;
}

/* The same through ScaLAPACK on a 2-D block-cyclic layout (PDSYRK / PDGEMM), the norm summed
 * from the local blocks (the upper triangle of a PDSYRK result). */
static lh_status frob_scalapack(const lh_dmat *Ad, const lh_dmat *Bd, bool sym, double *f) {
  lh_status st = LH_OK;
  MPI_Comm comm = lh_dmat_comm(Ad);
  const int64_t N = lh_dmat_rows(Ad), da = lh_dmat_cols(Ad), db = lh_dmat_cols(Bd);
  lh_blacs *g = NULL;
  lh_bcmat *A = NULL, *B = NULL, *G = NULL;
  const int nb = 64;
  LH_TRY(lh_blacs_create(comm, 0, 0, &g));
  LH_TRY(lh_dmat_to_bcmat(Ad, g, nb, nb, &A));
  if (!sym) LH_TRY(lh_dmat_to_bcmat(Bd, g, nb, nb, &B));
  LH_TRY(lh_bcmat_create(g, da, db, nb, nb, &G));
  int one = 1, n = (int)N, ia = (int)da, ib = (int)db;
  double alpha = 1.0, beta = 0.0;
  if (N > 0 && da > 0 && db > 0) {
    if (sym)
      pdsyrk_("U", "T", &ia, &n, &alpha, lh_bcmat_local(A), &one, &one, lh_bcmat_desc(A), &beta,
              lh_bcmat_local(G), &one, &one, lh_bcmat_desc(G));
    else
      pdgemm_("T", "N", &ia, &ib, &n, &alpha, lh_bcmat_local(A), &one, &one, lh_bcmat_desc(A),
              lh_bcmat_local(B), &one, &one, lh_bcmat_desc(B), &beta, lh_bcmat_local(G), &one, &one,
              lh_bcmat_desc(G));
  }
  const int lr = lh_bcmat_local_rows(G), lc = lh_bcmat_local_cols(G);
  const int lld = lh_bcmat_desc(G)[LH_DESC_LLD];
  double s = 0;
  for (int lj = 0; lj < lc; lj++)
    for (int li = 0; li < lr; li++) {
      int64_t gi, gj;
      lh_bcmat_global_index(G, li, lj, &gi, &gj);
      if (sym && gi > gj) continue; /* not computed by PDSYRK */
      double v = lh_bcmat_local(G)[li + (int64_t)lj * lld];
      s += (sym && gi != gj ? 2.0 : 1.0) * v * v;
    }
  MPI_Allreduce(MPI_IN_PLACE, &s, 1, MPI_DOUBLE, MPI_SUM, comm);
  *f = s;
done:
  lh_bcmat_destroy(&A);
  lh_bcmat_destroy(&B);
  lh_bcmat_destroy(&G);
  lh_blacs_destroy(&g);
  return st;
}

/* Whether a da x db Gram takes the Gram path (the same decision on every rank). */
static bool gram_path(int64_t da, int64_t db, const lh_cka_opts *o) {
  int64_t bytes = da * db * 8;
  return o->path == LH_CKA_GRAM || (o->path == LH_CKA_AUTO && bytes <= o->gram_limit_bytes);
}

/* Squared row norms of a centred matrix (local rows). */
static void row_norms(const lh_dmat *C, double *r) {
  const int64_t n = lh_dmat_local_rows(C), d = lh_dmat_cols(C);
  const double *x = lh_dmat_local_const(C);
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t j = 0; j < d; j++) s += x[i * d + j] * x[i * d + j];
    r[i] = s;
  }
}

/* The debiased correction of a squared Frobenius norm (cka.c header). */
static double debias(double f, double n, double rs, double ra, double rb) {
  return f - n / (n - 2) * rs + ra * rb / ((n - 1) * (n - 2));
}

static double ratio(double num, double a, double b, double eps) {
  double den = sqrt(a * b);
  /* sqrt of a negative debiased estimate is NaN: undefined, as a zero denominator */
  return (!isfinite(den) || den <= eps) ? NAN : num / den;
}

static lh_status check_pair(const lh_dmat *X, const lh_dmat *Y, const lh_cka_opts *o) {
  lh_status local = LH_OK;
  int same = MPI_UNEQUAL;
  MPI_Comm_compare(lh_dmat_comm(X), lh_dmat_comm(Y), &same);
  if (same != MPI_IDENT)
    local = LH_ERROR(LH_ERR_INTERNAL, "CKA: X and Y live on different communicators");
  else if (lh_dmat_rows(Y) != lh_dmat_rows(X))
    local = LH_ERROR(LH_ERR_VALUE, "Expected matching sample counts, got %lld and %lld",
                     (long long)lh_dmat_rows(X), (long long)lh_dmat_rows(Y));
  else if (o->debiased && lh_dmat_rows(X) < 4)
    local = LH_ERROR(LH_ERR_VALUE, "debiased CKA needs at least 4 samples, got %lld",
                     (long long)lh_dmat_rows(X));
  return lh_agree(lh_dmat_comm(X), local);
}

lh_status lh_cka_linear(const lh_dmat *X, const lh_dmat *Y, const lh_cka_opts *opts, double *cka) {
  const lh_dmat *layers[2] = {X, Y};
  double M[4];
  lh_status st = lh_cka_linear_matrix(layers, 2, opts, M);
  if (st == LH_OK) *cka = M[1];
  return st;
}

lh_status lh_cka_linear_matrix(const lh_dmat *const *layers, int64_t L, const lh_cka_opts *opts,
                               double *M) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(layers[0]);
  const int64_t N = lh_dmat_rows(layers[0]), n = lh_dmat_local_rows(layers[0]);
  lh_dmat **C = NULL; /* float64 centred copies, for layers on the ScaLAPACK path only */
  double **mean = NULL, *self = NULL, *r = NULL, *tot = NULL;
  static lh_event ev = -2;
  if (ev == -2) ev = lh_event_get("cka.linear");
  lh_event_begin(ev);
  for (int64_t a = 1; a < L; a++) LH_TRY(check_pair(layers[0], layers[a], opts));
  if (L == 1) LH_TRY(check_pair(layers[0], layers[0], opts));
  local = lh_alloc((size_t)L, sizeof *C, true, "centred layers", &C);
  if (local == LH_OK) local = lh_alloc((size_t)L, sizeof *mean, true, "column means", &mean);
  if (local == LH_OK) local = lh_alloc((size_t)L, sizeof *self, false, "norms", &self);
  if (local == LH_OK) local = lh_alloc((size_t)(L * n), sizeof *r, false, "row norms", &r);
  if (local == LH_OK) local = lh_alloc((size_t)L, sizeof *tot, false, "row norms", &tot);
  for (int64_t a = 0; a < L && local == LH_OK; a++)
    local = lh_alloc((size_t)LH_MAX(lh_dmat_cols(layers[a]), 1), sizeof **mean, false,
                     "column means", &mean[a]);
  LH_TRY(lh_agree(comm, local));
  /* once per layer: the exact column means, ||X~^T X~||^2, and the row norms of the debiased
   * form; a layer on the ScaLAPACK path keeps its centred copy for its pairs */
  double nn = (double)N;
  for (int64_t a = 0; a < L; a++) {
    const lh_dmat *X = layers[a];
    const int64_t d = lh_dmat_cols(X);
    LH_TRY(lh_dmat_col_reduce(X, LH_COL_MEAN, mean[a]));
    if (gram_path(d, d, opts)) {
      LH_TRY(frob_gram(X, X, mean[a], mean[a], true, r + a * n, &self[a]));
    } else {
      LH_TRY(lh_dmat_centred(X, &C[a]));
      LH_TRY(frob_scalapack(C[a], C[a], true, &self[a]));
      row_norms(C[a], r + a * n);
    }
    double v[2] = {0, 0}; /* sum r_i, sum r_i^2 */
    for (int64_t i = 0; i < n; i++) {
      v[0] += r[a * n + i];
      v[1] += r[a * n + i] * r[a * n + i];
    }
    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_DOUBLE, MPI_SUM, comm);
    tot[a] = v[0];
    if (opts->debiased) self[a] = debias(self[a], nn, v[1], v[0], v[0]);
  }
  /* once per pair: ||X~_a^T X~_b||^2 */
  for (int64_t a = 0; a < L; a++) {
    M[a * L + a] = ratio(self[a], self[a], self[a], opts->eps);
    for (int64_t b = a + 1; b < L; b++) {
      double f;
      const int64_t da = lh_dmat_cols(layers[a]), db = lh_dmat_cols(layers[b]);
      if (gram_path(da, db, opts)) {
        LH_TRY(frob_gram(layers[a], layers[b], mean[a], mean[b], false, NULL, &f));
      } else {
        if (!C[a]) LH_TRY(lh_dmat_centred(layers[a], &C[a]));
        if (!C[b]) LH_TRY(lh_dmat_centred(layers[b], &C[b]));
        LH_TRY(frob_scalapack(C[a], C[b], false, &f));
      }
      if (opts->debiased) {
        double rs = 0;
        for (int64_t i = 0; i < n; i++) rs += r[a * n + i] * r[b * n + i];
        MPI_Allreduce(MPI_IN_PLACE, &rs, 1, MPI_DOUBLE, MPI_SUM, comm);
        f = debias(f, nn, rs, tot[a], tot[b]);
      }
      M[a * L + b] = M[b * L + a] = ratio(f, self[a], self[b], opts->eps);
    }
  }
done:
  for (int64_t a = 0; C && a < L; a++) lh_dmat_destroy(&C[a]);
  for (int64_t a = 0; mean && a < L; a++) lh_free(mean[a]);
  lh_free(C);
  lh_free(mean);
  lh_free(self);
  lh_free(r);
  lh_free(tot);
  lh_event_end(ev);
  return st;
}
