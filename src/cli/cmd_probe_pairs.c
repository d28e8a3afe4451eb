/*
 * cmd_probe_pairs.c: the pair probes of `latenthook probe --model PATH --estimator
 * low-rank-bilinear --pair H1,H2 ...`: tdhook's Probing context with a BilinearProbeManager
 * (SPEC 2.5, 3.3, 3.4) over the hooked forward pass of cmd_probe_model.c.
 *
 * In tdhook one writes
 *     manager = BilinearProbeManager(pairs, LowRankBilinearEstimator, ...)
 *     Probing(manager.key_pattern, manager.probe_factory, additional_keys=[labels, step_type])
 * and feeds a fit batch then a predict batch; every pair member's hook hands its activations to
 * the pair probes that contain it, a pair runs when both members have arrived, and after_all
 * raises for pairs left half filled. Here the hooked pass (lh_cache_run) caches the reduced
 * activations of the hooked pair members for all samples, and Probing is replayed over them:
 * probe_factory for every direction and hooked module at "enter" (module order), then one fit
 * step per cached module on the train rows and one predict step on the test rows, each pass
 * between before_all and after_all. Every pair probe is therefore exactly `latenthook probe
 * --data H1 --data2 H2 --estimator low-rank-bilinear` on what `latenthook cache` writes for
 * its two modules (same split, seed and schedule).
 *
 * Only the pair members among the modules Probing hooks are cached: a hooked module in no pair
 * gets a dispatcher without probes in tdhook, which does nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_probe_pairs.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"

lh_status probe_pairs_parse(const char *arg, char **buf, const char **h1, const char **h2) {
  lh_status st = LH_OK;
  const char *comma = strchr(arg, ',');
  if (!comma || comma == arg || !comma[1] || strchr(comma + 1, ','))
    LH_FAIL(LH_ERR_USAGE,
            "--pair expects H1,H2 (two module names separated by one comma), "
            "got '%s'",
            arg);
  const size_t len = strlen(arg) + 1;
  char *b = NULL;
  LH_TRY(lh_alloc(len, 1, false, "--pair", &b));
  memcpy(b, arg, len);
  b[comma - arg] = '\0';
  *buf = b;
  *h1 = b;
  *h2 = b + (comma - arg) + 1;
done:
  return st;
}

static bool in_list(char **names, int64_t n, const char *s) {
  for (int64_t i = 0; i < n; i++)
    if (strcmp(names[i], s) == 0) return true;
  return false;
}

static bool is_member(int64_t npairs, const char *const (*pairs)[2], const char *s) {
  for (int64_t k = 0; k < npairs; k++)
    if (strcmp(pairs[k][0], s) == 0 || strcmp(pairs[k][1], s) == 0) return true;
  return false;
}

lh_status probe_pairs_select(int64_t npairs, const char *const (*pairs)[2], const char *pattern,
                             char **names, int64_t *count, char **exact) {
  lh_status st = LH_OK;
  char *pat = NULL;
  int64_t k = 0;
  size_t len = 8;
  for (int64_t i = 0; i < *count; i++) {
    if (!is_member(npairs, pairs, names[i])) {
      free(names[i]);
      continue;
    }
    len += strlen(names[i]) + 5;
    names[k++] = names[i];
  }
  *count = k;
  for (int64_t p = 0; p < npairs; p++)
    if (!in_list(names, k, pairs[p][0]) && !in_list(names, k, pairs[p][1]))
      LH_FAIL(LH_ERR_VALUE,
              "--pair %s,%s: Probing hooks neither module (names re.match()ed by "
              "'%s' at the start, containers ModuleList and Sequential skipped), so no data "
              "would reach the probe %s_%s_<direction>",
              pairs[p][0], pairs[p][1], pattern, pairs[p][0], pairs[p][1]);
  /* the exact alternation of lh_probing_select, over the members kept */
  pat = malloc(len);
  if (!pat) LH_FAIL(LH_ERR_NOMEM, "out of memory for a module pattern");
  size_t at = (size_t)snprintf(pat, len, "(?:");
  for (int64_t i = 0; i < k; i++)
    at += (size_t)snprintf(pat + at, len - at, "%s\\Q%s\\E", i ? "|" : "", names[i]);
  snprintf(pat + at, len - at, ")$");
  free(*exact);
  *exact = pat;
  pat = NULL;
done:
  free(pat);
  return st;
}

lh_status probe_pairs_enter(lh_bilinear_manager *bm, const lh_cache_opts *co, char **names,
                            int64_t count) {
  lh_status st = LH_OK;
  for (int d = 0; d < co->ndirs; d++)
    for (int64_t i = 0; i < count; i++) {
      int64_t id;
      LH_TRY(lh_bilinear_manager_factory(bm, names[i], lh_hook_dir_name(co->dirs[d]), &id));
    }
done:
  return st;
}

lh_status probe_pairs_run(lh_bilinear_manager *bm, const lh_cache_opts *co, char **names,
                          int64_t count, const lh_cache *c, const double *y, const bool *train,
                          const bool *test, int64_t npairs, const char *const (*pairs)[2]) {
  lh_status st = LH_OK;
  const int nd = co->ndirs;
  for (int pass = 0; pass < (test ? 2 : 1); pass++) {
    const char *step_type = pass ? "predict" : "fit";
    lh_bilinear_manager_before_all(bm);
    for (int64_t e = 0; e < lh_cache_count(c); e++) {
      const char *key = lh_cache_key(c, e); /* nested: "<dir>/<module>" */
      const char *slash = strchr(key, '/');
      const char *dn = NULL;
      for (int d = 0; d < nd && slash; d++) {
        const char *s = lh_hook_dir_name(co->dirs[d]);
        if (strlen(s) == (size_t)(slash - key) && strncmp(key, s, (size_t)(slash - key)) == 0)
          dn = s;
      }
      if (!dn || !in_list(names, count, slash + 1))
        LH_FAIL(LH_ERR_INTERNAL, "cache key '%s' is no hooked module", key);
      int64_t id; /* the dispatcher of the enter phase (a memo hit) */
      LH_TRY(lh_bilinear_manager_factory(bm, slash + 1, dn, &id));
      LH_TRY(lh_bilinear_manager_step(bm, id, lh_cache_matrix(c, e), y, pass ? test : train,
                                      step_type));
    }
    LH_TRY(lh_bilinear_manager_after_all(bm));
  }
  /* a pair neither of whose members was called: tdhook's manager just has no probe for it */
  for (int d = 0; d < nd; d++)
    for (int64_t p = 0; p < npairs; p++) {
      char key[2048];
      snprintf(key, sizeof key, "%s_%s_%s", pairs[p][0], pairs[p][1],
               lh_hook_dir_name(co->dirs[d]));
      if (!lh_bilinear_manager_fit_metrics(bm, key))
        LH_FAIL(LH_ERR_VALUE,
                "--pair %s,%s: the forward pass called neither module, so the "
                "probe %s saw no data",
                pairs[p][0], pairs[p][1], key);
    }
done:
  return st;
}

lh_status probe_pairs_write(lh_h5_out *o, const lh_bilinear_manager *bm) {
  lh_status st = LH_OK;
  for (int64_t i = 0; i < lh_bilinear_manager_count(bm); i++) {
    const char *k = lh_bilinear_manager_key(bm, i);
    const lh_bilinear *e = lh_bilinear_manager_estimator(bm, k);
    if (!e) continue;
    char path[2100];
    const int64_t s1[2] = {e->C, e->d1}, s2[2] = {e->C, e->d2};
    snprintf(path, sizeof path, "/%s/U", k);
    LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 2, s1, e->U));
    snprintf(path, sizeof path, "/%s/u", k);
    LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 1, &e->C, e->u));
    snprintf(path, sizeof path, "/%s/V", k);
    LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 2, s2, e->V));
    snprintf(path, sizeof path, "/%s/v", k);
    LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 1, &e->C, e->v));
    if (e->b) {
      snprintf(path, sizeof path, "/%s/b", k);
      LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 1, &e->C, e->b));
    }
  }
done:
  return st;
}

static double score(const lh_probe_metrics *m) {
  return !m ? NAN : m->classification ? m->accuracy : m->r2;
}

void probe_pairs_report(const lh_bilinear_manager *bm, bool predict, json_t *doc) {
  json_t *keys = json_array(), *members = json_object(), *dims = json_object(),
         *fits = json_object(), *fm = json_object(), *pm = predict ? json_object() : json_null();
  bool cls = false;
  for (int64_t i = 0; i < lh_bilinear_manager_count(bm); i++) {
    const char *k = lh_bilinear_manager_key(bm, i);
    const lh_bilinear *e = lh_bilinear_manager_estimator(bm, k);
    const lh_probe_metrics *f = lh_bilinear_manager_fit_metrics(bm, k);
    const lh_probe_metrics *p = lh_bilinear_manager_predict_metrics(bm, k);
    json_t *pair = json_object(), *d = json_array(), *fit = json_object();
    json_array_append_new(keys, json_string(k));
    json_object_set_new(pair, "h1", json_string(lh_bilinear_manager_pair(bm, i, 0)));
    json_object_set_new(pair, "h2", json_string(lh_bilinear_manager_pair(bm, i, 1)));
    json_object_set_new(pair, "direction", json_string(lh_bilinear_manager_pair(bm, i, 2)));
    json_object_set_new(members, k, pair);
    if (e) {
      cls = e->classification;
      json_array_append_new(d, json_integer(e->d1));
      json_array_append_new(d, json_integer(e->d2));
      json_object_set_new(fit, "iterations", json_integer(e->iterations));
      json_object_set_new(fit, "objective", cli_real(e->objective));
    }
    json_object_set_new(dims, k, d);
    json_object_set_new(fits, k, fit);
    if (f) json_object_set_new(fm, k, probe_metrics_json(f));
    if (p && predict) json_object_set_new(pm, k, probe_metrics_json(p));
  }
  json_object_set_new(doc, "keys", keys);
  json_object_set_new(doc, "pairs", members);
  json_object_set_new(doc, "n_features", dims);
  json_object_set_new(doc, "fit", fits);
  json_object_set_new(doc, "fit_metrics", fm);
  json_object_set_new(doc, "predict_metrics", pm);

  /* the table (stderr, rank 0) */
  const char *sc = cls ? "acc" : "R2";
  lh_log_info("%-48s %6s %6s  train %-4s  test %-4s", "pair probe", "D1", "D2", sc, sc);
  for (int64_t i = 0; i < lh_bilinear_manager_count(bm); i++) {
    const char *k = lh_bilinear_manager_key(bm, i);
    const lh_bilinear *e = lh_bilinear_manager_estimator(bm, k);
    lh_log_info("%-48s %6lld %6lld  %9.4f  %8.4f", k, e ? (long long)e->d1 : 0LL,
                e ? (long long)e->d2 : 0LL, score(lh_bilinear_manager_fit_metrics(bm, k)),
                score(lh_bilinear_manager_predict_metrics(bm, k)));
  }
}
