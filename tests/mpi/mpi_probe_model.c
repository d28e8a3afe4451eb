/*
 * mpi_probe_model.c: Probing with a ProbeManager over the hooked forward pass (probing.h,
 * probe_manager.h; SPEC 2.5, 3.2) on any number of ranks:
 *   - the ProbeManager's bookkeeping and errors, in the order of tdhook's test (SPEC 3.2);
 *   - Probing's module selection on the shipped tiny GPT-2: containers (ModuleList) skipped,
 *     absolute names, errors;
 *   - probes fitted on the reduced activations of lh_cache_run for wte, h.0 and h.1 (task and
 *     control labels) are bitwise the same on all ranks of MPI_COMM_WORLD and on rank 0 alone;
 *   - control labels: a function of the word type only, deterministic; the permutation of
 *     float inputs is a permutation and does not depend on how the rows are split;
 *   - BilinearProbeManager with LowRankBilinearEstimator (bilinear_manager.h; SPEC 3.4) over
 *     the same cache, Probing replayed (factory, fit pass, predict pass): each pair probe is
 *     bitwise lh_bilinear_fit / lh_bilinear_evaluate on its two matrices, the same on all ranks
 *     and on rank 0 alone to 1e-10; its errors (not fitted, metrics exist, still waiting,
 *     colliding keys).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "latenthook/bilinear_manager.h"
#include "latenthook/cache.h"
#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/h5.h"
#include "latenthook/mem.h"
#include "latenthook/model.h"
#include "latenthook/probe_manager.h"
#include "latenthook/probing.h"
#include "mpi/mpitest.h"

#define MODEL LH_GOLDEN_DIR "/../../jobs/models/tiny-gpt2"
#define INPUTS LH_GOLDEN_DIR "/../../jobs/data/induction.h5:/clean"
#define T 21
#define MAXK 4
#define NC 3
#define DM 64

#define MT_MSG(expr, want, text)                                                        \
  do {                                                                                  \
    lh_status s_ = (expr);                                                              \
    MT_CHECK(s_ == (want) && strstr(lh_error_message(), text) != NULL,                  \
             "%s: got %s '%s', expected '%s'", #expr, lh_status_name(s_),               \
             lh_error_message(), text);                                                 \
    lh_error_clear();                                                                   \
  } while (0)

/* N rows (g % 7 - 3, g % 5 - 2) with label g % 3 (g the global row): *X and this rank's y. */
static void toy_data(int64_t N, lh_dmat **X, double *y) {
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, 2, X));
  if (!*X) return;
  const int64_t n = lh_dmat_local_rows(*X), r0 = lh_dmat_row_offset(*X);
  double *x = lh_dmat_local(*X);
  for (int64_t i = 0; i < n; i++) {
    int64_t g = r0 + i;
    x[2 * i] = (double)(g % 7) - 3.0;
    x[2 * i + 1] = (double)(g % 5) - 2.0;
    y[i] = (double)(g % 3);
  }
}

static lh_probe_opts classifier(void) {
  lh_probe_opts po = lh_probe_defaults();
  po.kind = LH_PROBE_CLASSIFIER;
  po.num_classes = NC;
  po.solver = LH_PROBE_LBFGS;
  po.l2 = 0.1;     /* strongly convex: few lbfgs iterations, each one allreduce */
  po.max_iter = 200;
  return po;
}

static void manager_errors(void) {
  lh_dmat *X = NULL;
  const int64_t N = 40;
  double y[40];
  toy_data(N, &X, y);
  lh_probe_opts po = classifier();
  lh_probe_manager *m = NULL;
  int64_t k = -1, k2 = -1;
  MT_OK(lh_probe_manager_create(&po, false, &m));
  MT_OK(lh_probe_manager_factory(m, "linear1", "fwd", &k));
  MT_CHECK(k == 0 && strcmp(lh_probe_manager_key(m, k), "linear1_fwd") == 0, "key %s",
           lh_probe_manager_key(m, k));
  MT_MSG(lh_probe_manager_predict(m, k, X, y, NULL), LH_ERR_VALUE, "Probe linear1_fwd is not fitted");
  MT_OK(lh_probe_manager_fit(m, k, X, y, NULL));
  MT_OK(lh_probe_manager_predict(m, k, X, y, NULL));
  MT_MSG(lh_probe_manager_predict(m, k, X, y, NULL), LH_ERR_VALUE,
         "Metrics for linear1_fwd already exist, call reset_metrics()");
  MT_CHECK(lh_probe_manager_predict_metrics(m, "linear1_fwd") != NULL, "predict_metrics entry");
  MT_CHECK(lh_probe_manager_n_predict_metrics(m) == 1, "one predict metric");
  /* the metrics are lh_probe_evaluate's of lh_probe_fit's probe */
  lh_probe *p = NULL;
  lh_probe_metrics ref;
  MT_OK(lh_probe_fit(X, y, NULL, &po, &p));
  MT_OK(lh_probe_evaluate(p, X, y, NULL, &ref));
  const lh_probe_metrics *got = lh_probe_manager_fit_metrics(m, "linear1_fwd");
  MT_CHECK(got && mt_same(got->accuracy, ref.accuracy) &&
               mt_same(got->cross_entropy, ref.cross_entropy) && got->n == N,
           "fit metrics differ from lh_probe_evaluate");
  MT_CHECK(mt_same(lh_probe_manager_probe(m, k)->coef[1], p->coef[1]), "coef differ");
  lh_probe_destroy(&p);
  lh_probe_manager_reset_metrics(m);
  MT_CHECK(lh_probe_manager_n_fit_metrics(m) == 0 && lh_probe_manager_n_predict_metrics(m) == 0,
           "reset_metrics");
  MT_OK(lh_probe_manager_fit(m, k, X, y, NULL));
  MT_MSG(lh_probe_manager_fit(m, k, X, y, NULL), LH_ERR_VALUE, "Metrics for linear1_fwd already exist");
  MT_MSG(lh_probe_manager_factory(m, "linear1", "fwd", &k2), LH_ERR_VALUE,
         "Probe linear1_fwd already exists, call reset_estimators()");
  MT_OK(lh_probe_manager_factory(m, "linear2", "fwd_pre", &k2));
  MT_CHECK(k2 == 1 && strcmp(lh_probe_manager_key(m, k2), "linear2_fwd_pre") == 0, "second key");
  MT_CHECK(lh_probe_manager_n_estimators(m) == 2 && lh_probe_manager_n_fit_metrics(m) == 1 &&
               lh_probe_manager_n_predict_metrics(m) == 0,
           "dict sizes %lld %lld %lld", (long long)lh_probe_manager_n_estimators(m),
           (long long)lh_probe_manager_n_fit_metrics(m),
           (long long)lh_probe_manager_n_predict_metrics(m));
  lh_probe_manager_reset_estimators(m);
  lh_probe_manager_reset_metrics(m);
  MT_CHECK(lh_probe_manager_n_estimators(m) == 0 && lh_probe_manager_n_fit_metrics(m) == 0 &&
               lh_probe_manager_n_predict_metrics(m) == 0,
           "all reset");
  MT_OK(lh_probe_manager_factory(m, "linear1", "fwd", &k2)); /* fresh and unfitted */
  MT_CHECK(k2 == 0 && lh_probe_manager_probe(m, 0) == NULL, "fresh estimator");
  MT_MSG(lh_probe_manager_fit(m, 7, X, y, NULL), LH_ERR_VALUE, "was not given by this manager");
  lh_probe_manager_destroy(&m);
  MT_CHECK(m == NULL, "destroy NULLs");
  /* allow_overwrite: everything may repeat; a re-created probe is unfitted (SPEC 9.7) */
  MT_OK(lh_probe_manager_create(&po, true, &m));
  MT_OK(lh_probe_manager_factory(m, "a", "fwd", &k));
  MT_OK(lh_probe_manager_fit(m, k, X, y, NULL));
  MT_OK(lh_probe_manager_fit(m, k, X, y, NULL));
  /* the second fit continues from the fitted parameters, as tdhook's estimators do */
  lh_probe *q = NULL;
  MT_OK(lh_probe_fit(X, y, NULL, &po, &q));
  MT_OK(lh_probe_fit_warm(q, X, y, NULL, &po));
  MT_CHECK(q && lh_probe_manager_probe(m, k) && mt_same(lh_probe_manager_probe(m, k)->coef[1], q->coef[1]) &&
               mt_same(lh_probe_manager_probe(m, k)->intercept[0], q->intercept[0]),
           "a second manager fit is not a warm fit");
  lh_probe_destroy(&q);
  MT_OK(lh_probe_manager_predict(m, k, X, y, NULL));
  MT_OK(lh_probe_manager_predict(m, k, X, y, NULL));
  MT_OK(lh_probe_manager_factory(m, "a", "fwd", &k));
  MT_MSG(lh_probe_manager_predict(m, k, X, y, NULL), LH_ERR_VALUE, "not fitted");
  lh_probe_manager_destroy(&m);
  lh_dmat_destroy(&X);
}

static void selection(void) {
  lh_model *m = NULL;
  MT_OK(lh_model_load(MODEL, &m));
  if (!m) return;
  char **names = NULL, *pat = NULL;
  int64_t count = 0, expect = 0;
  for (int64_t i = 0; i < lh_model_module_count(m); i++)
    expect += strncmp(lh_model_module_name(m, i), "transformer.h.", 14) == 0;
  MT_OK(lh_probing_select(m, "transformer\\.h", true, &names, &count, &pat));
  MT_CHECK(count == expect && count > 2 && strcmp(names[0], "transformer.h.0") == 0,
           "count %lld (expected %lld), first %s", (long long)count, (long long)expect,
           count ? names[0] : "-");
  for (int64_t i = 0; i < count; i++)
    MT_CHECK(strcmp(names[i], "transformer.h") != 0, "the ModuleList was selected");
  lh_probing_select_free(names, count, pat);
  MT_OK(lh_probing_select(m, "td_module", false, &names, &count, &pat));
  int64_t lists = 0;
  for (int64_t i = 0; i < lh_model_module_count(m); i++)
    lists += strcmp(lh_model_module_type(m, i), "ModuleList") == 0;
  MT_CHECK(count == lh_model_module_count(m) - lists && strcmp(names[0], "td_module.module") == 0 &&
               strcmp(names[1], "td_module.module.transformer") == 0,
           "absolute: %lld names, first %s", (long long)count, count ? names[0] : "-");
  lh_probing_select_free(names, count, pat);
  MT_MSG(lh_probing_select(m, "transformer\\.h$", true, &names, &count, &pat), LH_ERR_VALUE,
         "matches no module that Probing hooks");
  MT_MSG(lh_probing_select(m, "(", true, &names, &count, &pat), LH_ERR_VALUE,
         "invalid module pattern");
  MT_CHECK(lh_probing_skips_type("Sequential") && !lh_probing_skips_type("GPT2Block"), "types");
  lh_model_destroy(&m);
}

typedef struct result {
  int64_t K;
  char key[MAXK][64];
  double coef[MAXK][NC * DM], icpt[MAXK][NC], acc[MAXK], ctl_coef[MAXK][NC * DM], ctl_acc[MAXK];
} result;

/* Task labels: the token at position 3 mod 3; control: word type at position 20. */
static void run(MPI_Comm comm, result *res) {
  lh_model *m = NULL;
  lh_cache *c = NULL;
  lh_h5_dset *d = NULL;
  lh_probe_manager *mg = NULL, *ct = NULL;
  char **names = NULL, *pat = NULL;
  int64_t count = 0;
  memset(res, 0, sizeof *res);
  MT_OK(lh_model_load(MODEL, &m));
  MT_OK(lh_probing_select(m, "transformer\\.(wte|h\\.[01])$", true, &names, &count, &pat));
  MT_CHECK(count == 3, "3 modules, got %lld", (long long)count);
  lh_cache_opts co = lh_cache_defaults();
  co.key_pattern = pat;
  co.nested_keys = true;
  co.keep_output = false;
  co.batch_size = 8;
  co.reduce.kind = LH_REDUCE_LAST;
  MT_OK(lh_cache_run(comm, m, INPUTS, &co, &c));
  if (!c) goto out;
  MT_OK(lh_h5_open(comm, INPUTS, 0, &d));
  const lh_dmat *X0 = lh_cache_matrix(c, 0);
  const int64_t n = lh_dmat_local_rows(X0), r0 = lh_dmat_row_offset(X0);
  double tok[64 * T], y[64], yc[64];
  int64_t types[64];
  bool test[64], train[64];
  MT_OK(lh_h5_read_rows(d, 0, r0, n, LH_F64, tok));
  for (int64_t i = 0; i < n; i++) {
    y[i] = (double)((int64_t)tok[i * T + 3] % NC);
    types[i] = (int64_t)tok[i * T + T - 1];
  }
  lh_probe_control_tokens(9, NC, n, types, yc);
  lh_probe_split(1, 0.25, r0, n, test);
  for (int64_t i = 0; i < n; i++) train[i] = !test[i];
  lh_probe_opts po = classifier();
  MT_OK(lh_probe_manager_create(&po, false, &mg));
  MT_OK(lh_probe_manager_create(&po, false, &ct));
  res->K = lh_cache_count(c);
  MT_CHECK(res->K == 3, "3 cache entries");
  for (int64_t e = 0; e < res->K && e < MAXK; e++) {
    const char *key = lh_cache_key(c, e);
    MT_CHECK(strncmp(key, "fwd/", 4) == 0 && strcmp(key + 4, names[e]) == 0, "key %s", key);
    int64_t k = -1, kc = -1;
    MT_OK(lh_probe_manager_factory(mg, key + 4, "fwd", &k));
    MT_OK(lh_probe_manager_fit(mg, k, lh_cache_matrix(c, e), y, train));
    MT_OK(lh_probe_manager_predict(mg, k, lh_cache_matrix(c, e), y, test));
    MT_OK(lh_probe_manager_factory(ct, key + 4, "fwd", &kc));
    MT_OK(lh_probe_manager_fit(ct, kc, lh_cache_matrix(c, e), yc, train));
    MT_OK(lh_probe_manager_predict(ct, kc, lh_cache_matrix(c, e), yc, test));
    const lh_probe *p = lh_probe_manager_probe(mg, k), *q = lh_probe_manager_probe(ct, kc);
    if (!p || !q || p->D != DM) continue;
    snprintf(res->key[e], sizeof res->key[e], "%s", lh_probe_manager_key(mg, k));
    memcpy(res->coef[e], p->coef, sizeof res->coef[e]);
    memcpy(res->icpt[e], p->intercept, sizeof res->icpt[e]);
    memcpy(res->ctl_coef[e], q->coef, sizeof res->ctl_coef[e]);
    res->acc[e] = lh_probe_manager_predict_metrics(mg, res->key[e])->accuracy;
    res->ctl_acc[e] = lh_probe_manager_predict_metrics(ct, res->key[e])->accuracy;
  }
out:
  lh_probe_manager_destroy(&mg);
  lh_probe_manager_destroy(&ct);
  lh_h5_close(&d);
  lh_cache_destroy(&c);
  lh_probing_select_free(names, count, pat);
  lh_model_destroy(&m);
}

static void forward_ranks(void) {
  static result world, self;
  run(MPI_COMM_WORLD, &world);
  MT_CHECK(strcmp(world.key[0], "transformer.wte_fwd") == 0 &&
               strcmp(world.key[2], "transformer.h.1_fwd") == 0,
           "keys %s %s", world.key[0], world.key[2]);
  MT_CHECK(memcmp(world.coef[0], world.ctl_coef[0], sizeof world.coef[0]) != 0,
           "control probe equals the task probe");
  if (mt_rank() != 0) return;
  run(MPI_COMM_SELF, &self);
  for (int e = 0; e < 3; e++) {
    MT_CHECK(memcmp(world.coef[e], self.coef[e], sizeof world.coef[e]) == 0 &&
                 memcmp(world.icpt[e], self.icpt[e], sizeof world.icpt[e]) == 0,
             "%s: probe differs from 1 rank", world.key[e]);
    MT_CHECK(memcmp(world.ctl_coef[e], self.ctl_coef[e], sizeof world.ctl_coef[e]) == 0,
             "%s: control probe differs from 1 rank", world.key[e]);
    MT_CHECK(mt_same(world.acc[e], self.acc[e]) && mt_same(world.ctl_acc[e], self.ctl_acc[e]),
             "%s: accuracies differ", world.key[e]);
  }
}

static void control_labels(void) {
  int64_t tok[72];
  double a[72], b[72];
  for (int i = 0; i < 72; i++) tok[i] = i % 36; /* every type twice */
  lh_probe_control_tokens(9, NC, 72, tok, a);
  lh_probe_control_tokens(9, NC, 72, tok, b);
  int used[NC] = {0}, same = 1, diffseed = 0;
  for (int i = 0; i < 72; i++) {
    MT_CHECK(a[i] >= 0 && a[i] < NC && a[i] == (int)a[i], "label %g", a[i]);
    if (a[i] >= 0 && a[i] < NC) used[(int)a[i]] = 1;
    same &= a[i] == b[i] && a[i] == a[i % 36];
  }
  MT_CHECK(same, "control labels depend on more than the word type");
  MT_CHECK(used[0] && used[1] && used[2], "some class never drawn over 36 types");
  lh_probe_control_tokens(10, NC, 36, tok, b);
  for (int i = 0; i < 36; i++) diffseed += a[i] != b[i];
  MT_CHECK(diffseed > 0, "the seed does not change the map");
  /* float inputs: a permutation of the labels, whatever the split of the rows */
  double yall[50], full[50], part[50];
  for (int i = 0; i < 50; i++) yall[i] = i;
  MT_OK(lh_probe_control_permuted(4, 50, yall, 0, 50, full));
  MT_OK(lh_probe_control_permuted(4, 50, yall, 0, 20, part));
  MT_OK(lh_probe_control_permuted(4, 50, yall, 20, 30, part + 20));
  int seen[50] = {0}, fixed = 0;
  for (int i = 0; i < 50; i++) {
    MT_CHECK(mt_same(full[i], part[i]), "split changes the permutation at %d", i);
    if (full[i] >= 0 && full[i] < 50) seen[(int)full[i]]++;
    fixed += full[i] == i;
  }
  for (int i = 0; i < 50; i++) MT_CHECK(seen[i] == 1, "label %d appears %d times", i, seen[i]);
  MT_CHECK(fixed < 10, "%d fixed points: not shuffled", fixed);
}

static lh_bilinear_opts bilinear(void) {
  lh_bilinear_opts bo = lh_bilinear_defaults();
  bo.num_classes = NC;
  bo.epochs = 8;
  bo.batch_size = 16;
  bo.lr = 0.01;
  bo.seed = 2;
  return bo;
}

static void bilinear_errors(void) {
  lh_dmat *X = NULL;
  const int64_t N = 30;
  double y[30];
  toy_data(N, &X, y);
  const lh_bilinear_opts bo = bilinear();
  const char *const pairs[][2] = {{"a", "a"}, {"a", "b"}};
  lh_bilinear_manager *m = NULL;
  int64_t ia = -1, ib = -1;
  MT_OK(lh_bilinear_manager_create(2, pairs, &bo, false, &m));
  if (!m) goto out;
  MT_CHECK(strcmp(lh_bilinear_manager_key_pattern(m), "a$|b$") == 0, "key pattern %s",
           lh_bilinear_manager_key_pattern(m));
  MT_OK(lh_bilinear_manager_factory(m, "a", "fwd", &ia));
  MT_OK(lh_bilinear_manager_factory(m, "b", "fwd", &ib));
  MT_CHECK(
      lh_bilinear_manager_count(m) == 2 && strcmp(lh_bilinear_manager_key(m, 1), "a_b_fwd") == 0,
      "pair probes");
  MT_MSG(lh_bilinear_manager_step(m, ia, X, y, NULL, "predict"), LH_ERR_VALUE,
         "Probe a_a_fwd is not fitted");
  MT_OK(lh_bilinear_manager_step(m, ia, X, y, NULL, "fit")); /* a_a runs, a_b waits */
  MT_CHECK(lh_bilinear_manager_estimator(m, "a_a_fwd") != NULL &&
               lh_bilinear_manager_estimator(m, "a_b_fwd") == NULL,
           "estimators after the first step");
  MT_MSG(lh_bilinear_manager_after_all(m), LH_ERR_VALUE,
         "Bilinear probes still waiting on keys: ['a', 'b']. Unresolved pairs: [('a', 'b')]");
  MT_OK(lh_bilinear_manager_after_all(m)); /* cleared */
  MT_MSG(lh_bilinear_manager_step(m, ia, X, y, NULL, "fit"), LH_ERR_VALUE,
         "Metrics for a_a_fwd already exist");
  lh_bilinear_manager_before_all(m);
  lh_bilinear_manager_reset_metrics(m);
  MT_OK(lh_bilinear_manager_step(m, ib, X, y, NULL, "fit"));
  MT_OK(lh_bilinear_manager_step(m, ia, X, y, NULL, "fit")); /* a_a, then a_b completes */
  MT_CHECK(lh_bilinear_manager_fit_metrics(m, "a_b_fwd") != NULL &&
               lh_bilinear_manager_estimator(m, "a_b_fwd") != NULL,
           "a_b_fwd fitted");
  MT_OK(lh_bilinear_manager_after_all(m));
  lh_bilinear_manager_reset_estimators(m);
  MT_CHECK(lh_bilinear_manager_count(m) == 0 && !lh_bilinear_manager_estimator(m, "a_a_fwd"),
           "reset_estimators");
  lh_bilinear_manager_destroy(&m);
  MT_CHECK(m == NULL, "destroy NULLs");
  /* two pairs with the same key string */
  const char *const clash[][2] = {{"a_b", "c"}, {"a", "b_c"}};
  MT_OK(lh_bilinear_manager_create(2, clash, &bo, false, &m));
  if (!m) goto out;
  MT_OK(lh_bilinear_manager_factory(m, "a", "fwd", &ia));
  MT_MSG(lh_bilinear_manager_factory(m, "a_b", "fwd", &ib), LH_ERR_VALUE,
         "Probe a_b_c_fwd already exists");
out:
  lh_bilinear_manager_destroy(&m);
  lh_dmat_destroy(&X);
}

typedef struct bresult {
  int64_t K;
  char key[2][64];
  double U[2][NC * DM], V[2][NC * DM], fit_acc[2], test_ce[2];
} bresult;

/* Pairs (h.0, h.1) and (wte, wte) over the cache of wte, h.0, h.1 (last position); labels:
 * the token at position 3 mod 3. */
static void bilinear_run(MPI_Comm comm, bresult *res) {
  lh_model *m = NULL;
  lh_cache *c = NULL;
  lh_h5_dset *d = NULL;
  lh_bilinear_manager *bm = NULL;
  lh_bilinear *ref = NULL;
  char **names = NULL, *pat = NULL;
  int64_t count = 0, ids[3] = {-1, -1, -1};
  memset(res, 0, sizeof *res);
  const lh_bilinear_opts bo = bilinear();
  const char *const pairs[][2] = {{"transformer.h.0", "transformer.h.1"},
                                  {"transformer.wte", "transformer.wte"}};
  MT_OK(lh_bilinear_manager_create(2, pairs, &bo, false, &bm));
  MT_OK(lh_model_load(MODEL, &m));
  if (!bm || !m) goto out;
  MT_OK(lh_probing_select(m, lh_bilinear_manager_key_pattern(bm), true, &names, &count, &pat));
  MT_CHECK(count == 3, "3 modules, got %lld", (long long)count);
  lh_cache_opts co = lh_cache_defaults();
  co.key_pattern = pat;
  co.nested_keys = true;
  co.keep_output = false;
  co.batch_size = 8;
  co.reduce.kind = LH_REDUCE_LAST;
  MT_OK(lh_cache_run(comm, m, INPUTS, &co, &c));
  if (!c || lh_cache_count(c) != 3 || count != 3) goto out;
  MT_OK(lh_h5_open(comm, INPUTS, 0, &d));
  const lh_dmat *X0 = lh_cache_matrix(c, 0);
  const int64_t n = lh_dmat_local_rows(X0), r0 = lh_dmat_row_offset(X0);
  double tok[64 * T], y[64];
  bool test[64], train[64];
  MT_OK(lh_h5_read_rows(d, 0, r0, n, LH_F64, tok));
  for (int64_t i = 0; i < n; i++) y[i] = (double)((int64_t)tok[i * T + 3] % NC);
  lh_probe_split(1, 0.25, r0, n, test);
  for (int64_t i = 0; i < n; i++) train[i] = !test[i];
  for (int64_t e = 0; e < 3; e++) MT_OK(lh_bilinear_manager_factory(bm, names[e], "fwd", &ids[e]));
  for (int pass = 0; pass < 2; pass++) {
    lh_bilinear_manager_before_all(bm);
    for (int64_t e = 0; e < 3; e++)
      MT_OK(lh_bilinear_manager_step(bm, ids[e], lh_cache_matrix(c, e), y, pass ? test : train,
                                     pass ? "predict" : "fit"));
    MT_OK(lh_bilinear_manager_after_all(bm));
  }
  res->K = lh_bilinear_manager_count(bm);
  MT_CHECK(res->K == 2, "2 pair probes, got %lld", (long long)res->K);
  /* the reference: the estimator fitted directly on the two matrices (entries: wte, h.0, h.1) */
  const int64_t e1[2] = {0, 1}, e2[2] = {0, 2};
  for (int64_t k = 0; k < 2 && k < res->K; k++) {
    const char *key = lh_bilinear_manager_key(bm, k);
    const lh_bilinear *p = lh_bilinear_manager_estimator(bm, key);
    const lh_probe_metrics *fm = lh_bilinear_manager_fit_metrics(bm, key);
    const lh_probe_metrics *pm = lh_bilinear_manager_predict_metrics(bm, key);
    MT_CHECK(p && fm && pm && p->d1 == DM && p->d2 == DM && p->C == NC, "%s: fitted", key);
    if (!p || !fm || !pm || p->d1 != DM || p->d2 != DM || p->C != NC) continue;
    snprintf(res->key[k], sizeof res->key[k], "%s", key);
    memcpy(res->U[k], p->U, sizeof res->U[k]);
    memcpy(res->V[k], p->V, sizeof res->V[k]);
    res->fit_acc[k] = fm->accuracy;
    res->test_ce[k] = pm->cross_entropy;
    lh_probe_metrics rf, rp;
    MT_OK(
        lh_bilinear_fit(lh_cache_matrix(c, e1[k]), lh_cache_matrix(c, e2[k]), y, train, &bo, &ref));
    if (!ref) continue;
    MT_OK(lh_bilinear_evaluate(ref, lh_cache_matrix(c, e1[k]), lh_cache_matrix(c, e2[k]), y, train,
                               &rf));
    MT_OK(lh_bilinear_evaluate(ref, lh_cache_matrix(c, e1[k]), lh_cache_matrix(c, e2[k]), y, test,
                               &rp));
    MT_CHECK(memcmp(ref->U, p->U, sizeof res->U[k]) == 0 &&
                 memcmp(ref->V, p->V, sizeof res->V[k]) == 0 &&
                 memcmp(ref->b, p->b, NC * sizeof(double)) == 0,
             "%s: the pair probe differs from lh_bilinear_fit", key);
    MT_CHECK(mt_same(rf.accuracy, fm->accuracy) && mt_same(rf.cross_entropy, fm->cross_entropy) &&
                 mt_same(rp.cross_entropy, pm->cross_entropy) && pm->n == rp.n,
             "%s: metrics differ from lh_bilinear_evaluate", key);
    lh_bilinear_destroy(&ref);
  }
out:
  lh_bilinear_destroy(&ref);
  lh_bilinear_manager_destroy(&bm);
  lh_h5_close(&d);
  lh_cache_destroy(&c);
  lh_probing_select_free(names, count, pat);
  lh_model_destroy(&m);
}

static int close_to(const double *a, const double *b, int64_t n, double tol) {
  for (int64_t i = 0; i < n; i++)
    if (fabs(a[i] - b[i]) > tol * fmax(1.0, fmax(fabs(a[i]), fabs(b[i])))) return 0;
  return 1;
}

static void bilinear_ranks(void) {
  static bresult world, self;
  bilinear_run(MPI_COMM_WORLD, &world);
  MT_CHECK(strcmp(world.key[0], "transformer.wte_transformer.wte_fwd") == 0 &&
               strcmp(world.key[1], "transformer.h.0_transformer.h.1_fwd") == 0,
           "keys %s %s", world.key[0], world.key[1]);
  if (mt_rank() != 0) return;
  bilinear_run(MPI_COMM_SELF, &self);
  for (int k = 0; k < 2; k++) {
    MT_CHECK(close_to(world.U[k], self.U[k], NC * DM, 1e-10) &&
                 close_to(world.V[k], self.V[k], NC * DM, 1e-10),
             "%s: pair probe differs from 1 rank", world.key[k]);
    MT_CHECK(close_to(&world.fit_acc[k], &self.fit_acc[k], 1, 1e-10) &&
                 close_to(&world.test_ce[k], &self.test_ce[k], 1, 1e-10),
             "%s: metrics differ from 1 rank", world.key[k]);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  manager_errors();
  selection();
  control_labels();
  forward_ranks();
  bilinear_errors();
  bilinear_ranks();
  return mt_finish("mpi_probe_model");
}
