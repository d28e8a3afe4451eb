/* `latenthook probe --model ...` (Probing with a ProbeManager over the hooked forward pass)
 * on the shipped tiny GPT-2 and induction.h5:/clean (64 sequences), labels i mod 3 written by
 * h5import: each per-module probe is bitwise the probe `latenthook probe --data` fits on what
 * `latenthook cache` writes for that module; outputs, control-task probes and stdout are
 * identical on 1, 2 and 3 ranks; the --png curve is a 900 x 700 PNG; the error paths give
 * one message, empty stdout, non-zero exit and no output file. */
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
