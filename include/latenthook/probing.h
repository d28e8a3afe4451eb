/*
 * probing.h: what tdhook's Probing context (SPEC 2.5) decides before any probe runs, and the
 * control tasks (Hewitt & Liang 2019) LatentHook adds to it.
 *
 * Module selection. Probing hooks, for each direction, every module whose name re.match()es
 * the key pattern (hook.h), in named_modules() order, never the root, and only modules that
 * are instances of classes_to_hook (default: every Module) and not of classes_to_skip
 * (default: ModuleList, Sequential, TensorDictModuleBase; as in tdhook an empty list means
 * the defaults). For LatentHook's models that skips the containers of type "ModuleList"
 * (GPT-2's transformer.h, never called anyway) and "Sequential" (YAML sequential blocks),
 * and with absolute names the HookedModule's TensorDictModule wrapper "td_module". The
 * probes are then "<name>_<direction>" (probe_manager.h).
 *
 * Control tasks. A control task gives every sample a label that a probe can only learn by
 * memorising some surface feature, so that selectivity = accuracy(task) - accuracy(control)
 * on the same test samples measures what the probe reads from the representation rather
 * than what it can memorise:
 *   - token inputs: the label is a function of the word type alone (the token id at the
 *     probed position): each token id v gets the class lh_rng_u64(seed', v) mod C, uniform
 *     over the C classes, the same map for every sample and every rank count;
 *   - float inputs (no word types): the labels of the task permuted over the samples by a
 *     seeded permutation of the global sample indices (label of sample i = y[pi(i)]), which
 *     keeps the label distribution and breaks any link to the input.
 */
#ifndef LATENTHOOK_PROBING_H
#define LATENTHOOK_PROBING_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/model.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The names Probing hooks for `pattern` (relative names, or absolute ones as
 * "td_module.module.<name>"), in named_modules() order, skipping the default
 * classes_to_skip, and a PCRE2 pattern that re.match()es exactly those names (for
 * lh_cache_run). Local. Errors: LH_ERR_VALUE for an invalid pattern (PCRE2's message) or a
 * pattern that selects nothing (listing the module names it could select). Release with
 * lh_probing_select_free. */
LH_NODISCARD lh_status lh_probing_select(const lh_model *m, const char *pattern, bool relative,
                                         char ***names, int64_t *count, char **exact_pattern);
void lh_probing_select_free(char **names, int64_t count, char *exact_pattern);

/* Whether Probing skips a module of this PyTorch class by default. Pure. */
bool lh_probing_skips_type(const char *type);

/* Control labels for token inputs: out[i] = class of word type tokens[i] in [0, C). Pure. */
void lh_probe_control_tokens(uint64_t seed, int64_t C, int64_t n, const int64_t *tokens,
                             double *out);

/* Control labels for float inputs: out[i] = y_all[pi(row0 + i)] for the local rows
 * [row0, row0 + n), pi a seeded permutation of 0..N-1 (Fisher-Yates over counter-based random
 * numbers: the same on every rank). y_all holds all N labels. Local; LH_ERR_NOMEM. */
LH_NODISCARD lh_status lh_probe_control_permuted(uint64_t seed, int64_t N, const double *y_all,
                                                 int64_t row0, int64_t n, double *out);

#ifdef __cplusplus
}
#endif
#endif
