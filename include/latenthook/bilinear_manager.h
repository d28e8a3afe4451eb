/*
 * bilinear_manager.h: tdhook's BilinearProbeManager (SPEC 3.4) with LowRankBilinearEstimator
 * estimators (SPEC 3.8, bilinear.h) over distributed activations: the bookkeeping of bprobe.h
 * (pairs, key pattern, memoised probe_factory, pairing, tdhook's errors) whose run callback
 * fits and scores lh_bilinear estimators, one per pair key "{h1}_{h2}_{direction}".
 *
 * A data item is one module's activations for a set of samples: an lh_dmat (N x D, rows split
 * over the ranks as lh_cache_run leaves them) with the labels of the local rows (y) and a
 * selection of the local rows (use, NULL = all), which is how the train / test split of
 * lh_probe_split is applied. The two members of a pair must have the same rows (the same N and
 * row blocks). A pair's item is borrowed until the pair completes or after_all.
 *
 *   lh_bilinear_manager_factory   probe_factory(key, direction): the dispatcher id;
 *   lh_bilinear_manager_step      the dispatcher's step: BilinearProbe.step of every pair probe
 *                                 of the key; a completed pair fits (fit: lh_bilinear_fit on
 *                                 the selected rows, then the fit metrics of its predictions on
 *                                 those rows) or scores (predict: the predict metrics);
 *   before_all / after_all        tdhook's, with the "still waiting" error.
 *
 * Each fit starts from the seeded initialisation (tdhook's estimator would continue training
 * on a second fit; with allow_overwrite false a key is fitted once anyway). Predicting a key
 * that was never fitted is an error ("Probe <k> is not fitted"), not tdhook's silent use of
 * the initial weights (SPEC 9.7).
 *
 * Collectivity: the bookkeeping is deterministic, so every rank takes the same decisions; a
 * step that completes a pair is Collective (over the items' communicator), the others Local
 * without communication. Call the steps in the same order on every rank.
 */
#ifndef LATENTHOOK_BILINEAR_MANAGER_H
#define LATENTHOOK_BILINEAR_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/bilinear.h"
#include "latenthook/dmat.h"
#include "latenthook/probe.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_bilinear_manager lh_bilinear_manager;

/* A manager of npairs pairs (strings copied) whose estimators are lh_bilinear_fit(opts) (opts
 * copied). Local. Errors: LH_ERR_VALUE without a pair; LH_ERR_NOMEM. */
LH_NODISCARD lh_status lh_bilinear_manager_create(int64_t npairs, const char *const (*pairs)[2],
                                                  const lh_bilinear_opts *opts,
                                                  bool allow_overwrite, lh_bilinear_manager **out);

/* Frees the manager and its estimators; accepts NULL and NULLs the handle. Local. */
void lh_bilinear_manager_destroy(lh_bilinear_manager **m);

/* tdhook's key_pattern: the sorted unique pair members, escaped, each with '$', joined by '|'
 * ("a\.b$|c$"). Pure. */
const char *lh_bilinear_manager_key_pattern(const lh_bilinear_manager *m);

/* probe_factory(key, direction), memoised; *id is the dispatcher for lh_bilinear_manager_step.
 * Local; errors of bprobe.h ("Probe <k> already exists ..."). */
LH_NODISCARD lh_status lh_bilinear_manager_factory(lh_bilinear_manager *m, const char *key,
                                                   const char *direction, int64_t *id);

/* One item of module `key` through dispatcher id with step type "fit" or "predict": X (N x D),
 * y (labels of the local rows), use (local rows taking part, NULL = all). Collective when it
 * completes a pair (see above). Errors (same on every rank): those of bprobe.h ("Metrics for
 * <k> already exist ...", "step_type must be ..."), of lh_bilinear_fit / lh_bilinear_evaluate,
 * "Probe <k> is not fitted". */
LH_NODISCARD lh_status lh_bilinear_manager_step(lh_bilinear_manager *m, int64_t id,
                                                const lh_dmat *X, const double *y, const bool *use,
                                                const char *step_type);

/* Clears the stores of the pair probes. Local. */
void lh_bilinear_manager_before_all(lh_bilinear_manager *m);
/* "Bilinear probes still waiting on keys: [...]. Unresolved pairs: [...]" if a pair is half
 * filled (the stores are cleared either way). Local, the same on every rank. */
LH_NODISCARD lh_status lh_bilinear_manager_after_all(lh_bilinear_manager *m);

/* reset_estimators (pair probes, dispatchers and fitted estimators) and reset_metrics. Local. */
void lh_bilinear_manager_reset_estimators(lh_bilinear_manager *m);
void lh_bilinear_manager_reset_metrics(lh_bilinear_manager *m);

/* Pair probes in creation order: count, key, and h1 (side 0), h2 (side 1) or the direction
 * (side 2); NULL out of range. Pure. */
int64_t lh_bilinear_manager_count(const lh_bilinear_manager *m);
const char *lh_bilinear_manager_key(const lh_bilinear_manager *m, int64_t i);
const char *lh_bilinear_manager_pair(const lh_bilinear_manager *m, int64_t i, int side);

/* The fitted estimator of a pair key, or NULL (never fitted, or forgotten). Pure. */
const lh_bilinear *lh_bilinear_manager_estimator(const lh_bilinear_manager *m, const char *key);

/* The metrics of a pair key, or NULL when absent. Pure. */
const lh_probe_metrics *lh_bilinear_manager_fit_metrics(const lh_bilinear_manager *m,
                                                        const char *key);
const lh_probe_metrics *lh_bilinear_manager_predict_metrics(const lh_bilinear_manager *m,
                                                            const char *key);

#ifdef __cplusplus
}
#endif
#endif
