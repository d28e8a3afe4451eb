/* PNG figures through PLplot: each writes a real PNG of the requested size, leaves no
 * temporary file, handles NaN and empty inputs, and reports a missing folder as an error. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
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
  snprintf(dir, sizeof dir, "/tmp/lhplot_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_expect_eq(system(cmd), 0);
}

/* PNG signature, IHDR width and height, and a file size that holds more than a blank image. */
static void expect_png(const char *path, unsigned w, unsigned h, long min_bytes) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s missing", path);
  unsigned char b[24];
  cr_assert_eq(fread(b, 1, 24, f), 24);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  cr_expect(memcmp(b, sig, 8) == 0, "%s: not a PNG", path);
  cr_expect(memcmp(b + 12, "IHDR", 4) == 0);
  unsigned pw = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
  unsigned ph = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
  cr_expect(pw == w && ph == h, "%s: %ux%u, expected %ux%u", path, pw, ph, w, h);
  cr_expect(size > min_bytes, "%s: only %ld bytes", path, size);
}

static int entries(void) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

TestSuite(plot, .init = setup, .fini = teardown);

Test(plot, heatmap_with_labels_values_and_nan) {
  double m[9] = {1.0, 0.5, NAN, 0.5, 1.0, 0.25, 0.1, 0.25, 1.0};
  const char *labels[3] = {"input", "layer1", "layer2"};
  char path[128];
  snprintf(path, sizeof path, "%s/heat.png", dir);
  cr_assert_eq(lh_plot_heatmap(path, 3, 3, m, labels, labels, "CKA", "CKA", 0, 1), LH_OK, "%s",
               lh_error_message());
  expect_png(path, 900, 700, 10000);
  cr_expect_eq(entries(), 1, "a temporary file was left behind");
}

Test(plot, large_heatmap_without_values) {
  enum { R = 40 };
  double *m = malloc(R * R * sizeof *m);
  for (int i = 0; i < R * R; i++) m[i] = sin(0.1 * i);
  char path[128];
  snprintf(path, sizeof path, "%s/big.png", dir);
  cr_assert_eq(lh_plot_heatmap(path, R, R, m, NULL, NULL, "sin", "value", -1, 1), LH_OK);
  expect_png(path, 900, 700, 5000);
  free(m);
}

Test(plot, lines_with_error_bars_and_ticks) {
  double x[4] = {0, 1, 2, 3}, y[4] = {8.5, 7.2, NAN, 5.1}, e[4] = {0.2, 0.4, 0.1, 0.3};
  double y2[4] = {3, 4, 5, 6};
  lh_plot_series s[2] = {{"TwoNN", 4, x, y, e}, {"MLE", 4, x, y2, NULL}};
  const char *ticks[4] = {"input", "fc1", "fc2", "logits"};
  char path[128];
  snprintf(path, sizeof path, "%s/lines.png", dir);
  cr_assert_eq(lh_plot_lines(path, "intrinsic dimension", "layer", "dimension", 2, s, ticks, 4),
               LH_OK, "%s", lh_error_message());
  expect_png(path, 900, 700, 8000);
  /* nothing finite: an empty frame, not a failure */
  double nx[1] = {NAN};
  lh_plot_series ns = {"none", 1, nx, nx, NULL};
  snprintf(path, sizeof path, "%s/empty.png", dir);
  cr_assert_eq(lh_plot_lines(path, "empty", "x", "y", 1, &ns, NULL, 0), LH_OK);
  expect_png(path, 900, 700, 2000);
}

Test(plot, histogram_counts_non_finite) {
  double v[1000];
  for (int i = 0; i < 1000; i++) v[i] = i % 97 == 0 ? NAN : sin(i) * 3 + 5;
  char path[128];
  snprintf(path, sizeof path, "%s/hist.png", dir);
  cr_assert_eq(lh_plot_histogram(path, "local dimension", "dimension", 1000, v, 40), LH_OK);
  expect_png(path, 900, 700, 5000);
}

Test(plot, missing_folder_is_an_error_and_writes_nothing) {
  double m[1] = {1};
  cr_expect_eq(lh_plot_heatmap("/nonexistent/dir/x.png", 1, 1, m, NULL, NULL, "", "", 0, 1),
               LH_ERR_IO);
  cr_expect(strstr(lh_error_message(), "/nonexistent/dir/x.png") != NULL, "%s", lh_error_message());
  char path[128];
  snprintf(path, sizeof path, "%s/bad.png", dir);
  cr_expect_eq(lh_plot_heatmap(path, 0, 3, m, NULL, NULL, "", "", 0, 1), LH_ERR_VALUE);
  cr_expect_eq(entries(), 0);
}
