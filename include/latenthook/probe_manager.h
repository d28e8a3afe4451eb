/*
 * probe_manager.h: tdhook's ProbeManager (SPEC 3.2): the bookkeeping of one estimator per
 * probed (module, direction), keyed "<module>_<direction>" ("linear1_fwd",
 * "transformer.h.0_fwd", "td_module.module.linear1_fwd" with absolute names), with the fit and
 * predict metrics of each key and tdhook's overwrite errors.
 *
 * The Python manager hands a Probe to the Probing context (probe_factory) and the probe calls
 * back with one batch at each step; here the caller holds the whole data set of a key as an
 * lh_dmat (the reduced activations of lh_cache_run) and makes the two steps explicit:
 *   lh_probe_manager_factory  probe_factory(key, direction): a fresh, unfitted estimator;
 *   lh_probe_manager_fit      Probe.step(step_type="fit"): estimator.fit, then the fit
 *                             metrics of its predictions on the same rows;
 *   lh_probe_manager_predict  Probe.step(step_type="predict"): the predict metrics.
 * Metrics are lh_probe_evaluate's (probe.h): the same on any number of ranks.
 *
 * Errors (LH_ERR_VALUE, every rank alike), with allow_overwrite false:
 *   factory on a key whose estimator exists: "Probe <k> already exists, call
 *     reset_estimators() to remove the existing probes or use allow_overwrite=True";
 *   a second fit (or predict) of a key before reset_metrics: "Metrics for <k> already exist,
 *     call reset_metrics() to remove the existing metrics or use allow_overwrite=True"; as in
 *     tdhook the fit check comes after the estimator was fitted (the new fit is kept);
 * and always: fit or predict on an index the manager never gave, predict with an estimator
 * that was never fitted ("Probe <k> is not fitted": the Python estimator would silently
 * predict with its initial weights, SPEC 9.7).
 */
#ifndef LATENTHOOK_PROBE_MANAGER_H
#define LATENTHOOK_PROBE_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/dmat.h"
#include "latenthook/probe.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_probe_manager lh_probe_manager;

/* A manager whose estimators are lh_probe_fit(opts) (opts copied). Local. */
LH_NODISCARD lh_status lh_probe_manager_create(const lh_probe_opts *opts, bool allow_overwrite,
                                               lh_probe_manager **out);

/* Frees the manager and its probes; accepts NULL and NULLs the handle. Local. */
void lh_probe_manager_destroy(lh_probe_manager **m);

/* probe_factory(key, direction): registers a fresh unfitted estimator under
 * "<key>_<direction>" and returns its index (stable until destroy). Local; the error above. */
LH_NODISCARD lh_status lh_probe_manager_factory(lh_probe_manager *m, const char *key,
                                                const char *direction, int64_t *index);

/* Fit step of probe `index` on the rows of X selected by `use` (NULL: all) with labels y (n
 * local values): fits, then records the fit metrics on those rows. Collective over X's
 * communicator; errors of lh_probe_fit / lh_probe_evaluate and those above. */
LH_NODISCARD lh_status lh_probe_manager_fit(lh_probe_manager *m, int64_t index, const lh_dmat *X,
                                            const double *y, const bool *use);

/* Predict step: records the predict metrics of probe `index` on the selected rows.
 * Collective; errors as above. */
LH_NODISCARD lh_status lh_probe_manager_predict(lh_probe_manager *m, int64_t index,
                                                const lh_dmat *X, const double *y,
                                                const bool *use);

/* estimators = {} (the metrics stay; indices stay valid, as a Probe keeps its estimator). */
void lh_probe_manager_reset_estimators(lh_probe_manager *m);
/* fit_metrics = predict_metrics = {}. Local. */
void lh_probe_manager_reset_metrics(lh_probe_manager *m);

/* Keys ever registered, in registration order (index i). Local. */
int64_t lh_probe_manager_count(const lh_probe_manager *m);
const char *lh_probe_manager_key(const lh_probe_manager *m, int64_t index);
/* Sizes of the dicts (estimators, fit_metrics, predict_metrics). Local. */
int64_t lh_probe_manager_n_estimators(const lh_probe_manager *m);
int64_t lh_probe_manager_n_fit_metrics(const lh_probe_manager *m);
int64_t lh_probe_manager_n_predict_metrics(const lh_probe_manager *m);
/* The fitted probe of `index` (NULL before the first fit). Local. */
const lh_probe *lh_probe_manager_probe(const lh_probe_manager *m, int64_t index);
/* The metrics of a key ("linear1_fwd"), or NULL when the dict has no such entry. Local. */
const lh_probe_metrics *lh_probe_manager_fit_metrics(const lh_probe_manager *m, const char *key);
const lh_probe_metrics *lh_probe_manager_predict_metrics(const lh_probe_manager *m,
                                                         const char *key);

#ifdef __cplusplus
}
#endif
#endif
