/*
 * knn.c: exact k-nearest neighbours by GEMM screening around a ring of ranks (see knn.h).
 *
 * Screening bound. With column-centred working copies x~, y~ (rounded to the working precision
 * w, unit roundoff u), n_x = ||x~||^2 and n_y = ||y~||^2 in float64, the screened value
 * a = n_x + n_y - 2 fl(x~ . y~) differs from the reported squared distance
 * d^2 = sum_k (x_k - y_k)^2 (float64, raw values) by at most
 *     (D - 1) u (n_x + n_y)            the dot product in any summation order,
 *   + 8 u (n_x + n_y)                  rounding of the centred copies and of a itself,
 *   + 2 (D + 1) u_64 (n_x + n_y)       the float64 evaluation of d^2 (d^2 <= 2 (n_x + n_y)),
 * so with c = 3 D + 32 the bound E = c u (n_x + n_y) + tiny is safe (it only costs speed when
 * loose, never correctness). A candidate with a - E > tau (the row's current k-th squared
 * distance) cannot enter the top k; one with a + E < eps^2 is certainly within eps. All others
 * are recomputed exactly and ranked by (d^2, index): the result is the exact top k, the same
 * whatever order candidates arrive in, hence for any rank count.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/knn.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/progress.h"
#include "latenthook/timer.h"

#define TILE_Q 256  /* query rows per GEMM tile */
#define TILE_C 2048 /* candidate rows per GEMM tile */

lh_knn_opts lh_knn_defaults(void) {
  lh_knn_opts o = {.k = 1, .eps = 1e-5, .segments = 0};
  return o;
}

void lh_knn_result_destroy(lh_knn_result **r) {
  if (!r || !*r) return;
  lh_free((*r)->dist);
  lh_free((*r)->index);
  lh_free(*r);
  *r = NULL;
}

/* ---- per-row top-k: a max-heap on (d2, index), the worst candidate at the root ---------- */

static inline bool worse(double da, int64_t ia, double db, int64_t ib) {
  return da > db || (da == db && ia > ib);
}

typedef struct heap {
  double *d2;   /* n x k */
  int64_t *ix;  /* n x k */
  int64_t *cnt; /* n */
  int64_t k;
} heap;

static void heap_push(heap *h, int64_t row, double d2, int64_t ix) {
  int64_t k = h->k;
  double *d = h->d2 + row * k;
  int64_t *x = h->ix + row * k;
  int64_t c = h->cnt[row];
  if (c < k) { /* sift up */
    int64_t i = c++;
    while (i > 0) {
      int64_t p = (i - 1) / 2;
      if (!worse(d2, ix, d[p], x[p])) break;
      d[i] = d[p];
      x[i] = x[p];
      i = p;
    }
    d[i] = d2;
    x[i] = ix;
    h->cnt[row] = c;
    return;
  }
  if (!worse(d[0], x[0], d2, ix)) return; /* not better than the current worst */
  int64_t i = 0; /* replace the root, sift down */
  for (;;) {
    int64_t l = 2 * i + 1, r = l + 1, m = i;
    double md = d2;
    int64_t mx = ix;
    if (l < k && worse(d[l], x[l], md, mx)) {
      m = l;
      md = d[l];
      mx = x[l];
    }
    if (r < k && worse(d[r], x[r], md, mx)) m = r;
    if (m == i) break;
    d[i] = d[m];
    x[i] = x[m];
    i = m;
  }
  d[i] = d2;
  x[i] = ix;
}

typedef struct cand {
  double d2;
  int64_t ix;
} cand;

static int cand_cmp(const void *a, const void *b) {
  const cand *x = a, *y = b;
  if (worse(x->d2, x->ix, y->d2, y->ix)) return 1;
  if (worse(y->d2, y->ix, x->d2, x->ix)) return -1;
  return 0;
}

/* Squared-distance threshold a candidate must beat (+inf while the heap is not full). */
static inline double heap_tau(const heap *h, int64_t row) {
  return h->cnt[row] < h->k ? INFINITY : h->d2[row * h->k];
}

/* ---- data preparation ------------------------------------------------------------------- */

/* One block of rows as the kernel sees it: raw values for exact distances, a centred copy in
 * the working precision for GEMM, squared norms of that copy, and validity. */
typedef struct block {
  int64_t m, row0;
  const void *raw;   /* m x D, input dtype */
  void *w;           /* m x D, working dtype, centred; rows of invalid points are zero */
  double *norm;      /* m */
  double *lbn;       /* m: norm * (1 - c u), +inf for invalid rows (screening term) */
  unsigned char *ok; /* m: all values finite */
} block;

static void prepare(block *b, lh_dtype in, lh_dtype wt, int64_t D, const double *mean,
                    double cu) {
  for (int64_t i = 0; i < b->m; i++) {
    bool ok = true;
    double nrm = 0.0;
    for (int64_t j = 0; j < D; j++) {
      double v = in == LH_F64 ? ((const double *)b->raw)[i * D + j]
                              : (double)((const float *)b->raw)[i * D + j];
      if (!isfinite(v)) ok = false;
    }
    for (int64_t j = 0; j < D; j++) {
      double v = in == LH_F64 ? ((const double *)b->raw)[i * D + j]
                              : (double)((const float *)b->raw)[i * D + j];
      double c = ok ? v - mean[j] : 0.0;
      if (wt == LH_F64) {
        ((double *)b->w)[i * D + j] = c;
        nrm += c * c;
      } else {
        float cf = (float)c;
        ((float *)b->w)[i * D + j] = cf;
        nrm += (double)cf * (double)cf;
      }
    }
    b->ok[i] = ok;
    b->norm[i] = nrm;
    b->lbn[i] = ok ? nrm * (1.0 - cu) : INFINITY;
  }
}

static inline double exact_d2(const void *xr, const void *yr, int64_t D, lh_dtype in) {
  double s = 0.0;
  if (in == LH_F64) {
    const double *x = xr, *y = yr;
    for (int64_t j = 0; j < D; j++) {
      double t = x[j] - y[j];
      s += t * t;
    }
  } else {
    const float *x = xr, *y = yr;
    for (int64_t j = 0; j < D; j++) {
      double t = (double)x[j] - (double)y[j];
      s += t * t;
    }
  }
  return s;
}

typedef struct ctx {
  lh_dtype in, wt;
  int64_t D, N, k, nseg;
  double eps, eps2_sure, cu;
  void *G; /* TILE_Q x TILE_C, working dtype */
  heap h;
  int64_t exact_calls;
} ctx;

static int64_t segment_of(int64_t N, int64_t S, int64_t i) {
  int64_t j = S > 1 ? (int64_t)((double)i * (double)S / (double)N) : 0;
  if (j >= S) j = S - 1;
  while (j > 0 && lh_knn_segment_start(N, S, j) > i) j--;
  while (j + 1 < S && lh_knn_segment_start(N, S, j + 1) <= i) j++;
  return j;
}

/* Screens and ranks the candidates of block c for the queries of block q. */
static void process_blocks(ctx *cx, const block *q, const block *c) {
  const int64_t D = cx->D;
  const size_t esz = lh_dtype_size(cx->wt), isz = lh_dtype_size(cx->in);
  for (int64_t i0 = 0; i0 < q->m; i0 += TILE_Q) {
    int64_t tq = LH_MIN(TILE_Q, q->m - i0);
    /* Candidate range allowed for this tile (segments are contiguous in global index). */
    int64_t lo = c->row0, hi = c->row0 + c->m;
    if (cx->nseg > 1) {
      int64_t s0 = segment_of(cx->N, cx->nseg, q->row0 + i0);
      int64_t s1 = segment_of(cx->N, cx->nseg, q->row0 + i0 + tq - 1);
      lo = LH_MAX(lo, lh_knn_segment_start(cx->N, cx->nseg, s0));
      hi = LH_MIN(hi, lh_knn_segment_start(cx->N, cx->nseg, s1 + 1));
    }
    for (int64_t j0 = lo - c->row0; j0 < hi - c->row0; j0 += TILE_C) {
      int64_t tc = LH_MIN(TILE_C, hi - c->row0 - j0);
      if (D > 0) {
        if (cx->wt == LH_F64)
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tq, (int)tc, (int)D, 1.0,
                      (const double *)q->w + i0 * D, (int)D, (const double *)c->w + j0 * D,
                      (int)D, 0.0, cx->G, (int)tc);
        else
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)tq, (int)tc, (int)D, 1.0f,
                      (const float *)q->w + i0 * D, (int)D, (const float *)c->w + j0 * D,
                      (int)D, 0.0f, cx->G, (int)tc);
      } else {
        memset(cx->G, 0, (size_t)(tq * tc) * esz);
      }
      for (int64_t ii = 0; ii < tq; ii++) {
        int64_t qi = i0 + ii, gi = q->row0 + qi;
        if (!q->ok[qi]) continue;
        int64_t jlo = j0, jhi = j0 + tc;
        if (cx->nseg > 1) { /* this query's own segment */
          int64_t s = segment_of(cx->N, cx->nseg, gi);
          jlo = LH_MAX(jlo, lh_knn_segment_start(cx->N, cx->nseg, s) - c->row0);
          jhi = LH_MIN(jhi, lh_knn_segment_start(cx->N, cx->nseg, s + 1) - c->row0);
        }
        double a = q->lbn[qi] - 1e-300;
        double tau = heap_tau(&cx->h, qi);
        const void *xr = (const char *)q->raw + (size_t)(qi * D) * isz;
        for (int64_t jj = jlo; jj < jhi; jj++) {
          double g = cx->wt == LH_F64 ? ((const double *)cx->G)[ii * tc + (jj - j0)]
                                      : (double)((const float *)cx->G)[ii * tc + (jj - j0)];
          double lb = a + c->lbn[jj] - 2.0 * g;
          if (!(lb <= tau)) continue; /* cannot enter (NaN or invalid rows land here too) */
          int64_t gj = c->row0 + jj;
          if (gj == gi || !c->ok[jj]) continue;
          double E = cx->cu * (q->norm[qi] + c->norm[jj]);
          if (lb + 2.0 * E < cx->eps2_sure) continue; /* certainly within eps */
          double d2 = exact_d2(xr, (const char *)c->raw + (size_t)(jj * D) * isz, D, cx->in);
          cx->exact_calls++;
          if (!(sqrt(d2) > cx->eps)) continue; /* within eps, or NaN */
          heap_push(&cx->h, qi, d2, gj);
          tau = heap_tau(&cx->h, qi);
        }
      }
    }
  }
}

lh_status lh_knn_run(const lh_dmat *X, const lh_knn_opts *opts, lh_knn_result **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int P, r;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &r);
  const int64_t N = lh_dmat_rows(X), D = lh_dmat_cols(X), n = lh_dmat_local_rows(X);
  const lh_dtype in = lh_dmat_dtype(X);
  const size_t isz = lh_dtype_size(in);
  ctx cx = {0};
  lh_knn_result *res = NULL;
  double *mean = NULL;
  void *raw[2] = {NULL, NULL};
  block own = {0}, vis = {0};
  MPI_Datatype rowt = MPI_DATATYPE_NULL;
  cand *scratch = NULL;
  static lh_event ev_all = -2, ev_wait, ev_prep;
  if (ev_all == -2) {
    ev_all = lh_event_get("knn");
    ev_wait = lh_event_get("knn.ring-wait");
    ev_prep = lh_event_get("knn.prepare");
  }
  lh_event_begin(ev_all);

  if (opts->k < 1)
    local = LH_ERROR(LH_ERR_VALUE, "k must be at least 1, got %lld", (long long)opts->k);
  else if (!(opts->eps >= 0))
    local = LH_ERROR(LH_ERR_VALUE, "eps must be a non-negative number, got %g", opts->eps);
  LH_TRY(lh_agree(comm, local));

  cx.in = in;
  cx.wt = in; /* float32 input screens with SGEMM, float64 with DGEMM */
  cx.D = D;
  cx.N = N;
  cx.k = opts->k;
  cx.nseg = opts->segments > 1 ? LH_MIN(opts->segments, LH_MAX(N, 1)) : 1;
  cx.eps = opts->eps;
  cx.eps2_sure = opts->eps * opts->eps * (1.0 - 1e-9);
  double u = cx.wt == LH_F64 ? 0x1p-53 : 0x1p-24;
  cx.cu = (3.0 * (double)D + 32.0) * u;
  cx.h.k = cx.k;

  int64_t maxm = N / P + (N % P ? 1 : 0);
  size_t wsz = lh_dtype_size(cx.wt);
  local = lh_alloc((size_t)D, sizeof(double), false, "column means", &mean);
  if (local == LH_OK) local = lh_alloc(1, sizeof *res, true, "knn result", &res);
  if (local == LH_OK) local = lh_alloc((size_t)(n * cx.k), sizeof(double), false, "knn distances", &res->dist);
  if (local == LH_OK) local = lh_alloc((size_t)(n * cx.k), sizeof(int64_t), false, "knn indices", &res->index);
  if (local == LH_OK) local = lh_alloc((size_t)(n * cx.k), sizeof(double), false, "knn heap", &cx.h.d2);
  if (local == LH_OK) local = lh_alloc((size_t)(n * cx.k), sizeof(int64_t), false, "knn heap", &cx.h.ix);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof(int64_t), true, "knn heap", &cx.h.cnt);
  if (local == LH_OK) local = lh_alloc((size_t)TILE_Q * TILE_C, wsz, false, "distance tile", &cx.G);
  for (int b = 0; b < 2 && local == LH_OK; b++)
    local = lh_alloc((size_t)(maxm * D), isz, false, "ring buffer", &raw[b]);
  if (local == LH_OK) local = lh_alloc((size_t)(n * D), wsz, false, "centred rows", &own.w);
  if (local == LH_OK) local = lh_alloc((size_t)(maxm * D), wsz, false, "centred rows", &vis.w);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof(double), false, "norms", &own.norm);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof(double), false, "norms", &own.lbn);
  if (local == LH_OK) local = lh_alloc((size_t)n, 1, false, "flags", &own.ok);
  if (local == LH_OK) local = lh_alloc((size_t)maxm, sizeof(double), false, "norms", &vis.norm);
  if (local == LH_OK) local = lh_alloc((size_t)maxm, sizeof(double), false, "norms", &vis.lbn);
  if (local == LH_OK) local = lh_alloc((size_t)maxm, 1, false, "flags", &vis.ok);
  LH_TRY(lh_agree(comm, local));

  /* Centring only improves the screening bound (translation does not change distances), so
   * the mean need not be exact, but it is (and identical on every rank count) for free. */
  LH_TRY(lh_dmat_col_reduce(X, LH_COL_MEAN, mean));
  for (int64_t j = 0; j < D; j++)
    if (!isfinite(mean[j])) mean[j] = 0.0; /* NaN rows are excluded anyway */

  lh_event_begin(ev_prep);
  own.m = n;
  own.row0 = lh_dmat_row_offset(X);
  own.raw = lh_dmat_local_const(X);
  prepare(&own, in, cx.wt, D, mean, cx.cu);
  lh_event_end(ev_prep);

  int dcount;
  LH_TRY(lh_int_cast(LH_MAX(D, 1), "number of columns", &dcount));
  MPI_Type_contiguous(dcount, in == LH_F64 ? MPI_DOUBLE : MPI_FLOAT, &rowt);
  MPI_Type_commit(&rowt);

  lh_progress bar;
  lh_progress_start(&bar, r, "knn", "rows", N);
  /* Step s: the visiting block is rank (r + s) mod P's; it came from rank r + 1 and goes on
   * to rank r - 1 while we work on it. Step 0 uses our own rows. */
  memcpy(raw[0], own.raw, (size_t)(n * D) * isz);
  int cur = 0;
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  for (int s = 0; s < P; s++) {
    int owner = (r + s) % P;
    MPI_Request req[2] = {MPI_REQUEST_NULL, MPI_REQUEST_NULL};
    if (s + 1 < P) {
      int incoming = (r + s + 1) % P;
      int mcnt, scnt;
      LH_TRY(lh_int_cast(lh_part_count(N, P, incoming), "rows per rank", &mcnt));
      LH_TRY(lh_int_cast(lh_part_count(N, P, owner), "rows per rank", &scnt));
      MPI_Irecv(raw[1 - cur], D > 0 ? mcnt : 0, rowt, next, 17, comm, &req[0]);
      MPI_Isend(raw[cur], D > 0 ? scnt : 0, rowt, prev, 17, comm, &req[1]);
    }
    if (s == 0) {
      process_blocks(&cx, &own, &own);
    } else {
      lh_event_begin(ev_prep);
      vis.m = lh_part_count(N, P, owner);
      vis.row0 = lh_part_offset(N, P, owner);
      vis.raw = raw[cur];
      prepare(&vis, in, cx.wt, D, mean, cx.cu);
      lh_event_end(ev_prep);
      process_blocks(&cx, &own, &vis);
    }
    lh_event_begin(ev_wait);
    MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
    lh_event_end(ev_wait);
    cur = 1 - cur;
    lh_progress_update(&bar, (int64_t)((double)N * (s + 1) / P));
  }
  lh_progress_finish(&bar);

  /* Heaps -> ascending lists; absent neighbours at the end. */
  LH_TRY(lh_agree(comm, lh_alloc((size_t)cx.k, sizeof(cand), false, "sort scratch", &scratch)));
  for (int64_t i = 0; i < n; i++) {
    int64_t c = cx.h.cnt[i];
    for (int64_t t = 0; t < c; t++) {
      scratch[t].d2 = cx.h.d2[i * cx.k + t];
      scratch[t].ix = cx.h.ix[i * cx.k + t];
    }
    qsort(scratch, (size_t)c, sizeof *scratch, cand_cmp);
    for (int64_t t = 0; t < cx.k; t++) {
      res->dist[i * cx.k + t] = t < c ? sqrt(scratch[t].d2) : INFINITY;
      res->index[i * cx.k + t] = t < c ? scratch[t].ix : -1;
    }
  }
  res->n = n;
  res->k = cx.k;
  res->row0 = lh_dmat_row_offset(X);
  *out = res;
  res = NULL;
done:
  if (rowt != MPI_DATATYPE_NULL) MPI_Type_free(&rowt);
  lh_knn_result_destroy(&res);
  lh_free(mean);
  lh_free(raw[0]);
  lh_free(raw[1]);
  lh_free(own.w);
  lh_free(own.norm);
  lh_free(own.lbn);
  lh_free(own.ok);
  lh_free(vis.w);
  lh_free(vis.norm);
  lh_free(vis.lbn);
  lh_free(vis.ok);
  lh_free(cx.h.d2);
  lh_free(cx.h.ix);
  lh_free(cx.h.cnt);
  lh_free(cx.G);
  lh_free(scratch);
  lh_event_end(ev_all);
  return st;
}
