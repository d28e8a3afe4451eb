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
  lh_knn_opts o = {.k = 1, .eps = 1e-5, .segments = 0, .p = 2.0};
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

/* ---- keys ------------------------------------------------------------------------------ */

double lh_knn_key(const void *xr, const void *yr, int64_t D, lh_dtype dt, double p) {
  if (p == 2.0) return ring_exact_d2(xr, yr, D, dt);
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t j = 0; j < D; j++) {
    double a = dt == LH_F64 ? ((const double *)xr)[j] : (double)((const float *)xr)[j];
    double b = dt == LH_F64 ? ((const double *)yr)[j] : (double)((const float *)yr)[j];
    double t = fabs(a - b);
    if (isinf(p))
      acc[j & 7] = t > acc[j & 7] || isnan(t) ? t : acc[j & 7];
    else
      acc[j & 7] += p == 1.0 ? t : pow(t, p);
  }
  if (isinf(p)) {
    double m = acc[0];
    for (int l = 1; l < 8; l++) m = acc[l] > m || isnan(acc[l]) ? acc[l] : m;
    return m;
  }
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

double lh_knn_key_distance(double key, double p) {
  if (p == 2.0) return sqrt(key);
  if (p == 1.0 || isinf(p)) return key;
  return pow(key, 1.0 / p);
}

/* ---- the visitor ------------------------------------------------------------------------ */

/* A threshold as it travels with its row. */
typedef struct entry {
  double key;
  int64_t ix;
} entry;

/* Per-row state of a block's rows: neighbours and rank counts. */
typedef struct side {
  heap h;           /* neighbours (when wanted) */
  int64_t *cnt;     /* m x nt: pairs below each threshold, examined exactly */
  int64_t *call;    /* m: pairs certainly below every threshold */
  const entry *thr; /* m x nt thresholds (the block's travelling payload) */
  double *tmin, *tmax; /* m: its smallest and largest threshold key */
  float *tminf, *tmaxf; /* the same rounded outwards to float */
} side;

typedef struct knn_run {
  int64_t k, nt;
  double p, eps, eps2_sure;
  bool want;      /* neighbours wanted (k-NN), else counting only */
  side own, vis;  /* this rank's rows; the visiting block's rows (symmetric use) */
  int32_t *pass;  /* RING_TILE_C: candidates of one row that pass the screen */
  unsigned char *pflag; /* RING_TILE_C: their certain-count flags */
  int64_t exact_calls;
} knn_run;

/* Compiled for AVX-512, AVX2 and baseline x86-64, chosen at run time: the screens are
 * auto-vectorised, and a portable binary still gets the wide vectors. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LH_TARGET_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define LH_TARGET_CLONES
#endif

/* k-NN only: a candidate whose lower bound beats the row's threshold (or, for pairs counting
 * at both ends, the column's) is recomputed exactly. The thresholds only shrink, so a first
 * vectorised pass over the tile with the thresholds at its start gives a superset of the
 * candidates to examine. */
LH_TARGET_CLONES
static void knn_tile(ring_ctx *rc, void *user, const ring_block *q, int64_t i0, int64_t tq,
                     const ring_block *c, int64_t j0, int64_t tc, bool both, bool tri) {
  knn_run *u = user;
  heap *hq = &u->own.h, *hc = both ? &u->vis.h : NULL;
  if (tri) hc = hq; /* the own block: columns are our own rows */
  const int64_t D = rc->D;
  const size_t isz = lh_dtype_size(rc->in);
  for (int64_t ii = 0; ii < tq; ii++) {
    int64_t qi = i0 + ii, gi = ring_gid(q, qi), jlo, jhi;
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

/* Counts pair (row with global index g, candidate cg at key s) against the row's thresholds. */
static inline void count_pair(const side *sd, int64_t nt, int64_t row, double s, int64_t cg) {
  const entry *t = sd->thr + row * nt;
  for (int64_t k = 0; k < nt; k++)
    if (s < t[k].key || (s == t[k].key && cg < t[k].ix)) sd->cnt[row * nt + k]++;
}

/* One exactly computed pair: neighbours and counts at the row end and, with `cs`, the column
 * end. rc/cc: the pair was already counted at that end as certainly below every threshold. */
static inline void take_pair(knn_run *u, side *rs, int64_t qi, int64_t gi, side *cs,
                             int64_t jj, int64_t gj, double s, bool rc_done, bool cc_done) {
  if (u->want && (u->eps < 0 || lh_knn_key_distance(s, u->p) > u->eps)) {
    heap_push(&rs->h, qi, s, gj);
    if (cs) heap_push(&cs->h, jj, s, gi);
  }
  if (u->nt) {
    if (!rc_done) count_pair(rs, u->nt, qi, s, gj);
    if (cs && !cc_done) count_pair(cs, u->nt, jj, s, gi);
  }
}

/* Rank counting (and optional neighbours) through GEMM: a pair whose upper bound is below
 * a row's smallest threshold counts for all of them at once (vectorised); pairs whose bounds
 * straddle the row's thresholds, or that may enter a neighbour list, are computed exactly. */
LH_TARGET_CLONES
static void rank_tile(ring_ctx *rc, void *user, const ring_block *q, int64_t i0, int64_t tq,
                      const ring_block *c, int64_t j0, int64_t tc, bool both, bool tri) {
  knn_run *u = user;
  side *rs = &u->own, *cs = both ? &u->vis : NULL;
  if (tri) cs = rs;
  const int64_t D = rc->D;
  const size_t isz = lh_dtype_size(rc->in);

  for (int64_t ii = 0; ii < tq; ii++) {
    int64_t qi = i0 + ii, gi = ring_gid(q, qi), jlo, jhi;
    if (!q->ok[qi]) continue;
    ring_row_range(rc, q, qi, c, j0, tc, tri, &jlo, &jhi);
    int32_t np = 0;
    int64_t certain = 0;
    const float *G = (const float *)rc->G + ii * tc - j0;
    const double *Gd = (const double *)rc->G + ii * tc - j0;
    for (int64_t b0 = jlo; b0 < jhi; b0 += 64) {
      int64_t b1 = LH_MIN(b0 + 64, jhi);
      unsigned char f[64];
      int any = 0;
      if (rc->wt == LH_F32) {
        /* written without stores through aliasable pointers or branches in the loop, so
         * that it vectorises: the visiting side's certain counts go to cc[] first */
        const float al = q->lbnf[qi], au = q->ubnf[qi];
        const float tr = u->want ? rs->h.tauf[qi] : -INFINITY;
        const float rmin = rs->tminf[qi], rmax = rs->tmaxf[qi];
        const int w = (int)(b1 - b0);
        const float *restrict lbc = c->lbnf + b0, *restrict ubc = c->ubnf + b0;
        const float *restrict g = G + b0;
        unsigned char *restrict fo = f;
        int cert = 0, an = 0;
        if (cs) {
          static const float NEG[64] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                                        -INFINITY, -INFINITY, -INFINITY, -INFINITY};
          const float *restrict ctmin = cs->tminf + b0, *restrict ctmax = cs->tmaxf + b0;
          const float *restrict ctau = u->want ? cs->h.tauf + b0 : NEG;
          unsigned char cc[64];
          for (int jj = 0; jj < w; jj++) {
            float lb = al + lbc[jj] - 2.0f * g[jj], ub = au + ubc[jj] - 2.0f * g[jj];
            int rcert = ub < rmin, ccert = ub < ctmin[jj];
            int fl = (lb <= tr) | ((lb <= rmax) & !rcert) | (lb <= ctau[jj]) |
                     ((lb <= ctmax[jj]) & !ccert);
            fo[jj] = (unsigned char)(fl | (rcert << 1) | (ccert << 2));
            cc[jj] = (unsigned char)ccert;
            cert += rcert;
            an |= fl;
          }
          int64_t *restrict call = cs->call + b0;
          for (int jj = 0; jj < w; jj++) call[jj] += cc[jj];
        } else {
          for (int jj = 0; jj < w; jj++) {
            float lb = al + lbc[jj] - 2.0f * g[jj], ub = au + ubc[jj] - 2.0f * g[jj];
            int rcert = ub < rmin;
            int fl = (lb <= tr) | ((lb <= rmax) & !rcert);
            fo[jj] = (unsigned char)(fl | (rcert << 1));
            cert += rcert;
            an |= fl;
          }
        }
        certain += cert;
        any |= an;
      } else {
        const double al = q->lbn[qi], au = q->ubn[qi];
        const double tr = u->want ? rs->h.tau[qi] : -INFINITY;
        const double rmin = rs->tmin[qi], rmax = rs->tmax[qi];
        for (int64_t jj = b0; jj < b1; jj++) {
          double lb = al + c->lbn[jj] - 2.0 * Gd[jj], ub = au + c->ubn[jj] - 2.0 * Gd[jj];
          unsigned char rcert = ub < rmin;
          unsigned char fl = (lb <= tr) | ((lb <= rmax) & !rcert);
          unsigned char ccert = 0;
          if (cs) {
            ccert = ub < cs->tmin[jj];
            double tcn = u->want ? cs->h.tau[jj] : -INFINITY;
            fl |= (lb <= tcn) | ((lb <= cs->tmax[jj]) & !ccert);
            cs->call[jj] += ccert;
          }
          certain += rcert;
          f[jj - b0] = (unsigned char)(fl | (rcert << 1) | (ccert << 2));
          any |= fl;
        }
      }
      int64_t self = gi - c->row0; /* never pair a row with itself */
      if (self >= b0 && self < b1) {
        unsigned char fs = f[self - b0];
        certain -= (fs >> 1) & 1;
        if (cs) cs->call[self] -= (fs >> 2) & 1;
        f[self - b0] = 0;
      }
      if (!any) continue;
      for (int64_t jj = b0; jj < b1; jj++) {
        u->pass[np] = (int32_t)jj;
        u->pflag[np] = f[jj - b0];
        np += f[jj - b0] & 1;
      }
    }
    rs->call[qi] += certain;
    const void *xr = (const char *)q->raw + (size_t)(qi * D) * isz;
    for (int32_t p = 0; p < np; p++) {
      int64_t jj = u->pass[p], gj = c->row0 + jj;
      if (gj == gi || !c->ok[jj]) continue;
      double s = ring_exact_d2(xr, (const char *)c->raw + (size_t)(jj * D) * isz, D, rc->in);
      u->exact_calls++;
      take_pair(u, rs, qi, gi, cs, jj, gj, s, (u->pflag[p] >> 1) & 1, (u->pflag[p] >> 2) & 1);
    }
  }
}

/* Minkowski p != 2: every pair exactly, no screening. */
static void direct_tile(ring_ctx *rc, void *user, const ring_block *q, int64_t i0, int64_t tq,
                        const ring_block *c, int64_t j0, int64_t tc, bool both, bool tri) {
  knn_run *u = user;
  side *rs = &u->own, *cs = both ? &u->vis : NULL;
  if (tri) cs = rs;
  const int64_t D = rc->D;
  const size_t isz = lh_dtype_size(rc->in);
  for (int64_t ii = 0; ii < tq; ii++) {
    int64_t qi = i0 + ii, gi = ring_gid(q, qi), jlo, jhi;
    if (!q->ok[qi]) continue;
    ring_row_range(rc, q, qi, c, j0, tc, tri, &jlo, &jhi);
    const void *xr = (const char *)q->raw + (size_t)(qi * D) * isz;
    for (int64_t jj = jlo; jj < jhi; jj++) {
      int64_t gj = c->row0 + jj;
      if (gj == gi || !c->ok[jj]) continue;
      double s = lh_knn_key(xr, (const char *)c->raw + (size_t)(jj * D) * isz, D, rc->in, u->p);
      take_pair(u, rs, qi, gi, cs, jj, gj, s, false, false);
    }
  }
}

/* ---- per-row state ------------------------------------------------------------------------ */

/* Threshold bounds of a block's rows (rows without thresholds: nothing is ever below). */
static void side_bounds(side *sd, int64_t m, int64_t nt) {
  for (int64_t i = 0; i < m && nt; i++) {
    sd->tmin[i] = sd->thr[i * nt].key;
    sd->tmax[i] = sd->thr[i * nt + nt - 1].key;
    float f = (float)sd->tmin[i];
    sd->tminf[i] = (double)f > sd->tmin[i] ? nextafterf(f, -INFINITY) : f;
    sd->tmaxf[i] = ring_up_to_float(sd->tmax[i]);
  }
}

static void side_reset(side *sd, int64_t m, int64_t nt, bool want) {
  if (want) heap_reset(&sd->h, m);
  if (nt) {
    memset(sd->cnt, 0, (size_t)(m * nt) * sizeof(int64_t));
    memset(sd->call, 0, (size_t)m * sizeof(int64_t));
  }
}

static lh_status side_alloc(side *sd, int64_t rows, int64_t k, int64_t nt, bool want) {
  lh_status st = LH_OK;
  if (want) {
    sd->h.k = k;
    LH_TRY(lh_alloc((size_t)(rows * k), sizeof(double), false, "neighbour heaps", &sd->h.d2));
    LH_TRY(lh_alloc((size_t)(rows * k), sizeof(int64_t), false, "neighbour heaps", &sd->h.ix));
    LH_TRY(lh_alloc((size_t)rows, sizeof(int64_t), false, "neighbour heaps", &sd->h.cnt));
    LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "neighbour heaps", &sd->h.tau));
    LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "neighbour heaps", &sd->h.tauf));
  }
  if (nt) {
    LH_TRY(lh_alloc((size_t)(rows * nt), sizeof(int64_t), false, "rank counts", &sd->cnt));
    LH_TRY(lh_alloc((size_t)rows, sizeof(int64_t), false, "rank counts", &sd->call));
    LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "thresholds", &sd->tmin));
    LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "thresholds", &sd->tmax));
    LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "thresholds", &sd->tminf));
    LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "thresholds", &sd->tmaxf));
  } else { /* no thresholds: bounds that nothing is below */
    LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "thresholds", &sd->tminf));
    LH_TRY(lh_alloc((size_t)rows, sizeof(float), false, "thresholds", &sd->tmaxf));
    LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "thresholds", &sd->tmin));
    LH_TRY(lh_alloc((size_t)rows, sizeof(double), false, "thresholds", &sd->tmax));
    for (int64_t i = 0; i < rows; i++) {
      sd->tminf[i] = sd->tmaxf[i] = -INFINITY;
      sd->tmin[i] = sd->tmax[i] = -INFINITY;
    }
  }
  side_reset(sd, rows, nt, want);
done:
  return st;
}

static void side_free(side *sd) {
  lh_free(sd->h.d2);
  lh_free(sd->h.ix);
  lh_free(sd->h.cnt);
  lh_free(sd->h.tau);
  lh_free(sd->h.tauf);
  lh_free(sd->cnt);
  lh_free(sd->call);
  lh_free(sd->tmin);
  lh_free(sd->tmax);
  lh_free(sd->tminf);
  lh_free(sd->tmaxf);
  memset(sd, 0, sizeof *sd);
}

/* The visiting rows' state travels back as k heap entries (absent = (inf, -1)), then nt
 * counts, then the all-threshold count, per row. */
static size_t state_bytes(const knn_run *u) {
  return (u->want ? (size_t)u->k * sizeof(entry) : 0) +
         (u->nt ? (size_t)(u->nt + 1) * sizeof(int64_t) : 0);
}

static void vis_reset(void *user, const ring_block *c) {
  knn_run *u = user;
  side_reset(&u->vis, c->m, u->nt, u->want);
  if (u->nt) {
    u->vis.thr = c->extra;
    side_bounds(&u->vis, c->m, u->nt);
  }
}

static void vis_pack(void *user, int64_t m, void *buf) {
  knn_run *u = user;
  const side *sd = &u->vis;
  char *p = buf;
  const size_t rb = state_bytes(u);
  for (int64_t i = 0; i < m; i++, p += rb) {
    entry *e = (entry *)p;
    if (u->want)
      for (int64_t t = 0; t < u->k; t++) {
        bool has = t < sd->h.cnt[i];
        e[t].key = has ? sd->h.d2[i * u->k + t] : INFINITY;
        e[t].ix = has ? sd->h.ix[i * u->k + t] : -1;
      }
    if (u->nt) {
      int64_t *cn = (int64_t *)(p + (u->want ? (size_t)u->k * sizeof(entry) : 0));
      memcpy(cn, sd->cnt + i * u->nt, (size_t)u->nt * sizeof(int64_t));
      cn[u->nt] = sd->call[i];
    }
  }
}

static void own_merge(void *user, int64_t n, const void *buf) {
  knn_run *u = user;
  side *sd = &u->own;
  const char *p = buf;
  const size_t rb = state_bytes(u);
  for (int64_t i = 0; i < n; i++, p += rb) {
    const entry *e = (const entry *)p;
    if (u->want)
      for (int64_t t = 0; t < u->k; t++)
        if (e[t].ix >= 0) heap_push(&sd->h, i, e[t].key, e[t].ix);
    if (u->nt) {
      const int64_t *cn = (const int64_t *)(p + (u->want ? (size_t)u->k * sizeof(entry) : 0));
      for (int64_t t = 0; t < u->nt; t++) sd->cnt[i * u->nt + t] += cn[t];
      sd->call[i] += cn[u->nt];
    }
  }
}

/* Largest k for which pairs are computed once for both ends: the visiting block's heaps then
 * travel back to their owner, which costs memory and traffic proportional to k. */
#define SYMMETRIC_MAX_K 64

/* The search for X's own rows (Q == NULL) or for query rows Q with global indices qid. */
static lh_status search(const lh_dmat *Q, const int64_t *qid, const lh_dmat *X,
                        const lh_knn_opts *opts, lh_knn_ranks *ranks, lh_knn_result **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int P;
  MPI_Comm_size(comm, &P);
  const int64_t N = lh_dmat_rows(X), n = lh_dmat_local_rows(Q ? Q : X);
  lh_knn_result *res = NULL;
  knn_run u = {0};
  cand *scratch = NULL;
  entry *own_thr = NULL;
  static lh_event ev_all = -2;
  if (ev_all == -2) ev_all = lh_event_get("knn");
  lh_event_begin(ev_all);

  u.want = out != NULL;
  u.k = u.want ? opts->k : 0;
  u.nt = ranks ? ranks->nt : 0;
  u.p = opts->p;
  if (u.want && opts->k < 1)
    local = LH_ERROR(LH_ERR_VALUE, "k must be at least 1, got %lld", (long long)opts->k);
  else if (isnan(opts->eps))
    local = LH_ERROR(LH_ERR_VALUE, "eps must be a number, got %g", opts->eps);
  else if (!(opts->p >= 1.0))
    local = LH_ERROR(LH_ERR_VALUE, "the Minkowski exponent p must be >= 1 (or inf), got %g", opts->p);
  else if (u.nt < 0)
    local = LH_ERROR(LH_ERR_INTERNAL, "negative threshold count");
  LH_TRY(lh_agree(comm, local));
  u.eps = opts->eps;
  /* eps < 0 keeps every neighbour, duplicates included (information imbalance's ranks) */
  u.eps2_sure = opts->eps > 0 ? opts->eps * opts->eps * (1.0 - 1e-9) : -1.0;
  const bool gemm = u.p == 2.0;
  const bool sym = !Q && u.k <= SYMMETRIC_MAX_K;
  const int64_t maxm = N / P + (N % P ? 1 : 0);

  if (u.want) {
    local = lh_alloc(1, sizeof *res, true, "knn result", &res);
    if (local == LH_OK) local = lh_alloc((size_t)(n * u.k), sizeof(double), false, "knn distances", &res->dist);
    if (local == LH_OK) local = lh_alloc((size_t)(n * u.k), sizeof(int64_t), false, "knn indices", &res->index);
    if (local == LH_OK) local = lh_alloc((size_t)u.k, sizeof(cand), false, "sort scratch", &scratch);
  }
  if (local == LH_OK) local = side_alloc(&u.own, n, u.k, u.nt, u.want);
  if (local == LH_OK && sym) local = side_alloc(&u.vis, maxm, u.k, u.nt, u.want);
  if (local == LH_OK) local = lh_alloc(RING_TILE_C, sizeof(int32_t), false, "screen list", &u.pass);
  if (local == LH_OK) local = lh_alloc(RING_TILE_C, 1, false, "screen list", &u.pflag);
  if (local == LH_OK && u.nt) {
    local = lh_alloc((size_t)(n * u.nt), sizeof(entry), false, "thresholds", &own_thr);
    for (int64_t i = 0; local == LH_OK && i < n * u.nt; i++) {
      own_thr[i].key = ranks->key[i];
      own_thr[i].ix = ranks->index[i];
    }
  }
  LH_TRY(lh_agree(comm, local));
  if (u.nt) {
    u.own.thr = own_thr;
    side_bounds(&u.own, n, u.nt);
  }

  ring_ops ops = {.tile = !gemm ? direct_tile : (u.nt ? rank_tile : knn_tile),
                  .extra_bytes = u.nt ? (size_t)u.nt * sizeof(entry) : 0,
                  .own_extra = own_thr,
                  .state_bytes = sym ? state_bytes(&u) : 0,
                  .vis_reset = vis_reset,
                  .vis_pack = vis_pack,
                  .own_merge = own_merge};
  if (Q)
    LH_TRY(ring_run_queries(Q, qid, X, &ops, &u, gemm, u.want ? "knn" : "ranks"));
  else
    LH_TRY(ring_run(X, &ops, &u, gemm, opts->segments, u.want ? "knn" : "ranks"));
  lh_log_debug("knn: %lld exact distance evaluations for %lld rows (k = %lld, %lld thresholds)",
               (long long)u.exact_calls, (long long)n, (long long)u.k, (long long)u.nt);

  if (u.nt)
    for (int64_t i = 0; i < n; i++)
      for (int64_t t = 0; t < u.nt; t++)
        ranks->count[i * u.nt + t] = u.own.cnt[i * u.nt + t] + u.own.call[i];
  if (u.want) { /* heaps -> ascending lists; absent neighbours at the end */
    for (int64_t i = 0; i < n; i++) {
      int64_t c = u.own.h.cnt[i];
      for (int64_t t = 0; t < c; t++) {
        scratch[t].d2 = u.own.h.d2[i * u.k + t];
        scratch[t].ix = u.own.h.ix[i * u.k + t];
      }
      qsort(scratch, (size_t)c, sizeof *scratch, cand_cmp);
      for (int64_t t = 0; t < u.k; t++) {
        res->dist[i * u.k + t] = t < c ? lh_knn_key_distance(scratch[t].d2, u.p) : INFINITY;
        res->index[i * u.k + t] = t < c ? scratch[t].ix : -1;
      }
    }
    res->n = n;
    res->k = u.k;
    res->row0 = Q ? -1 : lh_dmat_row_offset(X);
    *out = res;
    res = NULL;
  }
done:
  lh_knn_result_destroy(&res);
  side_free(&u.own);
  side_free(&u.vis);
  lh_free(u.pass);
  lh_free(u.pflag);
  lh_free(scratch);
  lh_free(own_thr);
  lh_event_end(ev_all);
  return st;
}

lh_status lh_knn_search(const lh_dmat *X, const lh_knn_opts *opts, lh_knn_ranks *ranks,
                        lh_knn_result **out) {
  return search(NULL, NULL, X, opts, ranks, out);
}

lh_status lh_knn_search_queries(const lh_dmat *Q, const int64_t *qid, const lh_dmat *X,
                                const lh_knn_opts *opts, lh_knn_ranks *ranks,
                                lh_knn_result **out) {
  if (opts->segments > 1)
    return lh_agree(lh_dmat_comm(X), LH_ERROR(LH_ERR_INTERNAL, "query searches take no segments"));
  return search(Q, qid, X, opts, ranks, out);
}

lh_status lh_knn_run(const lh_dmat *X, const lh_knn_opts *opts, lh_knn_result **out) {
  return lh_knn_search(X, opts, NULL, out);
}
