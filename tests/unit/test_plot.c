/* PNG figures through PLplot: each function writes a whole PNG of 900 x 700 pixels that holds
 * more than a blank page (a blank pngcairo page compresses to about 3.4 KB), leaves no
 * temporary file, handles NaN and empty inputs, reports a missing folder, bad arguments and a
 * missing PLplot driver as statuses (never exiting, never writing to stdout), and can be
 * called many times in one process. Criterion runs each test in its own process, so the tests
 * that point PLPLOT_DRV_DIR elsewhere start with PLplot uninitialised. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "latenthook/plot.h"

static char dir[64];

static void setup(void) {
  snprintf(dir, sizeof dir, "/tmp/lh_plot_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_expect_eq(system(cmd), 0);
}

TestSuite(plot, .init = setup, .fini = teardown);

static const char *in_dir(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/%s", dir, name);
  return buf;
}

static uint32_t be32(const unsigned char *b) {
  return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* A whole PNG (signature, IHDR first with the expected size, IEND last) of at least
 * min_bytes, the proxy for "not blank" without a PNG decoder. */
static void expect_png(const char *path, long min_bytes) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  unsigned char b[24], tail[8];
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s missing", path);
  cr_assert_eq(fread(b, 1, 24, f), 24, "%s: too short", path);
  cr_assert_eq(fseek(f, -8, SEEK_END), 0);
  cr_assert_eq(fread(tail, 1, 8, f), 8);
  long size = ftell(f);
  fclose(f);
  cr_expect(memcmp(b, sig, 8) == 0, "%s: no PNG signature", path);
  cr_expect(memcmp(b + 12, "IHDR", 4) == 0, "%s: IHDR is not the first chunk", path);
  cr_expect(be32(b + 16) == 900 && be32(b + 20) == 700, "%s: %u x %u pixels, expected 900 x 700",
            path, be32(b + 16), be32(b + 20));
  cr_expect(memcmp(tail, "IEND", 4) == 0, "%s: no IEND chunk at the end", path);
  cr_expect(size >= min_bytes, "%s: %ld bytes, expected at least %ld", path, size, min_bytes);
}

/* Files in dir (a temporary file left behind would show up here). */
static int entries(void) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return n;
}

/* stdout sent to a file while figures are drawn, to check that PLplot wrote nothing there. */
static int saved_stdout = -1;
static char captured[96];

static void capture_stdout(void) {
  fflush(stdout);
  snprintf(captured, sizeof captured, "%s.stdout", dir); /* beside dir, not in it */
  int fd = open(captured, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  cr_assert_geq(fd, 0);
  saved_stdout = dup(1);
  cr_assert_geq(dup2(fd, 1), 0);
  close(fd);
}

static long release_stdout(void) {
  fflush(stdout);
  dup2(saved_stdout, 1);
  close(saved_stdout);
  struct stat sb;
  cr_assert_eq(stat(captured, &sb), 0);
  unlink(captured);
  return (long)sb.st_size;
}

static const double x4[4] = {0, 1, 2, 3};
static const char *const layers4[4] = {"embed", "layers.0", "layers.1", "final_norm"};

Test(plot, heatmap_small_with_labels_values_and_nan) {
  const double m[9] = {1.0, 0.62, NAN, 0.62, 1.0, 0.25, 0.1, 0.25, 1.0};
  const char *labels[3] = {"embed", "layers.0.mlp", "lm_head#1"}; /* '#' is PLplot's escape */
  char path[128];
  cr_assert_eq(lh_plot_heatmap(in_dir(path, sizeof path, "cka.png"), 3, 3, m, labels, labels,
                               "linear CKA", "CKA", 0.0, 1.0),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 12000);
  cr_expect_eq(entries(), 1, "a temporary file was left behind");
}

Test(plot, heatmap_large_without_labels_and_automatic_range) {
  enum { R = 40 };
  double *m = malloc(R * R * sizeof *m);
  for (int i = 0; i < R * R; i++) m[i] = i % 41 == 7 ? NAN : sin(0.1 * i);
  char path[128];
  cr_assert_eq(lh_plot_heatmap(in_dir(path, sizeof path, "big.png"), R, R, m, NULL, NULL,
                               "sin", "value", NAN, NAN),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 12000);
  free(m);
}

Test(plot, heatmap_rectangular_and_empty) {
  const double m[6] = {0.1, 0.2, 0.3, 0.4, 0.5, 0.6};
  char path[128];
  cr_assert_eq(lh_plot_heatmap(in_dir(path, sizeof path, "rect.png"), 2, 3, m, NULL, layers4,
                               "2 x 3", "v", NAN, NAN),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 8000);
  cr_assert_eq(lh_plot_heatmap(in_dir(path, sizeof path, "empty.png"), 0, 0, NULL, NULL, NULL,
                               "nothing", "v", NAN, NAN),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 5000);
  cr_expect_eq(entries(), 2);
}

Test(plot, lines_with_error_bars_legend_and_layer_names) {
  const double y[4] = {8.5, 7.2, NAN, 5.1}, e[4] = {0.2, 0.4, 0.1, NAN};
  const double y2[4] = {3.0, 4.0, 5.0, 6.0};
  const lh_plot_series s[2] = {{"TwoNN", 4, x4, y, e, layers4}, {"MLE", 4, x4, y2, NULL, NULL}};
  char path[128];
  cr_assert_eq(lh_plot_lines(in_dir(path, sizeof path, "id.png"), "intrinsic dimension",
                             "layer", "dimension", 2, s),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 12000);
  const lh_plot_series one = {"probe", 4, x4, y2, NULL, NULL};
  cr_assert_eq(lh_plot_lines(in_dir(path, sizeof path, "probe.png"), "probe accuracy", "layer",
                             "accuracy", 1, &one),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 10000);
  cr_expect_eq(entries(), 2);
}

Test(plot, lines_with_many_categories_and_nothing_finite) {
  enum { L = 48 };
  double x[L], y[L];
  char names[L][32];
  const char *ticks[L];
  for (int i = 0; i < L; i++) {
    x[i] = i;
    y[i] = 10.0 + 5.0 * sin(0.2 * i);
    snprintf(names[i], sizeof names[i], "model.layers.%d.mlp", i);
    ticks[i] = names[i];
  }
  const lh_plot_series s = {"TwoNN", L, x, y, NULL, ticks};
  char path[128];
  cr_assert_eq(lh_plot_lines(in_dir(path, sizeof path, "many.png"), "48 layers", "layer", "ID",
                             1, &s),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 12000);
  const double nan1[1] = {NAN};
  const lh_plot_series none = {"none", 1, nan1, nan1, NULL, NULL};
  cr_assert_eq(lh_plot_lines(in_dir(path, sizeof path, "nan.png"), "all NaN", "x", "y", 1, &none),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 5000);
  cr_assert_eq(lh_plot_lines(in_dir(path, sizeof path, "zero.png"), "no series", "x", "y", 0, NULL),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 5000);
  cr_expect_eq(entries(), 3);
}

Test(plot, histogram_counts_non_finite_in_title) {
  double v[1000];
  for (int i = 0; i < 1000; i++) v[i] = i % 97 == 0 ? NAN : (i % 89 == 0 ? INFINITY : sin(i) * 3 + 5);
  char path[128];
  cr_assert_eq(lh_plot_histogram(in_dir(path, sizeof path, "hist.png"), "local dimension",
                                 "dimension", 1000, v, 40),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 10000);
  cr_assert_eq(lh_plot_histogram(in_dir(path, sizeof path, "auto.png"), "Sturges", "dimension",
                                 1000, v, 0),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 10000);
  const double same[3] = {2.0, 2.0, 2.0}, nan3[3] = {NAN, NAN, NAN};
  cr_assert_eq(lh_plot_histogram(in_dir(path, sizeof path, "same.png"), "one value", "x", 3,
                                 same, 10),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 5000);
  cr_assert_eq(lh_plot_histogram(in_dir(path, sizeof path, "nan.png"), "all NaN", "x", 3, nan3, 10),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 5000);
  cr_assert_eq(lh_plot_histogram(in_dir(path, sizeof path, "empty.png"), "empty", "x", 0, NULL, 0),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 5000);
  cr_expect_eq(entries(), 5);
}

Test(plot, missing_folder_is_an_io_error_naming_the_file) {
  const double m[1] = {1.0}, v[2] = {1.0, 2.0};
  const lh_plot_series s = {"a", 2, v, v, NULL, NULL};
  char path[128];
  in_dir(path, sizeof path, "missing/fig.png");
  lh_status st[3] = {lh_plot_heatmap(path, 1, 1, m, NULL, NULL, "t", "v", 0, 1),
                     lh_plot_lines(path, "t", "x", "y", 1, &s),
                     lh_plot_histogram(path, "t", "x", 2, v, 5)};
  for (int k = 0; k < 3; k++) cr_expect_eq(st[k], LH_ERR_IO, "function %d: status %d", k, st[k]);
  cr_expect(strstr(lh_error_message(), path) != NULL, "%s", lh_error_message());
  cr_expect(strstr(lh_error_message(), "No such file or directory") != NULL, "%s",
            lh_error_message());
  cr_expect_eq(entries(), 0, "something was written");
}

Test(plot, bad_arguments_are_value_errors) {
  const double m[4] = {0, 1, 2, 3};
  const lh_plot_series nox = {"bad", 3, NULL, m, NULL, NULL}, neg = {"neg", -1, m, m, NULL, NULL};
  char path[128];
  in_dir(path, sizeof path, "bad.png");
  cr_expect_eq(lh_plot_heatmap(path, -1, 2, m, NULL, NULL, "", "", 0, 1), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_heatmap(path, 2, 2, NULL, NULL, NULL, "", "", 0, 1), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_heatmap(path, 2, 2, m, NULL, NULL, "", "", 1, 0), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_heatmap(path, 2000, 2000, m, NULL, NULL, "", "", 0, 1), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_heatmap("", 2, 2, m, NULL, NULL, "", "", 0, 1), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_lines(path, "", "", "", -1, NULL), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_lines(path, "", "", "", 2, NULL), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_lines(path, "", "", "", 1, &nox), LH_ERR_VALUE);
  cr_expect(strstr(lh_error_message(), "bad") != NULL, "%s", lh_error_message());
  cr_expect_eq(lh_plot_lines(path, "", "", "", 1, &neg), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_histogram(path, "", "", -3, m, 5), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_histogram(path, "", "", 4, NULL, 5), LH_ERR_VALUE);
  cr_expect_eq(lh_plot_histogram(path, "", "", 4, m, 1000000), LH_ERR_VALUE);
  cr_expect_eq(entries(), 0);
}

Test(plot, many_figures_in_one_process_and_nothing_on_stdout) {
  const double m[4] = {1.0, 0.5, 0.5, 1.0}, v[4] = {1, 2, 2, 3};
  const lh_plot_series s = {"a", 4, x4, v, v, layers4};
  char path[128];
  capture_stdout();
  for (int k = 0; k < 3; k++) {
    char name[32];
    snprintf(name, sizeof name, "h%d.png", k);
    cr_expect_eq(lh_plot_heatmap(in_dir(path, sizeof path, name), 2, 2, m, NULL, NULL, "", "", 0, 1),
                 LH_OK, "%s", lh_error_message());
    snprintf(name, sizeof name, "l%d.png", k);
    cr_expect_eq(lh_plot_lines(in_dir(path, sizeof path, name), "", "", "", 1, &s), LH_OK, "%s",
                 lh_error_message());
    cr_expect_eq(lh_plot_histogram(in_dir(path, sizeof path, "missing/x.png"), "", "", 4, v, 2),
                 LH_ERR_IO);
    snprintf(name, sizeof name, "d%d.png", k);
    cr_expect_eq(lh_plot_histogram(in_dir(path, sizeof path, name), "", "", 4, v, 2), LH_OK, "%s",
                 lh_error_message());
  }
  cr_expect_eq(release_stdout(), 0, "PLplot wrote to stdout");
  cr_expect_eq(entries(), 9);
  expect_png(in_dir(path, sizeof path, "h2.png"), 5000);
  expect_png(in_dir(path, sizeof path, "d2.png"), 5000);
}

/* PLplot finds no driver at all: it calls its exit handler, which must not end the process. */
Test(plot, no_plplot_drivers_is_an_error_not_an_exit) {
  char empty[128], path[128];
  in_dir(empty, sizeof empty, "drivers");
  cr_assert_eq(mkdir(empty, 0700), 0);
  cr_assert_eq(setenv("PLPLOT_DRV_DIR", empty, 1), 0);
  const double v[2] = {1.0, 2.0};
  capture_stdout();
  lh_status st = lh_plot_histogram(in_dir(path, sizeof path, "x.png"), "t", "x", 2, v, 2);
  cr_expect_eq(release_stdout(), 0, "PLplot wrote to stdout");
  cr_expect_eq(st, LH_ERR_RUNTIME);
  cr_expect(strstr(lh_error_message(), path) != NULL, "%s", lh_error_message());
  cr_expect(strstr(lh_error_message(), "No device drivers found") != NULL, "%s", lh_error_message());
  cr_expect_eq(entries(), 1, "only the drivers folder should be there");
}

/* PLplot without its cairo driver (plplot-driver-cairo not installed) would ask on stdout for
 * a device: the module must refuse before that. */
Test(plot, missing_cairo_driver_is_an_error_not_a_prompt) {
  glob_t g;
  if (glob("/usr/lib/*/plplot*/drivers/null.driver_info", 0, NULL, &g) != 0)
    cr_skip_test("PLplot's null driver is not installed where Debian puts it");
  char drivers[128], link[160], target[512], path[128];
  in_dir(drivers, sizeof drivers, "drivers");
  cr_assert_eq(mkdir(drivers, 0700), 0);
  for (int k = 0; k < 2; k++) { /* null.driver_info and null.so only */
    snprintf(target, sizeof target, "%s", g.gl_pathv[0]);
    if (k == 1) strcpy(strrchr(target, '.'), ".so");
    snprintf(link, sizeof link, "%s/%s", drivers, strrchr(target, '/') + 1);
    cr_assert_eq(symlink(target, link), 0);
  }
  globfree(&g);
  cr_assert_eq(setenv("PLPLOT_DRV_DIR", drivers, 1), 0);
  const double m[1] = {0.5};
  capture_stdout();
  lh_status st = lh_plot_heatmap(in_dir(path, sizeof path, "x.png"), 1, 1, m, NULL, NULL, "", "",
                                 0, 1);
  cr_expect_eq(release_stdout(), 0, "PLplot wrote to stdout");
  cr_expect_eq(st, LH_ERR_RUNTIME);
  cr_expect(strstr(lh_error_message(), "plplot-driver-cairo") != NULL, "%s", lh_error_message());
  cr_expect(strstr(lh_error_message(), path) != NULL, "%s", lh_error_message());
  cr_expect_eq(entries(), 1, "only the drivers folder should be there");
}
