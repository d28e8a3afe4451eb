/*
 * bench_sim.c: throughput of the representation-similarity measures, for issue 4: linear CKA
 * on its Gram path (cka.h, N = 10^6 rows), the same measure on its ScaLAPACK path for wide
 * representations (D = 16,384), and the information imbalance (infoimb.h). A benchmark, not
 * a test: it never asserts times.
 *
 * One configuration per launch (--bench cka|scalapack|ii, --n N, --d D), so that the peak
 * memory it reports belongs to that configuration. The program generates two representations
 * A and B of the same N samples in memory as a function of the global row index (so every
 * rank count sees the same matrices, and tests/bench/dadapy_ii.py rebuilds them bit for bit
 * in NumPy), warms up on a small slice, then times the measure between barriers and reports
 * the maximum over ranks (ParRes Kernels discipline). Results are printed only after they
 * validated: finite, in range, and, at the warm-up size, the Gram and ScaLAPACK paths of CKA
 * agree. The values are printed with %.17g so that runs on different rank counts can be
 * compared bit for bit (the information imbalance is a ratio of integer rank sums and must
 * match exactly; CKA's Gram path sums per-rank Grams, so it matches to rounding only).
 *
 * Each measure is judged against the machine, measured in the same process:
 *   cka        2 DSYRK (D(D+1)N flops each) + 1 DGEMM (2 D^2 N) is all the arithmetic of the
 *              Gram path; the limit is the time of those very calls (cka.c's shapes and
 *              transposes, column-major D x n operands in float64) on every rank at once.
 *   scalapack  the same three products through PDSYRK/PDGEMM on the block-cyclic layout
 *              cka.c builds, timed alone, against a local DGEMM on a 4096^3 square.
 *   ii         three ring passes (lh_knn_run, then two rank-counting passes) against "three
 *              passes of 2 N^2 D flops" at the SGEMM rate of the kernel's tile shape
 *              (row-major 256 x 2048 x D, NoTrans x Trans); the kernel computes each pair once,
 *              so it can beat that all-pairs limit.
 * The OpenBLAS core in use is reported (ENV_NOTES: OpenBLAS 0.3.21 may fall back to old
 * kernels on CPUs it does not know).
 *
 * Data (--intrinsic K, default 16): a latent z_i in R^K, A's row x_i = M_a z_i exactly as
 * bench_knn.c's cloud (same data hash), B's row y_i = M_b w_i where w shares the first K/2
 * coordinates of z and draws the rest afresh, so both measures land strictly between their
 * extremes. Entries of z, w, M_a, M_b are standardised Irwin-Hall(4) variates; every step is
 * an exact or correctly rounded float64 operation in a fixed order (built with
 * -ffp-contract=off), which is what lets NumPy reproduce the matrices exactly.
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
#include "latenthook/bcmat.h"
#include "latenthook/cka.h"
#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/infoimb.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/rng.h"
#include "latenthook/timer.h"
#include "latenthook/version.h"
#include "linalg/scalapack.h"

/* The ring's GEMM tile (RING_TILE_Q, RING_TILE_C in src/analysis/ring.h); gemm_flops() and
 * the SGEMM limit follow them, so keep them equal. */
#define TILE_Q 256
#define TILE_C 2048
#define SQUARE 4096       /* the reference local DGEMM: SQUARE^3 */
#define CALIB_SECONDS 0.5 /* least duration of a timed BLAS loop */
#define WARM_COLS 1024    /* columns of the ScaLAPACK warm-up slice */
#define SCALAPACK_NB 64   /* cka.c's block size */

typedef enum bench { B_CKA, B_SCALAPACK, B_II } bench;
static const char *BENCH_NAMES[] = {"cka", "scalapack", "ii"};

typedef struct args {
  bench which;
  int64_t N, D, K, warm_rows;
  uint64_t seed;
  int reps;
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

/* The generator of the pair (A, B): mixing matrices stored transposed (K x D) so that a row is
 * built by vectorisable sweeps over columns, in the same order of operations per element as
 * bench_knn.c's make_rows (acc = 0; acc += M[j][t] z[t] for t ascending). */
typedef struct gen {
  int64_t Da, Db, K;
  uint64_t seed;
  double *MaT, *MbT; /* K x Da: MaT[t][j] = irwin4(seed + 1, j K + t); K x Db with seed + 2 */
  double *z, *w;     /* K: latent rows */
  double *acc;       /* max(Da, Db) */
} gen;

static void gen_free(gen *g) {
  lh_free(g->MaT);
  lh_free(g->MbT);
  lh_free(g->z);
  lh_free(g->w);
  lh_free(g->acc);
  memset(g, 0, sizeof *g);
}

/* Local. */
static lh_status gen_init(gen *g, int64_t Da, int64_t Db, int64_t K, uint64_t seed) {
  lh_status st = LH_OK;
  memset(g, 0, sizeof *g);
  g->Da = Da;
  g->Db = Db;
  g->K = K;
  g->seed = seed;
  LH_TRY(lh_alloc((size_t)(K * Da), sizeof(double), false, "mixing matrix A", &g->MaT));
  LH_TRY(lh_alloc((size_t)(K * Db), sizeof(double), false, "mixing matrix B", &g->MbT));
  LH_TRY(lh_alloc((size_t)K, sizeof(double), false, "latent row", &g->z));
  LH_TRY(lh_alloc((size_t)K, sizeof(double), false, "latent row", &g->w));
  LH_TRY(lh_alloc((size_t)LH_MAX(Da, Db), sizeof(double), false, "row accumulator", &g->acc));
  for (int64_t t = 0; t < K; t++) {
    for (int64_t j = 0; j < Da; j++) g->MaT[t * Da + j] = irwin4(seed + 1, (uint64_t)(j * K + t));
    for (int64_t j = 0; j < Db; j++) g->MbT[t * Db + j] = irwin4(seed + 2, (uint64_t)(j * K + t));
  }
done:
  if (st != LH_OK) gen_free(g);
  return st;
}

/* x (D) = M z for M stored transposed (K x D), rounded to float. */
static void mix(const double *MT, const double *z, int64_t D, int64_t K, double *acc, float *x) {
  for (int64_t j = 0; j < D; j++) acc[j] = 0.0;
  for (int64_t t = 0; t < K; t++) {
    const double *m = MT + t * D, zt = z[t];
    for (int64_t j = 0; j < D; j++) acc[j] += m[j] * zt;
  }
  for (int64_t j = 0; j < D; j++) x[j] = (float)acc[j];
}

/* Global rows row0 .. row0 + m - 1 of A into a (m x Da) and of B into b (m x Db). */
static void make_rows(gen *g, int64_t row0, int64_t m, float *a, float *b) {
  const int64_t K = g->K;
  for (int64_t i = 0; i < m; i++) {
    uint64_t r = (uint64_t)(row0 + i);
    for (int64_t t = 0; t < K; t++) {
      g->z[t] = irwin4(g->seed, r * (uint64_t)K + (uint64_t)t);
      g->w[t] = t < K / 2 ? g->z[t] : irwin4(g->seed + 3, r * (uint64_t)K + (uint64_t)t);
    }
    mix(g->MaT, g->z, g->Da, K, g->acc, a + i * g->Da);
    mix(g->MbT, g->w, g->Db, K, g->acc, b + i * g->Db);
  }
}

/* The first N rows of the pair, as two N x D float32 matrices. Collective. */
static lh_status make_pair(MPI_Comm comm, int64_t N, int64_t D, const args *a, lh_dmat **A,
                           lh_dmat **B) {
  lh_status st = LH_OK;
  lh_dmat *X = NULL, *Y = NULL;
  gen g = {0};
  LH_TRY(lh_agree(comm, gen_init(&g, D, D, a->K, a->seed)));
  LH_TRY(lh_dmat_create(comm, LH_F32, N, D, &X));
  LH_TRY(lh_dmat_create(comm, LH_F32, N, D, &Y));
  make_rows(&g, lh_dmat_row_offset(X), lh_dmat_local_rows(X), lh_dmat_local(X), lh_dmat_local(Y));
  *A = X;
  *B = Y;
  X = Y = NULL;
done:
  gen_free(&g);
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  return st;
}

/* A fingerprint of the whole matrix, the same for any rank count and in dadapy_ii.py:
 * sum over elements of bits(x) * (2 (i D + j) + 1) mod 2^64 (bench_knn.c's). Collective. */
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

/* ---- timing ----------------------------------------------------------------------------- */

static double max_over_ranks(MPI_Comm comm, double t) {
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
  return t;
}

enum { EV_KNN, EV_GEMM, EV_SCREEN, EV_PREP, EV_WAIT, NEV };
static const char *EV_NAMES[NEV] = {"knn", "ring.gemm", "ring.screen", "ring.prepare",
                                    "ring.wait"};

/* One timed call: wall time and the ring events it accumulated, each the max over ranks, and
 * the max over ranks of what is left of a rank's wall time after its events. */
typedef struct timing {
  double wall, ev[NEV], other;
} timing;

static void events_now(double *v) {
  for (int e = 0; e < NEV; e++) v[e] = lh_event_seconds(lh_event_get(EV_NAMES[e]));
}

static void timing_finish(MPI_Comm comm, double wall, const double *ev0, timing *t) {
  double v[NEV + 2], ev1[NEV];
  events_now(ev1);
  v[0] = wall;
  for (int e = 0; e < NEV; e++) v[1 + e] = ev1[e] - ev0[e];
  /* knn covers each pass's search; gemm, screen, prepare and wait happen inside it */
  v[NEV + 1] = wall - v[1 + EV_GEMM] - v[1 + EV_SCREEN] - v[1 + EV_PREP] - v[1 + EV_WAIT];
  MPI_Allreduce(MPI_IN_PLACE, v, NEV + 2, MPI_DOUBLE, MPI_MAX, comm);
  t->wall = v[0];
  for (int e = 0; e < NEV; e++) t->ev[e] = v[1 + e];
  t->other = v[NEV + 1];
}

/* ---- BLAS limits ------------------------------------------------------------------------ */

/* One BLAS call as the library makes it:
 *   's' row-major SGEMM, C (m x n) = A (m x k) B (n x k)^T: knn.c/ring.c's distance tile;
 *   'y' column-major DSYRK upper, C (m x m) = A A^T with A m x k: cka.c's self Gram;
 *   'g' column-major DGEMM, C (m x n) = A B^T with A m x k, B n x k: cka.c's cross Gram;
 *   'q' column-major DGEMM NoTrans x NoTrans, m x n x k: a square for reference. */
typedef struct blas_op {
  char kind;
  int m, n, k;
  const void *a, *b;
  void *c;
} blas_op;

static void blas_call(const blas_op *o, int k) {
  switch (o->kind) {
    case 's':
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, o->m, o->n, k, 1.0f, o->a, o->k, o->b,
                  o->k, 0.0f, o->c, o->n);
      break;
    case 'y':
      cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, o->m, k, 1.0, o->a, o->m, 0.0, o->c,
                  o->m);
      break;
    case 'g':
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, o->m, o->n, k, 1.0, o->a, o->m, o->b,
                  o->n, 0.0, o->c, o->m);
      break;
    default:
      cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, o->m, o->n, k, 1.0, o->a, o->m, o->b,
                  o->k, 0.0, o->c, o->m);
  }
}

static double blas_flops(const blas_op *o) {
  return o->kind == 'y' ? (double)o->m * (o->m + 1.0) * o->k : 2.0 * o->m * (double)o->n * o->k;
}

/* Every rank calls `o` on its own operands at once, after a warm-up call (on the first 8192
 * of k for the column-major shapes, whose k is the long dimension), in a loop of at least
 * CALIB_SECONDS. Returns the slowest rank's seconds per call; *flops_job receives the flops
 * of one call summed over ranks. Collective. */
static double blas_time(MPI_Comm comm, const blas_op *o, double *flops_job) {
  int kw = o->kind == 's' ? o->k : LH_MIN(o->k, 8192);
  double t = MPI_Wtime();
  blas_call(o, kw);
  double one = max_over_ranks(comm, (MPI_Wtime() - t) * ((double)o->k / LH_MAX(kw, 1)));
  int reps = (int)ceil(CALIB_SECONDS / (one > 1e-9 ? one : 1e-9));
  if (reps < 1) reps = 1;
  double f = blas_flops(o);
  MPI_Allreduce(MPI_IN_PLACE, &f, 1, MPI_DOUBLE, MPI_SUM, comm);
  *flops_job = f;
  MPI_Barrier(comm);
  t = MPI_Wtime();
  for (int r = 0; r < reps; r++) blas_call(o, o->k);
  return max_over_ranks(comm, MPI_Wtime() - t) / reps;
}

/* The job's rate (GFLOP/s) for the row-major SGEMM tile m x n x k, or the column-major square
 * DGEMM ('q'), on fresh operands. NaN if the buffers could not be allocated. Collective. */
static double fresh_rate(MPI_Comm comm, char kind, int m, int n, int k) {
  size_t es = kind == 's' ? sizeof(float) : sizeof(double);
  void *a = NULL, *b = NULL, *c = NULL;
  lh_status local = lh_alloc((size_t)m * (size_t)k, es, false, "limit A", &a);
  if (local == LH_OK) local = lh_alloc((size_t)n * (size_t)k, es, false, "limit B", &b);
  if (local == LH_OK) local = lh_alloc((size_t)m * (size_t)n, es, false, "limit C", &c);
  double rate = NAN;
  if (lh_agree(comm, local) != LH_OK) {
    lh_error_clear();
    goto done;
  }
  for (size_t i = 0; i < (size_t)m * (size_t)k; i++) {
    double v = irwin4(7, i);
    if (kind == 's') ((float *)a)[i] = (float)v;
    else ((double *)a)[i] = v;
  }
  for (size_t i = 0; i < (size_t)n * (size_t)k; i++) {
    double v = irwin4(8, i);
    if (kind == 's') ((float *)b)[i] = (float)v;
    else ((double *)b)[i] = v;
  }
  blas_op o = {.kind = kind, .m = m, .n = n, .k = k, .a = a, .b = b, .c = c};
  double fl, t = blas_time(comm, &o, &fl);
  rate = fl / t * 1e-9;
done:
  lh_free(a);
  lh_free(b);
  lh_free(c);
  return rate;
}

/* ---- validation and reporting helpers --------------------------------------------------- */

typedef struct check {
  bool ok;
  char why[200];
} check;

static void fail(check *c, const char *why) {
  if (c->ok) snprintf(c->why, sizeof c->why, "%s", why);
  c->ok = false;
}

static void print_header(const args *a, int P, const char *what) {
  printf("# lh_bench_sim %s: %s, N %" PRId64 " D %" PRId64 " intrinsic %" PRId64
         " float32, %d rank%s, OpenBLAS core %s\n",
         lh_version(), what, a->N, a->D, a->K, P, P == 1 ? "" : "s", lh_blas_core());
}

static void print_memory(MPI_Comm comm, int64_t rss0, int64_t in_bytes, int64_t extra_bytes,
                         const char *extra_what, int64_t *peak) {
  int64_t rss[2] = {lh_peak_rss_bytes(), rss0};
  MPI_Allreduce(MPI_IN_PLACE, rss, 2, MPI_INT64_T, MPI_MAX, comm);
  *peak = rss[0];
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0) return;
  char b1[32], b2[32], b3[32], b4[32];
  printf("memory     peak RSS %s per rank (max), %s before the timed runs; inputs %s per rank",
         lh_format_bytes((double)rss[0], b1, sizeof b1), lh_format_bytes((double)rss[1], b2, sizeof b2),
         lh_format_bytes((double)in_bytes, b3, sizeof b3));
  if (extra_what) printf(", %s %s per rank", extra_what, lh_format_bytes((double)extra_bytes, b4, sizeof b4));
  printf("\n");
}

static int64_t max_local_rows(int64_t N, int P) { return N / P + (N % P ? 1 : 0); }

/* ---- linear CKA, Gram path -------------------------------------------------------------- */

/* Linear CKA of the first `rows` rows of the pair (D columns) on both paths; they must agree.
 * Doubles as the warm-up (BLAS buffers, BLACS, MPI connections, page faults of the code). */
static lh_status cka_warmup(MPI_Comm comm, int64_t rows, int64_t D, const args *a, check *c,
                            double *v_gram, double *v_scal) {
  lh_status st = LH_OK;
  lh_dmat *X = NULL, *Y = NULL;
  lh_cka_opts o = lh_cka_defaults();
  LH_TRY(make_pair(comm, rows, D, a, &X, &Y));
  o.path = LH_CKA_GRAM;
  LH_TRY(lh_cka_linear(X, Y, &o, v_gram));
  o.path = LH_CKA_SCALAPACK;
  LH_TRY(lh_cka_linear(X, Y, &o, v_scal));
  if (!isfinite(*v_gram) || !(fabs(*v_gram - *v_scal) <= 1e-10 * fabs(*v_gram)))
    fail(c, "on the warm-up slice the Gram and ScaLAPACK paths of CKA differ");
done:
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  return st;
}

/* The limit of the Gram path: its DSYRK and DGEMM on this rank's n x D rows as a float64
 * column-major D x n operand (cka.c's layout), every rank at once. One operand stands for
 * both X~ and Y~ (same shape and cost, half the memory). Collective. */
static lh_status gram_limit(MPI_Comm comm, const lh_dmat *X, double *t_syrk, double *f_syrk,
                            double *t_gemm, double *f_gemm) {
  lh_status st = LH_OK, local = LH_OK;
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X);
  double *w = NULL, *g = NULL;
  int d32, n32;
  local = lh_int_cast(D, "columns", &d32);
  if (local == LH_OK) local = lh_int_cast(LH_MAX(n, 1), "local rows", &n32);
  if (local == LH_OK) local = lh_alloc((size_t)(n * D), sizeof(double), false, "limit operand", &w);
  if (local == LH_OK) local = lh_alloc((size_t)(D * D), sizeof(double), false, "limit Gram", &g);
  LH_TRY(lh_agree(comm, local));
  const float *x = lh_dmat_local_const(X);
  for (int64_t e = 0; e < n * D; e++) w[e] = (double)x[e];
  blas_op y = {.kind = 'y', .m = d32, .n = d32, .k = n32, .a = w, .c = g};
  blas_op m = {.kind = 'g', .m = d32, .n = d32, .k = n32, .a = w, .b = w, .c = g};
  *t_syrk = blas_time(comm, &y, f_syrk);
  *t_gemm = blas_time(comm, &m, f_gemm);
done:
  lh_free(w);
  lh_free(g);
  return st;
}

static lh_status run_cka(MPI_Comm comm, const args *a, int *invalid) {
  lh_status st = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  const int64_t N = a->N, D = a->D;
  lh_dmat *X = NULL, *Y = NULL;
  check c = {.ok = true};
  double wg = NAN, ws = NAN, best = INFINITY, worst = 0, cka = NAN, prev = NAN;
  LH_TRY(cka_warmup(comm, LH_MIN(N, a->warm_rows), D, a, &c, &wg, &ws));

  double t0 = MPI_Wtime();
  LH_TRY(make_pair(comm, N, D, a, &X, &Y));
  double t_gen = max_over_ranks(comm, MPI_Wtime() - t0);
  int64_t rss0 = lh_peak_rss_bytes();
  uint64_t hx = data_hash(comm, X), hy = data_hash(comm, Y);

  lh_cka_opts o = lh_cka_defaults();
  o.path = LH_CKA_GRAM;
  for (int r = 0; r < a->reps; r++) {
    MPI_Barrier(comm);
    t0 = MPI_Wtime();
    LH_TRY(lh_cka_linear(X, Y, &o, &cka));
    double t = max_over_ranks(comm, MPI_Wtime() - t0);
    best = LH_MIN(best, t);
    worst = LH_MAX(worst, t);
    if (r > 0 && memcmp(&cka, &prev, sizeof cka)) fail(&c, "CKA differs between repetitions");
    prev = cka;
  }
  if (!isfinite(cka) || cka < 0 || cka > 1 + 1e-12) fail(&c, "CKA is not a number in [0, 1]");

  /* The exact column means cka.c centres with, timed alone (both matrices). */
  double *mean = NULL;
  LH_TRY(lh_agree(comm, lh_alloc((size_t)D, sizeof(double), false, "column means", &mean)));
  MPI_Barrier(comm);
  t0 = MPI_Wtime();
  st = lh_dmat_col_reduce(X, LH_COL_MEAN, mean);
  if (st == LH_OK) st = lh_dmat_col_reduce(Y, LH_COL_MEAN, mean);
  lh_free(mean);
  LH_TRY(st);
  double t_mean = max_over_ranks(comm, MPI_Wtime() - t0);

  const int64_t m = max_local_rows(N, P);
  int64_t peak;
  if (rank == 0) print_header(a, P, "linear CKA, Gram path");
  const int64_t extra = 2 * LH_MIN(m, 2048) * D * 8 + 2 * D * D * 8;
  print_memory(comm, rss0, 2 * m * D * 4, extra, "centred 2048-row chunks and Grams", &peak);

  /* The limit, after the timed runs so that its buffers do not count in the peak. */
  double ts = NAN, fs = NAN, tg = NAN, fg = NAN;
  LH_TRY(gram_limit(comm, X, &ts, &fs, &tg, &fg));
  if (rank == 0) {
    /* 2 DSYRK + 1 DGEMM over all N rows; the limit runs exactly these calls */
    double flops = 2 * fs + fg, t_lim = 2 * ts + tg;
    double r_syrk = fs / ts * 1e-9, r_gemm = fg / tg * 1e-9;
    if (!c.ok) {
      printf("VALIDATION FAILED: %s (no timings reported)\n", c.why);
      *invalid = 1;
      goto done;
    }
    printf("generate   %.3f s (not timed below)\n", t_gen);
    printf("cka        wall %9.3f s (best of %d, worst %.3f)  CKA %.17g\n", best, a->reps, worst, cka);
    printf("flops      2 DSYRK + DGEMM = %.4g (%.3f N D^2): %.2f GFLOP/s over the wall time\n",
           flops, flops / ((double)N * D * D), flops / best * 1e-9);
    printf("limit      DSYRK %dx%" PRId64 " %.2f GFLOP/s (%.3f s), DGEMM %dx%dx%" PRId64
           " %.2f GFLOP/s (%.3f s): 2 DSYRK + DGEMM = %.3f s; limit / wall = %.3f\n",
           (int)D, m, r_syrk, ts, (int)D, (int)D, m, r_gemm, tg, t_lim, t_lim / best);
    printf("other      wall - limit = %.3f s: column means alone %.3f s, the rest is the "
           "centring of the row chunks, row norms, reductions\n",
           best - t_lim, t_mean);
    printf("validated  CKA finite in [0, 1]; warm-up slice (%" PRId64 " rows): Gram %.17g, "
           "ScaLAPACK %.17g; data hashes %" PRIu64 " %" PRIu64 "\n",
           LH_MIN(N, a->warm_rows), wg, ws, hx, hy);
    printf("{\"bench\": \"cka\", \"version\": \"%s\", \"N\": %" PRId64 ", \"D\": %" PRId64
           ", \"intrinsic\": %" PRId64 ", \"seed\": %" PRIu64 ", \"ranks\": %d, "
           "\"blas_core\": \"%s\", \"reps\": %d, \"wall_s\": %.6f, \"wall_worst_s\": %.6f, "
           "\"flops\": %.6g, \"gflops\": %.4f, \"dsyrk_s\": %.6f, \"dsyrk_gflops\": %.4f, "
           "\"dgemm_s\": %.6f, \"dgemm_gflops\": %.4f, \"limit_s\": %.6f, \"ratio\": %.4f, "
           "\"colmean_s\": %.6f, \"generate_s\": %.3f, \"peak_rss_bytes\": %" PRId64
           ", \"rss_before_bytes\": %" PRId64 ", \"input_bytes_per_rank\": %" PRId64
           ", \"work_bytes_per_rank\": %" PRId64 ", \"value\": %.17g, \"warm_gram\": %.17g, "
           "\"warm_scalapack\": %.17g, \"hash_a\": %" PRIu64 ", \"hash_b\": %" PRIu64 "}\n",
           lh_version(), N, D, a->K, a->seed, P, lh_blas_core(), a->reps, best, worst, flops,
           flops / best * 1e-9, ts, r_syrk, tg, r_gemm, t_lim, t_lim / best, t_mean, t_gen, peak,
           rss0, 2 * m * D * 4, extra, cka, wg, ws, hx, hy);
    fflush(stdout);
  }
done:
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  return st;
}

/* ---- linear CKA, ScaLAPACK path --------------------------------------------------------- */

/* PDSYRK and PDGEMM alone on the block-cyclic copies of X and Y (the grid and block size
 * cka.c uses), and the time of one dmat -> bcmat conversion. Collective. */
static lh_status pblas_alone(MPI_Comm comm, const lh_dmat *X, const lh_dmat *Y, double *t_conv,
                             double *t_syrk, double *t_gemm, int *pr, int *pc) {
  lh_status st = LH_OK;
  lh_blacs *g = NULL;
  lh_bcmat *A = NULL, *B = NULL, *G = NULL;
  const int64_t N = lh_dmat_rows(X), D = lh_dmat_cols(X);
  int n32, d32, one = 1, myr, myc;
  double alpha = 1.0, beta = 0.0;
  LH_TRY(lh_agree(comm, lh_int_cast(N, "rows", &n32)));
  LH_TRY(lh_agree(comm, lh_int_cast(D, "columns", &d32)));
  LH_TRY(lh_blacs_create(comm, 0, 0, &g));
  lh_blacs_info(g, pr, pc, &myr, &myc);
  MPI_Barrier(comm);
  double t0 = MPI_Wtime();
  LH_TRY(lh_dmat_to_bcmat(X, g, SCALAPACK_NB, SCALAPACK_NB, &A));
  *t_conv = max_over_ranks(comm, MPI_Wtime() - t0);
  LH_TRY(lh_dmat_to_bcmat(Y, g, SCALAPACK_NB, SCALAPACK_NB, &B));
  LH_TRY(lh_bcmat_create(g, D, D, SCALAPACK_NB, SCALAPACK_NB, &G));
  MPI_Barrier(comm);
  t0 = MPI_Wtime();
  pdsyrk_("U", "T", &d32, &n32, &alpha, lh_bcmat_local(A), &one, &one, lh_bcmat_desc(A), &beta,
          lh_bcmat_local(G), &one, &one, lh_bcmat_desc(G));
  *t_syrk = max_over_ranks(comm, MPI_Wtime() - t0);
  MPI_Barrier(comm);
  t0 = MPI_Wtime();
  pdgemm_("T", "N", &d32, &d32, &n32, &alpha, lh_bcmat_local(A), &one, &one, lh_bcmat_desc(A),
          lh_bcmat_local(B), &one, &one, lh_bcmat_desc(B), &beta, lh_bcmat_local(G), &one, &one,
          lh_bcmat_desc(G));
  *t_gemm = max_over_ranks(comm, MPI_Wtime() - t0);
done:
  lh_bcmat_destroy(&A);
  lh_bcmat_destroy(&B);
  lh_bcmat_destroy(&G);
  lh_blacs_destroy(&g);
  return st;
}

static lh_status run_scalapack(MPI_Comm comm, const args *a, int *invalid) {
  lh_status st = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  const int64_t N = a->N, D = a->D;
  lh_dmat *X = NULL, *Y = NULL;
  check c = {.ok = true};
  double wg = NAN, ws = NAN, best = INFINITY, worst = 0, cka = NAN, prev = NAN;
  const int64_t wrows = LH_MIN(N, a->warm_rows), wcols = LH_MIN(D, WARM_COLS);
  LH_TRY(cka_warmup(comm, wrows, wcols, a, &c, &wg, &ws));

  double t0 = MPI_Wtime();
  LH_TRY(make_pair(comm, N, D, a, &X, &Y));
  double t_gen = max_over_ranks(comm, MPI_Wtime() - t0);
  int64_t rss0 = lh_peak_rss_bytes();
  uint64_t hx = data_hash(comm, X), hy = data_hash(comm, Y);

  lh_cka_opts o = lh_cka_defaults();
  o.path = LH_CKA_SCALAPACK;
  for (int r = 0; r < a->reps; r++) {
    MPI_Barrier(comm);
    t0 = MPI_Wtime();
    LH_TRY(lh_cka_linear(X, Y, &o, &cka));
    double t = max_over_ranks(comm, MPI_Wtime() - t0);
    best = LH_MIN(best, t);
    worst = LH_MAX(worst, t);
    if (r > 0 && memcmp(&cka, &prev, sizeof cka)) fail(&c, "CKA differs between repetitions");
    prev = cka;
  }
  if (!isfinite(cka) || cka < 0 || cka > 1 + 1e-12) fail(&c, "CKA is not a number in [0, 1]");

  const int64_t m = max_local_rows(N, P);
  int64_t peak;
  if (rank == 0) print_header(a, P, "linear CKA, ScaLAPACK path");
  print_memory(comm, rss0, 2 * m * D * 4, (D * D * 8 + P - 1) / P, "Gram (block-cyclic)", &peak);

  double t_conv = NAN, t_syrk = NAN, t_gemm = NAN;
  int pr = 0, pc = 0;
  LH_TRY(pblas_alone(comm, X, Y, &t_conv, &t_syrk, &t_gemm, &pr, &pc));
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  double r_sq = fresh_rate(comm, 'q', SQUARE, SQUARE, SQUARE);
  if (rank == 0) {
    double f_syrk = (double)D * (D + 1.0) * N, f_gemm = 2.0 * D * (double)D * N;
    double flops = 2 * f_syrk + f_gemm, t_k = 2 * t_syrk + t_gemm;
    double r_syrk = f_syrk / t_syrk * 1e-9, r_gemm = f_gemm / t_gemm * 1e-9;
    if (!c.ok) {
      printf("VALIDATION FAILED: %s (no timings reported)\n", c.why);
      *invalid = 1;
      goto done;
    }
    printf("generate   %.3f s (not timed below)\n", t_gen);
    printf("cka        wall %9.3f s (best of %d, worst %.3f)  CKA %.17g\n", best, a->reps, worst, cka);
    printf("flops      2 PDSYRK + PDGEMM = %.4g: %.2f GFLOP/s over the wall time\n", flops,
           flops / best * 1e-9);
    printf("pblas      %dx%d grid, %dx%d blocks: PDSYRK %.3f s %.2f GFLOP/s, PDGEMM %.3f s %.2f "
           "GFLOP/s; 2 PDSYRK + PDGEMM = %.3f s = %.3f of the wall time\n",
           pr, pc, SCALAPACK_NB, SCALAPACK_NB, t_syrk, r_syrk, t_gemm, r_gemm, t_k, t_k / best);
    printf("local      DGEMM %d^3 on every rank at once: %.2f GFLOP/s (job); PDGEMM / local = "
           "%.3f, PDSYRK / local = %.3f\n",
           SQUARE, r_sq, r_gemm / r_sq, r_syrk / r_sq);
    printf("other      wall - PBLAS = %.3f s: centring, redistribution (one dmat -> "
           "block-cyclic conversion alone: %.3f s), norms\n",
           best - t_k, t_conv);
    printf("validated  CKA finite in [0, 1]; warm-up slice (%" PRId64 " x %" PRId64
           "): Gram %.17g, ScaLAPACK %.17g; data hashes %" PRIu64 " %" PRIu64 "\n",
           wrows, wcols, wg, ws, hx, hy);
    printf("{\"bench\": \"scalapack\", \"version\": \"%s\", \"N\": %" PRId64 ", \"D\": %" PRId64
           ", \"intrinsic\": %" PRId64 ", \"seed\": %" PRIu64 ", \"ranks\": %d, "
           "\"blas_core\": \"%s\", \"grid\": \"%dx%d\", \"reps\": %d, \"wall_s\": %.6f, "
           "\"wall_worst_s\": %.6f, \"flops\": %.6g, \"gflops\": %.4f, \"pdsyrk_s\": %.6f, "
           "\"pdsyrk_gflops\": %.4f, \"pdgemm_s\": %.6f, \"pdgemm_gflops\": %.4f, "
           "\"pblas_s\": %.6f, \"to_bcmat_s\": %.6f, \"dgemm_square_gflops\": %.4f, "
           "\"pdgemm_ratio\": %.4f, \"generate_s\": %.3f, \"peak_rss_bytes\": %" PRId64
           ", \"rss_before_bytes\": %" PRId64 ", \"input_bytes_per_rank\": %" PRId64
           ", \"value\": %.17g, \"warm_gram\": %.17g, \"warm_scalapack\": %.17g, "
           "\"hash_a\": %" PRIu64 ", \"hash_b\": %" PRIu64 "}\n",
           lh_version(), N, D, a->K, a->seed, P, lh_blas_core(), pr, pc, a->reps, best, worst,
           flops, flops / best * 1e-9, t_syrk, r_syrk, t_gemm, r_gemm, t_k, t_conv, r_sq,
           r_gemm / r_sq, t_gen, peak, rss0, 2 * m * D * 4, cka, wg, ws, hx, hy);
    fflush(stdout);
  }
done:
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  return st;
}

/* ---- information imbalance -------------------------------------------------------------- */

/* Flops of the SGEMM calls of one symmetric ring pass for the whole job (ring.c's schedule,
 * bench_knn.c's gemm_flops): the own block as a triangle of TILE_Q-row tiles whose diagonal
 * tiles are computed in full, blocks r + s for 2 s < P in full, at even P the opposite block
 * by halves. About N^2 D (1 + TILE_Q / N). */
static double gemm_flops(int64_t N, int P, int64_t D) {
  double f = 0.0;
  for (int r = 0; r < P; r++) {
    int64_t n = lh_part_count(N, P, r);
    for (int64_t i0 = 0; i0 < n; i0 += TILE_Q) {
      int64_t tq = LH_MIN(TILE_Q, n - i0), cols = n - (i0 + 1);
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

/* The integer rank sum behind an imbalance value 2 sum / (N pairs). */
static int64_t rank_sum(double ii, int64_t N, int64_t pairs) {
  return (int64_t)llrint(ii * (double)N * (double)pairs / 2.0);
}

static lh_status run_ii(MPI_Comm comm, const args *a, int *invalid) {
  lh_status st = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  const int64_t N = a->N, D = a->D;
  lh_dmat *X = NULL, *Y = NULL;
  check c = {.ok = true};
  lh_ii_result res = {0}, prev = {0};
  lh_ii_opts o = lh_ii_defaults(); /* p = 2, k = 1, every point */

  /* Warm-up: the whole measure on the first rows. */
  LH_TRY(make_pair(comm, LH_MIN(N, a->warm_rows), D, a, &X, &Y));
  LH_TRY(lh_ii_run(X, Y, &o, &res));
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);

  double t0 = MPI_Wtime();
  LH_TRY(make_pair(comm, N, D, a, &X, &Y));
  double t_gen = max_over_ranks(comm, MPI_Wtime() - t0);
  int64_t rss0 = lh_peak_rss_bytes();
  uint64_t hx = data_hash(comm, X), hy = data_hash(comm, Y);

  timing best = {.wall = INFINITY};
  double worst = 0;
  for (int r = 0; r < a->reps; r++) {
    double ev0[NEV];
    timing t;
    events_now(ev0);
    MPI_Barrier(comm);
    t0 = MPI_Wtime();
    LH_TRY(lh_ii_run(X, Y, &o, &res));
    timing_finish(comm, MPI_Wtime() - t0, ev0, &t);
    if (t.wall < best.wall) best = t;
    worst = LH_MAX(worst, t.wall);
    if (r > 0 && (memcmp(&res.a_to_b, &prev.a_to_b, sizeof(double)) ||
                  memcmp(&res.b_to_a, &prev.b_to_a, sizeof(double))))
      fail(&c, "the imbalance differs between repetitions");
    prev = res;
  }
  double fl = 2.0 / (double)N;
  if (!(isfinite(res.a_to_b) && isfinite(res.b_to_a) && res.a_to_b >= fl && res.b_to_a >= fl &&
        res.a_to_b < 2 && res.b_to_a < 2))
    fail(&c, "an imbalance is not a number in [2/N, 2)");
  if (res.pairs_a_to_b != N || res.pairs_b_to_a != N) fail(&c, "not every point was ranked");

  const int64_t m = max_local_rows(N, P);
  int64_t peak;
  if (rank == 0) print_header(a, P, "information imbalance p = 2, k = 1");
  print_memory(comm, rss0, 2 * m * D * 4, 0, NULL, &peak);

  double lim_tile = fresh_rate(comm, 's', TILE_Q, TILE_C, (int)D);
  if (rank == 0) {
    double perf = 3.0 * gemm_flops(N, P, D), allpairs = 3.0 * 2.0 * (double)N * N * D;
    double gs = best.ev[EV_GEMM] + best.ev[EV_SCREEN];
    double t_lim = allpairs / (lim_tile * 1e9);
    int64_t sab = rank_sum(res.a_to_b, N, res.pairs_a_to_b);
    int64_t sba = rank_sum(res.b_to_a, N, res.pairs_b_to_a);
    if (!c.ok) {
      printf("VALIDATION FAILED: %s (no timings reported)\n", c.why);
      *invalid = 1;
      goto done;
    }
    printf("generate   %.3f s (not timed below)\n", t_gen);
    printf("ii         wall %9.3f s (best of %d, worst %.3f)  A->B %.17g  B->A %.17g\n",
           best.wall, a->reps, worst, res.a_to_b, res.b_to_a);
    printf("split      gemm %.3f  screen %.3f  prepare %.3f  ring-wait %.3f  other %.3f s (rows "
           "fetched, thresholds sorted, centring, sums)\n",
           best.ev[EV_GEMM], best.ev[EV_SCREEN], best.ev[EV_PREP], best.ev[EV_WAIT], best.other);
    printf("distance   3 passes, %.4g SGEMM flops performed (= %.4f x 3 N^2 D): %.2f GFLOP/s over "
           "gemm+screen, %.2f over the wall time\n",
           perf, perf / (3.0 * (double)N * N * D), perf / gs * 1e-9, perf / best.wall * 1e-9);
    printf("limit      SGEMM %dx%dx%" PRId64 " tiles %.2f GFLOP/s (job): 3 passes x 2 N^2 D = "
           "%.4g flops take %.3f s; limit / wall = %.3f\n",
           TILE_Q, TILE_C, D, lim_tile, allpairs, t_lim, t_lim / best.wall);
    printf("validated  both directions finite in [2/N, 2), every point ranked; rank sums %" PRId64
           " and %" PRId64 "; data hashes %" PRIu64 " %" PRIu64 "\n",
           sab, sba, hx, hy);
    printf("{\"bench\": \"ii\", \"version\": \"%s\", \"N\": %" PRId64 ", \"D\": %" PRId64
           ", \"intrinsic\": %" PRId64 ", \"seed\": %" PRIu64 ", \"ranks\": %d, "
           "\"blas_core\": \"%s\", \"reps\": %d, \"wall_s\": %.6f, \"wall_worst_s\": %.6f, "
           "\"knn_s\": %.6f, \"gemm_s\": %.6f, \"screen_s\": %.6f, \"prepare_s\": %.6f, "
           "\"ring_wait_s\": %.6f, \"other_s\": %.6f, \"gemm_flops\": %.6g, "
           "\"gflops_performed\": %.4f, \"sgemm_tile_gflops\": %.4f, \"limit_s\": %.6f, "
           "\"ratio\": %.4f, \"generate_s\": %.3f, \"peak_rss_bytes\": %" PRId64
           ", \"rss_before_bytes\": %" PRId64 ", \"input_bytes_per_rank\": %" PRId64
           ", \"a_to_b\": %.17g, \"b_to_a\": %.17g, \"sum_a_to_b\": %" PRId64
           ", \"sum_b_to_a\": %" PRId64 ", \"hash_a\": %" PRIu64 ", \"hash_b\": %" PRIu64 "}\n",
           lh_version(), N, D, a->K, a->seed, P, lh_blas_core(), a->reps, best.wall, worst,
           best.ev[EV_KNN], best.ev[EV_GEMM], best.ev[EV_SCREEN], best.ev[EV_PREP],
           best.ev[EV_WAIT], best.other, perf, perf / gs * 1e-9, lim_tile, t_lim,
           t_lim / best.wall, t_gen, peak, rss0, 2 * m * D * 4, res.a_to_b, res.b_to_a, sab, sba,
           hx, hy);
    fflush(stdout);
  }
done:
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  return st;
}

/* ---- command line ----------------------------------------------------------------------- */

static const char USAGE[] =
    "usage: lh_bench_sim --bench cka|scalapack|ii [--n N] [--d D] [--intrinsic K] [--seed S]\n"
    "                    [--reps R] [--warmup-rows W]\n"
    "  one configuration per launch (the peak memory is per process); defaults:\n"
    "  cka: --n 1000000 --d 768 (Gram path); scalapack: --n 20000 --d 16384;\n"
    "  ii: --n 50000 --d 64; --intrinsic 16 --seed 42 --reps 1 --warmup-rows 4096\n";

static lh_status parse_int(const char *o, const char *v, int64_t lo, int64_t *out) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end || errno || x < lo)
    return LH_ERROR(LH_ERR_USAGE, "%s wants an integer >= %lld\n%s", o, (long long)lo, USAGE);
  *out = x;
  return LH_OK;
}

static lh_status parse_args(int argc, char **argv, args *a, bool *help) {
  int64_t reps = 1;
  bool have = false, n_set = false, d_set = false;
  a->which = B_CKA;
  a->N = 0;
  a->D = 0;
  a->K = 16;
  a->seed = 42;
  a->warm_rows = 4096;
  for (int i = 1; i < argc; i++) {
    const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    lh_status st = LH_OK;
    if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
      *help = true;
      return LH_OK;
    }
    if (!v) return LH_ERROR(LH_ERR_USAGE, "%s needs a value\n%s", o, USAGE);
    i++;
    if (!strcmp(o, "--bench")) {
      int b = 0;
      while (b < 3 && strcmp(v, BENCH_NAMES[b])) b++;
      if (b == 3) return LH_ERROR(LH_ERR_USAGE, "--bench is cka, scalapack or ii\n%s", USAGE);
      a->which = (bench)b;
      have = true;
    } else if (!strcmp(o, "--n")) {
      st = parse_int(o, v, 4, &a->N);
      n_set = true;
    } else if (!strcmp(o, "--d")) {
      st = parse_int(o, v, 1, &a->D);
      d_set = true;
    } else if (!strcmp(o, "--intrinsic")) {
      st = parse_int(o, v, 1, &a->K);
    } else if (!strcmp(o, "--seed")) {
      int64_t s;
      st = parse_int(o, v, 0, &s);
      a->seed = (uint64_t)s;
    } else if (!strcmp(o, "--reps")) {
      st = parse_int(o, v, 1, &reps);
    } else if (!strcmp(o, "--warmup-rows")) {
      st = parse_int(o, v, 4, &a->warm_rows);
    } else {
      return LH_ERROR(LH_ERR_USAGE, "unknown option %s\n%s", o, USAGE);
    }
    if (st) return st;
  }
  if (!have) return LH_ERROR(LH_ERR_USAGE, "--bench is required\n%s", USAGE);
  static const int64_t defN[] = {1000000, 20000, 50000}, defD[] = {768, 16384, 64};
  if (!n_set) a->N = defN[a->which];
  if (!d_set) a->D = defD[a->which];
  a->reps = (int)LH_MIN(reps, 1000);
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
  } else if (st == LH_OK) {
    switch (a.which) {
      case B_CKA: st = run_cka(comm, &a, &invalid); break;
      case B_SCALAPACK: st = run_scalapack(comm, &a, &invalid); break;
      case B_II: st = run_ii(comm, &a, &invalid); break;
    }
  }
  if (st != LH_OK) lh_error_report("bench_sim");
  MPI_Bcast(&invalid, 1, MPI_INT, 0, comm);
  MPI_Finalize();
  return st != LH_OK ? 1 : invalid ? 3 : 0;
}
