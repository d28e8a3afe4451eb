/*
 * twonn.c: the TwoNN estimator over lh_knn (see twonn.h).
 */
#include <math.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dsort.h"
#include "latenthook/knn.h"
#include "latenthook/mem.h"
#include "latenthook/twonn.h"
#include "latenthook/xsum.h"

lh_twonn_opts lh_twonn_defaults(void) {
  lh_twonn_opts o = {.eps = 1e-5, .discard_fraction = 0.0, .return_xy = false, .segments = 0};
  return o;
}

void lh_twonn_result_destroy(lh_twonn_result **r) {
  if (!r || !*r) return;
  lh_free((*r)->dimension);
  lh_free((*r)->mle);
  lh_free((*r)->n_valid);
  lh_free((*r)->n_fit);
  lh_dmat_destroy(&(*r)->x);
  lh_dmat_destroy(&(*r)->y);
  lh_free(*r);
  *r = NULL;
}

lh_status lh_twonn_run(const lh_dmat *X, const lh_twonn_opts *opts, lh_twonn_result **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t N = lh_dmat_rows(X), n = lh_dmat_local_rows(X), row0 = lh_dmat_row_offset(X);
  const int64_t S = opts->segments > 1 ? opts->segments : 1;
  lh_twonn_result *res = NULL;
  lh_knn_result *nn = NULL;
  double *mu = NULL, *xy = NULL;
  int64_t *ids = NULL, *segs = NULL, *pos = NULL, *cnt = NULL, *start = NULL, *xpos = NULL;
  lh_xsum *acc = NULL;
  lh_dmat *src = NULL, *dst = NULL;

  double F = opts->discard_fraction;
  if (!(F >= 0.0 && F < 1.0))
    local = LH_ERROR(LH_ERR_VALUE, "discard fraction must be in [0, 1), got %g", F);
  else if (N < 3 || (S > 1 && lh_knn_segment_start(N, S, 1) < 3))
    local = LH_ERROR(LH_ERR_VALUE, "At least 3 points required for Two NN dimension estimation"
                     "%s (got %lld)", S > 1 ? " in every subset" : "",
                     (long long)(S > 1 ? lh_knn_segment_start(N, S, 1) : N));
  else if (opts->return_xy && S > 1)
    local = LH_ERROR(LH_ERR_INTERNAL, "return_xy is not available with segments");
  LH_TRY(lh_agree(comm, local));

  lh_knn_opts ko = lh_knn_defaults();
  ko.k = 2;
  ko.eps = opts->eps;
  ko.segments = S;
  LH_TRY(lh_knn_run(X, &ko, &nn));

  local = lh_alloc(1, sizeof *res, true, "TwoNN result", &res);
  if (local == LH_OK) local = lh_alloc((size_t)S, sizeof(double), false, "TwoNN", &res->dimension);
  if (local == LH_OK) local = lh_alloc((size_t)S, sizeof(double), false, "TwoNN", &res->mle);
  if (local == LH_OK) local = lh_alloc((size_t)S, sizeof(int64_t), false, "TwoNN", &res->n_valid);
  if (local == LH_OK) local = lh_alloc((size_t)S, sizeof(int64_t), false, "TwoNN", &res->n_fit);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof(double), false, "mu", &mu);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof(int64_t), false, "ids", &ids);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof(int64_t), false, "segments", &segs);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof(int64_t), false, "positions", &pos);
  if (local == LH_OK) local = lh_alloc((size_t)S, sizeof(int64_t), true, "counts", &cnt);
  if (local == LH_OK) local = lh_alloc((size_t)S, sizeof(int64_t), false, "offsets", &start);
  if (local == LH_OK) local = lh_alloc((size_t)S * 3, sizeof(lh_xsum), false, "sums", &acc);
  LH_TRY(lh_agree(comm, local));
  res->S = S;

  /* mu over this rank's valid points (r1 and r2 both present) */
  int64_t nv = 0;
  for (int64_t i = 0; i < n; i++) {
    double r1 = nn->dist[i * 2], r2 = nn->dist[i * 2 + 1];
    if (!isfinite(r1) || !isfinite(r2)) continue;
    mu[nv] = r2 / r1;
    ids[nv] = row0 + i;
    segs[nv] = lh_knn_segment_of(N, S, row0 + i);
    cnt[segs[nv]]++;
    nv++;
  }
  MPI_Allreduce(MPI_IN_PLACE, cnt, (int)S, MPI_INT64_T, MPI_SUM, comm);
  int64_t run = 0, fewest = INT64_MAX;
  for (int64_t s = 0; s < S; s++) {
    start[s] = run;
    run += cnt[s];
    res->n_valid[s] = cnt[s];
    fewest = LH_MIN(fewest, cnt[s]);
    res->n_fit[s] = LH_MIN(cnt[s] - 1, (int64_t)floor((double)cnt[s] * (1.0 - F)));
  }
  if (fewest < 3) /* the counts are global: every rank fails alike */
    local = LH_ERROR(LH_ERR_VALUE, "At least 3 valid points required for Two NN dimension "
                     "estimation (got %lld%s)", (long long)fewest, S > 1 ? " in a subset" : "");
  LH_TRY(lh_agree(comm, local));

  /* Global positions in the order (segment, mu, index); positions within a segment follow. */
  LH_TRY(lh_dsort_positions_grouped(comm, nv, S > 1 ? segs : NULL, mu, ids, pos));
  for (int64_t s = 0; s < 3 * S; s++) lh_xsum_init(&acc[s]);
  for (int64_t t = 0; t < nv; t++) {
    int64_t s = segs[t], i = pos[t] - start[s] + 1; /* 1-based rank within the segment */
    double x = log(mu[t]);
    lh_xsum_add(&acc[3 * s + 2], x);
    pos[t] = i;
    if (i > res->n_fit[s]) continue;
    double y = -log1p(-(double)i / (double)res->n_valid[s]);
    lh_xsum_add_product(&acc[3 * s], x, y);
    lh_xsum_add_product(&acc[3 * s + 1], x, x);
  }
  int s3;
  LH_TRY(lh_int_cast(3 * S, "number of subsets", &s3));
  LH_TRY(lh_xsum_allreduce(acc, s3, comm));
  for (int64_t s = 0; s < S; s++) {
    double sxy = lh_xsum_round(&acc[3 * s]), sxx = lh_xsum_round(&acc[3 * s + 1]);
    double slog = lh_xsum_round(&acc[3 * s + 2]);
    res->dimension[s] = sxx > 0 ? sxy / sxx : NAN;
    res->mle[s] = slog > 0 ? (double)(res->n_valid[s] - 1) / slog : NAN;
  }

  if (opts->return_xy) {
    /* Route (x, y) of the fitted points to their positions in (N - 1)-long vectors. */
    LH_TRY(lh_dmat_create(comm, LH_F64, N, 2, &src));
    LH_TRY(lh_dmat_create(comm, LH_F64, N - 1, 2, &dst));
    LH_TRY(lh_agree(comm, lh_alloc((size_t)n, sizeof(int64_t), false, "positions", &xpos)));
    double *sv = lh_dmat_local(src), *dv = lh_dmat_local(dst);
    for (int64_t i = 0; i < n; i++) xpos[i] = -1;
    for (int64_t t = 0; t < nv; t++) {
      int64_t li = ids[t] - row0, i = pos[t];
      if (i > res->n_fit[0]) continue;
      xpos[li] = i - 1;
      sv[li * 2] = log(mu[t]);
      sv[li * 2 + 1] = -log1p(-(double)i / (double)res->n_valid[0]);
    }
    for (int64_t k = 0; k < lh_dmat_local_rows(dst) * 2; k++) dv[k] = NAN;
    LH_TRY(lh_dmat_scatter_rows(src, xpos, dst));
    LH_TRY(lh_dmat_create(comm, LH_F64, N - 1, 1, &res->x));
    LH_TRY(lh_dmat_create(comm, LH_F64, N - 1, 1, &res->y));
    double *xv = lh_dmat_local(res->x), *yv = lh_dmat_local(res->y);
    for (int64_t k = 0; k < lh_dmat_local_rows(dst); k++) {
      xv[k] = dv[2 * k];
      yv[k] = dv[2 * k + 1];
    }
  }
  *out = res;
  res = NULL;
done:
  lh_twonn_result_destroy(&res);
  lh_knn_result_destroy(&nn);
  lh_dmat_destroy(&src);
  lh_dmat_destroy(&dst);
  lh_free(mu);
  lh_free(xy);
  lh_free(ids);
  lh_free(segs);
  lh_free(pos);
  lh_free(cnt);
  lh_free(start);
  lh_free(acc);
  lh_free(xpos);
  return st;
}
