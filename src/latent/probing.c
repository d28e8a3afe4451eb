/*
 * probing.c: module selection of tdhook's Probing context and control-task labels
 * (probing.h, SPEC 2.5; Hewitt & Liang, "Designing and Interpreting Probes with Control
 * Tasks", EMNLP 2019).
 *
 * The selection reuses the caching pass: the names Probing keeps become one exact
 * alternation, so lh_cache_run hooks exactly them, and the probes are fitted on its reduced
 * activations.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pcre2.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/probing.h"
#include "latenthook/rng.h"

#define ABS_ROOT "td_module.module"
#define CONTROL_SALT UINT64_C(0xC0171207A5C0FFEE) /* decorrelates the map from other seeds */

bool lh_probing_skips_type(const char *type) {
  return type && (strcmp(type, "ModuleList") == 0 || strcmp(type, "Sequential") == 0 ||
                  strcmp(type, "TensorDictModule") == 0);
}

void lh_probing_select_free(char **names, int64_t count, char *exact_pattern) {
  for (int64_t i = 0; names && i < count; i++) free(names[i]);
  free(names);
  free(exact_pattern);
}

/* Appends s to the growing string *buf (length *len, capacity *cap). */
static lh_status append(char **buf, size_t *len, size_t *cap, const char *s) {
  size_t n = strlen(s);
  if (*len + n + 1 > *cap) {
    size_t c = (*cap ? *cap : 64);
    while (*len + n + 1 > c) c *= 2;
    char *b = realloc(*buf, c);
    if (!b) return LH_ERROR(LH_ERR_NOMEM, "out of memory for a module pattern");
    *buf = b;
    *cap = c;
  }
  memcpy(*buf + *len, s, n + 1);
  *len += n;
  return LH_OK;
}

lh_status lh_probing_select(const lh_model *m, const char *pattern, bool relative,
                            char ***names_out, int64_t *count_out, char **exact_out) {
  lh_status st = LH_OK;
  pcre2_code *re = NULL;
  pcre2_match_data *md = NULL;
  char **names = NULL, *pat = NULL, *avail = NULL;
  int64_t k = 0;
  size_t plen = 0, pcap = 0, alen = 0, acap = 0;
  if (!m || !pattern || !names_out || !count_out || !exact_out)
    LH_FAIL(LH_ERR_VALUE, "lh_probing_select: NULL argument");
  int errcode = 0;
  PCRE2_SIZE erroff = 0;
  re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &errcode, &erroff,
                     NULL);
  if (!re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(errcode, msg, sizeof msg);
    LH_FAIL(LH_ERR_VALUE, "invalid module pattern '%s': %s at offset %zu", pattern,
            (const char *)msg, (size_t)erroff);
  }
  md = pcre2_match_data_create_from_pattern(re, NULL);
  if (!md) LH_FAIL(LH_ERR_NOMEM, "cannot allocate PCRE2 match data");
  const int64_t nmod = lh_model_module_count(m);
  names = calloc((size_t)nmod + 1, sizeof *names);
  if (!names) LH_FAIL(LH_ERR_NOMEM, "out of memory for module names");
  /* absolute mode: "td_module" (TensorDictModule, always skipped), then the root */
  for (int64_t i = relative ? 1 : 0; i < nmod; i++) {
    const char *type = lh_model_module_type(m, i);
    if (lh_probing_skips_type(type)) continue;
    char full[1024];
    int w = relative ? snprintf(full, sizeof full, "%s", lh_model_module_name(m, i))
            : i == 0 ? snprintf(full, sizeof full, "%s", ABS_ROOT)
                     : snprintf(full, sizeof full, "%s.%s", ABS_ROOT, lh_model_module_name(m, i));
    if (w < 0 || (size_t)w >= sizeof full) LH_FAIL(LH_ERR_VALUE, "module name too long");
    if (alen < 400) {
      LH_TRY(append(&avail, &alen, &acap, alen ? ", " : ""));
      LH_TRY(append(&avail, &alen, &acap, full));
    }
    int rc = pcre2_match(re, (PCRE2_SPTR)full, strlen(full), 0, PCRE2_ANCHORED, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) continue;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      LH_FAIL(LH_ERR_RUNTIME, "module pattern '%s' on '%s': %s", pattern, full,
              (const char *)msg);
    }
    if (strstr(full, "\\E")) LH_FAIL(LH_ERR_VALUE, "module name '%s' contains '\\E'", full);
    names[k] = strdup(full);
    if (!names[k]) LH_FAIL(LH_ERR_NOMEM, "out of memory for module names");
    LH_TRY(append(&pat, &plen, &pcap, k ? "|\\Q" : "(?:\\Q"));
    LH_TRY(append(&pat, &plen, &pcap, full));
    LH_TRY(append(&pat, &plen, &pcap, "\\E"));
    k++;
  }
  if (k == 0)
    LH_FAIL(LH_ERR_VALUE, "--key-pattern '%s' matches no module that Probing hooks (re.match, "
            "anchored at the start; containers ModuleList and Sequential are skipped); "
            "modules: %s%s", pattern, avail ? avail : "(none)", alen >= 400 ? ", ..." : "");
  LH_TRY(append(&pat, &plen, &pcap, ")$"));
  *names_out = names;
  *count_out = k;
  *exact_out = pat;
  names = NULL;
  pat = NULL;
done:
  if (names) lh_probing_select_free(names, k, NULL);
  free(pat);
  free(avail);
  pcre2_match_data_free(md);
  pcre2_code_free(re);
  return st;
}

void lh_probe_control_tokens(uint64_t seed, int64_t C, int64_t n, const int64_t *tokens,
                             double *out) {
  for (int64_t i = 0; i < n; i++)
    out[i] = (double)(lh_rng_u64(seed ^ CONTROL_SALT, (uint64_t)tokens[i]) % (uint64_t)C);
}

lh_status lh_probe_control_permuted(uint64_t seed, int64_t N, const double *y_all, int64_t row0,
                                    int64_t n, double *out) {
  lh_status st = LH_OK;
  int64_t *pi = NULL;
  LH_TRY(lh_alloc((size_t)(N > 0 ? N : 1), sizeof *pi, false, "control permutation", &pi));
  for (int64_t i = 0; i < N; i++) pi[i] = i;
  for (int64_t i = N - 1; i > 0; i--) { /* Fisher-Yates, counter i */
    int64_t j = (int64_t)(lh_rng_u64(seed ^ CONTROL_SALT, (uint64_t)i) % (uint64_t)(i + 1));
    int64_t t = pi[i];
    pi[i] = pi[j];
    pi[j] = t;
  }
  for (int64_t i = 0; i < n; i++) out[i] = y_all[pi[row0 + i]];
done:
  lh_free(pi);
  return st;
}
