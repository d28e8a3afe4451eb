/*
 * test_bprobe.c: BilinearProbe / BilinearProbeManager bookkeeping (SPEC 3.3-3.4, TV-16): the
 * key patterns, pairing and waiting, the memo of probe_factory, the "already exists" errors,
 * after_all's error and resets. The run callback records what it receives.
 */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "latenthook/bprobe.h"

typedef struct rec {
  int runs, fits, forgets;
  char last_key[64];
  const void *h1, *h2, *labels;
} rec;

static lh_status run(const char *key, const void *h1, const void *h2, const void *labels,
                     bool fit, lh_probe_metrics *m, void *user) {
  rec *r = user;
  r->runs++;
  r->fits += fit;
  snprintf(r->last_key, sizeof r->last_key, "%s", key);
  r->h1 = h1;
  r->h2 = h2;
  r->labels = labels;
  m->accuracy = 0.5;
  m->n = 8;
  return LH_OK;
}

static void forget(const char *key, void *user) {
  (void)key;
  ((rec *)user)->forgets++;
}

static lh_bpm *make(int64_t n, const char *const (*pairs)[2], bool overwrite, rec *r) {
  lh_bpm_callbacks cb = {.run = run, .forget = forget, .user = r};
  lh_bpm *m = NULL;
  cr_assert_eq(lh_bpm_create(n, pairs, overwrite, &cb, &m), LH_OK);
  return m;
}

Test(bprobe, key_patterns) {
  rec r = {0};
  const char *const p1[][2] = {{"linear1", "linear2"}, {"linear2", "linear3"}};
  const char *const p2[][2] = {{"x", "x"}};
  const char *const p3[][2] = {{"a", "b"}};
  const char *const p4[][2] = {{"a.b", "c"}};
  const char *const (*all[4])[2] = {p1, p2, p3, p4};
  const int64_t n[4] = {2, 1, 1, 1};
  const char *want[4] = {"linear1$|linear2$|linear3$", "x$", "a$|b$", "a\\.b$|c$"};
  for (int k = 0; k < 4; k++) {
    lh_bpm *m = make(n[k], all[k], false, &r);
    cr_expect_str_eq(lh_bpm_key_pattern(m), want[k]);
    lh_bpm_destroy(&m);
    cr_expect_null(m);
  }
}

Test(bprobe, self_and_cross_pairs) {
  rec r = {0};
  const char *const pairs[][2] = {{"linear1", "linear1"}, {"linear1", "linear2"}};
  lh_bpm *m = make(2, pairs, true, &r);
  int64_t d1, d2;
  cr_assert_eq(lh_bpm_probe_factory(m, "linear1", "fwd", &d1), LH_OK);
  cr_assert_eq(lh_bpm_probe_factory(m, "linear2", "fwd", &d2), LH_OK);
  cr_expect_eq(lh_bpm_num_probes(m), 2);
  int a = 1, b = 2, y = 3;
  /* linear1 feeds the self pair at once and waits in the cross pair */
  cr_assert_eq(lh_bpm_step(m, d1, &a, &y, "fit"), LH_OK);
  cr_expect_eq(r.runs, 1);
  cr_expect_str_eq(r.last_key, "linear1_linear1_fwd");
  cr_expect(r.h1 == &a && r.h2 == &a);
  cr_expect(lh_bpm_is_waiting(m, "linear1_linear2_fwd"));
  cr_expect_not(lh_bpm_is_waiting(m, "linear1_linear1_fwd"));
  /* linear2 completes it, with its own labels and step type */
  int y2 = 4;
  cr_assert_eq(lh_bpm_step(m, d2, &b, &y2, "predict"), LH_OK);
  cr_expect_eq(r.runs, 2);
  cr_expect_eq(r.fits, 1);
  cr_expect_str_eq(r.last_key, "linear1_linear2_fwd");
  cr_expect(r.h1 == &a && r.h2 == &b && r.labels == &y2);
  cr_expect_not(lh_bpm_is_waiting(m, "linear1_linear2_fwd"));
  cr_expect_not_null(lh_bpm_fit_metrics(m, "linear1_linear1_fwd"));
  cr_expect_not_null(lh_bpm_predict_metrics(m, "linear1_linear2_fwd"));
  cr_expect_null(lh_bpm_fit_metrics(m, "linear1_linear2_fwd"));
  /* after h1 only: waiting, after_all raises with the keys and the pair, then not waiting */
  cr_assert_eq(lh_bpm_step(m, d1, &a, &y, "predict"), LH_OK);
  cr_expect_eq(lh_bpm_after_all(m), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "Bilinear probes still waiting on keys: ['linear1', "
                                       "'linear2']. Unresolved pairs: [('linear1', 'linear2')]"),
            "%s", lh_error_message());
  lh_error_clear();
  cr_expect_not(lh_bpm_is_waiting(m, "linear1_linear2_fwd"));
  cr_expect_eq(lh_bpm_after_all(m), LH_OK);
  /* before_all, then h2 only: waiting again */
  lh_bpm_before_all(m);
  cr_assert_eq(lh_bpm_step(m, d2, &b, &y, "fit"), LH_OK);
  cr_expect(lh_bpm_is_waiting(m, "linear1_linear2_fwd"));
  cr_expect_eq(lh_bpm_after_all(m), LH_ERR_VALUE);
  lh_error_clear();
  /* the step type is checked only when a pair runs */
  cr_expect_eq(lh_bpm_step(m, d2, &b, &y, "train"), LH_OK);
  cr_expect_eq(lh_bpm_step(m, d1, &a, &y, "train"), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "step_type must be 'fit' or 'predict', got 'train'"), "%s",
            lh_error_message());
  lh_error_clear();
  cr_expect_eq(lh_bpm_step(m, d1, &a, &y, NULL), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "got None"), "%s", lh_error_message());
  lh_error_clear();
  lh_bpm_destroy(&m);
}

Test(bprobe, memo_and_errors) {
  rec r = {0};
  const char *const pairs[][2] = {{"a", "a"}, {"a", "b"}};
  lh_bpm *m = make(2, pairs, false, &r);
  int64_t i1, i2, ib;
  cr_assert_eq(lh_bpm_probe_factory(m, "a", "fwd", &i1), LH_OK);
  cr_assert_eq(lh_bpm_probe_factory(m, "a", "fwd", &i2), LH_OK); /* memo hit, no error */
  cr_expect_eq(i1, i2);
  cr_expect_eq(lh_bpm_num_probes(m), 2);
  cr_expect_eq(lh_bpm_create_pair_probe(m, "a", "a", "fwd"), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "Probe a_a_fwd already exists"), "%s", lh_error_message());
  lh_error_clear();
  cr_assert_eq(lh_bpm_probe_factory(m, "a", "bwd", &ib), LH_OK);
  int x = 0;
  cr_expect_eq(lh_bpm_step(m, ib, &x, &x, "predict"), LH_OK);
  cr_expect_eq(lh_bpm_step(m, ib, &x, &x, "predict"), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "Metrics for a_a_bwd already exist"), "%s", lh_error_message());
  lh_error_clear();
  lh_bpm_reset_metrics(m);
  cr_expect_eq(lh_bpm_num_metrics(m, false), 0);
  cr_expect_eq(lh_bpm_step(m, ib, &x, &x, "fit"), LH_OK);
  cr_expect_eq(lh_bpm_step(m, ib, &x, &x, "fit"), LH_ERR_VALUE);
  lh_error_clear();
  cr_expect_eq(lh_bpm_num_metrics(m, true), 1);
  lh_bpm_reset_estimators(m);
  lh_bpm_reset_metrics(m);
  cr_expect_eq(lh_bpm_num_probes(m), 0);
  cr_expect_eq(lh_bpm_num_metrics(m, true) + lh_bpm_num_metrics(m, false), 0);
  cr_expect_eq(r.forgets, 4); /* a_a_fwd, a_b_fwd, a_a_bwd, a_b_bwd */
  /* after the reset the factory builds afresh */
  cr_assert_eq(lh_bpm_probe_factory(m, "b", "fwd", &i1), LH_OK);
  cr_expect_eq(lh_bpm_num_probes(m), 1);
  lh_bpm_destroy(&m);
  /* allow_overwrite: re-creating replaces the estimator, metrics overwrite */
  m = make(2, pairs, true, &r);
  cr_assert_eq(lh_bpm_probe_factory(m, "a", "fwd", &i1), LH_OK);
  r.forgets = 0;
  cr_expect_eq(lh_bpm_create_pair_probe(m, "a", "a", "fwd"), LH_OK);
  cr_expect_eq(r.forgets, 1);
  cr_expect_eq(lh_bpm_step(m, i1, &x, &x, "predict"), LH_OK);
  cr_expect_eq(lh_bpm_step(m, i1, &x, &x, "predict"), LH_OK);
  lh_bpm_destroy(&m);
}

/* tdhook memoises pair probes by the tuple (h1, h2, dir) but keys estimators by the string
 * "{h1}_{h2}_{dir}": two pairs with the same string are two probes, and the second one's
 * creation raises (or, with allow_overwrite, replaces the estimator of the key). */
Test(bprobe, key_collisions) {
  rec r = {0};
  const char *const pairs[][2] = {{"a_b", "c"}, {"a", "b_c"}};
  lh_bpm *m = make(2, pairs, false, &r);
  int64_t i1, i2;
  cr_assert_eq(lh_bpm_probe_factory(m, "a_b", "fwd", &i1), LH_OK);
  cr_expect_eq(lh_bpm_num_probes(m), 1);
  cr_expect_str_eq(lh_bpm_probe_key(m, 0), "a_b_c_fwd");
  cr_expect_str_eq(lh_bpm_probe_pair(m, 0, 0), "a_b");
  cr_expect_str_eq(lh_bpm_probe_pair(m, 0, 1), "c");
  cr_expect_str_eq(lh_bpm_probe_pair(m, 0, 2), "fwd");
  cr_expect_null(lh_bpm_probe_key(m, 1));
  cr_expect_eq(lh_bpm_probe_factory(m, "a", "fwd", &i2), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "Probe a_b_c_fwd already exists"), "%s", lh_error_message());
  lh_error_clear();
  /* the memo of c is the first pair only: c completes a_b's probe, not a's */
  cr_assert_eq(lh_bpm_probe_factory(m, "c", "fwd", &i2), LH_OK);
  int x = 1, y = 2, lab = 0;
  cr_assert_eq(lh_bpm_step(m, i1, &x, &lab, "fit"), LH_OK);
  cr_assert_eq(lh_bpm_step(m, i2, &y, &lab, "fit"), LH_OK);
  cr_expect(r.runs == 1 && r.h1 == &x && r.h2 == &y);
  lh_bpm_destroy(&m);
  /* allow_overwrite: both probes exist under one key, the second creation forgets the first
   * estimator */
  m = make(2, pairs, true, &r);
  r.forgets = 0;
  cr_assert_eq(lh_bpm_probe_factory(m, "a_b", "fwd", &i1), LH_OK);
  cr_assert_eq(lh_bpm_probe_factory(m, "a", "fwd", &i2), LH_OK);
  cr_expect_eq(lh_bpm_num_probes(m), 2);
  cr_expect_eq(r.forgets, 1);
  cr_expect_str_eq(lh_bpm_probe_key(m, 1), "a_b_c_fwd");
  cr_expect_str_eq(lh_bpm_probe_pair(m, 1, 1), "b_c");
  lh_bpm_destroy(&m);
}

/* A pair listed twice is fed twice, as tdhook's dispatcher holds the same probe twice: a self
 * pair runs twice ("Metrics ... already exist"), a cross pair runs once and then waits. */
Test(bprobe, repeated_pairs) {
  rec r = {0};
  const char *const self[][2] = {{"a", "a"}, {"a", "a"}};
  lh_bpm *m = make(2, self, false, &r);
  int64_t ia, ib;
  int x = 1, y = 2, lab = 0;
  cr_assert_eq(lh_bpm_probe_factory(m, "a", "fwd", &ia), LH_OK);
  cr_expect_eq(lh_bpm_num_probes(m), 1);
  cr_expect_eq(lh_bpm_step(m, ia, &x, &lab, "fit"), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "Metrics for a_a_fwd already exist"), "%s",
            lh_error_message());
  lh_error_clear();
  cr_expect_eq(r.runs, 2);
  lh_bpm_destroy(&m);
  const char *const cross[][2] = {{"a", "b"}, {"a", "b"}};
  r.runs = 0;
  m = make(2, cross, false, &r);
  cr_assert_eq(lh_bpm_probe_factory(m, "a", "fwd", &ia), LH_OK);
  cr_assert_eq(lh_bpm_probe_factory(m, "b", "fwd", &ib), LH_OK);
  lh_bpm_before_all(m);
  cr_assert_eq(lh_bpm_step(m, ia, &x, &lab, "fit"), LH_OK);
  cr_assert_eq(lh_bpm_step(m, ib, &y, &lab, "fit"), LH_OK);
  cr_expect_eq(r.runs, 1);
  cr_expect(lh_bpm_is_waiting(m, "a_b_fwd"));
  cr_expect_eq(lh_bpm_after_all(m), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(),
                   "Bilinear probes still waiting on keys: ['a', 'b']. "
                   "Unresolved pairs: [('a', 'b')]"),
            "%s", lh_error_message());
  lh_error_clear();
  lh_bpm_destroy(&m);
}
