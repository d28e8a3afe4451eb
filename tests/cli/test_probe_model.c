/* `latenthook probe --model ...` (Probing with a ProbeManager over the hooked forward pass)
 * on the shipped tiny GPT-2 and induction.h5:/clean (64 sequences), labels i mod 3 written by
 * h5import: each per-module probe is bitwise the probe `latenthook probe --data` fits on what
 * `latenthook cache` writes for that module; outputs, control-task probes and stdout are
 * identical on 1, 2 and 3 ranks; the --png curve is a 900 x 700 PNG; the error paths give
 * one message, empty stdout, non-zero exit and no output file.
 * Pair probes (--estimator low-rank-bilinear --pair, BilinearProbeManager): each pair probe and
 * its metrics equal `latenthook cache` followed by `latenthook probe --data H1 --data2 H2
 * --estimator low-rank-bilinear` (bitwise on the same rank count, 1e-10 across 1, 2 and 3
 * ranks); tdhook's errors (still waiting, metrics exist, probe exists) and the CLI's own. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define MODEL LH_SOURCE_DIR "/jobs/models/tiny-gpt2"
#define INPUTS LH_SOURCE_DIR "/jobs/data/induction.h5:/clean"
#define PATTERN "'transformer\\.h\\.[01]$'"
#define EST "--estimator linear --num-classes 3 --solver lbfgs --l2 0.1 --max-iter 300 --seed 5"
#define BIL \
  "--estimator low-rank-bilinear --num-classes 3 --epochs 20 --batch-size 16 --lr 0.01 --seed 5"
#define H01 "transformer.h.0_transformer.h.1_fwd"

static char dir[64];

static void write_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

/* lab.h5: /y (64) = i mod 3, /y10 (10) */
static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/lh_cli_probem_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  char y[512] = "", *w = y;
  for (int i = 0; i < 64; i++) w += sprintf(w, "%d\n", i % 3);
  write_file("y.txt", y);
  write_file("y10.txt", "0\n1\n2\n0\n1\n2\n0\n1\n2\n0\n");
  write_file("cy", "PATH y\nINPUT-CLASS TEXTIN\nRANK 1\nDIMENSION-SIZES 64\nOUTPUT-CLASS IN\nOUTPUT-SIZE 64\n");
  write_file("cy10", "PATH y10\nINPUT-CLASS TEXTIN\nRANK 1\nDIMENSION-SIZES 10\nOUTPUT-CLASS IN\nOUTPUT-SIZE 64\n");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "sh -c 'cd %s && h5import y.txt -c cy y10.txt -c cy10 -o lab.h5'", dir);
  run_result r = run_shell(cmd);
  cr_assert_eq(r.status, 0, "h5import: %s", r.err);
  run_free(&r);
}

static void teardown(void) { cli_remove_dir(dir); }

TestSuite(probe_model, .init = setup, .fini = teardown, .timeout = 300);

static run_result cli(int np, const char *args) {
  return run_cli_np(np, args);
}

/* cli_h5diff (exact) on files a and b of this test's folder. */
static int h5same(const char *a, const char *pa, const char *b, const char *pb) {
  char fa[256], fb[256];
  snprintf(fa, sizeof fa, "%s/%s", dir, a);
  snprintf(fb, sizeof fb, "%s/%s", dir, b);
  return cli_h5diff("", fa, pa, fb, pb);
}

/* stdout without the lines that legitimately differ (timings, paths). */
static void strip(char *s) {
  char *w = s;
  for (char *line = s; *line;) {
    char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
    if (!strstr(line, "\"seconds") && !strstr(line, "\"out\"") && !strstr(line, "\"png\""))
      w += len, memmove(w - len, line, len);
    line += len;
  }
  *w = '\0';
}

static int out_files(void) {
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strncmp(e->d_name, "err", 3) == 0;
  closedir(d);
  return n;
}

Test(probe_model, equals_data_path_and_rank_counts) {
  char args[2048], first[16384] = "", path[256];
  /* the reference: cache the two blocks' last positions, then probe h.0's matrix */
  snprintf(args, sizeof args, "cache --model " MODEL " --inputs " INPUTS " --key-pattern " PATTERN
           " --reduce last --no-output --out %s/c.h5", dir);
  run_result r = cli(1, args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  run_free(&r);
  snprintf(args, sizeof args, "probe --data %s/c.h5:/cache/transformer.h.0 --labels %s/lab.h5:/y "
           EST " --out %s/d0.h5", dir, dir, dir);
  r = cli(2, args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  run_free(&r);
  for (int np = 1; np <= 3; np++) {
    snprintf(args, sizeof args, "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y "
             "--key-pattern " PATTERN " --reduce last " EST " --control-task --png %s/p%d.png "
             "--out %s/m%d.h5", dir, dir, np, dir, np);
    r = cli(np, args);
    cr_assert_eq(r.status, 0, "np %d: %s", np, r.err);
    cr_expect(strstr(r.out, "\"fit_metrics\": {\n    \"transformer.h.0_fwd\"") &&
                  strstr(r.out, "\"predict_metrics\": {\n    \"transformer.h.0_fwd\"") &&
                  strstr(r.out, "\"transformer.h.1_fwd\"") && strstr(r.out, "\"selectivity\"") &&
                  strstr(r.out, "\"word type at position 20\"") &&
                  !strstr(r.out, "transformer.h.0.attn"),
              "%s", r.out);
    cr_expect(strstr(r.err, "transformer.h.1_fwd") != NULL, "the table: %s", r.err);
    strip(r.out);
    if (np == 1)
      snprintf(first, sizeof first, "%s", r.out);
    else
      cr_expect_str_eq(r.out, first, "stdout differs between 1 and %d ranks", np);
    run_free(&r);
    snprintf(path, sizeof path, "%s/p%d.png", dir, np);
    unsigned wd = 0, ht = 0;
    cr_expect(cli_png_size(path, &wd, &ht), "%s: missing or not a PNG", path);
    cr_expect(wd == 900 && ht == 700, "%s: %u x %u", path, wd, ht);
  }
  /* bitwise the --data probes */
  cr_expect_eq(h5same("m1.h5", "/transformer.h.0_fwd/coef", "d0.h5", "/coef"), 0);
  cr_expect_eq(h5same("m1.h5", "/transformer.h.0_fwd/intercept", "d0.h5", "/intercept"), 0);
  /* which can fail: two different layers differ */
  cr_expect_neq(h5same("m1.h5", "/transformer.h.1_fwd/coef", "d0.h5", "/coef"), 0);
  /* task and control probes identical on 1, 2, 3 ranks; the control probe is another one */
  const char *ds[] = {"/transformer.h.0_fwd/coef", "/transformer.h.1_fwd/intercept",
                      "/transformer.h.0_fwd/control/coef", "/transformer.h.1_fwd/control/coef"};
  for (int k = 0; k < 4; k++) {
    cr_expect_eq(h5same("m1.h5", ds[k], "m2.h5", ds[k]), 0, "%s", ds[k]);
    cr_expect_eq(h5same("m1.h5", ds[k], "m3.h5", ds[k]), 0, "%s", ds[k]);
  }
  cr_expect_neq(h5same("m1.h5", ds[0], "m1.h5", ds[2]), 0);
}

static void expect_error(int np, const char *args, const char *msg) {
  run_result r = cli(np, args);
  cr_expect_neq(r.status, 0, "%s: exit 0", args);
  cr_expect(strstr(r.err, msg) != NULL, "expected '%s' in: %s", msg, r.err);
  cr_expect_eq(count_lines_with(r.err, "error"), 1, "one message: %s", r.err);
  cr_expect_str_eq(r.out, "");
  run_free(&r);
}

Test(probe_model, errors) {
  char args[2048];
  /* only the ModuleList transformer.h: Probing skips containers */
  snprintf(args, sizeof args, "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y "
           "--key-pattern 'transformer\\.h$' " EST " --out %s/err1.h5", dir, dir);
  expect_error(1, args, "matches no module that Probing hooks");
  snprintf(args, sizeof args, "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y10 "
           "--key-pattern " PATTERN " " EST " --out %s/err2.h5", dir, dir);
  expect_error(3, args, "--labels has 10 samples but --inputs has 64");
  snprintf(args, sizeof args, "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y "
           "--key-pattern " PATTERN " " EST " --test-fraction 0 --control-task --out %s/err3.h5",
           dir, dir);
  expect_error(1, args, "--test-fraction must be > 0");
  snprintf(args, sizeof args, "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y "
           "--key-pattern " PATTERN " --estimator linear --solver ridge --control-task "
           "--out %s/err4.h5", dir, dir);
  expect_error(1, args, "it needs a classifier");
  snprintf(args, sizeof args, "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y "
           EST " --out %s/err5.h5", dir, dir);
  expect_error(1, args, "--key-pattern REGEX is required");
  snprintf(args, sizeof args, "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y "
           "--key-pattern " PATTERN " " EST " --png /nonexistent/p.png --out %s/err6.h5", dir, dir);
  expect_error(2, args, "--png '/nonexistent/p.png'");
  cr_expect_eq(out_files(), 0, "no output file after errors");
}

/* The number after "<field>": in the object "<key>" (NULL: the first) of section "<sec>". */
static double num_in(const char *out, const char *sec, const char *key, const char *field) {
  char pat[256];
  snprintf(pat, sizeof pat, "\"%s\": {", sec);
  const char *p = strstr(out, pat);
  if (p && key) {
    snprintf(pat, sizeof pat, "\"%s\": {", key);
    p = strstr(p, pat);
  }
  snprintf(pat, sizeof pat, "\"%s\": ", field);
  p = p ? strstr(p, pat) : NULL;
  return p ? strtod(p + strlen(pat), NULL) : -1e300;
}

/* Both found (num_in) and equal to 1e-10 relative. */
static int near(double a, double b) {
  double d = a > b ? a - b : b - a, s = (a < 0 ? -a : a) > 1 ? (a < 0 ? -a : a) : 1;
  return a > -1e299 && b > -1e299 && d <= 1e-10 * s;
}

Test(probe_model, pairs_equal_data2_path_and_rank_counts) {
  char args[2048], first[16384] = "", ref[2][8192], name[32];
  const char *ds[] = {"U", "u", "V", "v", "b"};
  /* the reference: cache the three modules, then probe --data --data2 on each pair */
  snprintf(args, sizeof args,
           "cache --model " MODEL " --inputs " INPUTS
           " --key-pattern "
           "'transformer\\.(wte|h\\.[01])$' --reduce last --no-output --out %s/c.h5",
           dir);
  run_result r = cli(1, args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  run_free(&r);
  const char *d1[2] = {"transformer.h.0", "transformer.wte"},
             *d2[2] = {"transformer.h.1", "transformer.wte"};
  for (int k = 0; k < 2; k++) {
    snprintf(args, sizeof args,
             "probe --data %s/c.h5:/cache/%s --data2 %s/c.h5:/cache/%s "
             "--labels %s/lab.h5:/y " BIL " --out %s/d%d.h5",
             dir, d1[k], dir, d2[k], dir, dir, k);
    r = cli(2, args);
    cr_assert_eq(r.status, 0, "%s", r.err);
    snprintf(ref[k], sizeof ref[k], "%s", r.out);
    run_free(&r);
  }
  for (int np = 1; np <= 3; np++) {
    snprintf(args, sizeof args,
             "probe --model " MODEL " --inputs " INPUTS
             " --labels %s/lab.h5:/y "
             "--pair transformer.h.0,transformer.h.1 --pair transformer.wte,transformer.wte "
             "--reduce last " BIL " --out %s/m%d.h5",
             dir, dir, np);
    r = cli(np, args);
    cr_assert_eq(r.status, 0, "np %d: %s", np, r.err);
    cr_expect(strstr(r.out,
                     "\"key_pattern\": \"transformer\\\\.h\\\\.0$|transformer\\\\.h\\\\.1$|"
                     "transformer\\\\.wte$\"") &&
                  strstr(r.out,
                         "\"keys\": [\n    \"transformer.wte_transformer.wte_fwd\",\n    "
                         "\"" H01 "\"\n  ]"),
              "%s", r.out);
    cr_expect(strstr(r.err, H01) != NULL, "the table: %s", r.err);
    /* the metrics of --data --data2 (to 1e-10; the files below are the bitwise check) */
    const char *keys[2] = {H01, "transformer.wte_transformer.wte_fwd"};
    for (int k = 0; k < 2; k++) {
      const char *f[2] = {"accuracy", "cross_entropy"};
      for (int j = 0; j < 2; j++) {
        cr_expect(near(num_in(r.out, "fit_metrics", keys[k], f[j]),
                       num_in(ref[k], "fit_metrics", NULL, f[j])),
                  "np %d %s fit %s", np, keys[k], f[j]);
        cr_expect(near(num_in(r.out, "predict_metrics", keys[k], f[j]),
                       num_in(ref[k], "predict_metrics", NULL, f[j])),
                  "np %d %s predict %s", np, keys[k], f[j]);
      }
      cr_expect(near(num_in(r.out, "fit", keys[k], "objective"),
                     num_in(ref[k], "fit", NULL, "objective")),
                "np %d %s objective", np, keys[k]);
    }
    strip(r.out);
    if (np == 1)
      snprintf(first, sizeof first, "%s", r.out);
    else
      cr_expect(cli_same_numbers(r.out, first, 1e-10),
                "stdout differs between 1 and %d ranks:"
                "\n%s\n%s",
                np, first, r.out);
    run_free(&r);
    snprintf(name, sizeof name, "m%d.h5", np);
    for (int j = 0; j < 5; j++) {
      char pm[128], pd[8];
      snprintf(pd, sizeof pd, "/%s", ds[j]);
      snprintf(pm, sizeof pm, "/" H01 "/%s", ds[j]);
      if (np == 2) cr_expect_eq(h5same(name, pm, "d0.h5", pd), 0, "np 2: %s not bitwise", pm);
      char fa[256], fb[256];
      snprintf(fa, sizeof fa, "%s/%s", dir, name);
      snprintf(fb, sizeof fb, "%s/d0.h5", dir);
      cr_expect_eq(cli_h5diff("--relative=1e-10", fa, pm, fb, pd), 0, "np %d: %s: %s", np, pm,
                   cli_h5diff_report);
      snprintf(pm, sizeof pm, "/transformer.wte_transformer.wte_fwd/%s", ds[j]);
      snprintf(fb, sizeof fb, "%s/d1.h5", dir);
      cr_expect_eq(cli_h5diff("--relative=1e-10", fa, pm, fb, pd), 0, "np %d: %s: %s", np, pm,
                   cli_h5diff_report);
    }
  }
  /* which can fail: the two pairs are different probes */
  cr_expect_neq(h5same("m2.h5", "/" H01 "/U", "d1.h5", "/U"), 0);
}

Test(probe_model, pair_errors) {
  char args[2048];
  const char *base = "probe --model " MODEL " --inputs " INPUTS " --reduce last " BIL;
  /* tdhook's after_all: transformer.h is a ModuleList, which Probing does not hook */
  snprintf(args, sizeof args,
           "%s --labels %s/lab.h5:/y --pair transformer.h.0,transformer.h "
           "--out %s/err1.h5",
           base, dir, dir);
  expect_error(2, args,
               "Bilinear probes still waiting on keys: ['transformer.h', "
               "'transformer.h.0']. Unresolved pairs: [('transformer.h.0', 'transformer.h')]");
  /* Probing's own key pattern leaving a member out */
  snprintf(args, sizeof args,
           "%s --labels %s/lab.h5:/y --pair transformer.h.0,transformer.h.1 "
           "--key-pattern 'transformer\\.h\\.0$' --out %s/err2.h5",
           base, dir, dir);
  expect_error(3, args, "Unresolved pairs: [('transformer.h.0', 'transformer.h.1')]");
  /* a self pair listed twice runs twice on the fit step */
  snprintf(args, sizeof args,
           "%s --labels %s/lab.h5:/y --pair transformer.wte,transformer.wte "
           "--pair transformer.wte,transformer.wte --out %s/err3.h5",
           base, dir, dir);
  expect_error(1, args, "Metrics for transformer.wte_transformer.wte_fwd already exist");
  /* two pairs with the same key string, on a YAML model of four ReLUs */
  char text[1024];
  snprintf(text, sizeof text,
           "weights: %s/tests/golden/nn/mlp/model.safetensors\ninput:\n  "
           "features: 4\nmodules:\n  - {name: a, type: relu}\n  - {name: a_b, type: relu}\n"
           "  - {name: b_c, type: relu}\n  - {name: c, type: relu}\nforward: [a, a_b, b_c, c]\n",
           LH_SOURCE_DIR);
  write_file("relu.yaml", text);
  write_file("x.txt",
             "1 -2 3 -4\n-1 2 -3 4\n0.5 0.5 -0.5 -0.5\n2 1 0 -1\n-2 -1 0 1\n1 1 1 1\n"
             "-1 -1 -1 -1\n3 -3 3 -3\n-3 3 -3 3\n0 1 0 1\n");
  write_file("cx",
             "PATH x\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 10 4\nOUTPUT-CLASS FP\n"
             "OUTPUT-SIZE 32\n");
  snprintf(args, sizeof args, "sh -c 'cd %s && h5import x.txt -c cx -o x.h5'", dir);
  run_result r = run_shell(args);
  cr_assert_eq(r.status, 0, "h5import: %s", r.err);
  run_free(&r);
  snprintf(args, sizeof args,
           "probe --model %s/relu.yaml --inputs %s/x.h5:/x --labels "
           "%s/lab.h5:/y10 --estimator low-rank-bilinear --num-classes 3 --pair a_b,c "
           "--pair a,b_c --out %s/err4.h5",
           dir, dir, dir, dir);
  expect_error(2, args, "Probe a_b_c_fwd already exists");
  cr_expect_eq(out_files(), 0, "no output file after errors");
}

/* The command line's own errors about pairs: a pair Probing cannot feed, malformed or
 * misplaced --pair (a test of its own: each launch is slow under ASan). */
Test(probe_model, pair_usage_errors) {
  char args[2048];
  const char *base = "probe --model " MODEL " --inputs " INPUTS " --reduce last " BIL;
  snprintf(args, sizeof args,
           "%s --labels %s/lab.h5:/y --pair transformer.h.0,transformer.h.1 "
           "--pair nothing,transformer.h --out %s/err5.h5",
           base, dir, dir);
  expect_error(2, args, "--pair nothing,transformer.h: Probing hooks neither module");
  snprintf(args, sizeof args, "%s --labels %s/lab.h5:/y --pair transformer.h.0 --out %s/err6.h5",
           base, dir, dir);
  expect_error(1, args, "--pair expects H1,H2");
  snprintf(args, sizeof args, "%s --labels %s/lab.h5:/y --out %s/err7.h5", base, dir, dir);
  expect_error(1, args, "needs --pair H1,H2");
  snprintf(args, sizeof args,
           "probe --model " MODEL " --inputs " INPUTS " --labels %s/lab.h5:/y " EST
           " --key-pattern " PATTERN
           " --pair transformer.h.0,transformer.h.1 "
           "--out %s/err8.h5",
           dir, dir);
  expect_error(1, args, "--pair and --no-bias apply to --estimator low-rank-bilinear only");
  snprintf(args, sizeof args,
           "%s --labels %s/lab.h5:/y --pair transformer.h.0,transformer.h.1 "
           "--control-task --out %s/err9.h5",
           base, dir, dir);
  expect_error(1, args, "not to --pair");
  cr_expect_eq(out_files(), 0, "no output file after errors");
}
