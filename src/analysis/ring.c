/*
 * ring.c: the pairwise ring engine (see ring.h).
 *
 * Schedule. With P ranks, step s (1 <= s <= P/2 with symmetry, P - 1 without) brings rank
 * (r + s)'s block to rank r. A pair of blocks {a, b} is met by rank a at step s = b - a and by
 * rank b at step P - s (mod P). With symmetry, for 2s < P rank a handles the pair for both
 * ends and returns the visiting rows' state to their owner; at 2s = P (even P) both ranks
 * meet at the same step and split the pair by the visiting block's halves (the lower rank
 * takes the first half of the other's rows against all of its own, the higher rank its own
 * second half against all of the other's). The own block is a triangle. Each pair is then
 * handled exactly once.
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "analysis/ring.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/knn.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/progress.h"

float ring_up_to_float(double t) {
  float f = (float)t;
  return (double)f < t ? nextafterf(f, INFINITY) : f;
}

double ring_exact_d2(const void *xr, const void *yr, int64_t D, lh_dtype in) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  if (in == LH_F64) {
    const double *x = xr, *y = yr;
    for (; j + 8 <= D; j += 8)
      for (int l = 0; l < 8; l++) {
        double t = x[j + l] - y[j + l];
        acc[l] += t * t;
      }
    for (; j < D; j++) {
      double t = x[j] - y[j];
      acc[j & 7] += t * t;
    }
  } else {
    const float *x = xr, *y = yr;
    for (; j + 8 <= D; j += 8)
      for (int l = 0; l < 8; l++) {
        double t = (double)x[j + l] - (double)y[j + l];
        acc[l] += t * t;
      }
    for (; j < D; j++) {
      double t = (double)x[j] - (double)y[j];
      acc[j & 7] += t * t;
    }
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Validity, centred working copy, norms and screening terms of a block. */
static void prepare(const ring_ctx *rc, ring_block *b, const double *mean) {
  const int64_t D = rc->D;
  for (int64_t i = 0; i < b->m; i++) {
    bool ok = true;
    for (int64_t j = 0; j < D && ok; j++) {
      double v = rc->in == LH_F64 ? ((const double *)b->raw)[i * D + j]
                                  : (double)((const float *)b->raw)[i * D + j];
      ok = isfinite(v);
    }
    b->ok[i] = ok;
    if (!rc->gemm) continue;
    double nrm = 0.0;
    for (int64_t j = 0; j < D; j++) {
      double v = rc->in == LH_F64 ? ((const double *)b->raw)[i * D + j]
                                  : (double)((const float *)b->raw)[i * D + j];
      double c = ok ? v - mean[j] : 0.0;
      if (rc->wt == LH_F64) {
        ((double *)b->w)[i * D + j] = c;
        nrm += c * c;
      } else {
        float cf = (float)c;
        ((float *)b->w)[i * D + j] = cf;
        nrm += (double)cf * (double)cf;
      }
    }
    b->norm[i] = nrm;
    b->lbn[i] = ok ? nrm * (1.0 - rc->cu) : INFINITY;
    float f = (float)b->lbn[i];
    b->lbnf[i] = (double)f > b->lbn[i] ? nextafterf(f, -INFINITY) : f;
    b->ubn[i] = ok ? nrm * (1.0 + rc->cu) : INFINITY;
    b->ubnf[i] = ring_up_to_float(b->ubn[i]);
  }
}

void ring_row_range(const ring_ctx *rc, const ring_block *q, int64_t qi, const ring_block *c,
                    int64_t j0, int64_t tc, bool tri, int64_t *jlo, int64_t *jhi) {
  int64_t lo = j0, hi = j0 + tc;
  if (rc->nseg > 1) {
    int64_t s = lh_knn_segment_of(rc->N, rc->nseg, q->row0 + qi);
    lo = LH_MAX(lo, lh_knn_segment_start(rc->N, rc->nseg, s) - c->row0);
    hi = LH_MIN(hi, lh_knn_segment_start(rc->N, rc->nseg, s + 1) - c->row0);
  }
  if (tri) lo = LH_MAX(lo, qi + 1);
  *jlo = lo;
  *jhi = hi;
}

/* Tiles of q[qlo, qhi) x c[clo, chi), each with its GEMM, handed to the visitor. */
static void run_tiles(ring_ctx *rc, const ring_ops *ops, void *user, const ring_block *q,
                      int64_t qlo, int64_t qhi, const ring_block *c, int64_t clo, int64_t chi,
                      bool both, bool tri) {
  const int64_t D = rc->D;
  for (int64_t i0 = qlo; i0 < qhi; i0 += RING_TILE_Q) {
    int64_t tq = LH_MIN(RING_TILE_Q, qhi - i0);
    int64_t lo = clo, hi = chi;
    if (rc->nseg > 1) { /* the columns any row of this tile may pair with */
      int64_t s0 = lh_knn_segment_of(rc->N, rc->nseg, q->row0 + i0);
      int64_t s1 = lh_knn_segment_of(rc->N, rc->nseg, q->row0 + i0 + tq - 1);
      lo = LH_MAX(lo, lh_knn_segment_start(rc->N, rc->nseg, s0) - c->row0);
      hi = LH_MIN(hi, lh_knn_segment_start(rc->N, rc->nseg, s1 + 1) - c->row0);
    }
    if (tri) lo = LH_MAX(lo, i0 + 1);
    for (int64_t j0 = lo; j0 < hi; j0 += RING_TILE_C) {
      int64_t tc = LH_MIN(RING_TILE_C, hi - j0);
      if (rc->gemm) {
        lh_event_begin(rc->ev_gemm);
        if (D == 0)
          memset(rc->G, 0, (size_t)(tq * tc) * lh_dtype_size(rc->wt));
        else if (rc->wt == LH_F64)
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tq, (int)tc, (int)D, 1.0,
                      (const double *)q->w + i0 * D, (int)D, (const double *)c->w + j0 * D,
                      (int)D, 0.0, rc->G, (int)tc);
        else
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tq, (int)tc, (int)D, 1.0f,
                      (const float *)q->w + i0 * D, (int)D, (const float *)c->w + j0 * D,
                      (int)D, 0.0f, rc->G, (int)tc);
        lh_event_end(rc->ev_gemm);
      }
      lh_event_begin(rc->ev_visit);
      ops->tile(rc, user, q, i0, tq, c, j0, tc, both, tri);
      lh_event_end(rc->ev_visit);
    }
  }
}

static lh_status block_alloc(ring_block *b, int64_t rows, int64_t D, size_t wsz, bool gemm) {
  lh_status st = LH_OK;
  LH_TRY(lh_alloc((size_t)rows, 1, false, "flags", &b->ok));
  if (!gemm) goto done;
  LH_TRY(lh_alloc((size_t)(rows * D), wsz, false, "centred rows", &b->w));
  LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "norms", &b->norm));
  LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "norms", &b->lbn));
  LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "norms", &b->lbnf));
  LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "norms", &b->ubn));
  LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "norms", &b->ubnf));
done:
  return st;
}

static void block_free(ring_block *b) {
  lh_free(b->w);
  lh_free(b->norm);
  lh_free(b->lbn);
  lh_free(b->lbnf);
  lh_free(b->ubn);
  lh_free(b->ubnf);
  lh_free(b->ok);
}

/* Centre of the finite rows. It only tightens the screening bound (distances do not change
 * under translation), so it need not be exact nor the same for every rank count: a plain sum. */
static lh_status centre(const lh_dmat *X, double *mean) {
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  const lh_dtype in = lh_dmat_dtype(X);
  const void *raw = lh_dmat_local_const(X);
  int64_t cnt = 0;
  for (int64_t j = 0; j < D; j++) mean[j] = 0.0;
  for (int64_t i = 0; i < n; i++) {
    bool ok = true;
    for (int64_t j = 0; j < D && ok; j++)
      ok = isfinite(in == LH_F64 ? ((const double *)raw)[i * D + j]
                                 : (double)((const float *)raw)[i * D + j]);
    if (!ok) continue;
    cnt++;
    for (int64_t j = 0; j < D; j++)
      mean[j] += in == LH_F64 ? ((const double *)raw)[i * D + j]
                              : (double)((const float *)raw)[i * D + j];
  }
  int d32;
  lh_status st = lh_int_cast(D, "number of columns", &d32);
  if (st != LH_OK) return st;
  MPI_Allreduce(MPI_IN_PLACE, mean, d32, MPI_DOUBLE, MPI_SUM, lh_dmat_comm(X));
  MPI_Allreduce(MPI_IN_PLACE, &cnt, 1, MPI_INT64_T, MPI_SUM, lh_dmat_comm(X));
  for (int64_t j = 0; j < D; j++) mean[j] = cnt > 0 ? mean[j] / (double)cnt : 0.0;
  return LH_OK;
}

lh_status ring_run(const lh_dmat *X, const ring_ops *ops, void *user, bool gemm, int64_t nseg,
                   const char *label) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int P, r;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &r);
  const int64_t N = lh_dmat_rows(X), D = lh_dmat_cols(X), n = lh_dmat_local_rows(X);
  const size_t isz = lh_dtype_size(lh_dmat_dtype(X)), xb = ops->extra_bytes;
  const bool sym = ops->state_bytes > 0;
  ring_ctx rc = {0};
  ring_block own = {0}, vis = {0};
  double *mean = NULL;
  void *raw[2] = {NULL, NULL}, *ext[2] = {NULL, NULL}, *img = NULL, *back = NULL;
  MPI_Datatype rowt = MPI_DATATYPE_NULL;
  MPI_Request req[6];
  for (int q = 0; q < 6; q++) req[q] = MPI_REQUEST_NULL;
  static lh_event ev_wait = -2, ev_prep;
  if (ev_wait == -2) {
    ev_wait = lh_event_get("ring.wait");
    ev_prep = lh_event_get("ring.prepare");
  }
  rc.in = lh_dmat_dtype(X);
  rc.wt = rc.in; /* float32 input screens with SGEMM, float64 with DGEMM */
  rc.N = N;
  rc.D = D;
  rc.nseg = nseg > 1 ? LH_MIN(nseg, LH_MAX(N, 1)) : 1;
  rc.gemm = gemm;
  /* |a - d^2| <= (D - 1) u (n_x + n_y) for the dot product in any order, 8 u for the centred
   * copies and a itself, 2 (D + 1) u_64 for the float64 exact sum: 3 D + 32 is safe (knn.c). */
  rc.cu = (3.0 * (double)D + 32.0) * (rc.wt == LH_F64 ? 0x1p-53 : 0x1p-24);
  rc.ev_gemm = lh_event_get("ring.gemm");
  rc.ev_visit = lh_event_get("ring.screen");

  const int64_t maxm = N / P + (N % P ? 1 : 0);
  const size_t wsz = lh_dtype_size(rc.wt);
  if (gemm) local = lh_alloc((size_t)D, sizeof(double), false, "column means", &mean);
  if (local == LH_OK && gemm)
    local = lh_alloc((size_t)RING_TILE_Q * RING_TILE_C, wsz, false, "distance tile", &rc.G);
  for (int b = 0; b < 2 && local == LH_OK; b++) {
    local = lh_alloc((size_t)(maxm * D), isz, false, "ring buffer", &raw[b]);
    if (local == LH_OK) local = lh_alloc((size_t)maxm * xb, 1, false, "ring payload", &ext[b]);
  }
  if (local == LH_OK && sym) local = lh_alloc((size_t)maxm, ops->state_bytes, false, "ring state", &img);
  if (local == LH_OK && sym) local = lh_alloc((size_t)maxm, ops->state_bytes, false, "ring state", &back);
  if (local == LH_OK) local = block_alloc(&own, n, D, wsz, gemm);
  if (local == LH_OK) local = block_alloc(&vis, maxm, D, wsz, gemm);
  LH_TRY(lh_agree(comm, local));
  if (gemm) LH_TRY(centre(X, mean));

  lh_event_begin(ev_prep);
  own.m = n;
  own.row0 = lh_dmat_row_offset(X);
  own.raw = lh_dmat_local_const(X);
  own.extra = ops->own_extra;
  prepare(&rc, &own, mean);
  lh_event_end(ev_prep);

  int dcount;
  LH_TRY(lh_int_cast(LH_MAX(D, 1), "number of columns", &dcount));
  MPI_Type_contiguous(dcount, rc.in == LH_F64 ? MPI_DOUBLE : MPI_FLOAT, &rowt);
  MPI_Type_commit(&rowt);

  lh_progress bar;
  lh_progress_start(&bar, r, label, "rows", N);
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  const int steps = sym ? P / 2 : P - 1;
  memcpy(raw[0], own.raw, (size_t)(n * D) * isz);
  if (xb) memcpy(ext[0], ops->own_extra, (size_t)n * xb);
  int cur = 0;
  /* the transfer that brings block r + s + 1 while step s computes */
#define POST_NEXT_BLOCK(s_)                                                                  \
  do {                                                                                       \
    int mc_, sc_, mx_, sx_;                                                                  \
    int64_t mrows_ = lh_part_count(N, P, (r + (s_) + 1) % P);                                \
    int64_t srows_ = lh_part_count(N, P, (r + (s_)) % P);                                    \
    LH_TRY(lh_int_cast(mrows_, "rows per rank", &mc_));                                      \
    LH_TRY(lh_int_cast(srows_, "rows per rank", &sc_));                                      \
    LH_TRY(lh_int_cast(mrows_ * (int64_t)xb, "ring payload bytes", &mx_));                   \
    LH_TRY(lh_int_cast(srows_ * (int64_t)xb, "ring payload bytes", &sx_));                   \
    MPI_Irecv(raw[1 - cur], D > 0 ? mc_ : 0, rowt, next, 17, comm, &req[0]);                 \
    MPI_Isend(raw[cur], D > 0 ? sc_ : 0, rowt, prev, 17, comm, &req[1]);                     \
    MPI_Irecv(ext[1 - cur], mx_, MPI_BYTE, next, 20, comm, &req[2]);                         \
    MPI_Isend(ext[cur], sx_, MPI_BYTE, prev, 20, comm, &req[3]);                             \
  } while (0)
  if (steps > 0) POST_NEXT_BLOCK(0);
  run_tiles(&rc, ops, user, &own, 0, n, &own, 0, n, sym, sym);
  lh_event_begin(ev_wait);
  MPI_Waitall(4, req, MPI_STATUSES_IGNORE);
  lh_event_end(ev_wait);
  cur = 1 - cur;
  lh_progress_update(&bar, (int64_t)((double)N / (steps + 1)));

  for (int s = 1; s <= steps; s++) {
    int owner = (r + s) % P, from = (r + P - s) % P;
    if (s < steps) POST_NEXT_BLOCK(s);
    lh_event_begin(ev_prep);
    vis.m = lh_part_count(N, P, owner);
    vis.row0 = lh_part_offset(N, P, owner);
    vis.raw = raw[cur];
    vis.extra = xb ? ext[cur] : NULL;
    prepare(&rc, &vis, mean);
    lh_event_end(ev_prep);
    bool both = sym && 2 * s <= P;
    int sendb = 0, recvb = 0;
    if (both) {
      ops->vis_reset(user, &vis);
      LH_TRY(lh_int_cast(vis.m * (int64_t)ops->state_bytes, "ring state bytes", &sendb));
      LH_TRY(lh_int_cast(n * (int64_t)ops->state_bytes, "ring state bytes", &recvb));
      MPI_Irecv(back, recvb, MPI_BYTE, from, 18, comm, &req[4]);
    }
    if (both && 2 * s == P) { /* split the pair of blocks by halves */
      if (r < owner)
        run_tiles(&rc, ops, user, &own, 0, n, &vis, 0, vis.m / 2, true, false);
      else
        run_tiles(&rc, ops, user, &own, n / 2, n, &vis, 0, vis.m, true, false);
    } else {
      run_tiles(&rc, ops, user, &own, 0, n, &vis, 0, vis.m, both, false);
    }
    if (both) {
      ops->vis_pack(user, vis.m, img);
      MPI_Isend(img, sendb, MPI_BYTE, owner, 18, comm, &req[5]);
    }
    lh_event_begin(ev_wait);
    MPI_Waitall(6, req, MPI_STATUSES_IGNORE);
    lh_event_end(ev_wait);
    if (both) ops->own_merge(user, n, back);
    cur = 1 - cur;
    lh_progress_update(&bar, (int64_t)((double)N * (s + 1) / (steps + 1)));
  }
#undef POST_NEXT_BLOCK
  lh_progress_finish(&bar);
done:
  if (rowt != MPI_DATATYPE_NULL) MPI_Type_free(&rowt);
  lh_free(mean);
  lh_free(rc.G);
  for (int b = 0; b < 2; b++) {
    lh_free(raw[b]);
    lh_free(ext[b]);
  }
  lh_free(img);
  lh_free(back);
  block_free(&own);
  block_free(&vis);
  return st;
}

lh_status ring_run_queries(const lh_dmat *Q, const int64_t *qid, const lh_dmat *X,
                           const ring_ops *ops, void *user, bool gemm, const char *label) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int P, r;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &r);
  const int64_t N = lh_dmat_rows(X), D = lh_dmat_cols(X), n = lh_dmat_local_rows(X);
  const size_t isz = lh_dtype_size(lh_dmat_dtype(X));
  ring_ctx rc = {0};
  ring_block qb = {0}, vis = {0};
  double *mean = NULL;
  void *raw[2] = {NULL, NULL};
  MPI_Datatype rowt = MPI_DATATYPE_NULL;
  MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
  if (lh_dmat_cols(Q) != D || lh_dmat_dtype(Q) != lh_dmat_dtype(X))
    local = LH_ERROR(LH_ERR_INTERNAL, "queries and points differ in columns or dtype");
  LH_TRY(lh_agree(comm, local));
  rc.in = lh_dmat_dtype(X);
  rc.wt = rc.in;
  rc.N = N;
  rc.D = D;
  rc.nseg = 1;
  rc.gemm = gemm;
  rc.cu = (3.0 * (double)D + 32.0) * (rc.wt == LH_F64 ? 0x1p-53 : 0x1p-24);
  rc.ev_gemm = lh_event_get("ring.gemm");
  rc.ev_visit = lh_event_get("ring.screen");
  const int64_t maxm = N / P + (N % P ? 1 : 0), nq = lh_dmat_local_rows(Q);
  const size_t wsz = lh_dtype_size(rc.wt);
  if (gemm) local = lh_alloc((size_t)D, sizeof(double), false, "column means", &mean);
  if (local == LH_OK && gemm)
    local = lh_alloc((size_t)RING_TILE_Q * RING_TILE_C, wsz, false, "distance tile", &rc.G);
  for (int b = 0; b < 2 && local == LH_OK; b++)
    local = lh_alloc((size_t)(maxm * D), isz, false, "ring buffer", &raw[b]);
  if (local == LH_OK) local = block_alloc(&qb, nq, D, wsz, gemm);
  if (local == LH_OK) local = block_alloc(&vis, maxm, D, wsz, gemm);
  LH_TRY(lh_agree(comm, local));
  if (gemm) LH_TRY(centre(X, mean));
  qb.m = nq;
  qb.row0 = -1;
  qb.gid = qid;
  qb.raw = lh_dmat_local_const(Q);
  prepare(&rc, &qb, mean);

  int dcount;
  LH_TRY(lh_int_cast(LH_MAX(D, 1), "number of columns", &dcount));
  MPI_Type_contiguous(dcount, rc.in == LH_F64 ? MPI_DOUBLE : MPI_FLOAT, &rowt);
  MPI_Type_commit(&rowt);
  lh_progress bar;
  lh_progress_start(&bar, r, label, "blocks", P);
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  memcpy(raw[0], lh_dmat_local_const(X), (size_t)(n * D) * isz);
  int cur = 0;
  for (int s = 0; s < P; s++) { /* step s: X's block of rank r + s */
    int owner = (r + s) % P;
    if (s + 1 < P) {
      int mc, sc;
      LH_TRY(lh_int_cast(lh_part_count(N, P, (r + s + 1) % P), "rows per rank", &mc));
      LH_TRY(lh_int_cast(lh_part_count(N, P, owner), "rows per rank", &sc));
      MPI_Irecv(raw[1 - cur], D > 0 ? mc : 0, rowt, next, 21, comm, &req[0]);
      MPI_Isend(raw[cur], D > 0 ? sc : 0, rowt, prev, 21, comm, &req[1]);
    }
    vis.m = lh_part_count(N, P, owner);
    vis.row0 = lh_part_offset(N, P, owner);
    vis.raw = raw[cur];
    prepare(&rc, &vis, mean);
    run_tiles(&rc, ops, user, &qb, 0, nq, &vis, 0, vis.m, false, false);
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    cur = 1 - cur;
    lh_progress_update(&bar, s + 1);
  }
  lh_progress_finish(&bar);
done:
  if (rowt != MPI_DATATYPE_NULL) MPI_Type_free(&rowt);
  lh_free(mean);
  lh_free(rc.G);
  lh_free(raw[0]);
  lh_free(raw[1]);
  block_free(&qb);
  block_free(&vis);
  return st;
}
