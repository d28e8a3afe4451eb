/*
 * bench_knn.c: throughput of the exact distributed kNN (knn.h) and of TwoNN (twonn.h) on
 * synthetic float32 clouds, for issue 3. A benchmark, not a test: it never asserts times.
 *
 * For each (N, D) the program generates the cloud in memory as a function of the global row
 * index (so every rank count sees the same matrix, and tests/bench/faiss_twonn.py rebuilds it
 * bit for bit in NumPy), warms up, then times lh_twonn_run and lh_knn_run (k = 2) between
 * barriers, reporting the maximum over ranks (ParRes Kernels discipline). Results are printed
 * only after they validated: the dimension must be finite, every row must have two valid
 * neighbours, a few rows are checked against brute force over all N rows, and checksums of
 * the neighbour table are printed (%.17g) so that runs on different rank counts can be
 * compared bit for bit.
 *
 * The distance phase is judged against the machine: the GEMM flops the kernel performs
 * (derived from its tiling, gemm_flops() below) over the time of its ring.gemm + ring.screen
 * events, next to the SGEMM rate measured in the same process on the tile shape the kernel
 * uses (TILE_Q x TILE_C x D) and on a large square, and the OpenBLAS core in use (ENV_NOTES:
 * OpenBLAS 0.3.21 falls back to its oldest kernels on CPUs it does not know).
 *
 * Data (--intrinsic K, default 16): x_i = A z_i with z_i in R^K and A a fixed D x K matrix, a
 * K-dimensional linear cloud like a network's activations; K = 0 gives i.i.d. entries. Entries
 * of z and A are Irwin-Hall(4) variates, standardised: ((u1 + u2 + u3 + u4) - 2) * sqrt(3)
 * with u = (64 random bits >> 40) * 2^-24. Every step is an exact or a correctly rounded
 * float64 operation in a fixed order (no libm, no FMA: built with -ffp-contract=off), which
 * is what lets NumPy reproduce it exactly.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/knn.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/rng.h"
#include "latenthook/timer.h"
#include "latenthook/twonn.h"
#include "latenthook/version.h"
#include "latenthook/xsum.h"

/* The kernel's GEMM tile (TILE_Q, TILE_C in src/analysis/knn.c); gemm_flops() and the SGEMM
 * limit follow them, so keep them equal. */
#define KNN_TILE_Q 256
#define KNN_TILE_C 2048
#define SQUARE 2048      /* the reference square SGEMM: SQUARE^3 */
#define CALIB_SECONDS 0.5
#define MAX_SHAPES 16
#define SPOT_ROWS 8      /* rows checked against brute force */

typedef struct args {
  int64_t N[MAX_SHAPES], D[MAX_SHAPES];
  int nN, nD;
  int64_t K;     /* intrinsic dimension, 0 = i.i.d. entries */
  uint64_t seed;
  bool warmup_full;
} args;

/* ---- data ------------------------------------------------------------------------------- */

static double unif24(uint64_t seed, uint64_t c) {
  return (double)(lh_rng_u64(seed, c) >> 40) * 0x1p-24;
}

/* Irwin-Hall(4), standardised: mean 0, variance 1. The sum of four 24-bit fractions is exact. */
static double irwin4(uint64_t seed, uint64_t c) {
  double s = unif24(seed, 4 * c) + unif24(seed, 4 * c + 1) + unif24(seed, 4 * c + 2) +
             unif24(seed, 4 * c + 3);
  return (s - 2.0) * 1.7320508075688772;
}

/* The mixing matrix, D x K row-major: A[j][t] = irwin4(seed + 1, j K + t). */
static void make_mixing(double *A, int64_t D, int64_t K, uint64_t seed) {
  for (int64_t j = 0; j < D; j++)
    for (int64_t t = 0; t < K; t++) A[j * K + t] = irwin4(seed + 1, (uint64_t)(j * K + t));
}

/* Global rows row0 .. row0 + m - 1 into x (m x D). z is scratch of K doubles. */
static void make_rows(float *x, int64_t row0, int64_t m, int64_t D, int64_t K, uint64_t seed,
                      const double *A, double *z) {
  for (int64_t i = 0; i < m; i++) {
    uint64_t g = (uint64_t)(row0 + i);
    if (K == 0) {
      for (int64_t j = 0; j < D; j++) x[i * D + j] = (float)irwin4(seed, g * (uint64_t)D + (uint64_t)j);
      continue;
    }
    for (int64_t t = 0; t < K; t++) z[t] = irwin4(seed, g * (uint64_t)K + (uint64_t)t);
    for (int64_t j = 0; j < D; j++) {
      double acc = 0.0;
      for (int64_t t = 0; t < K; t++) acc += A[j * K + t] * z[t];
      x[i * D + j] = (float)acc;
    }
  }
}

static lh_status make_cloud(MPI_Comm comm, int64_t N, int64_t D, const args *a, const double *A,
                            double *z, lh_dmat **out) {
  lh_status st = LH_OK;
  lh_dmat *X = NULL;
  LH_TRY(lh_dmat_create(comm, LH_F32, N, D, &X));
  make_rows(lh_dmat_local(X), lh_dmat_row_offset(X), lh_dmat_local_rows(X), D, a->K, a->seed,
            A, z);
  *out = X;
  X = NULL;
done:
  lh_dmat_destroy(&X);
  return st;
}

/* A fingerprint of the whole matrix, the same for any rank count and in faiss_twonn.py:
 * sum over elements of bits(x) * (2 (i D + j) + 1) mod 2^64. Collective. */
static uint64_t data_hash(MPI_Comm comm, const lh_dmat *X) {
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X), row0 = lh_dmat_row_offset(X);
  const float *x = lh_dmat_local_const(X);
  uint64_t h = 0;
  for (int64_t e = 0; e < n * D; e++) {
    uint32_t b;
    memcpy(&b, &x[e], sizeof b);
    h += (uint64_t)b * (2 * (uint64_t)(row0 * D + e) + 1);
  }
  MPI_Allreduce(MPI_IN_PLACE, &h, 1, MPI_UINT64_T, MPI_SUM, comm);
  return h;
}

/* ---- the kernel's flop count ------------------------------------------------------------ */

/* Flops of the SGEMM calls lh_knn_run makes for the whole job, for k <= 64 (pairs computed
 * once for both ends) and no segments, following src/analysis/knn.c: each rank takes its own
 * block as a triangle of tiles (query tile [i0, i0 + tq) against candidates (i0, n), so the
 * diagonal tiles are computed in full), then the blocks r + s for 2 s < P in full and, for
 * even P at 2 s = P, half of the pair of blocks each. Summed over ranks this is
 * N^2 D + O(N D TILE_Q): each pair once, 2 D flops per pair. */
static double gemm_flops(int64_t N, int P, int64_t D) {
  double f = 0.0;
  for (int r = 0; r < P; r++) {
    int64_t n = lh_part_count(N, P, r);
    for (int64_t i0 = 0; i0 < n; i0 += KNN_TILE_Q) {
      int64_t tq = n - i0 < KNN_TILE_Q ? n - i0 : KNN_TILE_Q, cols = n - (i0 + 1);
      if (cols > 0) f += 2.0 * (double)tq * (double)cols * (double)D;
    }
    for (int s = 1; 2 * s <= P; s++) {
      int o = (r + s) % P;
      int64_t m = lh_part_count(N, P, o);
      if (2 * s < P)
        f += 2.0 * (double)n * (double)m * (double)D;
      else if (r < o)
        f += 2.0 * (double)n * (double)(m / 2) * (double)D;
      else
        f += 2.0 * (double)(n - n / 2) * (double)m * (double)D;
    }
  }
  return f;
}

/* ---- SGEMM limit ------------------------------------------------------------------------ */

/* Rate of the job (all ranks at once, each with its own operands) for row-major
 * C (M x Nc) = A (M x Kd) B (Nc x Kd)^T, the call knn.c makes. Every rank runs the same
 * number of calls, chosen so the timed loop lasts about CALIB_SECONDS; the time is the max
 * over ranks. Collective. Returns GFLOP/s, or NaN if the buffers could not be allocated. */
static double sgemm_rate(MPI_Comm comm, int64_t M, int64_t Nc, int64_t Kd) {
  int P;
  MPI_Comm_size(comm, &P);
  float *a = NULL, *b = NULL, *c = NULL;
  lh_status local = lh_alloc((size_t)(M * Kd), sizeof(float), false, "sgemm A", &a);
  if (local == LH_OK) local = lh_alloc((size_t)(Nc * Kd), sizeof(float), false, "sgemm B", &b);
  if (local == LH_OK) local = lh_alloc((size_t)(M * Nc), sizeof(float), false, "sgemm C", &c);
  double rate = NAN;
  if (lh_agree(comm, local) != LH_OK) {
    lh_error_clear();
    goto done;
  }
  for (int64_t i = 0; i < M * Kd; i++) a[i] = (float)irwin4(7, (uint64_t)i);
  for (int64_t i = 0; i < Nc * Kd; i++) b[i] = (float)irwin4(8, (uint64_t)i);
  double one = 0.0;
  for (int pass = 0; pass < 2; pass++) { /* first call warms up, second is timed */
    double t = MPI_Wtime();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Nc, (int)Kd, 1.0f, a,
                (int)Kd, b, (int)Kd, 0.0f, c, (int)Nc);
    one = MPI_Wtime() - t;
  }
  MPI_Allreduce(MPI_IN_PLACE, &one, 1, MPI_DOUBLE, MPI_MAX, comm);
  int reps = (int)ceil(CALIB_SECONDS / (one > 1e-9 ? one : 1e-9));
  if (reps < 1) reps = 1;
  MPI_Barrier(comm);
  double t0 = MPI_Wtime();
  for (int k = 0; k < reps; k++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)Nc, (int)Kd, 1.0f, a,
                (int)Kd, b, (int)Kd, 0.0f, c, (int)Nc);
  double t = MPI_Wtime() - t0;
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
  rate = 2.0 * (double)M * (double)Nc * (double)Kd * reps * P / t * 1e-9;
done:
  lh_free(a);
  lh_free(b);
  lh_free(c);
  return rate;
}

/* ---- timing ----------------------------------------------------------------------------- */

enum { EV_ALL, EV_GEMM, EV_SCREEN, EV_PREP, EV_WAIT, NEV };
static const char *EV_NAMES[NEV] = {"knn", "ring.gemm", "ring.screen", "ring.prepare",
                                    "ring.wait"};

/* One timed call: its wall time and the knn events it accumulated, max over ranks, and the
 * max over ranks of this rank's gemm + screen and of what is left of its wall time. */
typedef struct timing {
  double wall, ev[NEV], gemm_screen, other;
} timing;

static void events_now(double *v) {
  for (int e = 0; e < NEV; e++) v[e] = lh_event_seconds(lh_event_get(EV_NAMES[e]));
}

static void timing_finish(MPI_Comm comm, double wall, const double *ev0, timing *t) {
  double v[NEV + 3], ev1[NEV];
  events_now(ev1);
  v[0] = wall;
  for (int e = 0; e < NEV; e++) v[1 + e] = ev1[e] - ev0[e];
  v[NEV + 1] = v[1 + EV_GEMM] + v[1 + EV_SCREEN];
  v[NEV + 2] = wall - v[NEV + 1];
  MPI_Allreduce(MPI_IN_PLACE, v, NEV + 3, MPI_DOUBLE, MPI_MAX, comm);
  t->wall = v[0];
  for (int e = 0; e < NEV; e++) t->ev[e] = v[1 + e];
  t->gemm_screen = v[NEV + 1];
  t->other = v[NEV + 2];
}

/* ---- validation ------------------------------------------------------------------------- */

typedef struct check {
  bool ok;
  char why[200];
  double dist_sum;   /* exact sum of all reported distances */
  int64_t index_sum; /* sum of all reported indices */
} check;

static void fail(check *c, const char *why) {
  if (c->ok) snprintf(c->why, sizeof c->why, "%s", why);
  c->ok = false;
}

/* Every row has two neighbours, in order, not itself; a few rows equal brute force over all
 * N rows; checksums for comparing rank counts. Collective. */
static lh_status validate_knn(MPI_Comm comm, const lh_dmat *X, const lh_knn_result *nn,
                              const args *a, const double *A, double *z, check *c) {
  lh_status st = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  const int64_t N = lh_dmat_rows(X), D = lh_dmat_cols(X), n = lh_dmat_local_rows(X);
  const int64_t row0 = lh_dmat_row_offset(X);
  const float *x = lh_dmat_local_const(X);
  float *q = NULL;
  double *all = NULL;
  lh_xsum acc;
  lh_xsum_init(&acc);
  int64_t isum = 0;
  bool ok = nn->n == n && nn->k == 2 && nn->row0 == row0;
  for (int64_t i = 0; ok && i < n; i++) {
    const double *d = nn->dist + 2 * i;
    const int64_t *ix = nn->index + 2 * i;
    if (!(isfinite(d[0]) && isfinite(d[1]) && d[0] > 1e-5 && d[0] <= d[1])) ok = false;
    if (ix[0] < 0 || ix[0] >= N || ix[1] < 0 || ix[1] >= N || ix[0] == ix[1] ||
        ix[0] == row0 + i || ix[1] == row0 + i)
      ok = false;
    lh_xsum_add(&acc, d[0]);
    lh_xsum_add(&acc, d[1]);
    isum += ix[0] + ix[1];
  }
  int okall = ok;
  MPI_Allreduce(MPI_IN_PLACE, &okall, 1, MPI_INT, MPI_MIN, comm);
  if (!okall) fail(c, "a row lacks two valid, ordered neighbours");
  LH_TRY(lh_xsum_allreduce(&acc, 1, comm));
  c->dist_sum = lh_xsum_round(&acc);
  MPI_Allreduce(MPI_IN_PLACE, &isum, 1, MPI_INT64_T, MPI_SUM, comm);
  c->index_sum = isum;

  /* Brute force for SPOT_ROWS rows: every rank regenerates the query row, ranks its own rows
   * by float64 squared distance, and the per-rank top two are merged everywhere. */
  LH_TRY(lh_agree(comm, lh_alloc((size_t)D, sizeof(float), false, "query row", &q)));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(4 * P), sizeof(double), false, "candidates", &all)));
  int bad = 0;
  for (int s = 0; s < SPOT_ROWS; s++) {
    int64_t g = (int64_t)(lh_rng_u64(a->seed + 2, (uint64_t)s) % (uint64_t)N);
    make_rows(q, g, 1, D, a->K, a->seed, A, z);
    double best[4] = {INFINITY, -1, INFINITY, -1}; /* (d2, index) x 2 */
    for (int64_t i = 0; i < n; i++) {
      if (row0 + i == g) continue;
      double d2 = 0.0;
      for (int64_t j = 0; j < D; j++) {
        double t = (double)x[i * D + j] - (double)q[j];
        d2 += t * t;
      }
      if (!(sqrt(d2) > 1e-5)) continue;
      double gi = (double)(row0 + i);
      if (d2 < best[0]) {
        best[2] = best[0];
        best[3] = best[1];
        best[0] = d2;
        best[1] = gi;
      } else if (d2 < best[2]) {
        best[2] = d2;
        best[3] = gi;
      }
    }
    MPI_Allgather(best, 4, MPI_DOUBLE, all, 4, MPI_DOUBLE, comm);
    double b0 = INFINITY, b1 = INFINITY, i0 = -1, i1 = -1; /* merge (ranks in row order) */
    for (int t = 0; t < 2 * P; t++) {
      double d2 = all[2 * t], gi = all[2 * t + 1];
      if (d2 < b0) {
        b1 = b0;
        i1 = i0;
        b0 = d2;
        i0 = gi;
      } else if (d2 < b1) {
        b1 = d2;
        i1 = gi;
      }
    }
    if (g >= row0 && g < row0 + n) {
      const double *d = nn->dist + 2 * (g - row0);
      const int64_t *ix = nn->index + 2 * (g - row0);
      if ((double)ix[0] != i0 || (double)ix[1] != i1 ||
          fabs(d[0] - sqrt(b0)) > 1e-12 * sqrt(b0) || fabs(d[1] - sqrt(b1)) > 1e-12 * sqrt(b1))
        bad = 1;
    }
  }
  MPI_Allreduce(MPI_IN_PLACE, &bad, 1, MPI_INT, MPI_MAX, comm);
  if (bad) fail(c, "a spot-checked row differs from brute force");
done:
  lh_free(q);
  lh_free(all);
  return st;
}

/* ---- one configuration ------------------------------------------------------------------ */

static lh_status run_one(MPI_Comm comm, int64_t N, int64_t D, const args *a, int *invalid) {
  lh_status st = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  const int64_t K = a->K;
  double *A = NULL, *z = NULL, *mean = NULL;
  lh_dmat *X = NULL, *W = NULL;
  lh_twonn_result *tw = NULL;
  lh_knn_result *nn = NULL;
  check c = {.ok = true};

  lh_status local = lh_alloc((size_t)(D * K), sizeof(double), false, "mixing matrix", &A);
  if (local == LH_OK) local = lh_alloc((size_t)K, sizeof(double), false, "latent row", &z);
  LH_TRY(lh_agree(comm, local));
  make_mixing(A, D, K, a->seed);
  LH_TRY(make_cloud(comm, N, D, a, A, z, &X));
  int64_t rss0 = lh_peak_rss_bytes();
  uint64_t hash = data_hash(comm, X);

  /* Warm-up: the whole pipeline on the first min(N, 4096) rows (OpenBLAS buffers, the ring's
   * MPI connections, page faults of the code paths), or the full TwoNN with --warmup full. */
  lh_twonn_opts to = lh_twonn_defaults();
  if (a->warmup_full) {
    LH_TRY(lh_twonn_run(X, &to, &tw));
  } else {
    LH_TRY(make_cloud(comm, N < 4096 ? N : 4096, D, a, A, z, &W));
    LH_TRY(lh_twonn_run(W, &to, &tw));
    lh_dmat_destroy(&W);
  }
  lh_twonn_result_destroy(&tw);

  double ev0[NEV];
  timing ttw, tkn;
  events_now(ev0);
  MPI_Barrier(comm);
  double t0 = MPI_Wtime();
  LH_TRY(lh_twonn_run(X, &to, &tw));
  timing_finish(comm, MPI_Wtime() - t0, ev0, &ttw);

  lh_knn_opts ko = lh_knn_defaults();
  ko.k = 2;
  events_now(ev0);
  MPI_Barrier(comm);
  t0 = MPI_Wtime();
  LH_TRY(lh_knn_run(X, &ko, &nn));
  timing_finish(comm, MPI_Wtime() - t0, ev0, &tkn);

  /* The exact column mean knn.c centres with (inside "other"), timed on its own. */
  LH_TRY(lh_agree(comm, lh_alloc((size_t)D, sizeof(double), false, "column means", &mean)));
  MPI_Barrier(comm);
  t0 = MPI_Wtime();
  LH_TRY(lh_dmat_col_reduce(X, LH_COL_MEAN, mean));
  double t_mean = MPI_Wtime() - t0;
  MPI_Allreduce(MPI_IN_PLACE, &t_mean, 1, MPI_DOUBLE, MPI_MAX, comm);

  int64_t rss[2] = {lh_peak_rss_bytes(), rss0};
  MPI_Allreduce(MPI_IN_PLACE, rss, 2, MPI_INT64_T, MPI_MAX, comm);

  double dim = tw->dimension[0];
  if (!isfinite(dim) || dim <= 0) fail(&c, "the TwoNN dimension is not a finite positive number");
  if (tw->n_valid[0] != N) fail(&c, "not every point is valid for TwoNN");
  LH_TRY(validate_knn(comm, X, nn, a, A, z, &c));

  /* The limit, after the timed runs so its buffers do not count in the peak memory. */
  double lim_tile = sgemm_rate(comm, KNN_TILE_Q, KNN_TILE_C, D);
  double lim_sq = sgemm_rate(comm, SQUARE, SQUARE, SQUARE);

  if (rank == 0) {
    const char *core = lh_blas_core();
    double fl = gemm_flops(N, P, D), allpairs = 2.0 * (double)N * (double)N * (double)D;
    double g_perf = fl / tkn.gemm_screen * 1e-9, g_gemm = fl / tkn.ev[EV_GEMM] * 1e-9;
    double g_all = allpairs / tkn.gemm_screen * 1e-9;
    int64_t in_bytes = (N / P + (N % P ? 1 : 0)) * D * (int64_t)sizeof(float);
    printf("# lh_bench_knn %s: N %" PRId64 " D %" PRId64 " intrinsic %" PRId64
           " float32, %d rank%s, OpenBLAS core %s\n",
           lh_version(), N, D, K, P, P == 1 ? "" : "s", core);
    if (!c.ok) {
      printf("VALIDATION FAILED: %s (no timings reported)\n", c.why);
      *invalid = 1;
      goto done;
    }
    printf("twonn      wall %9.3f s  gemm %8.3f  screen %8.3f  other %8.3f  dimension %.17g"
           "  mle %.17g\n",
           ttw.wall, ttw.ev[EV_GEMM], ttw.ev[EV_SCREEN], ttw.other, dim, tw->mle[0]);
    printf("knn k=2    wall %9.3f s  gemm %8.3f  screen %8.3f  other %8.3f  (prepare %.3f, "
           "ring-wait %.3f; an exact column mean alone takes %.3f)\n",
           tkn.wall, tkn.ev[EV_GEMM], tkn.ev[EV_SCREEN], tkn.other, tkn.ev[EV_PREP],
           tkn.ev[EV_WAIT], t_mean);
    printf("distance   %.4g GEMM flops performed (= %.4f N^2 D): %.2f GFLOP/s over gemm+screen, "
           "%.2f over gemm alone; all-pairs equivalent 2 N^2 D / (gemm+screen) = %.2f GFLOP/s\n",
           fl, fl / (allpairs / 2), g_perf, g_gemm, g_all);
    printf("sgemm      %dx%dx%" PRId64 " tiles %.2f GFLOP/s, %d^3 square %.2f GFLOP/s (job, %d "
           "rank%s); performed / tile limit = %.3f\n",
           KNN_TILE_Q, KNN_TILE_C, D, lim_tile, SQUARE, lim_sq, P, P == 1 ? "" : "s",
           g_perf / lim_tile);
    char b1[32], b2[32], b3[32];
    printf("memory     peak RSS %s per rank (max), %s before kNN, input %s per rank\n",
           lh_format_bytes((double)rss[0], b1, sizeof b1),
           lh_format_bytes((double)rss[1], b2, sizeof b2),
           lh_format_bytes((double)in_bytes, b3, sizeof b3));
    printf("validated  dimension finite, %d rows equal brute force; distance sum %.17g, index "
           "sum %" PRId64 ", data hash %" PRIu64 "\n",
           SPOT_ROWS, c.dist_sum, c.index_sum, hash);
    printf("{\"bench\": \"knn\", \"version\": \"%s\", \"N\": %" PRId64 ", \"D\": %" PRId64
           ", \"intrinsic\": %" PRId64 ", \"seed\": %" PRIu64 ", \"ranks\": %d, \"blas_core\": \"%s\", "
           "\"twonn_s\": %.6f, \"twonn_gemm_s\": %.6f, \"twonn_screen_s\": %.6f, "
           "\"twonn_other_s\": %.6f, \"dimension\": %.17g, \"mle\": %.17g, "
           "\"knn_s\": %.6f, \"knn_gemm_s\": %.6f, \"knn_screen_s\": %.6f, "
           "\"knn_prepare_s\": %.6f, \"knn_ring_wait_s\": %.6f, \"knn_other_s\": %.6f, \"colmean_s\": %.6f, "
           "\"gemm_flops\": %.6g, \"gflops_performed\": %.4f, \"gflops_gemm_only\": %.4f, "
           "\"gflops_allpairs\": %.4f, \"sgemm_tile_gflops\": %.4f, "
           "\"sgemm_square_gflops\": %.4f, \"ratio_to_tile_limit\": %.4f, "
           "\"peak_rss_bytes\": %" PRId64 ", \"rss_before_knn_bytes\": %" PRId64
           ", \"input_bytes_per_rank\": %" PRId64 ", \"dist_sum\": %.17g, \"index_sum\": %" PRId64
           ", \"data_hash\": %" PRIu64 "}\n",
           lh_version(), N, D, K, a->seed, P, core, ttw.wall, ttw.ev[EV_GEMM],
           ttw.ev[EV_SCREEN], ttw.other, dim, tw->mle[0], tkn.wall, tkn.ev[EV_GEMM],
           tkn.ev[EV_SCREEN], tkn.ev[EV_PREP], tkn.ev[EV_WAIT], tkn.other, t_mean, fl, g_perf, g_gemm,
           g_all, lim_tile, lim_sq, g_perf / lim_tile, rss[0], rss[1], in_bytes, c.dist_sum,
           c.index_sum, hash);
    fflush(stdout);
  }
done:
  lh_free(A);
  lh_free(z);
  lh_free(mean);
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&W);
  lh_twonn_result_destroy(&tw);
  lh_knn_result_destroy(&nn);
  return st;
}

/* ---- command line ----------------------------------------------------------------------- */

static const char USAGE[] =
    "usage: lh_bench_knn [--n N1,N2,...] [--d D1,D2,...] [--intrinsic K] [--seed S]\n"
    "                    [--warmup small|full]\n"
    "  every (N, D) pair is run; defaults --n 20000,50000 --d 64,768 --intrinsic 16 --seed 42\n"
    "  --intrinsic 0: i.i.d. entries instead of a K-dimensional linear cloud\n"
    "  peak memory is per process: run one (N, D) per launch to read it per configuration\n";

static lh_status parse_list(const char *name, const char *s, int64_t *v, int *nv) {
  *nv = 0;
  while (*s) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || errno || x < 3 || (*end && *end != ','))
      return LH_ERROR(LH_ERR_USAGE, "%s wants a comma-separated list of integers >= 3", name);
    if (*nv == MAX_SHAPES) return LH_ERROR(LH_ERR_USAGE, "%s: at most %d values", name, MAX_SHAPES);
    v[(*nv)++] = x;
    s = *end ? end + 1 : end;
  }
  return *nv ? LH_OK : LH_ERROR(LH_ERR_USAGE, "%s wants at least one value", name);
}

static lh_status parse_args(int argc, char **argv, args *a, bool *help) {
  a->N[0] = 20000;
  a->N[1] = 50000;
  a->nN = 2;
  a->D[0] = 64;
  a->D[1] = 768;
  a->nD = 2;
  a->K = 16;
  a->seed = 42;
  a->warmup_full = false;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      *help = true;
      return LH_OK;
    }
    if (!v) return LH_ERROR(LH_ERR_USAGE, "%s needs a value\n%s", o, USAGE);
    i++;
    char *end;
    if (!strcmp(o, "--n")) {
      lh_status st = parse_list("--n", v, a->N, &a->nN);
      if (st) return st;
    } else if (!strcmp(o, "--d")) {
      lh_status st = parse_list("--d", v, a->D, &a->nD);
      if (st) return st;
    } else if (!strcmp(o, "--intrinsic")) {
      a->K = strtoll(v, &end, 10);
      if (*end || a->K < 0) return LH_ERROR(LH_ERR_USAGE, "--intrinsic wants an integer >= 0");
    } else if (!strcmp(o, "--seed")) {
      a->seed = strtoull(v, &end, 10);
      if (*end) return LH_ERROR(LH_ERR_USAGE, "--seed wants an integer");
    } else if (!strcmp(o, "--warmup")) {
      if (strcmp(v, "small") && strcmp(v, "full"))
        return LH_ERROR(LH_ERR_USAGE, "--warmup is small or full");
      a->warmup_full = !strcmp(v, "full");
    } else {
      return LH_ERROR(LH_ERR_USAGE, "unknown option %s\n%s", o, USAGE);
    }
  }
  return LH_OK;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  args a;
  int invalid = 0, rank;
  bool help = false;
  MPI_Comm_rank(comm, &rank);
  lh_status st = lh_agree(comm, parse_args(argc, argv, &a, &help));
  if (st == LH_OK && help) {
    if (rank == 0) fputs(USAGE, stdout);
    a.nN = 0;
  }
  for (int i = 0; st == LH_OK && i < a.nN; i++)
    for (int j = 0; st == LH_OK && j < a.nD; j++) st = run_one(comm, a.N[i], a.D[j], &a, &invalid);
  if (st != LH_OK) lh_error_report("bench_knn");
  MPI_Bcast(&invalid, 1, MPI_INT, 0, comm);
  MPI_Finalize();
  return st != LH_OK ? 1 : invalid ? 3 : 0;
}
