/*
 * kmat.c: block-cyclic kernel matrices (see kmat.h).
 */
#include <math.h>

#include "analysis/ring.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dsort.h"
#include "latenthook/kmat.h"
#include "latenthook/mem.h"
#include "linalg/scalapack.h"

struct lh_kmat {
  lh_bcmat *K;
  double median;
};

lh_bcmat *lh_kmat_bcmat(const lh_kmat *K) { return K->K; }
double lh_kmat_median(const lh_kmat *K) { return K->median; }

void lh_kmat_destroy(lh_kmat **K) {
  if (!K || !*K) return;
  lh_bcmat_destroy(&(*K)->K);
  lh_free(*K);
  *K = NULL;
}

/* Squared distances or dot products of the rows each local block needs (fetched). */
static lh_status fill(const lh_dmat *C, lh_kernel_kind kind, lh_bcmat *B) {
  lh_status st = LH_OK;
  const int64_t D = lh_dmat_cols(C);
  const int lr = lh_bcmat_local_rows(B), lc = lh_bcmat_local_cols(B);
  const int lld = lh_bcmat_desc(B)[LH_DESC_LLD];
  int64_t *ri = NULL, *cj = NULL;
  double *rows = NULL, *cols = NULL;
  lh_status local = lh_alloc((size_t)lr, sizeof *ri, false, "kernel rows", &ri);
  if (local == LH_OK) local = lh_alloc((size_t)lc, sizeof *cj, false, "kernel cols", &cj);
  if (local == LH_OK) local = lh_alloc((size_t)lr * (size_t)D, sizeof *rows, false, "kernel rows", &rows);
  if (local == LH_OK) local = lh_alloc((size_t)lc * (size_t)D, sizeof *cols, false, "kernel cols", &cols);
  LH_TRY(lh_agree(lh_dmat_comm(C), local));
  for (int li = 0; li < lr; li++) {
    int64_t gj;
    lh_bcmat_global_index(B, li, 0, &ri[li], &gj);
  }
  for (int lj = 0; lj < lc; lj++) {
    int64_t gi;
    lh_bcmat_global_index(B, 0, lj, &gi, &cj[lj]);
  }
  LH_TRY(lh_dmat_fetch_rows(C, lr, ri, rows));
  LH_TRY(lh_dmat_fetch_rows(C, lc, cj, cols));
  double *k = lh_bcmat_local(B);
  for (int lj = 0; lj < lc; lj++)
    for (int li = 0; li < lr; li++) {
      const double *a = rows + (size_t)li * D, *b = cols + (size_t)lj * D;
      double v = 0;
      if (kind == LH_KERNEL_RBF)
        v = ring_exact_d2(a, b, D, LH_F64);
      else
        for (int64_t j = 0; j < D; j++) v += a[j] * b[j];
      k[li + (size_t)lj * lld] = v;
    }
done:
  lh_free(ri);
  lh_free(cj);
  lh_free(rows);
  lh_free(cols);
  return st;
}

lh_status lh_kmat_create(const lh_dmat *X, lh_kernel_kind kind, double threshold, lh_blacs *g,
                         lh_kmat **out) {
  lh_status st = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t N = lh_dmat_rows(X);
  lh_dmat *C = NULL;
  lh_kmat *K = NULL;
  double *vals = NULL;
  LH_TRY(lh_agree(comm, lh_alloc(1, sizeof *K, true, "kernel matrix", &K)));
  K->median = NAN;
  LH_TRY(lh_dmat_centred(X, &C)); /* distances do not care; the linear kernel needs it */
  LH_TRY(lh_bcmat_create(g, N, N, 64, 64, &K->K));
  LH_TRY(fill(C, kind, K->K));
  if (kind == LH_KERNEL_RBF) {
    /* the median of all N^2 entries, by distributed selection over the held blocks */
    lh_bcmat *B = K->K;
    const int lr = lh_bcmat_local_rows(B), lc = lh_bcmat_local_cols(B);
    const int lld = lh_bcmat_desc(B)[LH_DESC_LLD];
    int64_t cnt = (int64_t)lr * lc, n2 = N * N;
    double *k = lh_bcmat_local(B), a = 0, b = 0;
    LH_TRY(lh_agree(comm, lh_alloc((size_t)cnt, sizeof *vals, false, "median values", &vals)));
    for (int lj = 0; lj < lc; lj++)
      for (int li = 0; li < lr; li++) vals[li + (int64_t)lj * lr] = k[li + (size_t)lj * lld];
    if (n2 > 0) {
      LH_TRY(lh_dsort_select(comm, cnt, vals, (n2 - 1) / 2, &a));
      LH_TRY(lh_dsort_select(comm, cnt, vals, n2 / 2, &b));
    }
    K->median = 0.5 * (a + b);
    if (K->median > 0) {
      double gm = 1.0 / (2.0 * threshold * threshold * K->median);
      for (int lj = 0; lj < lc; lj++)
        for (int li = 0; li < lr; li++) k[li + (size_t)lj * lld] = exp(-k[li + (size_t)lj * lld] * gm);
    }
  }
  *out = K;
  K = NULL;
done:
  lh_free(vals);
  lh_dmat_destroy(&C);
  lh_kmat_destroy(&K);
  return st;
}

lh_status lh_kmat_write(const lh_kmat *K, lh_h5_out *o, const char *path) {
  lh_status st = LH_OK;
  lh_bcmat *B = K->K;
  const int64_t N = lh_bcmat_rows(B);
  MPI_Comm comm = MPI_COMM_NULL;
  lh_dmat *rows = NULL;
  lh_h5_dset *d = NULL;
  /* the grid's communicator is the kernel's: take it from the grid */
  comm = lh_blacs_comm(lh_bcmat_grid(B));
  LH_TRY(lh_dmat_create(comm, LH_F64, N, N, &rows));
  LH_TRY(lh_bcmat_to_dmat(B, rows));
  int64_t dims[2] = {N, N};
  LH_TRY(lh_h5_out_dataset(o, path, LH_F64, 2, dims, LH_ROWS_SECOND_LAST, &d));
  LH_TRY(lh_h5_write_dmat(d, 0, rows));
done:
  lh_h5_close(&d);
  lh_dmat_destroy(&rows);
  return st;
}
