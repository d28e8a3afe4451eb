/* `latenthook probe --estimator low-rank-bilinear` from the command line, on the fixtures of
 * tests/golden/bilinear (make_golden_bilinear.py: a PyTorch run of the same seeded Adam
 * schedule; text turned into HDF5 by h5import, exact because the values are float32 numbers
 * printed in full): the parameters within 1e-6 of PyTorch's on 1, 2 and 3 ranks, the same
 * stdout on every rank count (to 1e-10), the training accuracy equal to PyTorch's, and the
 * usage and data errors (one message, no output file). */
#define _DEFAULT_SOURCE
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define G LH_SOURCE_DIR "/tests/golden/bilinear"

static char dir[64];

static void write_file(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

/* in.h5: /H1 (60 x 5), /H2 (60 x 4), /y (60), /H1b (30 x 10); ref.h5: /U (3 x 5), /V (3 x 4) */
static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/lh_cli_bil_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  write_file("c1", "PATH H1\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 60 5\nOUTPUT-CLASS FP\nOUTPUT-SIZE 32\n");
  write_file("c2", "PATH H2\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 60 4\nOUTPUT-CLASS FP\nOUTPUT-SIZE 32\n");
  write_file("cy", "PATH y\nINPUT-CLASS TEXTIN\nRANK 1\nDIMENSION-SIZES 60\nOUTPUT-CLASS IN\nOUTPUT-SIZE 64\n");
  write_file("c1b", "PATH H1b\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 30 10\nOUTPUT-CLASS FP\nOUTPUT-SIZE 32\n");
  write_file("cu", "PATH U\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 3 5\nOUTPUT-CLASS FP\nOUTPUT-SIZE 64\n");
  write_file("cv", "PATH V\nINPUT-CLASS TEXTFP\nRANK 2\nDIMENSION-SIZES 3 4\nOUTPUT-CLASS FP\nOUTPUT-SIZE 64\n");
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "sh -c 'cd %s && h5import " G "/cls_H1.txt -c c1 " G "/cls_H2.txt -c c2 " G
           "/cls_y.txt -c cy " G "/cls_H1.txt -c c1b -o in.h5 && h5import " G "/cls_U.txt -c cu " G
           "/cls_V.txt -c cv -o ref.h5'",
           dir);
  run_result r = run_shell(cmd);
  cr_assert_eq(r.status, 0, "h5import: %s", r.err);
  run_free(&r);
}

static void teardown(void) { cli_remove_dir(dir); }

TestSuite(probe_bilinear, .init = setup, .fini = teardown, .timeout = 300);

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

Test(probe_bilinear, matches_pytorch_on_1_to_3_ranks) {
  char args[1024], first[4096] = "", name[32];
  double want_acc = 0;
  FILE *f = fopen(G "/cls_accuracy.txt", "r");
  cr_assert_not_null(f);
  cr_assert_eq(fscanf(f, "%lf", &want_acc), 1);
  fclose(f);
  for (int np = 1; np <= 3; np++) {
    snprintf(args, sizeof args,
             "--data %s/in.h5:/H1 --data2 %s/in.h5:/H2 --labels %s/in.h5:/y --estimator "
             "low-rank-bilinear --num-classes 3 --epochs 100 --batch-size 16 --lr 0.05 --seed 5 "
             "--test-fraction 0 --out %s/out%d.h5",
             dir, dir, dir, dir, np);
    run_result r = probe(np, args);
    cr_assert_eq(r.status, 0, "np %d: %s", np, r.err);
    const char *acc = strstr(r.out, "\"accuracy\": ");
    cr_assert(acc && strstr(r.out, "\"predict_metrics\": null") && strstr(r.out, "\"iterations\": 400"),
              "%s", r.out);
    const double got_acc = strtod(acc + 12, NULL);
    cr_expect(got_acc - want_acc < 1e-12 && want_acc - got_acc < 1e-12, "accuracy %s, PyTorch %g", acc, want_acc);
    cli_strip_volatile(r.out);
    if (np == 1)
      snprintf(first, sizeof first, "%s", r.out);
    else
      cr_expect(cli_same_numbers(r.out, first, 1e-10),
                "stdout differs between 1 and %d ranks:\n%s\n%s", np, first, r.out);
    run_free(&r);
    snprintf(name, sizeof name, "out%d.h5", np);
    cr_expect_eq(h5diff("--delta=1e-6", name, "/U", "ref.h5", "/U"), 0, "U vs PyTorch, np %d", np);
    cr_expect_eq(h5diff("--delta=1e-6", name, "/V", "ref.h5", "/V"), 0, "V vs PyTorch, np %d", np);
  }
  cr_expect_eq(h5diff("--relative=1e-10", "out1.h5", "/U", "out3.h5", "/U"), 0);
  /* the comparison can fail: another seed gives other parameters */
  snprintf(args, sizeof args,
           "--data %s/in.h5:/H1 --data2 %s/in.h5:/H2 --labels %s/in.h5:/y --estimator "
           "low-rank-bilinear --num-classes 3 --epochs 100 --batch-size 16 --lr 0.05 --seed 6 "
           "--test-fraction 0 --no-bias --out %s/out_s6.h5",
           dir, dir, dir, dir);
  run_result r = probe(2, args);
  cr_assert_eq(r.status, 0, "%s", r.err);
  cr_expect(strstr(r.out, "\"bias\": false") != NULL, "%s", r.out);
  run_free(&r);
  cr_expect_neq(h5diff("--delta=1e-6", "out_s6.h5", "/U", "ref.h5", "/U"), 0);
}

static void expect_error(int np, const char *args, const char *msg) {
  run_result r = probe(np, args);
  cr_expect_neq(r.status, 0, "%s: exit 0", args);
  cr_expect(strstr(r.err, msg) != NULL, "expected '%s' in: %s", msg, r.err);
  cr_expect_eq(count_lines_with(r.err, "error"), 1, "one message: %s", r.err);
  cr_expect_str_eq(r.out, "");
  run_free(&r);
}

Test(probe_bilinear, errors) {
  char args[1024];
  snprintf(args, sizeof args, "--data %s/in.h5:/H1 --labels %s/in.h5:/y --estimator "
           "low-rank-bilinear --num-classes 3 --out %s/out_e.h5", dir, dir, dir);
  expect_error(2, args, "needs --data2");
  snprintf(args, sizeof args, "--data %s/in.h5:/H1 --data2 %s/in.h5:/H2 --labels %s/in.h5:/y "
           "--estimator low-rank-bilinear --rank 2 --out %s/out_e.h5", dir, dir, dir, dir);
  expect_error(1, args, "only --rank 1 is supported");
  snprintf(args, sizeof args, "--data %s/in.h5:/H1 --data2 %s/in.h5:/H1b --labels %s/in.h5:/y "
           "--estimator low-rank-bilinear --num-classes 3 --out %s/out_e.h5", dir, dir, dir, dir);
  expect_error(3, args, "--data2 has 30 samples but --data has 60");
  snprintf(args, sizeof args, "--data %s/in.h5:/H1 --data2 %s/in.h5:/H2 --labels %s/in.h5:/y "
           "--estimator low-rank-bilinear --num-classes 2 --out %s/out_e.h5", dir, dir, dir, dir);
  expect_error(2, args, "not a class id in [0, 2)");
  snprintf(args, sizeof args, "--data %s/in.h5:/H1 --data2 %s/in.h5:/H2 --labels %s/in.h5:/y "
           "--estimator low-rank-bilinear --solver lbfgs --out %s/out_e.h5", dir, dir, dir, dir);
  expect_error(1, args, "adam only");
  snprintf(args, sizeof args, "--data %s/in.h5:/H1 --data2 %s/in.h5:/H2 --labels %s/in.h5:/y "
           "--estimator linear --num-classes 3 --out %s/out_e.h5", dir, dir, dir, dir);
  expect_error(2, args, "--data2 and --no-bias apply to --estimator low-rank-bilinear only");
  cr_expect_eq(file_count(), 0, "no output file after errors");
}
