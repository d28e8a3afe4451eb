/*
 * bench_probe.c: the logistic probe at scale (issue 7, point 6). Not a test: it reports times
 * and never asserts them (README.md here).
 *
 * A multinomial logistic probe (C classes, lbfgs, mean cross-entropy + (l2/2)|W|^2, i.e.
 * scikit-learn's LogisticRegression(C = 1/(l2 N), multi_class="multinomial")) on N x D
 * synthetic float32 activations generated in-process, each rank its own rows, as a function
 * of the global row index only (so every rank count sees the same matrix, and sklearn_probe.py
 * rebuilds it bit for bit):
 *   label  y_i = lh_rng_u64(s_y, i) mod C,
 *   mean   mu[c][j] = sep (2 unit(s_mu, c D + j) - 1) sqrt(3),
 *   row    x_ij = float32(mu[y_i][j] + (2 unit(s_x, i D + j) - 1) sqrt(3))
 * with s_y, s_mu, s_x = lh_rng_u64(seed, 1 / 2 / 3) and unit = lh_rng_unit (float64, no FMA:
 * the target is compiled with -ffp-contract=off).
 *
 * Reported (max over ranks; after a warm-up and a barrier): time of the fit to convergence,
 * iterations, final objective, gradient norm; the time of one objective + gradient evaluation
 * (mean of 3); the time of the two DGEMMs per chunk alone over the same rows (the same-run
 * DGEMM limit for this shape) and their share of a gradient; a 2048^3 DGEMM rate for
 * reference; the OpenBLAS core; the peak resident memory per rank. One JSON record at the end.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <mpi.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/mem.h"
#include "latenthook/probe.h"
#include "latenthook/rng.h"
#include "latenthook/version.h"

typedef struct args {
  int64_t N, D, C, max_iter;
  double l2, tol, sep;
  uint64_t seed;
} args;

static double max_over_ranks(MPI_Comm comm, double t) {
  MPI_Allreduce(MPI_IN_PLACE, &t, 1, MPI_DOUBLE, MPI_MAX, comm);
  return t;
}

static double centred(uint64_t s, uint64_t k) { return (2.0 * lh_rng_unit(s, k) - 1.0) * sqrt(3.0); }

static lh_status make_data(MPI_Comm comm, const args *a, lh_dmat **Xo, double **yo) {
  lh_status st = LH_OK;
  lh_dmat *X = NULL;
  double *y = NULL, *mu = NULL;
  const int64_t D = a->D, C = a->C;
  const uint64_t sy = lh_rng_u64(a->seed, 1), smu = lh_rng_u64(a->seed, 2), sx = lh_rng_u64(a->seed, 3);
  LH_TRY(lh_dmat_create(comm, LH_F32, a->N, D, &X));
  const int64_t n = lh_dmat_local_rows(X), row0 = lh_dmat_row_offset(X);
  lh_status local = lh_alloc((size_t)(n + 1), sizeof *y, false, "labels", &y);
  if (local == LH_OK) local = lh_alloc((size_t)(C * D), sizeof *mu, false, "means", &mu);
  LH_TRY(lh_agree(comm, local));
  for (int64_t k = 0; k < C * D; k++) mu[k] = a->sep * centred(smu, (uint64_t)k);
  float *x = lh_dmat_local(X);
  for (int64_t i = 0; i < n; i++) {
    const uint64_t g = (uint64_t)(row0 + i);
    const int64_t c = (int64_t)(lh_rng_u64(sy, g) % (uint64_t)C);
    y[i] = (double)c;
    for (int64_t j = 0; j < D; j++) x[i * D + j] = (float)(mu[c * D + j] + centred(sx, g * (uint64_t)D + (uint64_t)j));
  }
  *Xo = X;
  *yo = y;
  X = NULL;
  y = NULL;
done:
  lh_dmat_destroy(&X);
  lh_free(y);
  lh_free(mu);
  return st;
}

/* The two DGEMMs of probe_loss.c per chunk over this rank's rows, alone (the chunk already
 * packed in float64): the same-run limit for the gradient's arithmetic. */
static double gemm_alone(MPI_Comm comm, int64_t n, int64_t D, int64_t C, double *flops) {
  const int64_t m = LH_MIN((int64_t)PROBE_CHUNK, LH_MAX(n, 1));
  double *xc = calloc((size_t)(m * D), sizeof(double)), *s = calloc((size_t)(m * C), sizeof(double));
  double *W = calloc((size_t)(C * D), sizeof(double)), *g = calloc((size_t)(C * D), sizeof(double));
  for (int64_t k = 0; k < m * D; k++) xc[k] = centred(77, (uint64_t)k);
  for (int64_t k = 0; k < C * D; k++) W[k] = 1e-3 * centred(78, (uint64_t)k);
  MPI_Barrier(comm);
  double t0 = MPI_Wtime();
  for (int64_t done = 0; done < n; done += m) {
    const int mm = (int)LH_MIN(m, n - done);
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mm, (int)C, (int)D, 1.0, xc, (int)D, W,
                (int)D, 0.0, s, (int)C);
    cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)D, mm, 1.0, s, (int)C, xc,
                (int)D, 1.0, g, (int)D);
  }
  double t = max_over_ranks(comm, MPI_Wtime() - t0);
  *flops = 4.0 * (double)n * (double)D * (double)C;
  free(xc);
  free(s);
  free(W);
  free(g);
  return t;
}

/* GFLOP/s of a 2048^3 DGEMM on every rank at once. */
static double square_rate(MPI_Comm comm) {
  const int k = 2048;
  double *A = calloc((size_t)k * k, sizeof(double)), *B = calloc((size_t)k * k, sizeof(double)),
         *Cm = calloc((size_t)k * k, sizeof(double));
  for (int64_t i = 0; i < (int64_t)k * k; i++) A[i] = B[i] = centred(79, (uint64_t)i);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 256, k, k, 1.0, A, k, B, k, 0.0, Cm, k);
  MPI_Barrier(comm);
  double t0 = MPI_Wtime();
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, k, k, k, 1.0, A, k, B, k, 0.0, Cm, k);
  double t = max_over_ranks(comm, MPI_Wtime() - t0);
  free(A);
  free(B);
  free(Cm);
  return 2.0 * k * (double)k * k / t / 1e9;
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, P;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &P);
  args a = {.N = 1000000, .D = 768, .C = 10, .max_iter = 1000, .l2 = 1e-4, .tol = 1e-6,
            .sep = 0.1, .seed = 42};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--n")) a.N = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--d")) a.D = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--classes")) a.C = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--max-iter")) a.max_iter = atoll(argv[i + 1]);
    else if (!strcmp(argv[i], "--l2")) a.l2 = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--tol")) a.tol = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--sep")) a.sep = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--seed")) a.seed = (uint64_t)atoll(argv[i + 1]);
    else {
      if (rank == 0) fprintf(stderr, "lh_bench_probe: unknown option %s\n", argv[i]);
      MPI_Finalize();
      return 2;
    }
  }
  lh_dmat *X = NULL;
  double *y = NULL;
  lh_probe *p = NULL;
  probe_work w = {0};
  double *theta = NULL, *grad = NULL;
  int rc = 0;
  if (rank == 0)
    printf("# lh_bench_probe %s: multinomial logistic probe, lbfgs, N %" PRId64 " D %" PRId64
           " C %" PRId64 " l2 %g tol %g, float32 activations, %d rank%s, OpenBLAS core %s\n",
           lh_version(), a.N, a.D, a.C, a.l2, a.tol, P, P == 1 ? "" : "s", lh_blas_core());
  double t0 = MPI_Wtime();
  if (make_data(comm, &a, &X, &y) != LH_OK) {
    rc = 1;
    goto done;
  }
  double t_gen = max_over_ranks(comm, MPI_Wtime() - t0);
  const int64_t n = lh_dmat_local_rows(X), npar = a.C * a.D + a.C;
  int64_t rss_data = lh_peak_rss_bytes();
  MPI_Allreduce(MPI_IN_PLACE, &rss_data, 1, MPI_INT64_T, MPI_MAX, comm);

  /* time per objective + gradient (after a warm-up evaluation) */
  theta = calloc((size_t)npar, sizeof(double));
  grad = calloc((size_t)npar, sizeof(double));
  if (probe_work_init(&w, a.C, a.D, PROBE_CHUNK) != LH_OK) {
    rc = 1;
    goto done;
  }
  if (probe_work_plan(&w, X, y, NULL) != LH_OK) {
    rc = 1;
    goto done;
  }
  for (int64_t k = 0; k < a.C * a.D; k++) theta[k] = 1e-3 * centred(80, (uint64_t)k);
  double f = 0;
  if (probe_objective(LH_PROBE_CLASSIFIER, X, y, NULL, a.N, a.l2, theta, &w, &f, grad) != LH_OK) {
    rc = 1;
    goto done;
  }
  MPI_Barrier(comm);
  t0 = MPI_Wtime();
  for (int r = 0; r < 3; r++)
    if (probe_objective(LH_PROBE_CLASSIFIER, X, y, NULL, a.N, a.l2, theta, &w, &f, grad) != LH_OK) rc = 1;
  double t_grad = max_over_ranks(comm, MPI_Wtime() - t0) / 3;
  probe_work_free(&w);
  double gemm_flops = 0;
  double t_gemm = gemm_alone(comm, n, a.D, a.C, &gemm_flops);
  MPI_Allreduce(MPI_IN_PLACE, &gemm_flops, 1, MPI_DOUBLE, MPI_SUM, comm);
  double sq = square_rate(comm);

  /* the fit */
  lh_probe_opts o = lh_probe_defaults();
  o.kind = LH_PROBE_CLASSIFIER;
  o.num_classes = a.C;
  o.solver = LH_PROBE_LBFGS;
  o.l2 = a.l2;
  o.tol = a.tol;
  o.max_iter = a.max_iter;
  MPI_Barrier(comm);
  t0 = MPI_Wtime();
  if (lh_probe_fit(X, y, NULL, &o, &p) != LH_OK) {
    if (rank == 0) fprintf(stderr, "fit failed: %s\n", lh_error_message());
    rc = 1;
    goto done;
  }
  double t_fit = max_over_ranks(comm, MPI_Wtime() - t0);
  lh_probe_metrics m = {0};
  if (lh_probe_evaluate(p, X, y, NULL, &m) != LH_OK) rc = 1;
  int64_t rss = lh_peak_rss_bytes();
  MPI_Allreduce(MPI_IN_PLACE, &rss, 1, MPI_INT64_T, MPI_MAX, comm);
  double cnorm = 0, csum = 0;
  for (int64_t k = 0; k < a.C * a.D; k++) {
    cnorm += p->coef[k] * p->coef[k];
    csum += p->coef[k];
  }
  const int ok = rc == 0 && isfinite(p->objective) && m.accuracy > 1.5 / (double)a.C;
  if (rank == 0) {
    if (!ok) {
      printf("VALIDATION FAILED: objective %g accuracy %g\n", p->objective, m.accuracy);
    } else {
      const double gemm_rate = gemm_flops / t_gemm / 1e9;
      char b1[32], b2[32], b3[32];
      printf("data       %.2f s to generate; x[0][0..2] = %.9g %.9g %.9g (rank 0)\n", t_gen,
             (double)((float *)lh_dmat_local(X))[0], (double)((float *)lh_dmat_local(X))[1],
             (double)((float *)lh_dmat_local(X))[2]);
      printf("fit        %.2f s, %" PRId64 " iterations, %s; objective %.12g, |g|/max(1,|w|) %.3g, "
             "train accuracy %.6f\n", t_fit, p->iterations, p->solver_message, p->objective,
             p->grad_norm, m.accuracy);
      printf("gradient   %.3f s per evaluation (%.2f GFLOP/s of its 4NDC GEMM flops); the two "
             "DGEMMs alone %.3f s (%.2f GFLOP/s): %.0f%% of a gradient; DGEMM 2048^3 %.2f "
             "GFLOP/s per rank\n", t_grad, gemm_flops / t_grad / 1e9, t_gemm, gemm_rate,
             100.0 * t_gemm / t_grad, sq);
      printf("memory     peak RSS %s per rank (max), %s after generating the data; activations "
             "%s per rank\n", lh_format_bytes((double)rss, b1, sizeof b1),
             lh_format_bytes((double)rss_data, b2, sizeof b2),
             lh_format_bytes((double)n * (double)a.D * 4, b3, sizeof b3));
      printf("{\"bench\": \"probe\", \"N\": %" PRId64 ", \"D\": %" PRId64 ", \"C\": %" PRId64
             ", \"l2\": %g, \"tol\": %g, \"ranks\": %d, \"blas_core\": \"%s\", \"gen_s\": %.3f, "
             "\"fit_s\": %.3f, \"iterations\": %" PRId64 ", \"converged\": %s, \"objective\": "
             "%.17g, \"rel_grad\": %.3g, \"accuracy\": %.17g, \"grad_s\": %.4f, "
             "\"gemm_alone_s\": %.4f, \"gemm_gflops\": %.3f, \"grad_gflops\": %.3f, "
             "\"gemm_share\": %.3f, \"dgemm_square_gflops\": %.3f, \"peak_rss_bytes\": %" PRId64
             ", \"coef_norm2\": %.17g, \"coef_sum\": %.17g}\n",
             a.N, a.D, a.C, a.l2, a.tol, P, lh_blas_core(), t_gen, t_fit, p->iterations,
             p->converged ? "true" : "false", p->objective, p->grad_norm, m.accuracy, t_grad,
             t_gemm, gemm_rate, gemm_flops / t_grad / 1e9, t_gemm / t_grad, sq, rss, cnorm, csum);
    }
  }
  if (!ok) rc = 3;
done:
  probe_work_free(&w);
  free(theta);
  free(grad);
  lh_probe_destroy(&p);
  lh_dmat_destroy(&X);
  lh_free(y);
  MPI_Finalize();
  return rc;
}
