/*
 * probe_loss.c: the training objective of the linear probes (SPEC 3.6-3.7): softmax
 * cross-entropy for classifiers, squared error for regressors (torch's mean reductions),
 * plus (l2/2)|W|_F^2 on the weights only.
 *
 * The hot path of every fit (issue 7): per chunk of at most `chunk` rows, packed as float64
 * (float32 activations are converted chunk by chunk, so memory stays O(chunk * D)),
 *   S = Xc W^T + b       one DGEMM (m x C),
 *   R = softmax(S) - Y   (or 2 (S - y) for a regressor), in float64,
 *   gW += R^T Xc         one DGEMM (C x D), gb += column sums of R.
 * Full-batch objective (lbfgs): the chunks are fixed blocks of global rows, each computed whole
 * by one rank (probe_work_plan copies the at most chunk - 1 rows of a rank's last block that
 * live on the next ranks), and each block's sums are added to exact accumulators (xsum.h, a
 * few thousand additions per block of 4096 rows), then one allreduce of those accumulators.
 * A block's GEMM sees the same rows in the same order on any rank count, so the objective and
 * gradient, hence the whole L-BFGS run, are the same bits on 1, 2, 3 or 4 ranks.
 * Mini-batches (adam): the batch members a rank owns, one float64 MPI_Allreduce per step;
 * the grouping of a batch's sum depends on the rank count (agreement to rounding, 1e-10).
 */
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "analysis/probe_internal.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

lh_status probe_work_init(probe_work *w, int64_t C, int64_t D, int64_t chunk) {
  lh_status st = LH_OK;
  memset(w, 0, sizeof *w);
  int dummy;
  LH_TRY(lh_int_cast(D, "features", &dummy));
  LH_TRY(lh_int_cast(1 + C * D + C, "probe parameters", &dummy));
  w->C = C;
  w->D = D;
  w->chunk = chunk;
  LH_TRY(lh_alloc((size_t)chunk, sizeof *w->idx, false, "probe row indices", &w->idx));
  LH_TRY(lh_alloc((size_t)chunk * (size_t)D, sizeof(double), false, "probe row chunk", &w->xc));
  LH_TRY(lh_alloc((size_t)chunk, sizeof(double), false, "probe label chunk", &w->yc));
  LH_TRY(lh_alloc((size_t)chunk * (size_t)C, sizeof(double), false, "probe scores", &w->s));
  LH_TRY(lh_alloc((size_t)(1 + C * D + C), sizeof(double), true, "probe gradient", &w->part));
  LH_TRY(lh_alloc((size_t)(1 + C * D + C), sizeof(lh_xsum), false, "probe gradient sums", &w->acc));
done:
  if (st != LH_OK) probe_work_free(w);
  return st;
}

void probe_work_free(probe_work *w) {
  lh_free(w->idx);
  lh_free(w->xc);
  lh_free(w->yc);
  lh_free(w->s);
  lh_free(w->part);
  lh_free(w->acc);
  lh_free(w->halo);
  memset(w, 0, sizeof *w);
}

void probe_chunk_loss_grad(lh_probe_kind kind, int64_t m, const double *theta, bool grad,
                           probe_work *w) {
  const int64_t C = w->C, D = w->D;
  const double *W = theta, *b = theta + C * D;
  double *xc = w->xc, *s = w->s; /* xc (m x D), s (m x C) */
  if (m <= 0) return;
  /* S (m x C) = Xc W^T */
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)C, (int)D, 1.0, xc, (int)D, W,
              (int)D, 0.0, s, (int)C);
  double loss = 0;
  for (int64_t r = 0; r < m; r++) {
    double *sr = s + r * C;
    const double yr = w->yc[r];
    for (int64_t c = 0; c < C; c++) sr[c] += b[c];
    if (kind == LH_PROBE_REGRESSOR) {
      const double e = sr[0] - yr;
      loss += e * e;
      sr[0] = 2.0 * e;
      continue;
    }
    const int64_t label = (int64_t)yr;
    double mx = sr[0];
    for (int64_t c = 1; c < C; c++) mx = sr[c] > mx ? sr[c] : mx;
    double z = 0;
    for (int64_t c = 0; c < C; c++) z += exp(sr[c] - mx);
    const double lse = mx + log(z);
    loss += lse - sr[label];
    for (int64_t c = 0; c < C; c++) sr[c] = exp(sr[c] - lse) - (c == label ? 1.0 : 0.0);
  }
  w->part[0] += loss;
  if (!grad) return;
  /* gW (C x D) += R^T Xc; gb += column sums of R */
  cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)D, (int)m, 1.0, s, (int)C, xc,
              (int)D, 1.0, w->part + 1, (int)D);
  double *gb = w->part + 1 + C * D;
  for (int64_t r = 0; r < m; r++)
    for (int64_t c = 0; c < C; c++) gb[c] += s[r * C + c];
}

/* Local row i of X into packed row r. */
static void pack_row(const lh_dmat *X, int64_t i, double *out) {
  const int64_t D = lh_dmat_cols(X);
  if (lh_dmat_dtype(X) == LH_F64) {
    memcpy(out, (const double *)lh_dmat_local_const(X) + i * D, (size_t)D * sizeof(double));
  } else {
    const float *a = (const float *)lh_dmat_local_const(X) + i * D;
    for (int64_t j = 0; j < D; j++) out[j] = (double)a[j];
  }
}

void probe_rows_loss_grad(lh_probe_kind kind, const lh_dmat *X, const double *y, const int64_t *idx,
                          int64_t m, const double *theta, bool grad, probe_work *w) {
  for (int64_t r = 0; r < m; r++) {
    pack_row(X, idx[r], w->xc + r * w->D);
    w->yc[r] = y[idx[r]];
  }
  probe_chunk_loss_grad(kind, m, theta, grad, w);
}

/* The owner of global row g: the rank whose rows contain it (ranks without rows skipped). */
static int owner_of(int64_t g, const int64_t *rc, int P) {
  for (int q = 0; q < P; q++)
    if (rc[2 * q + 1] > 0 && g >= rc[2 * q] && g < rc[2 * q] + rc[2 * q + 1]) return q;
  return -1;
}

/* Rows of rank q (row0, n) that belong to a block starting before row0. */
static int64_t lead_rows(int64_t row0, int64_t n, int64_t B) {
  if (n == 0 || row0 % B == 0) return 0;
  const int64_t next = (row0 / B + 1) * B;
  return LH_MIN(n, next - row0);
}

lh_status probe_work_plan(probe_work *w, const lh_dmat *X, const double *y, const bool *use) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  const int64_t n = lh_dmat_local_rows(X), row0 = lh_dmat_row_offset(X), D = w->D, B = w->chunk;
  const int64_t width = D + 2;
  int P, me;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &me);
  int64_t mine[2] = {row0, n}, *rc = NULL;
  int *sc = NULL, *sd = NULL, *rcnt = NULL, *rd = NULL;
  double *send = NULL;
  lh_free(w->halo);
  w->halo = NULL;
  w->nhalo = 0;
  local = lh_alloc((size_t)(2 * P), sizeof *rc, false, "row blocks", &rc);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof(int), true, "counts", &sc);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof(int), true, "displs", &sd);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof(int), true, "counts", &rcnt);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof(int), true, "displs", &rd);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_int_cast(B * width, "probe halo (chunk x (D + 2) values)", &(int){0}));
  if (MPI_Allgather(mine, 2, MPI_INT64_T, rc, 2, MPI_INT64_T, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "probe plan: MPI_Allgather of the row blocks failed");
  int64_t nrecv = 0;
  for (int q = 0; q < P; q++) {
    const int64_t lq = lead_rows(rc[2 * q], rc[2 * q + 1], B);
    if (lq == 0) continue;
    const int dest = owner_of((rc[2 * q] / B) * B, rc, P);
    /* lq < B and a block's halo holds fewer than B rows: the casts below are checked above */
    if (q == me) sc[dest] = (int)(lq * width);
    if (dest == me) {
      rcnt[q] = (int)(lq * width);
      rd[q] = (int)(nrecv * width);
      nrecv += lq;
    }
  }
  w->lead = lead_rows(row0, n, B);
  local = lh_alloc((size_t)(w->lead * width + 1), sizeof(double), false, "probe halo", &send);
  if (local == LH_OK)
    local = lh_alloc((size_t)(nrecv * width + 1), sizeof(double), false, "probe halo", &w->halo);
  LH_TRY(lh_agree(comm, local));
  for (int64_t i = 0; i < w->lead; i++) {
    pack_row(X, i, send + i * width);
    send[i * width + D] = y[i];
    send[i * width + D + 1] = !use || use[i] ? 1.0 : 0.0;
  }
  if (MPI_Alltoallv(send, sc, sd, MPI_DOUBLE, w->halo, rcnt, rd, MPI_DOUBLE, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "probe plan: MPI_Alltoallv of the block rows failed");
  w->nhalo = nrecv;
  w->planned = true;
done:
  lh_free(rc);
  lh_free(sc);
  lh_free(sd);
  lh_free(rcnt);
  lh_free(rd);
  lh_free(send);
  return st;
}

/* Adds the block partial in w->part to the exact sums and clears it. */
static void flush(probe_work *w, int64_t npart) {
  for (int64_t k = 0; k < npart; k++) {
    if (w->part[k] != 0) lh_xsum_add(&w->acc[k], w->part[k]);
    w->part[k] = 0;
  }
}

lh_status probe_objective(lh_probe_kind kind, const lh_dmat *X, const double *y, const bool *use,
                          int64_t count, double l2, const double *theta, probe_work *w, double *f,
                          double *grad) {
  lh_status st = LH_OK;
  const int64_t n = lh_dmat_local_rows(X), C = w->C, D = w->D, B = w->chunk;
  const int64_t npart = grad ? 1 + C * D + C : 1, width = D + 2;
  int cnt;
  if (!w->planned) LH_FAIL(LH_ERR_INTERNAL, "probe_objective without probe_work_plan");
  LH_TRY(lh_int_cast(npart, "probe accumulators", &cnt));
  memset(w->part, 0, (size_t)npart * sizeof(double));
  for (int64_t k = 0; k < npart; k++) lh_xsum_init(&w->acc[k]);
  /* blocks of global rows starting at local row w->lead, each B rows (the last one completed
   * by the halo rows of the next ranks) */
  for (int64_t b0 = w->lead; b0 < n; b0 += B) {
    const int64_t own = LH_MIN(B, n - b0);
    int64_t m = 0;
    for (int64_t i = b0; i < b0 + own; i++) {
      if (use && !use[i]) continue;
      pack_row(X, i, w->xc + m * D);
      w->yc[m++] = y[i];
    }
    if (b0 + own == n) /* the last block: the rows that live on the next ranks */
      for (int64_t h = 0; h < w->nhalo; h++) {
        const double *r = w->halo + h * width;
        if (r[D + 1] == 0) continue;
        memcpy(w->xc + m * D, r, (size_t)D * sizeof(double));
        w->yc[m++] = r[D];
      }
    probe_chunk_loss_grad(kind, m, theta, grad != NULL, w);
    flush(w, npart);
  }
  LH_TRY(lh_xsum_allreduce(w->acc, cnt, lh_dmat_comm(X)));
  const double N = (double)count;
  double pen = 0;
  for (int64_t k = 0; k < C * D; k++) pen += theta[k] * theta[k];
  *f = lh_xsum_round(&w->acc[0]) / N + 0.5 * l2 * pen;
  if (grad) {
    for (int64_t k = 0; k < C * D; k++) grad[k] = lh_xsum_round(&w->acc[1 + k]) / N + l2 * theta[k];
    for (int64_t c = 0; c < C; c++) grad[C * D + c] = lh_xsum_round(&w->acc[1 + C * D + c]) / N;
  }
done:
  return st;
}
