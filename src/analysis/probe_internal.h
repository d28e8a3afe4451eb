/*
 * probe_internal.h (private): what the probe files share: row access in float64, the
 * collective input check, allocation of a model, and the loss and gradient of the linear
 * probes computed by chunks of rows with BLAS.
 */
#ifndef LH_ANALYSIS_PROBE_INTERNAL_H
#define LH_ANALYSIS_PROBE_INTERNAL_H

#include "latenthook/probe.h"
#include "latenthook/xsum.h"

/* Local row i of X as float64: a pointer into X (float64) or into tmp[D] (float32). */
static inline const double *probe_row(const lh_dmat *X, int64_t i, double *tmp) {
  const int64_t D = lh_dmat_cols(X);
  if (lh_dmat_dtype(X) == LH_F64) return (const double *)lh_dmat_local_const(X) + i * D;
  const float *r = (const float *)lh_dmat_local_const(X) + i * D;
  for (int64_t j = 0; j < D; j++) tmp[j] = (double)r[j];
  return tmp;
}

/* Checks the selected rows and labels: finite data and labels; for a classifier integer
 * labels in [0, C); for the mean difference (C = 2) nothing more (SPEC: labels are weights).
 * Stores the global number of selected rows in *count. Collective; `what` prefixes messages
 * ("fit", "evaluate"). */
lh_status probe_check(const lh_dmat *X, const double *y, const bool *use, lh_probe_kind kind,
                      int64_t C, const char *what, int64_t *count);

/* Rows in one panel of the distributed ridge solver's Gram products (probe_ridge.c); 0
 * (default) picks about 16 MiB. A knob for tests, to make small data go through several
 * panels. */
extern int64_t probe_ridge_panel_rows;

/* lh_probe_fit_adam / lh_probe_fit_lbfgs started from init's parameters (init NULL: their
 * usual start; else init has the shape the options give, checked by lh_probe_fit_warm). adam
 * also numbers its epochs after init->epochs. Collective. */
lh_status probe_fit_adam_from(const lh_dmat *X, const double *y, const bool *use,
                              const lh_probe_opts *o, const lh_probe *init, lh_probe **out);
lh_status probe_fit_lbfgs_from(const lh_dmat *X, const double *y, const bool *use,
                               const lh_probe_opts *o, const lh_probe *init, lh_probe **out);

/* A zeroed probe of the given shape. Local. */
lh_status probe_alloc(lh_probe_kind kind, int64_t C, int64_t D, lh_probe **out);

/* Scoring by fixed blocks of global rows (probe_model.c): rows per block, a function of D
 * only (16..256; the block buffer stays near 8 MiB or below). Pure. */
int64_t probe_score_block(int64_t D);

/* The scores of a probe over the local rows of X, block by block:
 *   for (i0 = 0; i0 < n; i0 = i1) { i1 = probe_scorer_end(&s, i0);
 *                                   sc = probe_scorer_run(&s, i0, i1); ... }
 * sc holds the scores of local rows i0..i1-1 (C apart), valid until the next run. */
typedef struct probe_scorer {
  const lh_probe *p;
  const lh_dmat *X;
  int64_t B;  /* rows per block */
  double *xb; /* B x D packed block */
  double *sb; /* B x C its scores */
} probe_scorer;

/* Local (LH_ERR_NOMEM; LH_ERR_VALUE when X does not have the probe's D columns). On error
 * nothing is allocated. */
lh_status probe_scorer_init(probe_scorer *s, const lh_probe *p, const lh_dmat *X);
void probe_scorer_free(probe_scorer *s);
/* The end of the global block that holds local row i0 (capped at n). Local. */
int64_t probe_scorer_end(const probe_scorer *s, int64_t i0);
/* The scores of local rows [i0, i1), all in one block: one DGEMM. Local. */
const double *probe_scorer_run(probe_scorer *s, int64_t i0, int64_t i1);

/* The prediction from one sample's scores si (C): class id (first maximum, as torch.argmax;
 * f > 0 for the mean difference) or the regression value. Pure. */
double probe_score_predict(lh_probe_kind kind, int64_t C, const double *si);

/* Metrics from the scores s (n x C; C = 1 for the mean difference and regression) of the local
 * rows: what lh_probe_evaluate computes after lh_probe_decision (also used by the bilinear
 * probe). count = selected rows in total (>= 1). Collective. */
lh_status probe_score_metrics(lh_probe_kind kind, int64_t C, MPI_Comm comm, int64_t n,
                              const double *s, const double *y, const bool *use, int64_t count,
                              lh_probe_metrics *m);

/* Workspace of the BLAS objective. Rows are packed as float64 in chunks of at most `chunk`
 * rows, so memory stays O(chunk * D) whatever the number of local rows. For the full-batch
 * objective the chunks are the blocks of global rows [k chunk, (k+1) chunk): each block is
 * computed whole by the rank that owns its first row (the rows of a block that live on the next
 * ranks are copied to it once, by probe_work_plan: at most chunk - 1 rows), and the block sums
 * are added to exact accumulators. The objective is then the same bits on any rank count. */
typedef struct probe_work {
  int64_t C, D, chunk;
  int64_t *idx; /* chunk local row indices */
  double *xc;   /* chunk x D packed rows */
  double *yc;   /* chunk labels */
  double *s;    /* chunk x C scores, then residuals */
  double *part; /* 1 + C*D + C: loss sum, gradient sums of W (C x D) and of b (C) */
  lh_xsum *acc; /* 1 + C*D + C exact sums of the block partials */
  /* the plan (probe_work_plan) */
  bool planned;
  int64_t lead;  /* local rows [0, lead) belong to a block owned by an earlier rank */
  int64_t nhalo; /* rows of the next ranks that complete this rank's last block */
  double *halo;  /* nhalo x (D + 2): row, label, selected (0/1) */
} probe_work;

/* Rows per packed chunk (4096 x 768 float64 = 25 MB). */
#define PROBE_CHUNK 4096

/* Allocates a workspace (zeroed part). Local; on error nothing is allocated. */
lh_status probe_work_init(probe_work *w, int64_t C, int64_t D, int64_t chunk);
void probe_work_free(probe_work *w);

/* Copies the rows (and labels, selection) of this rank's blocks that live on the next ranks.
 * Collective; chunk must be the same on every rank. */
lh_status probe_work_plan(probe_work *w, const lh_dmat *X, const double *y, const bool *use);

/* Adds to w->part the loss sum and (if grad) the gradient sums of the m <= w->chunk rows
 * packed in w->xc (labels w->yc) under theta = [W (C x D), b (C)]: the scores as one GEMM
 * (rows . W^T), the softmax / squared error in float64, the gradient as one GEMM
 * (residuals^T . rows). Local; never fails. */
void probe_chunk_loss_grad(lh_probe_kind kind, int64_t m, const double *theta, bool grad,
                           probe_work *w);

/* The same for the local rows idx[0..m) of X (labels y by local row). Local. */
void probe_rows_loss_grad(lh_probe_kind kind, const lh_dmat *X, const double *y, const int64_t *idx,
                          int64_t m, const double *theta, bool grad, probe_work *w);

/* The full-batch objective over the selected rows (count of them in total):
 * f = sum(loss)/count + (l2/2)|W|^2 and, when grad is not NULL, its gradient (C*D + C).
 * Needs probe_work_plan. Per block, probe_chunk_loss_grad; the block sums go to exact
 * accumulators, then one allreduce of them. Collective; the same bits on any rank count. */
lh_status probe_objective(lh_probe_kind kind, const lh_dmat *X, const double *y, const bool *use,
                          int64_t count, double l2, const double *theta, probe_work *w, double *f,
                          double *grad);

#endif
