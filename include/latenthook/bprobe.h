/*
 * bprobe.h: the bookkeeping of tdhook's BilinearProbe and BilinearProbeManager (SPEC 3.3,
 * 3.4): which pairs of hooked modules feed which bilinear probe, when a pair is complete, the
 * key pattern that selects the modules to hook, and the fit / predict metrics per pair.
 *
 * The estimator work is delegated to a callback (lh_bpm_callbacks.run) that receives the pair
 * key ("{h1}_{h2}_{direction}"), the two data items and the labels as opaque pointers, fits or
 * predicts, and returns the metrics of the batch; the manager keeps one metrics record per pair
 * key and raises tdhook's errors. Data items are borrowed: a half-filled pair keeps the pointer
 * of its first item until the second arrives, so the caller keeps it alive until then (or until
 * after_all).
 *
 * Semantics (SPEC 3.3-3.4):
 *   - key_pattern: the sorted unique keys of all pairs, each regex-escaped and suffixed with
 *     '$', joined by '|' ([("a.b","c")] -> "a\.b$|c$");
 *   - probe_factory(key, dir) is memoised per (key, dir): for each pair containing key, in the
 *     order of the pairs (a pair listed twice is fed twice), it gets the pair probe memoised
 *     for the tuple (h1, h2, dir) or creates it; calling it again never fails;
 *   - creating a pair probe whose key "{h1}_{h2}_{dir}" an estimator already has, without
 *     allow_overwrite -> "Probe {key} already exists ...": create_pair_probe(h1, h2, dir) on
 *     an existing tuple, or the factory meeting two pairs whose keys coincide (("a_b", "c")
 *     and ("a", "b_c")); with allow_overwrite the estimator of the key is replaced (forget
 *     callback);
 *   - step: a self pair (h1 == h2) runs at once with (data, data); otherwise the item is stored
 *     as h1 or h2 and the pair runs when both are there, with the labels and step type of the
 *     call that completed it; the step type is checked only when a pair runs ("step_type must
 *     be 'fit' or 'predict', got '...'");
 *   - metrics: a second fit (or predict) record for the same pair key without allow_overwrite
 *     -> "Metrics for {key} already exist ..." (the fit has run by then, as in tdhook);
 *   - after_all: "Bilinear probes still waiting on keys: [...]. Unresolved pairs: [...]" if a
 *     pair is half-filled; every store is cleared either way. before_all clears the stores.
 *   - reset_estimators clears the pair probes and the factory memo; reset_metrics both
 *     metrics tables.
 * Everything here is Local (no MPI); errors are LH_ERR_VALUE with tdhook's messages.
 */
#ifndef LATENTHOOK_BPROBE_H
#define LATENTHOOK_BPROBE_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/probe.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_bpm lh_bpm;

/* Fits (fit = true; the metrics are those of the fitted estimator's predictions on the batch)
 * or predicts, and writes the batch metrics to *metrics. */
typedef lh_status lh_bpm_run_fn(const char *pair_key, const void *h1, const void *h2,
                                const void *labels, bool fit, lh_probe_metrics *metrics,
                                void *user);
/* The estimator of pair_key is dropped (reset or replaced). */
typedef void lh_bpm_forget_fn(const char *pair_key, void *user);

typedef struct lh_bpm_callbacks {
  lh_bpm_run_fn *run;
  lh_bpm_forget_fn *forget; /* may be NULL */
  void *user;
} lh_bpm_callbacks;

/* A manager of npairs pairs (pairs[k][0], pairs[k][1]; strings copied). Local. */
LH_NODISCARD lh_status lh_bpm_create(int64_t npairs, const char *const (*pairs)[2],
                                     bool allow_overwrite, const lh_bpm_callbacks *cb,
                                     lh_bpm **out);
/* Releases the manager and sets *m to NULL; accepts NULL. Local. */
void lh_bpm_destroy(lh_bpm **m);

/* The key pattern (owned by the manager). Pure. */
const char *lh_bpm_key_pattern(const lh_bpm *m);

/* The dispatcher of (key, direction), memoised; *id identifies it for lh_bpm_step. Local. */
LH_NODISCARD lh_status lh_bpm_probe_factory(lh_bpm *m, const char *key, const char *direction,
                                            int64_t *id);
/* Creates the pair probe (h1, h2, direction); errors as above. Local. */
LH_NODISCARD lh_status lh_bpm_create_pair_probe(lh_bpm *m, const char *h1, const char *h2,
                                                const char *direction);
/* One item of module `key` through dispatcher id. Local. */
LH_NODISCARD lh_status lh_bpm_step(lh_bpm *m, int64_t id, const void *data, const void *labels,
                                   const char *step_type);

void lh_bpm_before_all(lh_bpm *m);
LH_NODISCARD lh_status lh_bpm_after_all(lh_bpm *m);
/* Whether the pair probe pair_key holds exactly one side. Pure. */
bool lh_bpm_is_waiting(const lh_bpm *m, const char *pair_key);

void lh_bpm_reset_estimators(lh_bpm *m);
void lh_bpm_reset_metrics(lh_bpm *m);

/* Number of pair probes (estimators), and the metrics records (NULL when absent). Pure. */
int64_t lh_bpm_num_probes(const lh_bpm *m);
/* Pair probe i in creation order: its key, and h1 (side 0), h2 (side 1) or the direction
 * (side 2); NULL out of range. Pure. */
const char *lh_bpm_probe_key(const lh_bpm *m, int64_t i);
const char *lh_bpm_probe_pair(const lh_bpm *m, int64_t i, int side);
const lh_probe_metrics *lh_bpm_fit_metrics(const lh_bpm *m, const char *pair_key);
const lh_probe_metrics *lh_bpm_predict_metrics(const lh_bpm *m, const char *pair_key);
int64_t lh_bpm_num_metrics(const lh_bpm *m, bool fit);

#ifdef __cplusplus
}
#endif
#endif
