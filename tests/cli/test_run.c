/* `latenthook run`: the batch runner on the shipped jobs.
 *
 * - The demo job (jobs/demo.yaml: the digits MLP over the digits) end to end on 2 ranks: every
 *   result file, summary.json and figure is there, and the numbers in summary.json agree with
 *   an independent NumPy / scikit-learn / PyTorch computation (tests/golden/demo/expected.json,
 *   written offline by tests/golden/make_golden_demo.py).
 * - A rerun skips every step and reports the same results; `--set` of one probe option reruns
 *   exactly the probe steps; `--force` reruns everything.
 * - SIGTERM to the ranks in the middle of a run stops it at a checkpoint (exit 75, one
 *   message, no temporary file left), and running again completes it with results identical
 *   to the uninterrupted run.
 * - Malformed job files: unknown key, wrong type, YAML syntax, a missing file, a bad --set
 *   each give one message naming the line (or the --set), exit status 1, and no output folder.
 * - The GPT-2-format example job (jobs/tiny_gpt2.yaml) runs and finds the copy target x8
 *   decodable only after layer 1.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "cli/spawn.h"

#define DEMO LH_SOURCE_DIR "/jobs/demo.yaml"
#define GPT2 LH_SOURCE_DIR "/jobs/tiny_gpt2.yaml"
#define EXPECTED LH_SOURCE_DIR "/tests/golden/demo/expected.json"

static const char *const LAYERS[] = {"input",    "layers.0", "layers.1", "layers.2",
                                     "layers.3", "layers.4", "layers.5", "layers.6"};
#define NL 8
#define NSTEPS (1 + 3 * NL + 2) /* cache, 3 analyses per layer, 2 matrices */

static json_t *load_json(const char *path) {
  json_error_t e;
  json_t *j = json_load_file(path, 0, &e);
  cr_assert(j, "cannot read %s: %s", path, e.text);
  return j;
}

static json_t *parse_json(const char *text) {
  json_error_t e;
  json_t *j = json_loads(text, 0, &e);
  cr_assert(j, "stdout is not one JSON document (%s): %.400s", e.text, text);
  return j;
}

static bool exists(const char *path) {
  return access(path, F_OK) == 0;
}

/* The results of a summary without what differs between runs by design (seconds, rates). */
static json_t *stable_results(json_t *summary) {
  json_t *r = json_deep_copy(json_object_get(summary, "results"));
  json_t *cache = json_object_get(r, "cache");
  json_object_del(cache, "seconds");
  json_object_del(cache, "samples_per_second");
  const char *kind;
  json_t *per;
  json_object_foreach(r, kind, per) {
    const char *layer;
    json_t *v;
    json_object_foreach(per, layer, v) {
      json_t *fit = json_object_get(v, "fit");
      json_object_del(fit, "seconds");
      json_object_del(v, "seconds");
    }
  }
  return r;
}

/* No file named *.tmp-* anywhere under dir. */
static void assert_no_temporaries(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "find %s -name '*.tmp-*' | head -3", dir);
  run_result r = run_shell(cmd);
  cr_assert_eq(r.status, 0);
  cr_assert_str_empty(r.out, "temporary files left behind:\n%s", r.out);
  run_free(&r);
}

static void check_demo_files(const char *dir) {
  char p[512];
  const char *files[] = {"activations.h5",
                         "summary.json",
                         "job.yaml",
                         "results/cka.h5",
                         "results/information_imbalance.h5",
                         "plots/cka.png",
                         "plots/information_imbalance.png",
                         "plots/intrinsic_dimension.png",
                         "plots/probe_accuracy.png"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    snprintf(p, sizeof p, "%s/%s", dir, files[i]);
    cr_assert(exists(p), "missing %s", p);
  }
  for (int l = 0; l < NL; l++) {
    const char *kinds[] = {"twonn", "local_knn", "probe"};
    for (int k = 0; k < 3; k++) {
      snprintf(p, sizeof p, "%s/results/%s/%s.h5", dir, kinds[k], LAYERS[l]);
      cr_assert(exists(p), "missing %s", p);
    }
    unsigned w, h;
    snprintf(p, sizeof p, "%s/plots/local_knn/%s.png", dir, LAYERS[l]);
    cr_assert(cli_png_size(p, &w, &h), "%s is not a PNG", p);
  }
  unsigned w, h;
  snprintf(p, sizeof p, "%s/plots/cka.png", dir);
  cr_assert(cli_png_size(p, &w, &h) && w > 100 && h > 100, "%s is not a PNG", p);
}

static double num(json_t *j) {
  cr_assert(json_is_number(j) || json_is_null(j), "not a number");
  return json_is_number(j) ? json_number_value(j) : NAN;
}

static void assert_close(double got, double want, double tol, const char *what, const char *layer) {
  cr_assert(fabs(got - want) <= tol, "%s (%s): %.12g, expected %.12g (tolerance %g)", what, layer,
            got, want, tol);
}

/* The reference's absolute tolerance for a quantity. */
static double tol_of(json_t *ex, const char *q) {
  json_t *t = json_object_get(json_object_get(json_object_get(ex, "tolerances"), q), "abs");
  cr_assert(json_is_number(t), "no tolerance for %s in the reference", q);
  return json_number_value(t);
}

/* obj[a][b][c] for the summary and the reference (same layout under "results"). */
static double at3(json_t *res, const char *a, const char *b, const char *c) {
  return num(json_object_get(json_object_get(json_object_get(res, a), b), c));
}

/* summary.json's numbers against the independent reference. */
static void check_demo_values(json_t *summary) {
  json_t *ex = load_json(EXPECTED);
  json_t *res = json_object_get(summary, "results"), *ref = json_object_get(ex, "results");
  json_t *layers = json_object_get(summary, "layers");
  cr_assert_eq(json_array_size(layers), NL);
  for (int l = 0; l < NL; l++) {
    const char *L = LAYERS[l];
    cr_assert_str_eq(json_string_value(json_array_get(layers, l)), L, "layer order");
    assert_close(at3(res, "twonn", L, "dimension"), at3(ref, "twonn", L, "dimension"),
                 tol_of(ex, "twonn.dimension"), "TwoNN", L);
    assert_close(at3(res, "twonn", L, "dimension_mle"), at3(ref, "twonn", L, "dimension_mle"),
                 tol_of(ex, "twonn.dimension_mle"), "TwoNN MLE", L);
    assert_close(at3(res, "local_knn", L, "mean"), at3(ref, "local_knn", L, "mean"),
                 tol_of(ex, "local_knn.mean"), "local kNN mean", L);
    assert_close(at3(res, "local_knn", L, "median"), at3(ref, "local_knn", L, "median"),
                 tol_of(ex, "local_knn.median"), "local kNN median", L);
    assert_close(at3(res, "local_knn", L, "nan_count"), at3(ref, "local_knn", L, "nan_count"), 0,
                 "local kNN NaN count", L);
    const char *parts[] = {"fit_metrics", "predict_metrics"};
    for (int p = 0; p < 2; p++) {
      json_t *g = json_object_get(json_object_get(json_object_get(res, "probe"), L), parts[p]);
      json_t *w = json_object_get(json_object_get(json_object_get(ref, "probe"), L), parts[p]);
      cr_assert_eq(json_integer_value(json_object_get(g, "n")),
                   json_integer_value(json_object_get(w, "n")), "%s %s: split size", L, parts[p]);
      /* every prediction agrees today; a sample on a decision boundary may flip: one at most */
      double n = (double)json_integer_value(json_object_get(w, "n"));
      assert_close(num(json_object_get(g, "accuracy")) * n, num(json_object_get(w, "correct")),
                   1.0 + 1e-9, parts[p], L);
    }
  }
  const char *mats[] = {"cka", "information_imbalance"};
  for (int m = 0; m < 2; m++) {
    json_t *got = json_object_get(json_object_get(res, mats[m]), "matrix");
    json_t *want = json_object_get(json_object_get(ref, mats[m]), "matrix");
    cr_assert_eq(json_array_size(got), NL, "%s matrix size", mats[m]);
    for (int a = 0; a < NL; a++)
      for (int b = 0; b < NL; b++)
        assert_close(num(json_array_get(json_array_get(got, a), b)),
                     num(json_array_get(json_array_get(want, a), b)), tol_of(ex, mats[m]), mats[m],
                     LAYERS[a]);
  }
  json_decref(ex);
}

static json_t *run_demo(const char *dir, const char *extra, int expect_status) {
  char args[1024];
  snprintf(args, sizeof args, "run %s --output-dir %s %s", DEMO, dir, extra);
  run_result r = run_cli_np(2, args);
  cr_assert_eq(r.status, expect_status, "exit %d, expected %d; stderr:\n%.3000s", r.status,
               expect_status, r.err);
  json_t *j = expect_status == 0 ? parse_json(r.out) : NULL;
  run_free(&r);
  return j;
}

Test(run, demo_end_to_end_rerun_and_sigterm, .timeout = 1500) {
  char d1[64], d2[64], p[256];
  cli_timeout = 600; /* a whole demo run in the sanitizer build on a busy machine */
  cli_make_dir(d1, "run_demo");
  cli_make_dir(d2, "run_kill");
  /* 1. the whole job */
  json_t *s1 = run_demo(d1, "", 0);
  cr_assert_eq(json_integer_value(json_object_get(s1, "steps_run")), NSTEPS);
  cr_assert_eq(json_integer_value(json_object_get(s1, "steps_skipped")), 0);
  check_demo_files(d1);
  snprintf(p, sizeof p, "%s/summary.json", d1);
  json_t *file = load_json(p);
  cr_assert(json_equal(json_object_get(file, "results"), json_object_get(s1, "results")),
            "summary.json and stdout disagree");
  cr_assert(json_is_object(json_object_get(file, "config")), "summary.json has no configuration");
  cr_assert_str_eq(json_string_value(json_object_get(json_object_get(file, "config"), "model")),
                   "models/digits-mlp/model.yaml");
  check_demo_values(s1);
  json_t *r1 = stable_results(s1);

  /* 2. a rerun skips every step and reports the same results */
  json_t *s2 = run_demo(d1, "", 0);
  cr_assert_eq(json_integer_value(json_object_get(s2, "steps_run")), 0);
  cr_assert_eq(json_integer_value(json_object_get(s2, "steps_skipped")), NSTEPS);
  json_t *r2 = stable_results(s2);
  cr_assert(json_equal(r1, r2), "the rerun reports other results");

  /* 3. SIGTERM to the ranks once 10 steps are recorded; then resume */
  char cmd[2048];
  snprintf(
      cmd, sizeof cmd,
      /* `true;` first: run_shell puts `timeout` before the first command, and $! must be
       * mpiexec itself, whose children are the ranks */
      "true; env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "
      "ASAN_OPTIONS=detect_leaks=0 "
      "%s -n 2 %s run %s --output-dir %s >%s/kill.out 2>%s/kill.err & mp=$!; "
      "for i in $(seq 1 2400); do n=$(grep -c '\"result\"' %s/.latenthook/state.json 2>/dev/null); "
      "[ \"${n:-0}\" -ge 10 ] && break; sleep 0.05; done; "
      "pkill -TERM -P $mp; wait $mp; echo $?",
      LH_MPIEXEC, LH_CLI, DEMO, d2, d2, d2, d2);
  run_result k = run_shell(cmd);
  cr_assert_eq(k.status, 0);
  cr_assert_eq(atoi(k.out), 75, "the interrupted run exited %s (expected 75)", k.out);
  run_free(&k);
  snprintf(cmd, sizeof cmd, "cat %s/kill.err", d2);
  k = run_shell(cmd);
  cr_assert_eq(count_lines_with(k.err, "stopped by signal 15") +
                   count_lines_with(k.out, "stopped by signal 15"),
               1, "expected one message naming the signal:\n%.3000s", k.out);
  cr_assert(strstr(k.out, "run the same command again to resume"), "%.2000s", k.out);
  run_free(&k);
  snprintf(p, sizeof p, "%s/summary.json", d2);
  cr_assert(!exists(p), "an interrupted run wrote summary.json");
  assert_no_temporaries(d2);
  json_t *s3 = run_demo(d2, "", 0);
  cr_assert_geq(json_integer_value(json_object_get(s3, "steps_skipped")), 10);
  cr_assert_eq(json_integer_value(json_object_get(s3, "steps_run")) +
                   json_integer_value(json_object_get(s3, "steps_skipped")),
               NSTEPS);
  json_t *r3 = stable_results(s3);
  /* paths differ by folder: compare after replacing it */
  char *t1 = json_dumps(r1, JSON_SORT_KEYS), *t3 = json_dumps(r3, JSON_SORT_KEYS);
  for (char *q = strstr(t3, d2); q; q = strstr(q, d2)) memcpy(q, d1, strlen(d1));
  cr_assert_str_eq(t1, t3, "the resumed run differs from the uninterrupted one");
  free(t1);
  free(t3);
  const char *sets[][2] = {{"activations.h5", "/cache/layers.2"},
                           {"results/cka.h5", "/matrix"},
                           {"results/probe/layers.4.h5", "/coef"},
                           {"results/local_knn/layers.6.h5", "/dimension"}};
  for (int i = 0; i < 4; i++) {
    char a[256], b[256];
    snprintf(a, sizeof a, "%s/%s", d1, sets[i][0]);
    snprintf(b, sizeof b, "%s/%s", d2, sets[i][0]);
    cr_assert_eq(cli_h5diff("", a, sets[i][1], b, sets[i][1]), 0,
                 "%s%s differs after resuming:\n%s", b, sets[i][1], cli_h5diff_report);
  }

  /* 4. one TwoNN option changed: exactly the TwoNN steps run again */
  json_t *s4 = run_demo(d1, "--set analyses.twonn.discard_fraction=0.2", 0);
  cr_assert_eq(json_integer_value(json_object_get(s4, "steps_run")), NL);
  snprintf(p, sizeof p, "%s/job.yaml", d1);
  run_result y = run_shell(strcat(strcpy(cmd, "cat "), p));
  cr_assert(strstr(y.out, "discard_fraction: 0.2"), "job.yaml does not hold the override:\n%s",
            y.out);
  run_free(&y);
  json_decref(file);
  json_decref(s1);
  json_decref(s2);
  json_decref(s3);
  json_decref(s4);
  json_decref(r1);
  json_decref(r2);
  json_decref(r3);
  cli_remove_dir(d1);
  cli_remove_dir(d2);
}

/* A malformed job: one message holding `want`, exit status 1, no output folder. */
static void expect_job_error(const char *yaml, const char *extra, const char *want) {
  char dir[64], job[256], out[256], args[1024];
  cli_make_dir(dir, "run_bad");
  snprintf(job, sizeof job, "%s/job.yaml", dir);
  FILE *f = fopen(job, "w");
  cr_assert(f);
  fputs(yaml, f);
  fclose(f);
  snprintf(out, sizeof out, "%s/out", dir);
  snprintf(args, sizeof args, "run %s --output-dir %s %s", job, out, extra);
  run_result r = run_cli_np(2, args);
  cr_assert_eq(r.status, 1, "exit %d; stderr:\n%s", r.status, r.err);
  cr_assert_str_empty(r.out);
  cr_assert_eq(count_lines_with(r.err, "error"), 1, "expected one error line:\n%s", r.err);
  cr_assert(strstr(r.err, want), "expected '%s' in:\n%s", want, r.err);
  cr_assert(!exists(out), "an output folder was created for a bad job");
  run_free(&r);
  cli_remove_dir(dir);
}

#define HEAD                             \
  "model: " LH_SOURCE_DIR                \
  "/jobs/models/digits-mlp/model.yaml\n" \
  "inputs: " LH_SOURCE_DIR               \
  "/jobs/data/digits.h5:/X\n"            \
  "labels: " LH_SOURCE_DIR "/jobs/data/digits.h5:/y\n"

Test(run, malformed_job_files) {
  expect_job_error(HEAD "cache:\n  key_pattern: 'layers\\.0$'\n  reduce: none\n  colour: red\n", "",
                   "job.yaml, line 7, column 3: unknown key 'colour'");
  expect_job_error(
      HEAD "cache:\n  key_pattern: 'layers\\.0$'\nanalyses:\n  knn:\n    k: many\n", "",
      "job.yaml, line 8, column 8: invalid value 'many' for 'k' (expected an integer)");
  expect_job_error(HEAD "cache:\n  key_pattern: 'layers\\.0$'\n  absolute: perhaps\n", "",
                   "job.yaml, line 6, column 13: invalid value 'perhaps' for 'absolute' (expected "
                   "true or false)");
  expect_job_error(HEAD "cache: {key_pattern: 'x'\n", "", "job.yaml, line 5");
  expect_job_error("model: " LH_SOURCE_DIR
                   "/jobs/models/digits-mlp/model.yaml\n"
                   "inputs: data/no_such_file.h5:/X\ncache: {key_pattern: 'layers'}\n",
                   "", "job.yaml, line 2: inputs: cannot read");
  expect_job_error(HEAD "cache: {key_pattern: 'layers'}\nanalyses: {probe: {num_classes: 10}}\n",
                   "--set analyses.probe.epochs=ten",
                   "--set analyses.probe.epochs=ten: invalid value 'ten'");
  expect_job_error(HEAD "analyses: {twonn: {}}\n", "",
                   "job.yaml, line 4: 'analyses:' run over cached activations");
}

Test(run, gpt2_example_job, .timeout = 900) {
  char dir[64], args[512];
  cli_timeout = 600;
  cli_make_dir(dir, "run_gpt2");
  snprintf(args, sizeof args, "run %s --output-dir %s", GPT2, dir);
  run_result r = run_cli_np(2, args);
  cr_assert_eq(r.status, 0, "stderr:\n%.3000s", r.err);
  json_t *s = parse_json(r.out), *res = json_object_get(s, "results");
  run_free(&r);
  const char *layers[] = {"transformer.wte", "transformer.h.0", "transformer.h.1",
                          "transformer.ln_f"};
  json_t *jl = json_object_get(s, "layers");
  cr_assert_eq(json_array_size(jl), 4);
  for (int i = 0; i < 4; i++) cr_assert_str_eq(json_string_value(json_array_get(jl, i)), layers[i]);
  /* x8 is not at the last position before layer 1 moves it there (chance: 1/8) */
  for (int i = 0; i < 4; i++) {
    double acc = num(
        json_object_get(json_object_get(json_object_get(json_object_get(res, "probe"), layers[i]),
                                        "predict_metrics"),
                        "accuracy"));
    if (i < 2)
      cr_assert_lt(acc, 0.3, "%s: %g", layers[i], acc);
    else
      cr_assert_gt(acc, 0.95, "%s: %g", layers[i], acc);
  }
  /* the patching sweep: patching either block's whole output restores the clean logit
   * difference, so both normalised effects are 1 */
  json_t *eff = json_object_get(
      json_object_get(json_object_get(json_object_get(res, "patch"), "sweep"), "sweep"), "effects");
  cr_assert_eq(json_array_size(eff), 2);
  for (int i = 0; i < 2; i++)
    assert_close(num(json_object_get(json_array_get(eff, i), "normalised")), 1.0, 1e-6,
                 "normalised effect", "");
  /* the steering vector from the activation-addition step of the same run ($OUT/...) */
  json_t *st = json_object_get(json_object_get(res, "steer"), "corrupted_plus_a_minus_b");
  char vec[256];
  snprintf(vec, sizeof vec, "%s/results/activation_addition/a_minus_b.h5:/steer/transformer.h.0", dir);
  cr_assert_str_eq(json_string_value(json_object_get(st, "vector")), vec);
  cr_assert(json_object_get(json_object_get(res, "activation_addition"), "a_minus_b"));
  json_decref(s);
  cli_remove_dir(dir);
}

/* Analyses of an existing activations group, without a model; --force reruns every step. */
Test(run, activations_group_and_force) {
  char dir[64], job[256], args[1024];
  cli_make_dir(dir, "run_acts");
  snprintf(job, sizeof job, "%s/job.yaml", dir);
  FILE *f = fopen(job, "w");
  cr_assert(f);
  fputs("activations: " LH_SOURCE_DIR
        "/jobs/data/digits.h5:/\n"
        "labels: " LH_SOURCE_DIR
        "/jobs/data/digits.h5:/y\n"
        "analyses: {twonn: {}, knn: {k: 3}}\noutputs: {plots: false}\n",
        f);
  fclose(f);
  snprintf(args, sizeof args, "run %s --output-dir %s/out", job, dir);
  for (int pass = 0; pass < 3; pass++) {
    char a[1100];
    snprintf(a, sizeof a, "%s%s", args, pass == 2 ? " --force" : "");
    run_result r = run_cli_np(pass == 0 ? 1 : 3, a);
    cr_assert_eq(r.status, 0, "stderr:\n%s", r.err);
    json_t *s = parse_json(r.out);
    run_free(&r);
    /* the labels dataset /y is not a layer of the group's analyses (1-D) */
    cr_assert_eq(json_integer_value(json_object_get(s, "steps_run")), pass == 1 ? 0 : 2, "pass %d",
                 pass);
    cr_assert_eq(json_integer_value(json_object_get(s, "steps_skipped")), pass == 1 ? 2 : 0,
                 "pass %d", pass);
    /* the TwoNN of the pixels: the value the README's quick start shows (1 and 3 ranks) */
    assert_close(num(json_object_get(
                     json_object_get(json_object_get(json_object_get(s, "results"), "twonn"), "X"),
                     "dimension")),
                 9.1681995585064922, 1e-12, "TwoNN", "X");
    json_decref(s);
  }
  char plots[300];
  snprintf(plots, sizeof plots, "%s/out/plots", dir);
  cr_assert(!exists(plots), "plots: false still drew figures");
  cli_remove_dir(dir);
}
