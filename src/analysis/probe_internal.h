/*
 * probe_internal.h (private): what the probe files share: row access in float64, the
 * collective input check, allocation of a model, and the per-row loss and gradient of the
 * linear probes accumulated exactly (xsum.h) so that any split of the rows over the ranks
 * gives the same sums.
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

/* A zeroed probe of the given shape. Local. */
lh_status probe_alloc(lh_probe_kind kind, int64_t C, int64_t D, lh_probe **out);

/* Accumulators of a linear probe's gradient: index 0 is the loss, then C*D weights, then C
 * intercepts. */
static inline int64_t probe_nacc(int64_t C, int64_t D) { return 1 + C * D + C; }

/* Adds the loss of sample x with label y under parameters theta = [W (C x D), b (C)] to
 * acc[0] and its gradient to acc[1..]. Classifier: softmax cross-entropy; regressor: squared
 * error. `s` is C doubles of scratch. Pure. */
void probe_row_loss_grad(lh_probe_kind kind, int64_t C, int64_t D, const double *theta,
                         const double *x, double y, double *s, lh_xsum *acc);

/* The full-batch objective over the selected rows (count of them in total):
 * f = sum(loss)/count + (l2/2)|W|^2 and, when grad is not NULL, its gradient (C*D + C).
 * acc holds probe_nacc(C, D) accumulators, scratch D + C doubles. Collective. */
lh_status probe_objective(lh_probe_kind kind, int64_t C, const lh_dmat *X, const double *y,
                          const bool *use, int64_t count, double l2, const double *theta,
                          lh_xsum *acc, double *scratch, double *f, double *grad);

#endif
