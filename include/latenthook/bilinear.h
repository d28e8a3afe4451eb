/*
 * bilinear.h: tdhook's LowRankBilinearEstimator (SPEC 3.8) trained over two distributed
 * activation sets: y = (U h1 + u) * (V h2 + v) + b, elementwise over C outputs (C =
 * num_classes, or 1 for regression), U (C x d1), V (C x d2), with the per-factor biases u, v
 * always present and the additive b (zeros at start) only with bias = true.
 *
 * Training is tdhook's TorchEstimator loop (SPEC 3.6): `epochs` epochs of mini-batches of
 * `batch_size` samples (last partial batch kept) in a seeded shuffled order, one Adam step per
 * mini-batch on the batch-mean softmax cross-entropy (classification) or MSE (regression).
 * Data-parallel: every rank builds the same permutation of the selected global indices (the
 * schedule of probe_adam.c, see probe_bilinear_fit.c), computes the gradient terms of the batch
 * members it owns with BLAS, and one float64 allreduce per step completes the gradient. The
 * trajectory is the same on any rank count up to rounding (1e-10 relative).
 *
 * H1 and H2 hold the same N samples (rows) in the same row blocks (create them with the same
 * communicator and N). Labels y and the selection `use` are per local row, as in probe.h.
 */
#ifndef LATENTHOOK_BILINEAR_H
#define LATENTHOOK_BILINEAR_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/probe.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_bilinear_opts {
  int64_t num_classes; /* >= 2: classifier; 0: regression (C = 1) */
  bool bias;           /* the additive b (default true) */
  int64_t epochs;      /* 100 */
  int64_t batch_size;  /* 128 */
  double lr;           /* 1e-3 */
  double beta1, beta2, adam_eps; /* 0.9, 0.999, 1e-8 */
  uint64_t seed;       /* initialisation and shuffling (0) */
} lh_bilinear_opts;

/* tdhook's defaults (classification needs num_classes set). Pure. */
lh_bilinear_opts lh_bilinear_defaults(void);

/* A fitted estimator, replicated on every rank. */
typedef struct lh_bilinear {
  int64_t C, d1, d2;
  bool classification;
  double *U, *u; /* C x d1, C */
  double *V, *v; /* C x d2, C */
  double *b;     /* C, or NULL (bias = false) */
  int64_t n_fit, iterations; /* samples used, Adam steps */
  double objective;          /* final mean training loss */
} lh_bilinear;

/* Releases an estimator and sets *m to NULL; accepts NULL. Local. */
void lh_bilinear_destroy(lh_bilinear **m);

/* Fits on the rows selected by `use` (NULL: all) of H1 (N x d1) and H2 (N x d2) with labels y
 * (class ids in [0, C) or regression targets). Collective. Errors (LH_ERR_VALUE, one message
 * agreed on every rank): H1 and H2 with different N or row blocks, non-finite data or labels,
 * labels that are not class ids, no sample, invalid options. */
LH_NODISCARD lh_status lh_bilinear_fit(const lh_dmat *H1, const lh_dmat *H2, const double *y,
                                       const bool *use, const lh_bilinear_opts *o,
                                       lh_bilinear **out);

/* Outputs of the local rows, out (n x C). Local. */
void lh_bilinear_decision(const lh_bilinear *m, const lh_dmat *H1, const lh_dmat *H2,
                          double *out);

/* Predictions of the local rows, out[n]: argmax class id (first maximum) or the regression
 * value. Local. */
void lh_bilinear_predict(const lh_bilinear *m, const lh_dmat *H1, const lh_dmat *H2,
                         double *out);

/* Metrics of lh_probe_evaluate (accuracy, balanced accuracy, cross-entropy, macro F1; or MSE,
 * R^2) on the selected rows. Collective. */
LH_NODISCARD lh_status lh_bilinear_evaluate(const lh_bilinear *m, const lh_dmat *H1,
                                            const lh_dmat *H2, const double *y,
                                            const bool *use, lh_probe_metrics *out);

#ifdef __cplusplus
}
#endif
#endif
