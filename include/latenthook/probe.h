/*
 * probe.h: linear probes and concept directions fitted over distributed activations
 * (SPEC 3.5-3.8; Alain & Bengio 2018, Kim et al. 2018).
 *
 * The samples are the rows of an lh_dmat X (N x D, row blocks over the ranks); each rank
 * passes the labels of its own rows (`y`, n values, float64: class ids 0..C-1 for
 * classifiers, 0/1 weights for the mean difference, targets for regression) and optionally a
 * mask `use` (n flags, NULL = every row) that selects the rows taking part, which is how a
 * train/test split by global sample index (lh_probe_split) is applied without copying.
 *
 * Estimators:
 *   - mean difference (MeanDifferenceClassifier, SPEC 3.5): w = mu+ - mu-, b = -(|mu+|^2 -
 *     |mu-|^2)/2, optionally divided by |w|; one allreduce of exact class sums;
 *   - linear classifier (LinearEstimator with num_classes = C, softmax cross-entropy) and
 *     linear regressor (num_classes = None, MSE), scores s = W x + b, W (C x D), fitted by
 *       adam   tdhook's training loop: epochs of seeded-shuffled mini-batches, Adam; the
 *              mini-batches are drawn from a permutation of the global sample indices that
 *              depends on the seed only, so the run is the same on any rank count;
 *       lbfgs  full-batch L-BFGS (libLBFGS, More-Thuente line search) on
 *              mean loss + (l2/2) |W|_F^2 (intercepts not penalised), started at zero;
 *       ridge  regression only, closed form minimising (1/N)|Xw + b - y|^2 + l2 |w|^2
 *              (centred normal equations: replicated and LAPACK Cholesky below
 *              ridge_scalapack_min_d features, block-cyclic and ScaLAPACK pdposv from there);
 *   - low-rank bilinear forward (SPEC 3.8), y = (U h1 + u) * (V h2 + v) + b.
 * Fitting a fitted probe again (tdhook's repeated fit) continues from its parameters:
 * lh_probe_fit_warm.
 *
 * Reproducibility: class sums, counts and metric sums are accumulated exactly (xsum.h), and
 * scores (decision, predict, predict_proba, evaluate) are one DGEMM per fixed block of global
 * rows, each sample scored by the same call on any rank count, so the mean difference, the
 * scores and every metric are bit-identical on any number of ranks. The lbfgs
 * objective is computed by fixed blocks of 4096 global rows, each by one rank with two DGEMMs
 * in float64, and the block results are summed exactly: lbfgs fits are bit-identical on any
 * number of ranks too. adam sums each mini-batch's members per rank with BLAS and one float64
 * allreduce, and the ridge Gram matrix is a dsyrk per rank summed the same way (or a pdsyrk of
 * block-cyclic panels): these agree across rank counts to rounding (1e-10 relative), not bit
 * for bit.
 * Fitted models are small (C x D) and replicated on every rank.
 *
 * Errors (LH_ERR_VALUE unless said): non-finite data or labels (naming the global sample and
 * feature), a label that is not a class id in [0, C), a class missing for the mean
 * difference ("Both classes must be present in y"), no sample to fit, ridge asked for a
 * classifier, invalid options, a singular ridge system (l2 = 0 with collinear features).
 */
#ifndef LATENTHOOK_PROBE_H
#define LATENTHOOK_PROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lh_probe_kind {
  LH_PROBE_MEAN_DIFFERENCE, /* binary; coef 1 x D; predict = f(x) > 0 */
  LH_PROBE_CLASSIFIER,      /* C >= 2 classes; coef C x D; predict = argmax */
  LH_PROBE_REGRESSOR        /* coef 1 x D; predict = w.x + b */
} lh_probe_kind;

typedef enum lh_probe_solver { LH_PROBE_ADAM, LH_PROBE_LBFGS, LH_PROBE_RIDGE } lh_probe_solver;

typedef struct lh_probe_opts {
  lh_probe_kind kind;
  int64_t num_classes;    /* classifier: C >= 2 */
  bool normalize;         /* mean difference: divide w and b by |w| (default true) */
  lh_probe_solver solver; /* linear probes (default adam) */
  double l2;              /* penalty (default 0; see the solvers above for its scale) */
  /* adam (tdhook defaults) */
  int64_t epochs;                /* 100 */
  int64_t batch_size;            /* 128 */
  double lr;                     /* 1e-3 */
  double beta1, beta2, adam_eps; /* 0.9, 0.999, 1e-8 */
  /* lbfgs */
  int64_t max_iter; /* 1000 */
  double tol;       /* stop when |grad| <= tol * max(1, |params|) (default 1e-10) */
  /* ridge: from this many features on, the normal equations are distributed block-cyclic
   * and solved by ScaLAPACK instead of replicated on every rank (2048; 0 = always) */
  int64_t ridge_scalapack_min_d;
  /* initialisation (adam) and shuffling */
  uint64_t seed; /* 0 */
} lh_probe_opts;

/* The defaults above. Pure. */
lh_probe_opts lh_probe_defaults(void);

/* A fitted probe, the same on every rank. */
typedef struct lh_probe {
  lh_probe_kind kind;
  int64_t C;         /* rows of coef: classes, or 1 */
  int64_t D;         /* features */
  double *coef;      /* C x D */
  double *intercept; /* C */
  /* what the fit did */
  int64_t n_fit;      /* samples used */
  int64_t iterations; /* lbfgs iterations or adam steps of the last fit (0 for closed forms) */
  int64_t epochs;     /* adam: epochs behind these parameters, over a fit and the warm fits
                         that continued it (numbers the next warm fit's epochs); else 0 */
  double objective;   /* final training objective (mean loss + penalty; NaN for mean diff.) */
  bool converged;     /* lbfgs reached its tolerance, or a line search stopped on rounding
                         with |grad| / max(1, |params|) <= 1e-6 (closed forms, adam: true) */
  double grad_norm;   /* lbfgs: final |grad| / max(1, |params|) (NaN otherwise) */
  char solver_message[96];
} lh_probe;

/* Releases a probe and sets *p to NULL; accepts NULL. Local. */
void lh_probe_destroy(lh_probe **p);

/* Fits a probe on the rows of X selected by `use` (NULL: all), labels y (n local values).
 * Collective over X's communicator. Errors as listed at the top of this file. */
LH_NODISCARD lh_status lh_probe_fit(const lh_dmat *X, const double *y, const bool *use,
                                    const lh_probe_opts *opts, lh_probe **out);

/* Fits the fitted probe p again, as tdhook does when fit is called on a fitted estimator
 * (SPEC 3.6: parameters persist across fit calls, Adam state restarts): adam and lbfgs start
 * from p's coef and intercept instead of their usual start; adam numbers its epochs after
 * the p->epochs it was trained for, so two warm-continued fits of k epochs visit the
 * mini-batches of one fit of 2k epochs (with a new Adam state at the second); the closed
 * forms (mean difference, ridge) are fitted anew as tdhook's MeanDifferenceClassifier.fit.
 * Softmax scores do not change when all intercepts shift together and the intercepts are not
 * penalised: a classifier keeps the intercept shift of its start (zero-sum from a fresh lbfgs
 * fit, whatever adam left otherwise).
 * p must have opts' kind, C rows (num_classes, or 1) and X's D features, else LH_ERR_VALUE.
 * On success p holds the new fit; on error p is unchanged. Collective over X's communicator
 * (p the same on every rank). */
LH_NODISCARD lh_status lh_probe_fit_warm(lh_probe *p, const lh_dmat *X, const double *y,
                                         const bool *use, const lh_probe_opts *opts);

/* The solvers behind lh_probe_fit (same contract; opts->kind selects the loss). */
LH_NODISCARD lh_status lh_probe_fit_mean_difference(const lh_dmat *X, const double *y,
                                                    const bool *use, bool normalize,
                                                    lh_probe **out);
LH_NODISCARD lh_status lh_probe_fit_lbfgs(const lh_dmat *X, const double *y, const bool *use,
                                          const lh_probe_opts *opts, lh_probe **out);
LH_NODISCARD lh_status lh_probe_fit_adam(const lh_dmat *X, const double *y, const bool *use,
                                         const lh_probe_opts *opts, lh_probe **out);
LH_NODISCARD lh_status lh_probe_fit_ridge(const lh_dmat *X, const double *y, const bool *use,
                                          const lh_probe_opts *opts, lh_probe **out);

/* Scores of the local rows: out (n x C) = X W^T + b, by DGEMM over fixed blocks of global
 * rows, so that each row's scores are the same bits on any number of ranks. Local:
 * LH_ERR_NOMEM (a block buffer of at most max(256, 2^20 / D) x D values), LH_ERR_VALUE when X
 * does not have the probe's D columns. */
LH_NODISCARD lh_status lh_probe_decision(const lh_probe *p, const lh_dmat *X, double *out);

/* Predictions of the local rows, out[n]: the class id (0/1 for the mean difference, as
 * SPEC's bool) or the regression value. Local; errors as lh_probe_decision. */
LH_NODISCARD lh_status lh_probe_predict(const lh_probe *p, const lh_dmat *X, double *out);

/* Class probabilities of the local rows, out (n x K): K = 2 ([1 - s(f), s(f)], s logistic)
 * for the mean difference, K = C (softmax) for a classifier. Local; LH_ERR_VALUE for a
 * regressor, errors as lh_probe_decision. */
LH_NODISCARD lh_status lh_probe_predict_proba(const lh_probe *p, const lh_dmat *X, double *out);

/* Quality of a probe on the rows selected by `use`. */
typedef struct lh_probe_metrics {
  int64_t n; /* samples evaluated */
  bool classification;
  double accuracy;          /* fraction of exact predictions */
  double balanced_accuracy; /* mean recall over the classes present in y */
  double cross_entropy;     /* mean -log p(y | x), computed from the scores (no clipping) */
  double macro_f1;          /* mean F1 over the classes present in y or in the predictions */
  double mse, r2;           /* regression; R^2 as scikit-learn (1 - SSres / SStot; if SStot
                               is 0: 1 when SSres is 0, else 0) */
} lh_probe_metrics;

/* Evaluates p on the selected rows (labels checked as by lh_probe_fit). Collective; the
 * same on every rank count. No selected row -> LH_ERR_VALUE. */
LH_NODISCARD lh_status lh_probe_evaluate(const lh_probe *p, const lh_dmat *X, const double *y,
                                         const bool *use, lh_probe_metrics *out);

/* Train/test split by global sample index: test[i] = true for local row i (global index
 * row0 + i) when a hash of (seed, global index) falls below test_fraction. The same sample
 * is in the same set for any rank count. Pure. */
void lh_probe_split(uint64_t seed, double test_fraction, int64_t row0, int64_t n, bool *test);

/* Low-rank bilinear forward (SPEC 3.8): out[i*C + c] = (U_c.h1_i + u_c) * (V_c.h2_i + v_c)
 * + b_c (b may be NULL: bias=False), for n samples h1 (n x d1), h2 (n x d2), U (C x d1),
 * V (C x d2). Pure. */
void lh_probe_bilinear_forward(int64_t C, int64_t d1, int64_t d2, const double *U, const double *u,
                               const double *V, const double *v, const double *b, int64_t n,
                               const double *h1, const double *h2, double *out);

#ifdef __cplusplus
}
#endif
#endif
