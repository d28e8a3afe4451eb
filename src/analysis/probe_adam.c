/*
 * probe_adam.c: tdhook's training loop for LinearEstimator (SPEC 3.6), data-parallel.
 *
 * For `epochs` epochs the selected samples are visited in mini-batches of `batch_size`
 * (last partial batch kept) in the order of a fresh permutation per epoch; after each
 * mini-batch the parameters take one Adam step (Kingma & Ba; torch's form: bias corrections,
 * eps added to sqrt(v_hat)). The mean loss of the batch is differentiated, plus l2 W if l2 > 0
 * (tdhook has no penalty: l2 = 0 by default).
 *
 * Rank-count independence: the permutation is a Fisher-Yates shuffle of the selected global
 * indices driven by counter-based random numbers (rng.h) of (seed, epoch, position); every
 * rank builds it (O(N) integers, no data), takes the batch members it owns (in batch order),
 * computes their loss and gradient sums with two DGEMMs (probe_loss.c), and one allreduce
 * (MPI_SUM, float64) per mini-batch completes the gradient. The initial parameters are
 * torch's nn.Linear law, U(-1/sqrt(D), 1/sqrt(D)) for W and b, drawn from rng.h with the
 * seed. The batches are the same on any number of ranks; only the grouping of each batch's
 * sum differs, so trajectories agree across rank counts to rounding (checked to 1e-10
 * relative after 100 epochs in tests/mpi/mpi_probe.c).
 *
 * Warm start (lh_probe_fit_warm, tdhook's fit on a fitted estimator): the parameters of the
 * earlier fit instead of the initial law, a new Adam state (m = v = 0, t = 0, as tdhook makes a
 * new optimiser per fit), and the epochs numbered on from the earlier fits' count e0, as
 * tdhook's global torch RNG would go on shuffling instead of replaying the first epochs.
 *
 * Schedule (for reference implementations):
 *   init:    W[c][j] = (2 u(s0, c D + j) - 1) / sqrt(D), b[c] = (2 u(s0, C D + c) - 1) / sqrt(D)
 *            with s0 = lh_rng_u64(seed, 0x1417), u = lh_rng_unit;
 *   epoch e: perm = selected global indices ascending; for k = M-1 down to 1:
 *            j = lh_rng_u64(se, k) mod (k + 1), swap perm[k], perm[j];
 *            se = lh_rng_u64(seed, 0x5EED0000 + e0 + e) (e0 = 0 unless a warm start).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/rng.h"

#define INIT_SALT UINT64_C(0x1417)
#define EPOCH_SALT UINT64_C(0x5EED0000)

lh_status lh_probe_fit_adam(const lh_dmat *X, const double *y, const bool *use,
                            const lh_probe_opts *o, lh_probe **out) {
  return probe_fit_adam_from(X, y, use, o, NULL, out);
}

lh_status probe_fit_adam_from(const lh_dmat *X, const double *y, const bool *use,
                              const lh_probe_opts *o, const lh_probe *init, lh_probe **out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t n = lh_dmat_local_rows(X), D = lh_dmat_cols(X), row0 = lh_dmat_row_offset(X);
  const lh_probe_kind kind = o->kind;
  const int64_t C = kind == LH_PROBE_CLASSIFIER ? o->num_classes : 1;
  const int64_t npar = C * D + C;
  int64_t count = 0, *perm = NULL;
  double *theta = NULL, *mom = NULL, *vel = NULL, *grad = NULL;
  probe_work work = {0};
  lh_probe *p = NULL;
  bool *all = NULL;
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (kind != LH_PROBE_CLASSIFIER && kind != LH_PROBE_REGRESSOR)
    LH_FAIL(LH_ERR_VALUE, "adam fits linear classifiers and regressors only");
  if (kind == LH_PROBE_CLASSIFIER && C < 2)
    LH_FAIL(LH_ERR_VALUE, "num_classes must be >= 2, got %lld", (long long)C);
  if (o->epochs < 0) LH_FAIL(LH_ERR_VALUE, "epochs must be >= 0, got %lld", (long long)o->epochs);
  if (o->batch_size < 1)
    LH_FAIL(LH_ERR_VALUE, "batch_size must be >= 1, got %lld", (long long)o->batch_size);
  if (!(o->lr > 0) || !(o->beta1 >= 0 && o->beta1 < 1) || !(o->beta2 >= 0 && o->beta2 < 1) ||
      !(o->adam_eps >= 0))
    LH_FAIL(LH_ERR_VALUE,
            "Adam needs lr > 0, 0 <= betas < 1, eps >= 0 (got lr %g, betas (%g, "
            "%g), eps %g)",
            o->lr, o->beta1, o->beta2, o->adam_eps);
  if (!(o->l2 >= 0) || !isfinite(o->l2)) LH_FAIL(LH_ERR_VALUE, "l2 must be >= 0, got %g", o->l2);
  LH_TRY(probe_check(X, y, use, kind, C, "LinearEstimator.fit", &count));
  if (count < 1) LH_FAIL(LH_ERR_VALUE, "LinearEstimator.fit: no sample to fit");
  const int64_t N = lh_dmat_rows(X);
  LH_TRY(lh_int_cast(N, "samples (adam keeps the selection of every sample)", &(int){0}));
  local = lh_alloc((size_t)npar, sizeof(double), false, "parameters", &theta);
  if (local == LH_OK) local = lh_alloc((size_t)npar, sizeof(double), true, "Adam m", &mom);
  if (local == LH_OK) local = lh_alloc((size_t)npar, sizeof(double), true, "Adam v", &vel);
  if (local == LH_OK) local = lh_alloc((size_t)npar, sizeof(double), false, "gradient", &grad);
  if (local == LH_OK)
    local = probe_work_init(&work, C, D, LH_MIN(o->batch_size, (int64_t)PROBE_CHUNK));
  if (local == LH_OK) local = lh_alloc((size_t)count, sizeof *perm, false, "sample order", &perm);
  if (local == LH_OK) local = lh_alloc((size_t)N, sizeof *all, false, "selection", &all);
  if (local == LH_OK) local = probe_alloc(kind, C, D, &p);
  LH_TRY(lh_agree(comm, local));

  /* the global selection, known to every rank */
  {
    int nn;
    LH_TRY(lh_int_cast(n, "local rows", &nn));
    int P;
    MPI_Comm_size(comm, &P);
    int *counts = NULL, *displs = NULL;
    local = lh_alloc((size_t)P, sizeof(int), false, "counts", &counts);
    if (local == LH_OK) local = lh_alloc((size_t)P, sizeof(int), false, "displs", &displs);
    lh_status ag = lh_agree(comm, local);
    if (ag == LH_OK) {
      bool *mine = all + row0;
      for (int64_t i = 0; i < n; i++) mine[i] = !use || use[i];
      MPI_Allgather(&nn, 1, MPI_INT, counts, 1, MPI_INT, comm);
      int off = 0;
      for (int r = 0; r < P; r++) {
        displs[r] = off;
        off += counts[r];
      }
      if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, all, counts, displs, MPI_C_BOOL,
                         comm) != MPI_SUCCESS)
        ag = LH_ERROR(LH_ERR_MPI, "adam: MPI_Allgatherv of the selection failed");
    }
    lh_free(counts);
    lh_free(displs);
    LH_TRY(ag);
  }

  /* warm start: the parameters and the epoch count of the earlier fits (shapes checked by
   * lh_probe_fit_warm); a new Adam state either way */
  const int64_t e0 = init ? init->epochs : 0;
  if (init) {
    memcpy(theta, init->coef, (size_t)(C * D) * sizeof(double));
    memcpy(theta + C * D, init->intercept, (size_t)C * sizeof(double));
  } else {
    const double scale = 1.0 / sqrt((double)D);
    const uint64_t s0 = lh_rng_u64(o->seed, INIT_SALT);
    for (int64_t k = 0; k < C * D; k++)
      theta[k] = (2.0 * lh_rng_unit(s0, (uint64_t)k) - 1.0) * scale;
    for (int64_t c = 0; c < C; c++)
      theta[C * D + c] = (2.0 * lh_rng_unit(s0, (uint64_t)(C * D + c)) - 1.0) * scale;
  }

  int64_t t = 0;
  for (int64_t e = 0; e < o->epochs; e++) {
    int64_t M = 0;
    for (int64_t g = 0; g < N; g++)
      if (all[g]) perm[M++] = g;
    const uint64_t se = lh_rng_u64(o->seed, EPOCH_SALT + (uint64_t)(e0 + e));
    for (int64_t k = M - 1; k >= 1; k--) {
      int64_t j = (int64_t)(lh_rng_u64(se, (uint64_t)k) % (uint64_t)(k + 1));
      int64_t sw = perm[k];
      perm[k] = perm[j];
      perm[j] = sw;
    }
    for (int64_t start = 0; start < M; start += o->batch_size) {
      const int64_t B = LH_MIN(o->batch_size, M - start);
      memset(work.part, 0, (size_t)(1 + npar) * sizeof(double));
      int64_t m = 0;
      for (int64_t k = start; k < start + B; k++) {
        int64_t i = perm[k] - row0;
        if (i < 0 || i >= n) continue;
        work.idx[m++] = i;
        if (m == work.chunk) {
          probe_rows_loss_grad(kind, X, y, work.idx, m, theta, true, &work);
          m = 0;
        }
      }
      probe_rows_loss_grad(kind, X, y, work.idx, m, theta, true, &work);
      if (MPI_Allreduce(MPI_IN_PLACE, work.part, (int)(1 + npar), MPI_DOUBLE, MPI_SUM, comm) !=
          MPI_SUCCESS)
        LH_FAIL(LH_ERR_MPI, "adam: MPI_Allreduce of the gradient failed");
      for (int64_t k = 0; k < npar; k++) grad[k] = work.part[1 + k] / (double)B;
      for (int64_t k = 0; k < C * D; k++) grad[k] += o->l2 * theta[k];
      t++;
      const double bc1 = 1.0 - pow(o->beta1, (double)t), bc2 = 1.0 - pow(o->beta2, (double)t);
      const double step = o->lr / bc1, sbc2 = sqrt(bc2);
      for (int64_t k = 0; k < npar; k++) {
        mom[k] = o->beta1 * mom[k] + (1.0 - o->beta1) * grad[k];
        vel[k] = o->beta2 * vel[k] + (1.0 - o->beta2) * grad[k] * grad[k];
        theta[k] -= step * mom[k] / (sqrt(vel[k]) / sbc2 + o->adam_eps);
      }
    }
  }
  double f;
  LH_TRY(probe_work_plan(&work, X, y, use));
  LH_TRY(probe_objective(kind, X, y, use, count, o->l2, theta, &work, &f, NULL));
  memcpy(p->coef, theta, (size_t)(C * D) * sizeof(double));
  memcpy(p->intercept, theta + C * D, (size_t)C * sizeof(double));
  p->n_fit = count;
  p->iterations = t;
  p->epochs = e0 + o->epochs;
  p->objective = f;
  if (init)
    snprintf(p->solver_message, sizeof p->solver_message,
             "adam: %lld epochs, %lld steps, warm start after %lld epochs", (long long)o->epochs,
             (long long)t, (long long)e0);
  else
    snprintf(p->solver_message, sizeof p->solver_message, "adam: %lld epochs, %lld steps",
             (long long)o->epochs, (long long)t);
  *out = p;
  p = NULL;
done:
  lh_probe_destroy(&p);
  lh_free(theta);
  lh_free(mom);
  lh_free(vel);
  lh_free(grad);
  probe_work_free(&work);
  lh_free(perm);
  lh_free(all);
  return st;
}
