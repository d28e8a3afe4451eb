/*
 * localknn.c: local intrinsic dimension from the k-th and 2k-th neighbours (see localknn.h).
 */
#include <math.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dsort.h"
#include "latenthook/mem.h"
#include "latenthook/xsum.h"
#include "latenthook/knn.h"
#include "latenthook/localknn.h"

int64_t lh_localknn_auto_k(int64_t N) {
  int64_t r = (int64_t)sqrt((double)N); /* exact integer square root: fix the float guess */
  while (r > 0 && r * r > N) r--;
  while ((r + 1) * (r + 1) <= N) r++;
  int64_t k = LH_MIN(r, (N - 1) / 2);
  return LH_MAX(2, k);
}

lh_status lh_localknn_run(const lh_dmat *X, int64_t k, double eps, lh_dmat *dim) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t N = lh_dmat_rows(X), n = lh_dmat_local_rows(X);
  lh_knn_result *nn = NULL;
  if (k == 0) k = lh_localknn_auto_k(N);
  if (k <= 1)
    local = LH_ERROR(LH_ERR_VALUE, "k must be greater than 1, got %lld", (long long)k);
  else if (N < 2 * k + 1)
    local = LH_ERROR(LH_ERR_VALUE, "At least 2k+1 points required for local KNN (k=%lld), got %lld",
                     (long long)k, (long long)N);
  else if (lh_dmat_rows(dim) != N || lh_dmat_cols(dim) != 1 || lh_dmat_dtype(dim) != LH_F64)
    local = LH_ERROR(LH_ERR_INTERNAL, "local kNN output must be an N x 1 float64 matrix");
  LH_TRY(lh_agree(comm, local));

  lh_knn_opts ko = lh_knn_defaults();
  ko.k = 2 * k;
  ko.eps = eps;
  LH_TRY(lh_knn_run(X, &ko, &nn));
  double *d = lh_dmat_local(dim);
  for (int64_t i = 0; i < n; i++) {
    double rk = nn->dist[i * 2 * k + (k - 1)], r2k = nn->dist[i * 2 * k + (2 * k - 1)];
    bool ok = isfinite(rk) && isfinite(r2k) && r2k > rk;
    d[i] = ok ? log(2.0) / log(r2k / rk) : NAN;
  }
done:
  lh_knn_result_destroy(&nn);
  return st;
}

lh_status lh_localknn_summary(const lh_dmat *dim, double *mean, double *median,
                              int64_t *nonfinite) {
  lh_status st = LH_OK;
  MPI_Comm comm = lh_dmat_comm(dim);
  const int64_t n = lh_dmat_local_rows(dim), row0 = lh_dmat_row_offset(dim);
  const double *v = lh_dmat_local_const(dim);
  double *keys = NULL;
  int64_t *ids = NULL, *pos = NULL;
  lh_status local = lh_alloc((size_t)n, sizeof *keys, false, "values", &keys);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *ids, false, "ids", &ids);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *pos, false, "positions", &pos);
  LH_TRY(lh_agree(comm, local));
  lh_xsum acc;
  lh_xsum_init(&acc);
  int64_t m = 0, bad = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(v[i])) {
      bad++;
      continue;
    }
    keys[m] = v[i];
    ids[m] = row0 + i;
    lh_xsum_add(&acc, v[i]);
    m++;
  }
  int64_t counts[2] = {m, bad};
  MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm);
  LH_TRY(lh_xsum_allreduce(&acc, 1, comm));
  LH_TRY(lh_dsort_positions(comm, m, keys, ids, pos));
  /* the middle one or two values, contributed by whoever holds them */
  int64_t M = counts[0], lo = (M - 1) / 2, hi = M / 2;
  double mid[2] = {0, 0};
  for (int64_t t = 0; t < m; t++) {
    if (pos[t] == lo) mid[0] = keys[t];
    if (pos[t] == hi) mid[1] = keys[t];
  }
  MPI_Allreduce(MPI_IN_PLACE, mid, 2, MPI_DOUBLE, MPI_SUM, comm);
  *mean = M > 0 ? lh_xsum_round(&acc) / (double)M : NAN;
  *median = M > 0 ? (lo == hi ? mid[0] : 0.5 * (mid[0] + mid[1])) : NAN;
  *nonfinite = counts[1];
done:
  lh_free(keys);
  lh_free(ids);
  lh_free(pos);
  return st;
}
