/*
 * nnfix.h: helpers shared by the model and hook tests: serial HDF5 reads of the golden
 * fixtures (tests/golden/nn, written by tests/golden/make_golden_nn.py), a recorder hook that
 * copies what it sees, a tolerance check that prints the largest difference, temporary
 * folders, and a small safetensors writer for broken checkpoints.
 */
#ifndef LH_TESTS_NNFIX_H
#define LH_TESTS_NNFIX_H

#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <hdf5.h>
#include <jansson.h>

#include "latenthook/model.h"
#include "latenthook/safetensors.h"

#define NN_DIR LH_GOLDEN_DIR "/nn"
#define NN_TOL 1e-5

#define NN_UNUSED __attribute__((unused))

/* --- HDF5 (serial calls on one file) ----------------------------------------------------- */

typedef struct nn_arr {
  float *data;
  int ndim;
  int64_t shape[8];
  int64_t n;
} nn_arr;

NN_UNUSED static bool nn_h5_exists(const char *file, const char *dset) {
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  cr_assert(f >= 0, "cannot open %s", file);
  bool ok = false;
  H5E_BEGIN_TRY {
    /* check each path component: H5Lexists fails when a parent group is missing */
    ok = H5Lexists(f, dset, H5P_DEFAULT) > 0;
  }
  H5E_END_TRY;
  H5Fclose(f);
  return ok;
}

/* Reads any numeric dataset as float32. */
NN_UNUSED static nn_arr nn_h5_read(const char *file, const char *dset) {
  nn_arr a = {0};
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  cr_assert(f >= 0, "cannot open %s", file);
  hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
  cr_assert(d >= 0, "%s: no dataset %s", file, dset);
  hid_t s = H5Dget_space(d);
  hsize_t dims[8];
  a.ndim = H5Sget_simple_extent_ndims(s);
  H5Sget_simple_extent_dims(s, dims, NULL);
  a.n = 1;
  for (int i = 0; i < a.ndim; i++) {
    a.shape[i] = (int64_t)dims[i];
    a.n *= a.shape[i];
  }
  a.data = malloc((size_t)(a.n ? a.n : 1) * sizeof(float));
  cr_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a.data) >= 0);
  H5Sclose(s);
  H5Dclose(d);
  H5Fclose(f);
  return a;
}

NN_UNUSED static int64_t nn_h5_int(const char *file, const char *dset) {
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
  cr_assert(d >= 0, "%s: no dataset %s", file, dset);
  int64_t v = 0;
  cr_assert(H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, &v) >= 0);
  H5Dclose(d);
  H5Fclose(f);
  return v;
}

static herr_t nn_list_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g;
  (void)info;
  json_array_append_new((json_t *)data, json_string(name));
  return 0;
}

/* Names of the members of a group, as a JSON array of strings (empty if there is none). */
NN_UNUSED static json_t *nn_h5_list(const char *file, const char *group) {
  json_t *arr = json_array();
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  cr_assert(f >= 0);
  bool has = false;
  H5E_BEGIN_TRY {
    has = H5Lexists(f, group, H5P_DEFAULT) > 0;
  }
  H5E_END_TRY;
  if (has) {
    hid_t g = H5Gopen2(f, group, H5P_DEFAULT);
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, nn_list_cb, arr);
    H5Gclose(g);
  }
  H5Fclose(f);
  return arr;
}

NN_UNUSED static lh_tensor nn_tensor(nn_arr *a) {
  lh_tensor t = {.data = a->data, .ndim = a->ndim};
  for (int i = 0; i < a->ndim; i++) t.shape[i] = a->shape[i];
  return t;
}

/* --- comparison ------------------------------------------------------------------------- */

/* got must have the expected shape, except that an expected leading 1 is broadcast over the
 * batch (PyTorch's wpe position ids are (1, T), LatentHook's (B, T)). Returns the max diff
 * and asserts max|diff| <= tol * max|expected|. */
NN_UNUSED static double nn_expect_close(const char *what, const float *got, int gnd,
                                        const int64_t *gshape, const nn_arr *want, double tol) {
  bool bcast = false;
  bool ok = gnd == want->ndim;
  for (int i = 0; ok && i < gnd; i++) {
    if (gshape[i] == want->shape[i]) continue;
    if (i == 0 && want->shape[0] == 1) {
      bcast = true;
      continue;
    }
    ok = false;
  }
  cr_expect(ok, "%s: shape mismatch (ndim %d vs %d, dim0 %lld vs %lld)", what, gnd, want->ndim,
            (long long)(gnd ? gshape[0] : -1), (long long)(want->ndim ? want->shape[0] : -1));
  if (!ok) return INFINITY;
  int64_t rows = gnd ? gshape[0] : 1, row = 1;
  for (int i = 1; i < gnd; i++) row *= gshape[i];
  double maxdiff = 0, maxabs = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t j = 0; j < row; j++) {
      double w = want->data[(bcast ? 0 : r) * row + j];
      double d = fabs((double)got[r * row + j] - w);
      if (!(d <= maxdiff)) maxdiff = d; /* NaN propagates */
      if (fabs(w) > maxabs) maxabs = fabs(w);
    }
  cr_expect(maxdiff <= tol * maxabs, "%s: max |diff| = %.3g > %.1g * max|expected| (%.3g)", what,
            maxdiff, tol, maxabs);
  return maxdiff;
}

/* --- a hook that records what it sees ------------------------------------------------------ */

typedef struct nn_copy {
  float *data;
  int ndim;
  int64_t shape[LH_TENSOR_MAX_DIMS];
} nn_copy;

typedef struct nn_rec {
  char name[160];
  int fired;
  nn_copy last, first;
} nn_rec;

static void nn_copy_set(nn_copy *c, const lh_tensor *t) {
  int64_t n = lh_tensor_numel(t);
  free(c->data);
  c->data = malloc((size_t)(n ? n : 1) * sizeof(float));
  if (n) memcpy(c->data, t->data, (size_t)n * sizeof(float));
  c->ndim = t->ndim;
  memcpy(c->shape, t->shape, sizeof c->shape);
}

NN_UNUSED static lh_status nn_record(const lh_hook_event *ev, void *user) {
  nn_rec *r = user;
  snprintf(r->name, sizeof r->name, "%s", ev->name);
  r->fired++;
  nn_copy_set(&r->last, ev->tensor);
  if (ev->call == 0) nn_copy_set(&r->first, ev->tensor);
  return LH_OK;
}

NN_UNUSED static void nn_rec_free(nn_rec *r) {
  free(r->last.data);
  free(r->first.data);
  memset(r, 0, sizeof *r);
}

/* --- files ----------------------------------------------------------------------------------- */

NN_UNUSED static char *nn_tmpdir(void) {
  static char dir[256];
  snprintf(dir, sizeof dir, "/tmp/lh_nn_XXXXXX");
  cr_assert(mkdtemp(dir) != NULL);
  return dir;
}

NN_UNUSED static void nn_write(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  cr_assert(f != NULL, "cannot write %s", path);
  fputs(text, f);
  fclose(f);
}

NN_UNUSED static void nn_rmtree(const char *dir) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_assert(system(cmd) == 0);
}

/* One tensor of a safetensors file to write. */
typedef struct nn_st_item {
  const char *name;
  const char *dtype; /* "F32", "F16", "BF16" */
  int ndim;
  int64_t shape[8];
  const void *data;
  size_t nbytes;
} nn_st_item;

NN_UNUSED static void nn_st_write(const char *path, const nn_st_item *items, int n) {
  json_t *hdr = json_object();
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    json_t *e = json_object(), *shape = json_array();
    for (int d = 0; d < items[i].ndim; d++)
      json_array_append_new(shape, json_integer(items[i].shape[d]));
    json_object_set_new(e, "dtype", json_string(items[i].dtype));
    json_object_set_new(e, "shape", shape);
    json_object_set_new(e, "data_offsets",
                        json_pack("[I, I]", (json_int_t)off, (json_int_t)(off + items[i].nbytes)));
    json_object_set_new(hdr, items[i].name, e);
    off += items[i].nbytes;
  }
  char *text = json_dumps(hdr, JSON_COMPACT);
  size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
  FILE *f = fopen(path, "wb");
  cr_assert(f != NULL);
  uint64_t len = padded;
  unsigned char le[8];
  for (int i = 0; i < 8; i++) le[i] = (unsigned char)(len >> (8 * i));
  fwrite(le, 1, 8, f);
  fwrite(text, 1, hl, f);
  for (size_t i = hl; i < padded; i++) fputc(' ', f);
  for (int i = 0; i < n; i++) fwrite(items[i].data, 1, items[i].nbytes, f);
  fclose(f);
  free(text);
  json_decref(hdr);
}

#endif
