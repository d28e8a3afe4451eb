/*
 * kcka.c: kernel CKA (linear or RBF kernels, biased or debiased) over N x N kernels that no
 * rank holds whole (see cka.h).
 *
 * Both modes reduce the kernels to the same statistics, from which the centred alignments
 * follow without forming H K H: with off-diagonal row sums r~_i = sum_{j != i} K_ij (s~ for L),
 * diagonals k_i = K_ii, l_i = L_ii, full row sums r_i = r~_i + k_i, and T = sum_ij K_ij L_ij,
 *   <HKH, HLH>   = T - (2/N) sum_i r_i s_i + (sum r)(sum s) / N^2                (biased)
 *   hsic_u(K, L) = T~ + (sum r~)(sum s~) / ((N-1)(N-2)) - 2/(N-2) sum_i r~_i s~_i  (debiased,
 *                  Song et al. 2012, times the N (N - 3) that cancels in the ratio)
 * where T~ sums over i != j only.
 *
 * Streaming mode runs the ring engine over [X~ | Y~] with each unordered pair once: first the
 * RBF medians by exact selection passes (a sample brackets the target ranks, then counting
 * passes with a histogram narrow the bracket until the values inside it can be collected and
 * selected exactly with the distributed sort), then one pass accumulating T, T~ and the row
 * sums. Held mode builds both kernels as block-cyclic ScaLAPACK matrices (lh_bcmat) from the
 * rows each rank's blocks need, takes the medians by distributed selection over the held
 * entries, and sums the same statistics from the local blocks.
 */
#include <math.h>
#include <string.h>

#include "analysis/ring.h"
#include "core/check.h"
#include "latenthook/bcmat.h"
#include "latenthook/cka.h"
#include "latenthook/comm.h"
#include "latenthook/dsort.h"
#include "latenthook/kmat.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/rng.h"
#include "linalg/scalapack.h"

lh_kcka_opts lh_kcka_defaults(void) {
  lh_kcka_opts o = {.kernel = LH_KERNEL_RBF, .threshold = 1.0, .debiased = false,
                    .eps = 1e-12, .mode = LH_KMAT_AUTO, .held_limit_bytes = INT64_C(512) << 20,
                    .select_sample = INT64_C(1) << 20, .select_cap = INT64_C(1) << 22};
  return o;
}

/* ---- shared: the statistics and the formulas ---------------------------------------------- */

/* Per-row aggregates (summed over the rows of every rank) and pair sums. */
enum { T_KL, T_KK, T_LL,        /* off-diagonal sums over ordered pairs */
       D_KL, D_KK, D_LL,        /* diagonal products */
       B_RS, B_RR, B_SS, B_R, B_S, /* full row sums r, s */
       U_RS, U_RR, U_SS, U_R, U_S, /* off-diagonal row sums r~, s~ */
       NSTAT };

static void add_row(double *st, double rt, double stl, double k, double l) {
  double r = rt + k, s = stl + l;
  st[D_KL] += k * l;
  st[D_KK] += k * k;
  st[D_LL] += l * l;
  st[B_RS] += r * s;
  st[B_RR] += r * r;
  st[B_SS] += s * s;
  st[B_R] += r;
  st[B_S] += s;
  st[U_RS] += rt * stl;
  st[U_RR] += rt * rt;
  st[U_SS] += stl * stl;
  st[U_R] += rt;
  st[U_S] += stl;
}

static double alignment(const double *st, int64_t N, bool debiased, double eps) {
  double n = (double)N, kl, kk, ll;
  if (debiased) {
    double c = 1.0 / ((n - 1) * (n - 2)), d = 2.0 / (n - 2);
    kl = st[T_KL] + st[U_R] * st[U_S] * c - d * st[U_RS];
    kk = st[T_KK] + st[U_R] * st[U_R] * c - d * st[U_RR];
    ll = st[T_LL] + st[U_S] * st[U_S] * c - d * st[U_SS];
  } else {
    kl = st[T_KL] + st[D_KL] - 2.0 / n * st[B_RS] + st[B_R] * st[B_S] / (n * n);
    kk = st[T_KK] + st[D_KK] - 2.0 / n * st[B_RR] + st[B_R] * st[B_R] / (n * n);
    ll = st[T_LL] + st[D_LL] - 2.0 / n * st[B_SS] + st[B_S] * st[B_S] / (n * n);
  }
  double den = sqrt(kk * ll);
  return (!isfinite(den) || den <= eps) ? NAN : kl / den;
}

/* The pair ranks (0-based, among the N (N - 1) / 2 unordered pairs sorted) holding the
 * median of all N^2 entries of S (N diagonal zeros, each pair twice). */
static void median_ranks(int64_t N, int64_t *qa, int64_t *qb) {
  int64_t n2 = N * N, p1 = (n2 - 1) / 2, p2 = n2 / 2; /* p1 == p2 for odd N^2 */
  *qa = p1 < N ? -1 : (p1 - N) / 2;                  /* -1: a diagonal zero */
  *qb = p2 < N ? -1 : (p2 - N) / 2;
}

/* ---- streaming mode ------------------------------------------------------------------------ */

#define NBINS 4096

typedef enum { PASS_SAMPLE, PASS_BRACKET, PASS_KERNEL } pass_kind;

/* Selection of the pair values at ranks qa <= qb in one space. */
typedef struct sel {
  int64_t qa, qb;
  bool done, sampled;
  double va, vb;
  double lo, hi; /* bracket, both inclusive */
  int64_t below, inside;
  int64_t hist[NBINS];
  double vmin, vmax;
  double *coll;
  int64_t ncoll;
  int overflow;
  int64_t cap;   /* values collected per rank and pass */
} sel;

typedef struct kpass {
  pass_kind kind;
  int64_t N, dx, dy;
  uint64_t sample_cut;  /* PASS_SAMPLE: a pair is sampled when its hash is below this */
  sel sx, sy;           /* selections in X and Y */
  lh_kernel_kind kernel;
  double gx, gy;        /* RBF: K = exp(-S * g) */
  double st[NSTAT];     /* PASS_KERNEL */
  double *own_rs, *vis_rs; /* (r~, s~) per row: own rows; the visiting block's rows */
  int nomem;
} kpass;

static void sel_value(kpass *u, sel *s, double v, int64_t gi, int64_t gj) {
  if (s->done) return;
  if (u->kind == PASS_SAMPLE) {
    int64_t a = gi < gj ? gi : gj, b = gi < gj ? gj : gi;
    if (lh_rng_u64(0x5eed, (uint64_t)(a * u->N + b)) >= u->sample_cut) return;
  } else {
    if (v < s->lo) {
      s->below++;
      return;
    }
    if (v > s->hi) return;
    s->inside++;
    if (v < s->vmin) s->vmin = v;
    if (v > s->vmax) s->vmax = v;
    if (isfinite(s->hi) && s->hi > s->lo) {
      int64_t b = (int64_t)((v - s->lo) / (s->hi - s->lo) * NBINS);
      s->hist[b < 0 ? 0 : (b >= NBINS ? NBINS - 1 : b)]++;
    }
  }
  if (s->ncoll < s->cap)
    s->coll[s->ncoll++] = v;
  else
    s->overflow = 1;
}

static double kernel_value(const kpass *u, const double *a, const double *b, int64_t d, double g,
                           double s) {
  if (u->kernel == LH_KERNEL_RBF) return exp(-s * g);
  double acc = 0; /* linear: a dot product of centred rows */
  for (int64_t j = 0; j < d; j++) acc += a[j] * b[j];
  return acc;
}

static void kcka_tile(ring_ctx *rc, void *user, const ring_block *q, int64_t i0, int64_t tq,
                      const ring_block *c, int64_t j0, int64_t tc, bool both, bool tri) {
  kpass *u = user;
  const int64_t Dz = rc->D, dx = u->dx, dy = u->dy;
  double *crs = tri ? u->own_rs : (both ? u->vis_rs : NULL);
  for (int64_t ii = 0; ii < tq; ii++) {
    int64_t qi = i0 + ii, gi = ring_gid(q, qi), jlo, jhi;
    ring_row_range(rc, q, qi, c, j0, tc, tri, &jlo, &jhi);
    const double *zi = (const double *)q->raw + qi * Dz;
    for (int64_t jj = jlo; jj < jhi; jj++) {
      int64_t gj = c->row0 + jj;
      if (gj == gi) continue;
      const double *zj = (const double *)c->raw + jj * Dz;
      double sxv = u->kernel == LH_KERNEL_RBF || u->kind != PASS_KERNEL
                       ? ring_exact_d2(zi, zj, dx, LH_F64) : 0.0;
      double syv = u->kernel == LH_KERNEL_RBF || u->kind != PASS_KERNEL
                       ? ring_exact_d2(zi + dx, zj + dx, dy, LH_F64) : 0.0;
      if (u->kind != PASS_KERNEL) {
        sel_value(u, &u->sx, sxv, gi, gj);
        sel_value(u, &u->sy, syv, gi, gj);
        continue;
      }
      double k = kernel_value(u, zi, zj, dx, u->gx, sxv);
      double l = kernel_value(u, zi + dx, zj + dx, dy, u->gy, syv);
      double w = crs ? 2.0 : 1.0; /* a pair seen once stands for both (i, j) and (j, i) */
      u->st[T_KL] += w * k * l;
      u->st[T_KK] += w * k * k;
      u->st[T_LL] += w * l * l;
      u->own_rs[2 * qi] += k;
      u->own_rs[2 * qi + 1] += l;
      if (crs) {
        crs[2 * jj] += k;
        crs[2 * jj + 1] += l;
      }
    }
  }
}

static void kcka_vis_reset(void *user, const ring_block *c) {
  kpass *u = user;
  memset(u->vis_rs, 0, (size_t)c->m * 2 * sizeof(double));
}
static void kcka_vis_pack(void *user, int64_t m, void *buf) {
  memcpy(buf, ((kpass *)user)->vis_rs, (size_t)m * 2 * sizeof(double));
}
static void kcka_own_merge(void *user, int64_t n, const void *buf) {
  kpass *u = user;
  const double *b = buf;
  for (int64_t i = 0; i < 2 * n; i++) u->own_rs[i] += b[i];
}

static void sel_reset_pass(sel *s) {
  s->below = s->inside = s->ncoll = 0;
  s->overflow = 0;
  s->vmin = INFINITY;
  s->vmax = -INFINITY;
  memset(s->hist, 0, sizeof s->hist);
}

/* After a pass: decide, per space, whether the targets are found or how to narrow. */
static lh_status sel_after(MPI_Comm comm, int64_t M, sel *s, bool was_sample) {
  lh_status st = LH_OK;
  if (s->done) return LH_OK;
  int64_t c[3] = {s->below, s->inside, s->overflow}, ncoll = s->ncoll;
  MPI_Allreduce(MPI_IN_PLACE, c, 3, MPI_INT64_T, MPI_SUM, comm);
  int64_t tot = ncoll;
  MPI_Allreduce(MPI_IN_PLACE, &tot, 1, MPI_INT64_T, MPI_SUM, comm);
  if (was_sample) {
    if (tot == M) { /* every pair was sampled: select exactly */
      LH_TRY(lh_dsort_select(comm, ncoll, s->coll, s->qa, &s->va));
      LH_TRY(lh_dsort_select(comm, ncoll, s->coll, s->qb, &s->vb));
      s->done = true;
      return LH_OK;
    }
    /* bracket the targets generously in the sample (about 8 standard deviations) */
    double m = 8.0 * sqrt((double)tot) + 8.0;
    int64_t ia = (int64_t)floor((double)s->qa / (double)M * (double)tot - m);
    int64_t ib = (int64_t)ceil((double)s->qb / (double)M * (double)tot + m);
    s->lo = 0.0;
    s->hi = INFINITY;
    if (tot > 0 && ia > 0) LH_TRY(lh_dsort_select(comm, ncoll, s->coll, ia, &s->lo));
    if (tot > 0 && ib < tot - 1) LH_TRY(lh_dsort_select(comm, ncoll, s->coll, ib, &s->hi));
    s->sampled = true;
    return LH_OK;
  }
  int64_t below = c[0], inside = c[1];
  bool overflow = c[2] > 0;
  double vmin = s->vmin, vmax = s->vmax;
  MPI_Allreduce(MPI_IN_PLACE, &vmin, 1, MPI_DOUBLE, MPI_MIN, comm);
  MPI_Allreduce(MPI_IN_PLACE, &vmax, 1, MPI_DOUBLE, MPI_MAX, comm);
  if (s->qa < below) { /* bracket too high */
    s->hi = s->lo;
    s->lo = 0.0;
    return LH_OK;
  }
  if (s->qb >= below + inside) { /* bracket too low */
    s->lo = nextafter(s->hi, INFINITY);
    s->hi = INFINITY;
    return LH_OK;
  }
  if (!overflow) { /* everything inside was collected: select exactly */
    LH_TRY(lh_dsort_select(comm, ncoll, s->coll, s->qa - below, &s->va));
    LH_TRY(lh_dsort_select(comm, ncoll, s->coll, s->qb - below, &s->vb));
    s->done = true;
    return LH_OK;
  }
  if (vmin == vmax) { /* every value inside is the same */
    s->va = s->vb = vmin;
    s->done = true;
    return LH_OK;
  }
  if (!isfinite(s->hi) || !(s->hi > s->lo)) { /* no histogram over an open bracket: close it */
    s->lo = vmin;
    s->hi = vmax;
    return LH_OK;
  }
  int64_t h[NBINS];
  memcpy(h, s->hist, sizeof h);
  MPI_Allreduce(MPI_IN_PLACE, h, NBINS, MPI_INT64_T, MPI_SUM, comm);
  int64_t cum = below, ba = -1, bb = -1;
  for (int b = 0; b < NBINS; b++) {
    if (ba < 0 && s->qa < cum + h[b]) ba = b;
    if (bb < 0 && s->qb < cum + h[b]) bb = b;
    cum += h[b];
  }
  if (ba < 0) ba = NBINS - 1;
  if (bb < 0) bb = NBINS - 1;
  double w = (s->hi - s->lo) / NBINS, lo = s->lo;
  /* one bin of margin each side: the recount in the next pass is exact, the binning not */
  s->lo = ba > 0 ? lo + (double)(ba - 1) * w : lo;
  s->hi = bb < NBINS - 1 ? lo + (double)(bb + 2) * w : s->hi;
done:
  return st;
}

static lh_status stream_cka(const lh_dmat *Z, int64_t dx, int64_t dy, const lh_kcka_opts *o,
                            double *cka, double *mx, double *my) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(Z);
  int P;
  MPI_Comm_size(comm, &P);
  const int64_t N = lh_dmat_rows(Z), n = lh_dmat_local_rows(Z), M = N * (N - 1) / 2;
  const int64_t maxm = N / P + (N % P ? 1 : 0);
  kpass u = {.N = N, .dx = dx, .dy = dy, .kernel = o->kernel};
  ring_ops ops = {.tile = kcka_tile, .state_bytes = 2 * sizeof(double),
                  .vis_reset = kcka_vis_reset, .vis_pack = kcka_vis_pack,
                  .own_merge = kcka_own_merge};
  local = lh_alloc((size_t)(2 * n), sizeof(double), true, "row sums", &u.own_rs);
  if (local == LH_OK) local = lh_alloc((size_t)(2 * maxm), sizeof(double), true, "row sums", &u.vis_rs);
  u.sx.cap = u.sy.cap = LH_MAX(o->select_cap, 16);
  if (local == LH_OK && o->kernel == LH_KERNEL_RBF) {
    local = lh_alloc((size_t)u.sx.cap, sizeof(double), false, "selection", &u.sx.coll);
    if (local == LH_OK) local = lh_alloc((size_t)u.sy.cap, sizeof(double), false, "selection", &u.sy.coll);
  }
  LH_TRY(lh_agree(comm, local));
  *mx = *my = NAN;
  if (o->kernel == LH_KERNEL_RBF) {
    int64_t qa, qb;
    median_ranks(N, &qa, &qb);
    sel *ss[2] = {&u.sx, &u.sy};
    for (int t = 0; t < 2; t++) {
      ss[t]->qa = qa < 0 ? 0 : qa;
      ss[t]->qb = qb < 0 ? 0 : qb;
      ss[t]->done = M == 0;
    }
    double rate = LH_MIN(1.0, (double)LH_MAX(o->select_sample, 16) / (double)LH_MAX(M, 1));
    u.sample_cut = rate >= 1.0 ? UINT64_MAX : (uint64_t)(rate * 18446744073709551616.0);
    int passes = 0;
    for (int iter = 0; iter < 64 && !(u.sx.done && u.sy.done); iter++, passes++) {
      u.kind = iter == 0 ? PASS_SAMPLE : PASS_BRACKET;
      sel_reset_pass(&u.sx);
      sel_reset_pass(&u.sy);
      LH_TRY(ring_run(Z, &ops, &u, false, 1, iter == 0 ? "rbf median sample" : "rbf median"));
      LH_TRY(sel_after(comm, M, &u.sx, iter == 0));
      LH_TRY(sel_after(comm, M, &u.sy, iter == 0));
    }
    if (!(u.sx.done && u.sy.done))
      LH_FAIL(LH_ERR_INTERNAL, "RBF median selection did not converge");
    lh_log_debug("rbf medians selected in %d passes", passes);
    /* the median of all N^2 entries: diagonal zeros where the rank falls among them */
    *mx = 0.5 * ((qa < 0 ? 0.0 : u.sx.va) + (qb < 0 ? 0.0 : u.sx.vb));
    *my = 0.5 * ((qa < 0 ? 0.0 : u.sy.va) + (qb < 0 ? 0.0 : u.sy.vb));
    if (!(*mx > 0) || !(*my > 0)) { /* a zero median: the bandwidth is undefined */
      *cka = NAN;
      goto done;
    }
    u.gx = 1.0 / (2.0 * o->threshold * o->threshold * *mx);
    u.gy = 1.0 / (2.0 * o->threshold * o->threshold * *my);
  }
  u.kind = PASS_KERNEL;
  memset(u.own_rs, 0, (size_t)(2 * n) * sizeof(double));
  LH_TRY(ring_run(Z, &ops, &u, false, 1, "kernel cka"));
  /* the diagonal and the per-row aggregates of this rank's rows */
  const double *z = lh_dmat_local_const(Z);
  const int64_t Dz = dx + dy;
  for (int64_t i = 0; i < n; i++) {
    double k = 1.0, l = 1.0;
    if (o->kernel == LH_KERNEL_LINEAR) {
      k = kernel_value(&u, z + i * Dz, z + i * Dz, dx, 0, 0);
      l = kernel_value(&u, z + i * Dz + dx, z + i * Dz + dx, dy, 0, 0);
    }
    add_row(u.st, u.own_rs[2 * i], u.own_rs[2 * i + 1], k, l);
  }
  MPI_Allreduce(MPI_IN_PLACE, u.st, NSTAT, MPI_DOUBLE, MPI_SUM, comm);
  *cka = alignment(u.st, N, o->debiased, o->eps);
done:
  lh_free(u.own_rs);
  lh_free(u.vis_rs);
  lh_free(u.sx.coll);
  lh_free(u.sy.coll);
  return st;
}

/* ---- held mode --------------------------------------------------------------------------- */

static lh_status held_cka(const lh_dmat *X, const lh_dmat *Y, const lh_kcka_opts *o, double *cka,
                          double *mx, double *my) {
  lh_status st = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t N = lh_dmat_rows(X);
  lh_blacs *g = NULL;
  lh_kmat *KX = NULL, *KY = NULL;
  double *rs = NULL;
  LH_TRY(lh_blacs_create(comm, 0, 0, &g));
  LH_TRY(lh_kmat_create(X, o->kernel, o->threshold, g, &KX));
  LH_TRY(lh_kmat_create(Y, o->kernel, o->threshold, g, &KY));
  *mx = lh_kmat_median(KX);
  *my = lh_kmat_median(KY);
  if (o->kernel == LH_KERNEL_RBF && (!(*mx > 0) || !(*my > 0))) { /* undefined bandwidth */
    *cka = NAN;
    goto done;
  }
  lh_bcmat *Kx = lh_kmat_bcmat(KX), *Ky = lh_kmat_bcmat(KY);
  const int lr = lh_bcmat_local_rows(Kx), lc = lh_bcmat_local_cols(Kx);
  const int lld = lh_bcmat_desc(Kx)[LH_DESC_LLD];
  const double *kx = lh_bcmat_local(Kx), *ky = lh_bcmat_local(Ky);
  /* pair sums from the local blocks; off-diagonal row sums and diagonals as N-vectors */
  double s[NSTAT] = {0};
  int n32;
  LH_TRY(lh_int_cast(4 * N, "kernel rows", &n32));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(4 * N), sizeof *rs, true, "row sums", &rs)));
  for (int lj = 0; lj < lc; lj++)
    for (int li = 0; li < lr; li++) {
      int64_t gi, gj;
      lh_bcmat_global_index(Kx, li, lj, &gi, &gj);
      double k = kx[li + (size_t)lj * lld], l = ky[li + (size_t)lj * lld];
      if (gi == gj) {
        rs[2 * N + 2 * gi] = k;
        rs[2 * N + 2 * gi + 1] = l;
        continue;
      }
      s[T_KL] += k * l;
      s[T_KK] += k * k;
      s[T_LL] += l * l;
      rs[2 * gi] += k;
      rs[2 * gi + 1] += l;
    }
  MPI_Allreduce(MPI_IN_PLACE, rs, n32, MPI_DOUBLE, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, s, 3, MPI_DOUBLE, MPI_SUM, comm);
  for (int64_t i = 0; i < N; i++)
    add_row(s, rs[2 * i], rs[2 * i + 1], rs[2 * N + 2 * i], rs[2 * N + 2 * i + 1]);
  *cka = alignment(s, N, o->debiased, o->eps);
done:
  lh_free(rs);
  lh_kmat_destroy(&KX);
  lh_kmat_destroy(&KY);
  lh_blacs_destroy(&g);
  return st;
}

/* ---- entry point ------------------------------------------------------------------------- */

lh_status lh_cka_kernel(const lh_dmat *X, const lh_dmat *Y, const lh_kcka_opts *opts,
                        double *cka, double *median_x, double *median_y) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int P;
  MPI_Comm_size(comm, &P);
  const int64_t N = lh_dmat_rows(X), dx = lh_dmat_cols(X), dy = lh_dmat_cols(Y);
  double *mean = NULL, mx = NAN, my = NAN;
  lh_dmat *Z = NULL;
  if (lh_dmat_rows(Y) != N)
    local = LH_ERROR(LH_ERR_VALUE, "Expected matching sample counts, got %lld and %lld",
                     (long long)N, (long long)lh_dmat_rows(Y));
  else if (opts->debiased && N < 4)
    local = LH_ERROR(LH_ERR_VALUE, "debiased CKA needs at least 4 samples, got %lld", (long long)N);
  else if (!(opts->threshold > 0))
    local = LH_ERROR(LH_ERR_VALUE, "the RBF threshold must be > 0, got %g", opts->threshold);
  LH_TRY(lh_agree(comm, local));
  /* Z = [X~ | Y~], float64, columns centred (the linear kernel needs it; distances do not care) */
  LH_TRY(lh_dmat_create(comm, LH_F64, N, dx + dy, &Z));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(dx + dy), sizeof *mean, false, "column means", &mean)));
  const lh_dmat *src[2] = {X, Y};
  int64_t off = 0, bad = 0;
  for (int t = 0; t < 2; t++) {
    const lh_dmat *S = src[t];
    int64_t d = lh_dmat_cols(S);
    LH_TRY(lh_dmat_col_reduce(S, LH_COL_MEAN, mean));
    double *z = lh_dmat_local(Z);
    for (int64_t i = 0; i < lh_dmat_local_rows(S); i++)
      for (int64_t j = 0; j < d; j++) {
        double v = lh_dmat_dtype(S) == LH_F64 ? ((const double *)lh_dmat_local_const(S))[i * d + j]
                                              : (double)((const float *)lh_dmat_local_const(S))[i * d + j];
        bad += !isfinite(v);
        z[i * (dx + dy) + off + j] = v - mean[j];
      }
    off += d;
  }
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT64_T, MPI_SUM, comm);
  if (bad || N < 2) { /* non-finite input, or nothing to centre: undefined */
    *cka = NAN;
  } else {
    bool held = opts->mode == LH_KMAT_HELD ||
                (opts->mode == LH_KMAT_AUTO &&
                 2.0 * (double)N * (double)N * 8.0 / P <= (double)opts->held_limit_bytes);
    if (held)
      LH_TRY(held_cka(X, Y, opts, cka, &mx, &my));
    else
      LH_TRY(stream_cka(Z, dx, dy, opts, cka, &mx, &my));
  }
  if (median_x) *median_x = mx;
  if (median_y) *median_y = my;
done:
  lh_free(mean);
  lh_dmat_destroy(&Z);
  return st;
}
