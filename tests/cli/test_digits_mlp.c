/* The shipped digits classifier (jobs/models/digits-mlp, trained by
 * jobs/models/train_digits_mlp.py) on the shipped digits (jobs/data/digits.h5:/X), against
 * PyTorch (tests/golden/make_golden_digits_mlp.py): `latenthook cache --key-pattern
 * 'layers\.\d+$'` on 1 and 2 ranks. The fixture keeps a checksum-like subset of PyTorch's
 * activations (the whole would take 3.3 MB): the first 20 rows of every layer and of the output,
 * and their column sums over all 1797 rows in float64; those are compared here with the cached
 * datasets, read with HDF5 (h5diff compares whole datasets only). The model's test accuracy,
 * computed from our output (argmax of /output against digits.h5:/y on the held-out rows of
 * digits-mlp/split.h5:/test), must equal the one the training script recorded, and our argmax
 * PyTorch's on every row. The files of 1 and 2 ranks are compared without tolerance. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <hdf5.h>

#include "cli/spawn.h"

#define MODEL_DIR LH_SOURCE_DIR "/jobs/models/digits-mlp"
#define DATA LH_SOURCE_DIR "/jobs/data/digits.h5"
#define EXPECTED LH_SOURCE_DIR "/tests/golden/digits_mlp/expected.h5"
#define N 1797
#define NKEYS 8

/* PyTorch's float32 values, as LatentHook's, deviate from the float64 forward by up to 1.2e-5
 * (logits up to 47 in magnitude); LatentHook's from PyTorch's by up to 1.1e-5 over all rows
 * (3.8e-6 in the first 20), the column sums (up to 2.2e4) by up to 9.8e-5: tolerances about
 * ten times those. The smallest gap between a row's two largest logits is 0.022, so the
 * argmax cannot flip within them. */
#define HEAD_TOL 5e-5
#define COLSUM_TOL 1e-3

static const char *keys[NKEYS] = {"layers.0", "layers.1", "layers.2", "layers.3",
                                  "layers.4", "layers.5", "layers.6", "output"};
static const int64_t widths[NKEYS] = {128, 128, 64, 64, 32, 32, 10, 10};

/* Reads a whole dataset of file converted to mem_type (H5T_NATIVE_DOUBLE or
 * H5T_NATIVE_INT64) into a malloc'ed array; *rows and *cols get its shape (cols 1 for a
 * vector). Fails the test if anything is missing. */
static void *read_all(const char *file, const char *path, hid_t mem_type, int64_t *rows,
                      int64_t *cols) {
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  cr_assert(f >= 0, "cannot open %s", file);
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  cr_assert(d >= 0, "%s: no dataset %s", file, path);
  hid_t s = H5Dget_space(d);
  int ndim = H5Sget_simple_extent_ndims(s);
  cr_assert(ndim == 1 || ndim == 2, "%s:%s has %d dimensions", file, path, ndim);
  hsize_t dims[2] = {0, 1};
  H5Sget_simple_extent_dims(s, dims, NULL);
  void *buf = malloc((size_t)(dims[0] * dims[1]) * H5Tget_size(mem_type) + 1);
  cr_assert(buf != NULL);
  cr_assert(H5Dread(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, "%s:%s: read failed",
            file, path);
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
  *rows = (int64_t)dims[0];
  *cols = (int64_t)dims[1];
  return buf;
}

static int64_t read_attr_int(const char *file, const char *name) {
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  cr_assert(f >= 0, "cannot open %s", file);
  hid_t a = H5Aopen(f, name, H5P_DEFAULT);
  cr_assert(a >= 0, "%s: no root attribute %s", file, name);
  int64_t v = -1;
  cr_assert(H5Aread(a, H5T_NATIVE_INT64, &v) >= 0);
  H5Aclose(a);
  H5Fclose(f);
  return v;
}

/* Compares the cached dataset of key k in out with the fixture (its first rows and its column
 * sums) and prints the largest deviations. */
static void check_key(int np, const char *out, int k) {
  char path[128];
  int64_t rows, cols, hr, hc, sr, sc;
  if (strcmp(keys[k], "output") == 0)
    snprintf(path, sizeof path, "/output");
  else
    snprintf(path, sizeof path, "/cache/%s", keys[k]);
  double *ours = read_all(out, path, H5T_NATIVE_DOUBLE, &rows, &cols);
  cr_assert(rows == N && cols == widths[k], "np=%d: %s has shape (%lld, %lld), expected (%d, %lld)",
            np, path, (long long)rows, (long long)cols, N, (long long)widths[k]);
  snprintf(path, sizeof path, "/head/%s", keys[k]);
  double *head = read_all(EXPECTED, path, H5T_NATIVE_DOUBLE, &hr, &hc);
  snprintf(path, sizeof path, "/colsum/%s", keys[k]);
  double *colsum = read_all(EXPECTED, path, H5T_NATIVE_DOUBLE, &sr, &sc);
  cr_assert(hc == cols && sr == cols && sc == 1 && hr <= rows, "fixture shapes of %s", keys[k]);

  double head_dev = 0, sum_dev = 0;
  for (int64_t i = 0; i < hr; i++)
    for (int64_t j = 0; j < cols; j++)
      head_dev = fmax(head_dev, fabs(ours[i * cols + j] - head[i * cols + j]));
  for (int64_t j = 0; j < cols; j++) {
    double s = 0; /* float32 values summed in float64, as the fixture's */
    for (int64_t i = 0; i < rows; i++) s += ours[i * cols + j];
    sum_dev = fmax(sum_dev, fabs(s - colsum[j]));
  }
  fprintf(stderr, "np=%d %-8s first %lld rows: max |ours - PyTorch| %.2e; column sums: %.2e\n", np,
          keys[k], (long long)hr, head_dev, sum_dev);
  cr_expect(head_dev <= HEAD_TOL, "np=%d: %s: first %lld rows differ from PyTorch's by %.3g > %g",
            np, keys[k], (long long)hr, head_dev, HEAD_TOL);
  cr_expect(sum_dev <= COLSUM_TOL, "np=%d: %s: column sums differ from PyTorch's by %.3g > %g", np,
            keys[k], sum_dev, COLSUM_TOL);
  free(ours);
  free(head);
  free(colsum);
}

/* Argmax of /output on every row against PyTorch's, and the number of correct predictions on
 * the held-out rows against the training script's record. */
static void check_accuracy(int np, const char *out) {
  int64_t r, c, yr, yc, tr, tc, ar, ac;
  double *logits = read_all(out, "/output", H5T_NATIVE_DOUBLE, &r, &c);
  int64_t *y = read_all(DATA, "/y", H5T_NATIVE_INT64, &yr, &yc);
  int64_t *test = read_all(MODEL_DIR "/split.h5", "/test", H5T_NATIVE_INT64, &tr, &tc);
  int64_t *torch_pred = read_all(EXPECTED, "/argmax", H5T_NATIVE_INT64, &ar, &ac);
  cr_assert(r == N && c == 10 && yr == N && ar == N && tc == 1 && tr > 0);

  int64_t *pred = malloc(N * sizeof *pred);
  cr_assert(pred != NULL);
  int64_t differ = 0;
  for (int64_t i = 0; i < N; i++) {
    pred[i] = 0;
    for (int64_t j = 1; j < 10; j++)
      if (logits[i * 10 + j] > logits[i * 10 + pred[i]]) pred[i] = j;
    differ += pred[i] != torch_pred[i];
  }
  cr_expect(differ == 0, "np=%d: the predicted digit differs from PyTorch's on %lld rows", np,
            (long long)differ);

  int64_t correct = 0;
  for (int64_t t = 0; t < tr; t++) {
    cr_assert(test[t] >= 0 && test[t] < N, "split.h5:/test[%lld] = %lld", (long long)t,
              (long long)test[t]);
    correct += pred[test[t]] == y[test[t]];
  }
  int64_t recorded = read_attr_int(MODEL_DIR "/split.h5", "test_correct");
  int64_t size = read_attr_int(MODEL_DIR "/split.h5", "test_size");
  fprintf(stderr, "np=%d test accuracy %lld/%lld = %.4f (recorded by the training script: %lld)\n",
          np, (long long)correct, (long long)tr, (double)correct / (double)tr, (long long)recorded);
  cr_expect(size == tr, "split.h5: test_size %lld but /test has %lld rows", (long long)size,
            (long long)tr);
  cr_expect(correct == recorded,
            "np=%d: %lld of %lld test images right, the training script "
            "recorded %lld",
            np, (long long)correct, (long long)tr, (long long)recorded);
  cr_expect(correct == read_attr_int(EXPECTED, "test_correct"),
            "np=%d: test accuracy differs from the fixture's", np);
  free(pred);
  free(logits);
  free(y);
  free(test);
  free(torch_pred);
}

Test(digits_mlp, cache_and_accuracy_match_pytorch_on_1_and_2_ranks, .timeout = 120) {
  char dir[64], out[2][128], args[1024];
  cli_make_dir(dir, "digits");
  for (int np = 1; np <= 2; np++) {
    snprintf(out[np - 1], sizeof out[0], "%s/cache%d.h5", dir, np);
    snprintf(args, sizeof args,
             "cache --model " MODEL_DIR "/model.yaml --inputs " DATA
             ":/X --key-pattern 'layers\\.\\d+$' --out %s",
             out[np - 1]);
    run_result r = run_cli_np(np, args);
    cr_assert_eq(r.status, 0, "np=%d exit %d: %s", np, r.status, r.err);
    cr_expect(strstr(r.out, "\"samples\": 1797") != NULL, "np=%d: %s", np, r.out);
    for (int k = 0; k < NKEYS; k++) check_key(np, out[np - 1], k);
    check_accuracy(np, out[np - 1]);
    run_free(&r);
  }
  cr_expect_eq(cli_h5diff("", out[0], "/cache", out[1], "/cache"), 0,
               "cache on 2 ranks differs from 1 rank:\n%s", cli_h5diff_report);
  cr_expect_eq(cli_h5diff("", out[0], "/output", out[1], "/output"), 0,
               "output on 2 ranks differs from 1 rank:\n%s", cli_h5diff_report);
  cli_remove_dir(dir);
}
