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
#include "latenthook/log.h"
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
  double *tau;  /* n: squared distance a candidate must beat (+inf until k are held) */
  float *tauf;  /* n: tau rounded up to float, for screening in float32 */
  int64_t k;
} heap;

/* tau rounded up to a float (screening must never reject what the exact test would keep). */
static inline float up_to_float(double t) {
  float f = (float)t;
  return (double)f < t ? nextafterf(f, INFINITY) : f;
}

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
    if (c == k) {
      h->tau[row] = d[0];
      h->tauf[row] = up_to_float(d[0]);
    }
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
  h->tau[row] = d[0];
  h->tauf[row] = up_to_float(d[0]);
}

static void heap_reset(heap *h, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    h->cnt[i] = 0;
    h->tau[i] = INFINITY;
    h->tauf[i] = INFINITY;
  }
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

/* ---- data preparation ------------------------------------------------------------------- */

/* One block of rows as the kernel sees it: raw values for exact distances, a centred copy in
 * the working precision for GEMM, squared norms of that copy, and validity. */
typedef struct block {
  int64_t m, row0;
  const void *raw;   /* m x D, input dtype */
  void *w;           /* m x D, working dtype, centred; rows of invalid points are zero */
  double *norm;      /* m */
  double *lbn;       /* m: norm * (1 - c u), +inf for invalid rows (screening term) */
  float *lbnf;       /* m: lbn rounded down to float */
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
    float f = (float)b->lbn[i];
    b->lbnf[i] = (double)f > b->lbn[i] ? nextafterf(f, -INFINITY) : f;
  }
}

/* The reported squared distance: float64 differences, squared and summed in eight
 * interleaved partial sums combined in a fixed order. Any fixed order makes the value a
 * function of the two rows alone (hence the same on every rank count); this one vectorises. */
static double exact_d2(const void *xr, const void *yr, int64_t D, lh_dtype in) {
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

typedef struct ctx {
  lh_dtype in, wt;
  int64_t D, N, k, nseg;
  double eps, eps2_sure, cu;
  void *G; /* TILE_Q x TILE_C, working dtype */
  int32_t *pass; /* TILE_C: candidates of one row that pass the screen */
  lh_event ev_gemm, ev_screen;
  int64_t exact_calls;
} ctx;

int64_t lh_knn_segment_of(int64_t N, int64_t S, int64_t i) {
  if (S <= 1) return 0;
  int64_t j = (int64_t)((double)i * (double)S / (double)N); /* a guess, then corrected */
  if (j >= S) j = S - 1;
  while (j > 0 && lh_knn_segment_start(N, S, j) > i) j--;
  while (j + 1 < S && lh_knn_segment_start(N, S, j + 1) <= i) j++;
  return j;
}

/* Screens the pairs (row i of q in [qlo, qhi), row j of c in [clo, chi)) and ranks those
 * that can matter. Results for q's rows go to hq; with hc non-NULL each pair also counts for
 * c's row (the pair is computed once for both ends) and goes to hc. `tri`: q and c are the
 * same block, and only pairs j > i are taken. */
/* Compiled for AVX-512, AVX2 and baseline x86-64, chosen at run time by the CPU: the screen
 * is auto-vectorised, and a portable binary still gets the wide vectors. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LH_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LH_TARGET_CLONES
#endif

LH_TARGET_CLONES
static void process_pairs(ctx *cx, const block *q, int64_t qlo, int64_t qhi, heap *hq,
                          const block *c, int64_t clo, int64_t chi, heap *hc, bool tri) {
  const int64_t D = cx->D;
  const size_t esz = lh_dtype_size(cx->wt), isz = lh_dtype_size(cx->in);
  for (int64_t i0 = qlo; i0 < qhi; i0 += TILE_Q) {
    int64_t tq = LH_MIN(TILE_Q, qhi - i0);
    /* Candidate range for this tile (segments are contiguous in global index). */
    int64_t lo = clo, hi = chi;
    if (cx->nseg > 1) {
      int64_t s0 = lh_knn_segment_of(cx->N, cx->nseg, q->row0 + i0);
      int64_t s1 = lh_knn_segment_of(cx->N, cx->nseg, q->row0 + i0 + tq - 1);
      lo = LH_MAX(lo, lh_knn_segment_start(cx->N, cx->nseg, s0) - c->row0);
      hi = LH_MIN(hi, lh_knn_segment_start(cx->N, cx->nseg, s1 + 1) - c->row0);
    }
    if (tri) lo = LH_MAX(lo, i0 + 1);
    for (int64_t j0 = lo; j0 < hi; j0 += TILE_C) {
      int64_t tc = LH_MIN(TILE_C, hi - j0);
      lh_event_begin(cx->ev_gemm);
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
      lh_event_end(cx->ev_gemm);
      lh_event_begin(cx->ev_screen);
      for (int64_t ii = 0; ii < tq; ii++) {
        int64_t qi = i0 + ii, gi = q->row0 + qi;
        if (!q->ok[qi]) continue;
        int64_t jlo = j0, jhi = j0 + tc;
        if (cx->nseg > 1) { /* this query's own segment */
          int64_t sg = lh_knn_segment_of(cx->N, cx->nseg, gi);
          jlo = LH_MAX(jlo, lh_knn_segment_start(cx->N, cx->nseg, sg) - c->row0);
          jhi = LH_MIN(jhi, lh_knn_segment_start(cx->N, cx->nseg, sg + 1) - c->row0);
        }
        if (tri) jlo = LH_MAX(jlo, qi + 1);
        /* Phase 1, branch-free and vectorisable: keep the candidates whose lower bound beats
         * the row's threshold (or, when pairs count for both ends, the column's). The
         * thresholds only shrink afterwards, so this list is a superset of what matters. */
        int32_t np = 0;
        int32_t *pass = cx->pass;
        if (cx->wt == LH_F32) {
          const float *G = (const float *)cx->G + ii * tc - j0;
          const float af = q->lbnf[qi], ti = hq->tauf[qi];
          const float *lbn = c->lbnf, *tcol = hc ? hc->tauf : NULL;
          for (int64_t b0 = jlo; b0 < jhi; b0 += 64) {
            int64_t b1 = LH_MIN(b0 + 64, jhi);
            unsigned char f[64];
            int any = 0;
            if (tcol) {
              for (int64_t jj = b0; jj < b1; jj++) {
                float lb = af + lbn[jj] - 2.0f * G[jj];
                float t = ti > tcol[jj] ? ti : tcol[jj];
                f[jj - b0] = lb <= t;
                any |= f[jj - b0];
              }
            } else {
              for (int64_t jj = b0; jj < b1; jj++) {
                float lb = af + lbn[jj] - 2.0f * G[jj];
                f[jj - b0] = lb <= ti;
                any |= f[jj - b0];
              }
            }
            if (!any) continue;
            for (int64_t jj = b0; jj < b1; jj++) {
              pass[np] = (int32_t)jj;
              np += f[jj - b0];
            }
          }
        } else {
          const double *G = (const double *)cx->G + ii * tc - j0;
          const double ad = q->lbn[qi], ti = hq->tau[qi];
          const double *lbn = c->lbn;
          for (int64_t jj = jlo; jj < jhi; jj++) {
            double lb = ad + lbn[jj] - 2.0 * G[jj];
            double t = hc ? (ti > hc->tau[jj] ? ti : hc->tau[jj]) : ti;
            pass[np] = (int32_t)jj;
            np += lb <= t;
          }
        }
        /* Phase 2: the few survivors, against the current thresholds, then exactly. */
        const void *xr = (const char *)q->raw + (size_t)(qi * D) * isz;
        for (int32_t p = 0; p < np; p++) {
          int64_t jj = pass[p], gj = c->row0 + jj;
          if (gj == gi || !c->ok[jj]) continue;
          double g = cx->wt == LH_F64 ? ((const double *)cx->G)[ii * tc + (jj - j0)]
                                      : (double)((const float *)cx->G)[ii * tc + (jj - j0)];
          double E = cx->cu * (q->norm[qi] + c->norm[jj]);
          double lb = q->norm[qi] + c->norm[jj] - 2.0 * g - E;
          double t = hc ? (hq->tau[qi] > hc->tau[jj] ? hq->tau[qi] : hc->tau[jj]) : hq->tau[qi];
          if (!(lb <= t)) continue;
          if (lb + 2.0 * E < cx->eps2_sure) continue; /* certainly within eps */
          double d2 = exact_d2(xr, (const char *)c->raw + (size_t)(jj * D) * isz, D, cx->in);
          cx->exact_calls++;
          if (!(sqrt(d2) > cx->eps)) continue; /* within eps, or NaN */
          heap_push(hq, qi, d2, gj);
          if (hc) heap_push(hc, jj, d2, gi);
        }
      }
      lh_event_end(cx->ev_screen);
    }
  }
}

/* Adds the (d2, index) entries of a returned heap image (n x k, index -1 = none). */
static void merge_image(heap *h, int64_t n, const double *d2, const int64_t *ix) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < h->k; t++)
      if (ix[i * h->k + t] >= 0) heap_push(h, i, d2[i * h->k + t], ix[i * h->k + t]);
}

/* Writes a heap as an image of n x k entries, absent ones as (+inf, -1). */
static void heap_image(const heap *h, int64_t n, double *d2, int64_t *ix) {
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < h->k; t++) {
      bool has = t < h->cnt[i];
      d2[i * h->k + t] = has ? h->d2[i * h->k + t] : INFINITY;
      ix[i * h->k + t] = has ? h->ix[i * h->k + t] : -1;
    }
}

static lh_status heap_alloc(heap *h, int64_t rows, int64_t k) {
  lh_status st = LH_OK;
  h->k = k;
  LH_TRY(lh_alloc((size_t)(rows * k), sizeof(double), false, "neighbour heaps", &h->d2));
  LH_TRY(lh_alloc((size_t)(rows * k), sizeof(int64_t), false, "neighbour heaps", &h->ix));
  LH_TRY(lh_alloc((size_t)rows, sizeof(int64_t), false, "neighbour heaps", &h->cnt));
  LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "neighbour heaps", &h->tau));
  LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "neighbour heaps", &h->tauf));
  heap_reset(h, rows);
done:
  return st;
}

static void heap_free(heap *h) {
  lh_free(h->d2);
  lh_free(h->ix);
  lh_free(h->cnt);
  lh_free(h->tau);
  lh_free(h->tauf);
  h->tauf = NULL;
  h->d2 = NULL;
  h->ix = NULL;
  h->cnt = NULL;
  h->tau = NULL;
}

static lh_status block_alloc(block *b, int64_t rows, int64_t D, size_t wsz) {
  lh_status st = LH_OK;
  LH_TRY(lh_alloc((size_t)(rows * D), wsz, false, "centred rows", &b->w));
  LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "norms", &b->norm));
  LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "norms", &b->lbn));
  LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "norms", &b->lbnf));
  LH_TRY(lh_alloc((size_t)rows, 1, false, "flags", &b->ok));
done:
  return st;
}

static void block_free(block *b) {
  lh_free(b->w);
  lh_free(b->norm);
  lh_free(b->lbn);
  lh_free(b->lbnf);
  lh_free(b->ok);
}

/* Largest k for which pairs are computed once for both ends: the visiting block's heaps then
 * travel back to their owner, which costs memory and traffic proportional to k. */
#define SYMMETRIC_MAX_K 64

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
  double *mean = NULL, *img_d = NULL, *back_d = NULL;
  int64_t *img_i = NULL, *back_i = NULL;
  void *raw[2] = {NULL, NULL};
  block own = {0}, vis = {0};
  heap h = {0}, hv = {0};
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

  cx.ev_gemm = lh_event_get("knn.gemm");
  cx.ev_screen = lh_event_get("knn.screen");
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
  const bool sym = cx.k <= SYMMETRIC_MAX_K;
  const int smax = P / 2; /* ring steps: block r + s for s = 1 .. P/2 */

  int64_t maxm = N / P + (N % P ? 1 : 0);
  size_t wsz = lh_dtype_size(cx.wt);
  int64_t img = sym && smax > 0 ? maxm * cx.k : 0;
  local = lh_alloc((size_t)D, sizeof(double), false, "column means", &mean);
  if (local == LH_OK) local = lh_alloc(1, sizeof *res, true, "knn result", &res);
  if (local == LH_OK) local = lh_alloc((size_t)(n * cx.k), sizeof(double), false, "knn distances", &res->dist);
  if (local == LH_OK) local = lh_alloc((size_t)(n * cx.k), sizeof(int64_t), false, "knn indices", &res->index);
  if (local == LH_OK) local = heap_alloc(&h, n, cx.k);
  if (local == LH_OK && img) local = heap_alloc(&hv, maxm, cx.k);
  if (local == LH_OK) local = lh_alloc((size_t)img, sizeof(double), false, "heap images", &img_d);
  if (local == LH_OK) local = lh_alloc((size_t)img, sizeof(int64_t), false, "heap images", &img_i);
  if (local == LH_OK) local = lh_alloc((size_t)img, sizeof(double), false, "heap images", &back_d);
  if (local == LH_OK) local = lh_alloc((size_t)img, sizeof(int64_t), false, "heap images", &back_i);
  if (local == LH_OK) local = lh_alloc((size_t)TILE_Q * TILE_C, wsz, false, "distance tile", &cx.G);
  if (local == LH_OK) local = lh_alloc(TILE_C, sizeof(int32_t), false, "screen list", &cx.pass);
  for (int b = 0; b < 2 && local == LH_OK; b++)
    local = lh_alloc((size_t)(maxm * D), isz, false, "ring buffer", &raw[b]);
  if (local == LH_OK) local = block_alloc(&own, n, D, wsz);
  if (local == LH_OK) local = block_alloc(&vis, maxm, D, wsz);
  if (local == LH_OK) local = lh_alloc((size_t)cx.k, sizeof(cand), false, "sort scratch", &scratch);
  LH_TRY(lh_agree(comm, local));

  /* Centring only tightens the screening bound (distances do not change under translation),
   * so the centre need not be exact nor the same on every rank count: the results are, the
   * screen being rigorous for any centre. A plain sum of the finite rows is enough. */
  {
    double *acc = mean;
    int64_t cnt = 0;
    for (int64_t j = 0; j < D; j++) acc[j] = 0.0;
    for (int64_t i = 0; i < n; i++) {
      bool ok = true;
      for (int64_t j = 0; j < D && ok; j++) {
        double v = in == LH_F64 ? ((const double *)lh_dmat_local_const(X))[i * D + j]
                                : (double)((const float *)lh_dmat_local_const(X))[i * D + j];
        ok = isfinite(v);
      }
      if (!ok) continue;
      cnt++;
      for (int64_t j = 0; j < D; j++)
        acc[j] += in == LH_F64 ? ((const double *)lh_dmat_local_const(X))[i * D + j]
                               : (double)((const float *)lh_dmat_local_const(X))[i * D + j];
    }
    int d32;
    LH_TRY(lh_int_cast(D, "number of columns", &d32));
    MPI_Allreduce(MPI_IN_PLACE, acc, d32, MPI_DOUBLE, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, &cnt, 1, MPI_INT64_T, MPI_SUM, comm);
    for (int64_t j = 0; j < D; j++) mean[j] = cnt > 0 ? acc[j] / (double)cnt : 0.0;
  }

  lh_event_begin(ev_prep);
  own.m = n;
  own.row0 = lh_dmat_row_offset(X);
  own.raw = lh_dmat_local_const(X);
  prepare(&own, in, cx.wt, D, mean, cx.cu);
  lh_event_end(ev_prep);

  int dcount, imgcount = 0;
  LH_TRY(lh_int_cast(LH_MAX(D, 1), "number of columns", &dcount));
  LH_TRY(lh_int_cast(img, "neighbour heap image", &imgcount));
  MPI_Type_contiguous(dcount, in == LH_F64 ? MPI_DOUBLE : MPI_FLOAT, &rowt);
  MPI_Type_commit(&rowt);

  lh_progress bar;
  lh_progress_start(&bar, r, "knn", "rows", N);
  /* Step s works on rank (r + s) mod P's rows, which came from rank r + 1 and go on to rank
   * r - 1; the transfer for step s + 1 runs while step s computes. Every pair of blocks
   * {a, b} is met at step s = b - a (mod P) by rank a and at step P - s by rank b: with
   * symmetry, for 2s < P rank a takes the pair for both ends and returns the visiting rows'
   * heaps to their owner, and at 2s = P (even P) the two ranks split the pair by halves.
   * Without symmetry (large k) every rank takes its own rows against every block. */
  const int next = (r + 1) % P, prev = (r + P - 1) % P;
  const int steps = sym ? smax : P - 1;
  memcpy(raw[0], own.raw, (size_t)(n * D) * isz);
  int cur = 0;
  MPI_Request req[6];
  for (int q = 0; q < 6; q++) req[q] = MPI_REQUEST_NULL;
  /* post the transfer that brings block r + s + 1 while working on step s */
  #define POST_NEXT_BLOCK(s_)                                                              \
    do {                                                                                   \
      int mcnt_, scnt_;                                                                    \
      LH_TRY(lh_int_cast(lh_part_count(N, P, (r + (s_) + 1) % P), "rows per rank", &mcnt_)); \
      LH_TRY(lh_int_cast(lh_part_count(N, P, (r + (s_)) % P), "rows per rank", &scnt_));   \
      MPI_Irecv(raw[1 - cur], D > 0 ? mcnt_ : 0, rowt, next, 17, comm, &req[0]);           \
      MPI_Isend(raw[cur], D > 0 ? scnt_ : 0, rowt, prev, 17, comm, &req[1]);               \
    } while (0)
  if (steps > 0) POST_NEXT_BLOCK(0);
  /* Own block: each pair once (j > i) for both ends, or every pair for the rows. */
  process_pairs(&cx, &own, 0, n, &h, &own, 0, n, sym ? &h : NULL, sym);
  lh_event_begin(ev_wait);
  MPI_Waitall(2, req, MPI_STATUSES_IGNORE);
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
    prepare(&vis, in, cx.wt, D, mean, cx.cu);
    lh_event_end(ev_prep);
    bool both = sym && 2 * s <= P;
    int sendcnt = 0, recvcnt = 0;
    if (both) {
      heap_reset(&hv, vis.m);
      LH_TRY(lh_int_cast(vis.m * cx.k, "neighbour heap image", &sendcnt));
      LH_TRY(lh_int_cast(n * cx.k, "neighbour heap image", &recvcnt));
      MPI_Irecv(back_d, recvcnt, MPI_DOUBLE, from, 18, comm, &req[2]);
      MPI_Irecv(back_i, recvcnt, MPI_INT64_T, from, 19, comm, &req[3]);
    }
    if (both && 2 * s == P) { /* split the pair of blocks by halves */
      if (r < owner)
        process_pairs(&cx, &own, 0, n, &h, &vis, 0, vis.m / 2, &hv, false);
      else
        process_pairs(&cx, &own, n / 2, n, &h, &vis, 0, vis.m, &hv, false);
    } else {
      process_pairs(&cx, &own, 0, n, &h, &vis, 0, vis.m, both ? &hv : NULL, false);
    }
    if (both) {
      heap_image(&hv, vis.m, img_d, img_i);
      MPI_Isend(img_d, sendcnt, MPI_DOUBLE, owner, 18, comm, &req[4]);
      MPI_Isend(img_i, sendcnt, MPI_INT64_T, owner, 19, comm, &req[5]);
    }
    lh_event_begin(ev_wait);
    MPI_Waitall(6, req, MPI_STATUSES_IGNORE);
    lh_event_end(ev_wait);
    if (both) merge_image(&h, n, back_d, back_i);
    cur = 1 - cur;
    lh_progress_update(&bar, (int64_t)((double)N * (s + 1) / (steps + 1)));
  }
  #undef POST_NEXT_BLOCK
  lh_progress_finish(&bar);
  lh_log_debug("knn: %lld exact distance evaluations for %lld rows (k = %lld)",
               (long long)cx.exact_calls, (long long)n, (long long)cx.k);

  /* Heaps -> ascending lists; absent neighbours at the end. */
  for (int64_t i = 0; i < n; i++) {
    int64_t c = h.cnt[i];
    for (int64_t t = 0; t < c; t++) {
      scratch[t].d2 = h.d2[i * cx.k + t];
      scratch[t].ix = h.ix[i * cx.k + t];
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
  lh_free(img_d);
  lh_free(img_i);
  lh_free(back_d);
  lh_free(back_i);
  lh_free(raw[0]);
  lh_free(raw[1]);
  block_free(&own);
  block_free(&vis);
  heap_free(&h);
  heap_free(&hv);
  lh_free(cx.G);
  lh_free(cx.pass);
  lh_free(scratch);
  lh_event_end(ev_all);
  return st;
}
