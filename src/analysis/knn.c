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

#include "analysis/ring.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/knn.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/timer.h"

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
      h->tauf[row] = ring_up_to_float(d[0]);
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
  h->tauf[row] = ring_up_to_float(d[0]);
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

int64_t lh_knn_segment_of(int64_t N, int64_t S, int64_t i) {
  if (S <= 1) return 0;
  int64_t j = (int64_t)((double)i * (double)S / (double)N); /* a guess, then corrected */
  if (j >= S) j = S - 1;
  while (j > 0 && lh_knn_segment_start(N, S, j) > i) j--;
  while (j + 1 < S && lh_knn_segment_start(N, S, j + 1) <= i) j++;
  return j;
}

/* ---- the visitor ------------------------------------------------------------------------ */

typedef struct knn_run {
  int64_t k;
  double eps, eps2_sure;
  heap h;        /* this rank's rows */
  heap hv;       /* the visiting block's rows (symmetric use) */
  int32_t *pass; /* RING_TILE_C: candidates of one row that pass the screen */
  int64_t exact_calls;
} knn_run;

/* Screens a tile and ranks the candidates that can matter: a candidate whose lower bound
 * beats the row's threshold (or, for pairs counting at both ends, the column's) is
 * recomputed exactly; the thresholds only shrink, so a first vectorised pass over the tile
 * with the thresholds at its start gives a superset of the candidates to examine. Compiled
 * for AVX-512, AVX2 and baseline x86-64, chosen at run time (a portable binary still gets
 * the wide vectors). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LH_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LH_TARGET_CLONES
#endif

LH_TARGET_CLONES
static void knn_tile(ring_ctx *rc, void *user, const ring_block *q, int64_t i0, int64_t tq,
                     const ring_block *c, int64_t j0, int64_t tc, bool both, bool tri) {
  knn_run *u = user;
  heap *hq = &u->h, *hc = both ? &u->hv : NULL;
  if (tri) hc = hq; /* the own block: columns are our own rows */
  const int64_t D = rc->D;
  const size_t isz = lh_dtype_size(rc->in);
  for (int64_t ii = 0; ii < tq; ii++) {
    int64_t qi = i0 + ii, gi = q->row0 + qi, jlo, jhi;
    if (!q->ok[qi]) continue;
    ring_row_range(rc, q, qi, c, j0, tc, tri, &jlo, &jhi);
    int32_t np = 0, *pass = u->pass;
    if (rc->wt == LH_F32) {
      const float *G = (const float *)rc->G + ii * tc - j0;
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
      const double *G = (const double *)rc->G + ii * tc - j0;
      const double ad = q->lbn[qi], ti = hq->tau[qi];
      const double *lbn = c->lbn;
      for (int64_t jj = jlo; jj < jhi; jj++) {
        double lb = ad + lbn[jj] - 2.0 * G[jj];
        double t = hc ? (ti > hc->tau[jj] ? ti : hc->tau[jj]) : ti;
        pass[np] = (int32_t)jj;
        np += lb <= t;
      }
    }
    /* the survivors, against the current thresholds, then exactly */
    const void *xr = (const char *)q->raw + (size_t)(qi * D) * isz;
    for (int32_t p = 0; p < np; p++) {
      int64_t jj = pass[p], gj = c->row0 + jj;
      if (gj == gi || !c->ok[jj]) continue;
      double g = rc->wt == LH_F64 ? ((const double *)rc->G)[ii * tc + (jj - j0)]
                                  : (double)((const float *)rc->G)[ii * tc + (jj - j0)];
      double E = rc->cu * (q->norm[qi] + c->norm[jj]);
      double lb = q->norm[qi] + c->norm[jj] - 2.0 * g - E;
      double t = hc ? (hq->tau[qi] > hc->tau[jj] ? hq->tau[qi] : hc->tau[jj]) : hq->tau[qi];
      if (!(lb <= t)) continue;
      if (lb + 2.0 * E < u->eps2_sure) continue; /* certainly within eps */
      double d2 = ring_exact_d2(xr, (const char *)c->raw + (size_t)(jj * D) * isz, D, rc->in);
      u->exact_calls++;
      if (!(sqrt(d2) > u->eps)) continue; /* within eps, or NaN */
      heap_push(hq, qi, d2, gj);
      if (hc) heap_push(hc, jj, d2, gi);
    }
  }
}

/* The visiting rows' heaps travel back as k (d2, index) entries per row, absent = (inf, -1). */
typedef struct entry {
  double d2;
  int64_t ix;
} entry;

static void vis_reset(void *user, int64_t m) { heap_reset(&((knn_run *)user)->hv, m); }

static void vis_pack(void *user, int64_t m, void *buf) {
  const heap *h = &((knn_run *)user)->hv;
  entry *e = buf;
  for (int64_t i = 0; i < m; i++)
    for (int64_t t = 0; t < h->k; t++) {
      bool has = t < h->cnt[i];
      e[i * h->k + t].d2 = has ? h->d2[i * h->k + t] : INFINITY;
      e[i * h->k + t].ix = has ? h->ix[i * h->k + t] : -1;
    }
}

static void own_merge(void *user, int64_t n, const void *buf) {
  heap *h = &((knn_run *)user)->h;
  const entry *e = buf;
  for (int64_t i = 0; i < n; i++)
    for (int64_t t = 0; t < h->k; t++)
      if (e[i * h->k + t].ix >= 0) heap_push(h, i, e[i * h->k + t].d2, e[i * h->k + t].ix);
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
  memset(h, 0, sizeof *h);
}

/* Largest k for which pairs are computed once for both ends: the visiting block's heaps then
 * travel back to their owner, which costs memory and traffic proportional to k. */
#define SYMMETRIC_MAX_K 64

lh_status lh_knn_run(const lh_dmat *X, const lh_knn_opts *opts, lh_knn_result **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int P;
  MPI_Comm_size(comm, &P);
  const int64_t N = lh_dmat_rows(X), n = lh_dmat_local_rows(X);
  lh_knn_result *res = NULL;
  knn_run u = {0};
  cand *scratch = NULL;
  static lh_event ev_all = -2;
  if (ev_all == -2) ev_all = lh_event_get("knn");
  lh_event_begin(ev_all);

  if (opts->k < 1)
    local = LH_ERROR(LH_ERR_VALUE, "k must be at least 1, got %lld", (long long)opts->k);
  else if (isnan(opts->eps))
    local = LH_ERROR(LH_ERR_VALUE, "eps must be a number, got %g", opts->eps);
  LH_TRY(lh_agree(comm, local));
  u.k = opts->k;
  u.eps = opts->eps;
  /* eps < 0 keeps every neighbour, duplicates included (information imbalance's ranks) */
  u.eps2_sure = opts->eps > 0 ? opts->eps * opts->eps * (1.0 - 1e-9) : -1.0;
  const bool sym = u.k <= SYMMETRIC_MAX_K;
  const int64_t maxm = N / P + (N % P ? 1 : 0);

  local = lh_alloc(1, sizeof *res, true, "knn result", &res);
  if (local == LH_OK) local = lh_alloc((size_t)(n * u.k), sizeof(double), false, "knn distances", &res->dist);
  if (local == LH_OK) local = lh_alloc((size_t)(n * u.k), sizeof(int64_t), false, "knn indices", &res->index);
  if (local == LH_OK) local = heap_alloc(&u.h, n, u.k);
  if (local == LH_OK && sym) local = heap_alloc(&u.hv, maxm, u.k);
  if (local == LH_OK) local = lh_alloc(RING_TILE_C, sizeof(int32_t), false, "screen list", &u.pass);
  if (local == LH_OK) local = lh_alloc((size_t)u.k, sizeof(cand), false, "sort scratch", &scratch);
  LH_TRY(lh_agree(comm, local));

  ring_ops ops = {.tile = knn_tile,
                  .state_bytes = sym ? (size_t)u.k * sizeof(entry) : 0,
                  .vis_reset = vis_reset,
                  .vis_pack = vis_pack,
                  .own_merge = own_merge};
  LH_TRY(ring_run(X, &ops, &u, true, opts->segments, "knn"));
  lh_log_debug("knn: %lld exact distance evaluations for %lld rows (k = %lld)",
               (long long)u.exact_calls, (long long)n, (long long)u.k);

  /* Heaps -> ascending lists; absent neighbours at the end. */
  for (int64_t i = 0; i < n; i++) {
    int64_t c = u.h.cnt[i];
    for (int64_t t = 0; t < c; t++) {
      scratch[t].d2 = u.h.d2[i * u.k + t];
      scratch[t].ix = u.h.ix[i * u.k + t];
    }
    qsort(scratch, (size_t)c, sizeof *scratch, cand_cmp);
    for (int64_t t = 0; t < u.k; t++) {
      res->dist[i * u.k + t] = t < c ? sqrt(scratch[t].d2) : INFINITY;
      res->index[i * u.k + t] = t < c ? scratch[t].ix : -1;
    }
  }
  res->n = n;
  res->k = u.k;
  res->row0 = lh_dmat_row_offset(X);
  *out = res;
  res = NULL;
done:
  lh_knn_result_destroy(&res);
  heap_free(&u.h);
  heap_free(&u.hv);
  lh_free(u.pass);
  lh_free(scratch);
  lh_event_end(ev_all);
  return st;
}
