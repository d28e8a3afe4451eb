/*
 * cmd_probe_pairs.h (private): the pair probes of `latenthook probe --model ... --estimator
 * low-rank-bilinear --pair H1,H2`, called by cmd_probe_model.c around its hooked pass
 * (cmd_probe_pairs.c).
 */
#ifndef LH_CLI_CMD_PROBE_PAIRS_H
#define LH_CLI_CMD_PROBE_PAIRS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "latenthook/bilinear_manager.h"
#include "latenthook/cache.h"
#include "latenthook/h5.h"
#include "latenthook/probe.h"
#include "latenthook/status.h"

/* The metrics of one probe as JSON (cmd_probe_model.c). */
json_t *probe_metrics_json(const lh_probe_metrics *m);

/* Splits "H1,H2" (exactly one comma, both names non-empty) into a copy *buf (lh_free) and
 * the two names pointing into it. Pure; LH_ERR_USAGE, LH_ERR_NOMEM. */
LH_NODISCARD lh_status probe_pairs_parse(const char *arg, char **buf, const char **h1,
                                         const char **h2);

/* Keeps of the names Probing hooks (lh_probing_select) those that are pair members, with
 * their exact pattern for lh_cache_run in *exact (replaced); fails when a pair has neither
 * member among them (nothing would ever reach its probe). Local, the same on every rank. */
LH_NODISCARD lh_status probe_pairs_select(int64_t npairs, const char *const (*pairs)[2],
                                          const char *pattern, char **names, int64_t *count,
                                          char **exact);

/* Probing's enter: probe_factory(name, direction) for every direction and hooked module, in
 * that order ("Probe <key> already exists" for two pairs with the same key). Local, the same
 * on every rank. */
LH_NODISCARD lh_status probe_pairs_enter(lh_bilinear_manager *bm, const lh_cache_opts *co,
                                         char **names, int64_t count);

/* Probing with the manager over the cached activations, after probe_pairs_enter: a fit pass
 * (before_all, one step per cached module on the train rows, after_all) and, with test, a
 * predict pass on the test rows; fails when a pair's probe saw no item. Collective. */
LH_NODISCARD lh_status probe_pairs_run(lh_bilinear_manager *bm, const lh_cache_opts *co,
                                       char **names, int64_t count, const lh_cache *c,
                                       const double *y, const bool *train, const bool *test,
                                       int64_t npairs, const char *const (*pairs)[2]);

/* Writes /<key>/U, /u, /V, /v (and /b) of every pair probe. Collective. */
LH_NODISCARD lh_status probe_pairs_write(lh_h5_out *o, const lh_bilinear_manager *bm);

/* Adds the per-key results (keys, n_features, fit, fit_metrics, predict_metrics) to doc and
 * logs the table on stderr (rank 0). */
void probe_pairs_report(const lh_bilinear_manager *bm, bool predict, json_t *doc);

#endif
