/* `latenthook probe` from the command line, on the fixtures of tests/golden/probe
 * (make_golden_probe.py; text turned into HDF5 by h5import, exact because the values are
 * float32-representable): lbfgs multinomial logistic regression against scikit-learn's
 * coefficients (1e-3 relative), ridge against Ridge (1e-5: the reference text passes through
 * float32), outputs and stdout identical on 1, 2 and 3 ranks; the error paths: one message,
 * empty stdout, non-zero exit, no output file. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define G LH_SOURCE_DIR "/tests/golden/probe"

static char dir[64];

static void write_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

/* in.h5: /X3 (90 x 4), /y3 (90), /Xr (50 x 4), /yr (50); ref.h5: /coef3 (3 x 4), /coefr (1 x 4) */
static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/lh_cli_probe_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  write_file("cx3", "PATH X3\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 90 4\nOUTPUT-CLASS FP\nOUTPUT-SIZE 64\n");
  write_file("cy3", "PATH y3\nINPUT-CLASS TEXTIN\nRANK 1\nDIMENSION-SIZES 90\nOUTPUT-CLASS IN\nOUTPUT-SIZE 64\n");
  write_file("cxr", "PATH Xr\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 50 4\nOUTPUT-CLASS FP\nOUTPUT-SIZE 64\n");
  write_file("cyr", "PATH yr\nINPUT-CLASS TEXTFP\nRANK 1\nDIMENSION-SIZES 50\nOUTPUT-CLASS FP\nOUTPUT-SIZE 64\n");
  write_file("cc3", "PATH coef3\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 3 4\nOUTPUT-CLASS FP\nOUTPUT-SIZE 64\n");
  write_file("ccr", "PATH coefr\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 1 4\nOUTPUT-CLASS FP\nOUTPUT-SIZE 64\n");
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "sh -c 'cd %s && h5import " G "/logreg3_X.txt -c cx3 " G "/logreg3_y.txt -c cy3 " G
           "/ridge_X.txt -c cxr " G "/ridge_y.txt -c cyr -o in.h5 && h5import " G
           "/logreg3_coef.txt -c cc3 " G "/ridge_coef.txt -c ccr -o ref.h5'",
           dir);
  run_result r = run_shell(cmd);
  cr_assert_eq(r.status, 0, "h5import: %s", r.err);
  run_free(&r);
}

static void teardown(void) { cli_remove_dir(dir); }

TestSuite(probe, .init = setup, .fini = teardown, .timeout = 300);

static run_result probe(int np, const char *args) {
  char a[2048];
  snprintf(a, sizeof a, "probe %s", args);
  return run_cli_np(np, a);
}

/* cli_h5diff on files a and b of this test's folder. */
static int h5diff(const char *opts, const char *a, const char *pa, const char *b, const char *pb) {
  char fa[256], fb[256];
  snprintf(fa, sizeof fa, "%s/%s", dir, a);
  snprintf(fb, sizeof fb, "%s/%s", dir, b);
  return cli_h5diff(opts, fa, pa, fb, pb);
}

static int file_count(void) {
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strncmp(e->d_name, "out", 3) == 0;
  closedir(d);
  return n;
}

Test(probe, lbfgs_matches_sklearn_and_rank_counts) {
  char args[1024], first[4096] = "";
  for (int np = 1; np <= 3; np++) {
    snprintf(args, sizeof args,
             "--data %s/in.h5:/X3 --labels %s/in.h5:/y3 --estimator linear --num-classes 3 "
             "--solver lbfgs --l2 0.05 --test-fraction 0.2 --seed 3 --out %s/out%d.h5",
             dir, dir, dir, np);
    run_result r = probe(np, args);
    cr_assert_eq(r.status, 0, "np %d: %s", np, r.err);
    cr_expect(strstr(r.out, "\"fit_metrics\"") && strstr(r.out, "\"predict_metrics\": {") &&
                  strstr(r.out, "\"balanced_accuracy\"") && strstr(r.out, "\"converged\": true"),
              "%s", r.out);
    cli_strip_volatile(r.out);
    if (np == 1)
      snprintf(first, sizeof first, "%s", r.out);
    else
      cr_expect_str_eq(r.out, first, "stdout differs between 1 and %d ranks", np);
    run_free(&r);
  }
  cr_expect_eq(h5diff("", "out1.h5", "/coef", "out2.h5", "/coef"), 0);
  cr_expect_eq(h5diff("", "out1.h5", "/coef", "out3.h5", "/coef"), 0);
  cr_expect_eq(h5diff("", "out1.h5", "/intercept", "out3.h5", "/intercept"), 0);
  /* the whole data against scikit-learn */
  snprintf(args, sizeof args,
           "--data %s/in.h5:/X3 --labels %s/in.h5:/y3 --estimator linear --num-classes 3 "
           "--solver lbfgs --l2 0.05 --test-fraction 0 --out %s/out_all.h5",
           dir, dir, dir);
  run_result r = probe(2, args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "\"predict_metrics\": null") && strstr(r.out, "\"n_train\": 90"), "%s", r.out);
  run_free(&r);
  cr_expect_eq(h5diff("--relative=1e-3", "out_all.h5", "/coef", "ref.h5", "/coef3"), 0);
  /* and a change of --l2 changes the answer (the comparison can fail) */
  snprintf(args, sizeof args,
           "--data %s/in.h5:/X3 --labels %s/in.h5:/y3 --estimator linear --num-classes 3 "
           "--solver lbfgs --l2 0.1 --test-fraction 0 --out %s/out_l2.h5",
           dir, dir, dir);
  r = probe(1, args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  run_free(&r);
  cr_expect_neq(h5diff("--relative=1e-3", "out_l2.h5", "/coef", "ref.h5", "/coef3"), 0);
}

Test(probe, ridge_and_mean_difference) {
  char args[1024];
  snprintf(args, sizeof args,
           "--data %s/in.h5:/Xr --labels %s/in.h5:/yr --estimator linear --solver ridge "
           "--l2 0.1 --test-fraction 0 --out %s/out_r.h5",
           dir, dir, dir);
  run_result r = probe(2, args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "\"task\": \"regression\"") && strstr(r.out, "\"r2\""), "%s", r.out);
  run_free(&r);
  cr_expect_eq(h5diff("--relative=1e-5", "out_r.h5", "/coef", "ref.h5", "/coefr"), 0);
  /* mean difference of classes 0/1 from the regression sign is fine; class ids 0..2 are not */
  snprintf(args, sizeof args,
           "--data %s/in.h5:/X3 --labels %s/in.h5:/y3 --estimator mean-difference --out %s/out_m.h5",
           dir, dir, dir);
  r = probe(3, args);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "needs labels 0 or 1") && count_lines_with(r.err, "error") == 1, "%s", r.err);
  cr_expect_str_eq(r.out, "");
  run_free(&r);
  cr_expect_eq(file_count(), 1, "no output file after an error");
}

static void expect_error(int np, const char *args, const char *msg) {
  run_result r = probe(np, args);
  cr_expect_neq(r.status, 0, "%s: exit 0", args);
  cr_expect(strstr(r.err, msg) != NULL, "expected '%s' in: %s", msg, r.err);
  cr_expect_eq(count_lines_with(r.err, "error"), 1, "one message: %s", r.err);
  cr_expect_str_eq(r.out, "");
  run_free(&r);
}

Test(probe, errors) {
  char args[1024];
  snprintf(args, sizeof args, "--data %s/in.h5:/X3 --labels %s/in.h5:/yr --estimator linear "
           "--num-classes 3 --out %s/out_e.h5", dir, dir, dir);
  expect_error(2, args, "--labels has 50 samples but --data has 90");
  snprintf(args, sizeof args, "--data %s/in.h5:/X3 --labels %s/in.h5:/y3 --estimator linear "
           "--num-classes 2 --solver lbfgs --out %s/out_e.h5", dir, dir, dir);
  expect_error(3, args, "is not a class id in [0, 2)");
  snprintf(args, sizeof args, "--data %s/in.h5:/Xr --labels %s/in.h5:/yr --estimator linear "
           "--num-classes 3 --solver ridge --out %s/out_e.h5", dir, dir, dir);
  expect_error(2, args, "--solver ridge fits regression only");
  snprintf(args, sizeof args, "--data %s/in.h5:/Xr --labels %s/in.h5:/yr --estimator linear "
           "--solver newton --out %s/out_e.h5", dir, dir, dir);
  expect_error(1, args, "--solver must be adam, lbfgs or ridge");
  snprintf(args, sizeof args, "--data %s/in.h5:/Xr --labels %s/in.h5:/yr --estimator linear "
           "--test-fraction 0.001 --out %s/out_e.h5", dir, dir, dir);
  expect_error(2, args, "each part needs at least one");
  snprintf(args, sizeof args, "--data %s/in.h5:/Xr --labels %s/in.h5:/nope --estimator linear "
           "--out %s/out_e.h5", dir, dir, dir);
  expect_error(2, args, "nope");
  cr_expect_eq(file_count(), 0, "no output file after errors");
}
