/* `latenthook twonn`, `local-knn` and `knn` from the command line: the SPEC section 10 test
 * vectors (TV-1..TV-7) through stdout JSON and the output files, batched datasets spread both
 * ways over the ranks (B >= P: whole matrices per rank; B < P: rows of each matrix split),
 * byte-identical results on 1 to 4 ranks, and the error contract (one error line, empty
 * stdout, exit status 2 or 1, no output file or temporary left behind).
 *
 * Reference values are the SPEC's test vectors or closed forms of the fixtures in id.h5 (see
 * tools/mkfixtures.c); only the cross-rank-count checks compare the program with itself.
 * Output datasets are read with `h5dump -b` (raw values) so that this test needs no HDF5 (nor
 * libm: the test links only Criterion). */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define FX LH_FIXTURE_DIR "/id.h5"
#define TOL 1e-9 /* against the SPEC's 10-decimal values */

/* TV-2 (local kNN, k = 2) and TV-5 (TwoNN) on x = [0, 1, 3, 7, 15] */
static const double TV2_D[5] = {0.4306765581, 0.3562071871, 0.5, 2.4094208397, 3.1062837195};
static const double TV5_D = 1.8329829960;
static const double TV5_X[4] = {0.4054651081, 0.4054651081, 0.4054651081, 0.6931471806};
static const double TV5_Y[4] = {0.2231435513, 0.5108256238, 0.9162907319, 1.6094379124};
/* exact 2 nearest neighbours of [0, 1, 3, 7, 15] (ties cannot occur) */
static const int64_t NN_IDX[5][2] = {{1, 2}, {0, 2}, {1, 0}, {2, 1}, {3, 2}};
static const double NN_DIST[5][2] = {{1, 3}, {1, 2}, {2, 3}, {4, 6}, {8, 12}};
/* the factors of the batch items in /batch6 and /batch2 */
static const double SCALE6[6] = {1, 2, 3, 0.5, 10, 0.25}, SCALE2[2] = {4, 0.75};

/* ---- helpers -------------------------------------------------------------------------- */

static double absd(double v) { return v < 0 ? -v : v; }

/* Names in `dir` (excluding . and ..), comma separated, "" when empty. */
static void dir_entries(const char *dir, char *out, size_t cap) {
  out[0] = '\0';
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    size_t len = strlen(out);
    snprintf(out + len, cap - len, "%s%s", len ? ", " : "", e->d_name);
  }
  closedir(d);
}

/* One dataset of an output file: h5dump's header (type, shape) and the raw values. */
typedef struct blob {
  char *header;
  unsigned char *data;
  size_t nbytes;
} blob;

static blob h5_read(const char *dir, const char *file, const char *dset) {
  char bin[128], cmd[1024];
  snprintf(bin, sizeof bin, "%s/dump.bin", dir);
  snprintf(cmd, sizeof cmd, "h5dump -d %s -b LE -o %s %s", dset, bin, file);
  run_result r = run_shell(cmd);
  cr_expect_eq(r.status, 0, "%s: %s%s", cmd, r.out, r.err);
  blob b = {.header = r.out, .data = NULL, .nbytes = 0};
  free(r.err);
  FILE *f = fopen(bin, "rb");
  if (f) {
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc((size_t)n + 1);
    b.nbytes = fread(b.data, 1, (size_t)n, f);
    fclose(f);
    unlink(bin);
  }
  return b;
}

static void blob_free(blob *b) {
  free(b->header);
  free(b->data);
  b->header = NULL;
  b->data = NULL;
}

/* Checks the type and shape h5dump reports, e.g. ("H5T_IEEE_F64LE", "( 2, 3, 4 )"), and the
 * number of bytes read. */
static void expect_layout(const blob *b, const char *dset, const char *type, const char *shape,
                          size_t elems, size_t elsize) {
  char want[128];
  snprintf(want, sizeof want, "DATATYPE  %s", type);
  cr_expect(strstr(b->header, want) != NULL, "%s: want %s in:\n%s", dset, type, b->header);
  snprintf(want, sizeof want, "DATASPACE  SIMPLE { %s /", shape);
  cr_expect(strstr(b->header, want) != NULL, "%s: want shape %s in:\n%s", dset, shape, b->header);
  cr_expect_eq(b->nbytes, elems * elsize, "%s: %zu bytes, want %zu", dset, b->nbytes,
               elems * elsize);
}

static double f64_at(const blob *b, size_t i) {
  double v = NAN;
  if ((i + 1) * sizeof v <= b->nbytes) memcpy(&v, b->data + i * sizeof v, sizeof v);
  return v;
}
static double f32_at(const blob *b, size_t i) {
  float v = NAN;
  if ((i + 1) * sizeof v <= b->nbytes) memcpy(&v, b->data + i * sizeof v, sizeof v);
  return v;
}
static int64_t i64_at(const blob *b, size_t i) {
  int64_t v = INT64_MIN;
  if ((i + 1) * sizeof v <= b->nbytes) memcpy(&v, b->data + i * sizeof v, sizeof v);
  return v;
}

/* The value of "key" in a JSON document as its numbers (null = NaN) and its bracket structure
 * with every number written as '#', e.g. "[[#,#,#],[#,#,#]]". Returns the count of numbers
 * (-1 if the key is missing). */
static int json_numbers(const char *json, const char *key, double *vals, int cap, char *shape,
                        size_t shape_cap) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *p = strstr(json, pat);
  shape[0] = '\0';
  if (!p) return -1;
  p += strlen(pat);
  int depth = 0, n = 0;
  size_t s = 0;
  do {
    while (*p == ' ' || *p == '\n') p++;
    char c = *p;
    if (c == '[' || c == ']' || c == ',') {
      depth += c == '[' ? 1 : c == ']' ? -1 : 0;
      if (s + 1 < shape_cap) shape[s++] = c;
      p++;
      continue;
    }
    double v;
    if (strncmp(p, "null", 4) == 0) {
      v = NAN;
      p += 4;
    } else {
      char *end;
      v = strtod(p, &end);
      if (end == p) break;
      p = end;
    }
    if (n < cap) vals[n] = v;
    n++;
    if (s + 1 < shape_cap) shape[s++] = '#';
  } while (depth > 0);
  shape[s] = '\0';
  return n;
}

/* Expects "key" to be `n` values shaped as `shape`, each within tol of want[i % nwant]. */
static void expect_json(const char *json, const char *key, const char *shape, int n,
                        const double *want, int nwant, double tol, const char *ctx) {
  double v[64];
  char got_shape[256];
  int m = json_numbers(json, key, v, 64, got_shape, sizeof got_shape);
  cr_expect_eq(m, n, "%s: \"%s\" has %d numbers, want %d:\n%s", ctx, key, m, n, json);
  cr_expect_str_eq(got_shape, shape, "%s: \"%s\" shape", ctx, key);
  for (int i = 0; i < m && i < n && i < 64; i++) {
    double w = want[i % nwant];
    bool ok = isnan(w) ? isnan(v[i]) : absd(v[i] - w) <= tol;
    cr_expect(ok, "%s: \"%s\"[%d] = %.17g, want %.17g", ctx, key, i, v[i], w);
  }
}

static void expect_ok(const run_result *r, const char *ctx) {
  cr_expect_eq(r->status, 0, "%s: exit %d, stderr:\n%s", ctx, r->status, r->err);
  cr_expect_eq(count_lines_with(r->err, "error"), 0, "%s: stderr:\n%s", ctx, r->err);
}

/* Values of a float dataset against want[i % nwant] (NaN must be NaN). */
static void expect_values(const blob *b, bool f32, size_t n, const double *want, int nwant,
                          double rtol, const char *ctx) {
  for (size_t i = 0; i < n; i++) {
    double v = f32 ? f32_at(b, i) : f64_at(b, i), w = want[i % (size_t)nwant];
    bool ok = isnan(w) ? isnan(v) : absd(v - w) <= rtol * (absd(w) > 1 ? absd(w) : 1);
    cr_expect(ok, "%s[%zu] = %.17g, want %.17g", ctx, i, v, w);
  }
}

/* ---- SPEC test vectors ------------------------------------------------------------------ */

Test(id_vectors, twonn_tv5_return_xy) {
  char dir[64], args[512], out[128], ctx[] = "TV-5";
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(args, sizeof args, "twonn --data " FX ":/tv5 --return-xy --out %s", out);
  run_result r = run_cli_np(1, args);
  expect_ok(&r, ctx);
  expect_json(r.out, "dimension", "#", 1, &TV5_D, 1, TOL, ctx);
  /* MLE (Nv - 1) / sum ln mu with mu = [3, 2, 1.5, 1.5, 1.5] (DADApy's convention) */
  const double ln3 = 1.0986122886681098, ln2 = 0.6931471805599453, ln15 = 0.4054651081081644;
  double mle = 4.0 / (ln3 + ln2 + 3 * ln15);
  expect_json(r.out, "dimension_mle", "#", 1, &mle, 1, 1e-12, ctx);
  expect_json(r.out, "n_valid", "#", 1, (double[]){5}, 1, 0, ctx);
  blob x = h5_read(dir, out, "/dimension_x"), y = h5_read(dir, out, "/dimension_y");
  expect_layout(&x, "/dimension_x", "H5T_IEEE_F64LE", "( 4 )", 4, 8);
  expect_layout(&y, "/dimension_y", "H5T_IEEE_F64LE", "( 4 )", 4, 8);
  expect_values(&x, false, 4, TV5_X, 4, TOL, "TV-5 x");
  expect_values(&y, false, 4, TV5_Y, 4, TOL, "TV-5 y");
  blob d = h5_read(dir, out, "/dimension");
  cr_expect(strstr(d.header, "DATASPACE  SCALAR") != NULL, "0-d /dimension:\n%s", d.header);
  expect_values(&d, true, 1, &TV5_D, 1, 1e-7, "TV-5 /dimension (float32)");
  blob_free(&x);
  blob_free(&y);
  blob_free(&d);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(id_vectors, twonn_tv6_padding_eps) {
  char dir[64], args[512], out[128], ctx[] = "TV-6";
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(args, sizeof args, "twonn --data " FX ":/tv6 --eps 0.5 --return-xy --out %s", out);
  run_result r = run_cli_np(2, args);
  expect_ok(&r, ctx);
  expect_json(r.out, "dimension", "#", 1, (double[]){0.6376662205}, 1, TOL, ctx);
  expect_json(r.out, "n_valid", "#", 1, (double[]){3}, 1, 0, ctx);
  blob x = h5_read(dir, out, "/dimension_x"), y = h5_read(dir, out, "/dimension_y");
  expect_layout(&x, "/dimension_x", "H5T_IEEE_F64LE", "( 3 )", 3, 8);
  expect_layout(&y, "/dimension_y", "H5T_IEEE_F64LE", "( 3 )", 3, 8);
  expect_values(&x, false, 3, (double[]){0.0833816089, 1.7491998548, NAN}, 3, TOL, "TV-6 x");
  expect_values(&y, false, 3, (double[]){0.4054651081, 1.0986122887, NAN}, 3, TOL, "TV-6 y");
  blob_free(&x);
  blob_free(&y);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(id_vectors, twonn_tv7_duplicate) {
  char dir[64], args[512], out[128], ctx[] = "TV-7";
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(args, sizeof args, "twonn --data " FX ":/tv7 --return-xy --out %s", out);
  run_result r = run_cli_np(3, args);
  expect_ok(&r, ctx);
  expect_json(r.out, "dimension", "#", 1, (double[]){1.6818155818}, 1, TOL, ctx);
  expect_json(r.out, "n_valid", "#", 1, (double[]){6}, 1, 0, ctx);
  blob x = h5_read(dir, out, "/dimension_x"), y = h5_read(dir, out, "/dimension_y");
  expect_layout(&x, "/dimension_x", "H5T_IEEE_F64LE", "( 5 )", 5, 8);
  expect_layout(&y, "/dimension_y", "H5T_IEEE_F64LE", "( 5 )", 5, 8);
  expect_values(&x, false, 5,
                (double[]){0, 0.4054651081, 0.4054651081, 0.4054651081, 1.0986122887}, 5, TOL,
                "TV-7 x");
  expect_values(&y, false, 5,
                (double[]){0.1823215568, 0.4054651081, 0.6931471806, 1.0986122887, 1.7917594692},
                5, TOL, "TV-7 y");
  blob_free(&x);
  blob_free(&y);
  run_free(&r);
  cli_remove_dir(dir);
}

/* TV-8: 2-D, mu = [sqrt 2, 1, sqrt 2, sqrt(5)/2, sqrt 2] (ties among the mu) */
Test(id_vectors, twonn_tv8_two_dimensional) {
  char dir[64], args[512], out[128], ctx[] = "TV-8";
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(args, sizeof args, "twonn --data " FX ":/tv8 --return-xy --out %s", out);
  run_result r = run_cli_np(4, args);
  expect_ok(&r, ctx);
  expect_json(r.out, "dimension", "#", 1, (double[]){3.6898997605}, 1, TOL, ctx);
  expect_json(r.out, "n_valid", "#", 1, (double[]){5}, 1, 0, ctx);
  blob x = h5_read(dir, out, "/dimension_x"), y = h5_read(dir, out, "/dimension_y");
  expect_layout(&x, "/dimension_x", "H5T_IEEE_F64LE", "( 4 )", 4, 8);
  expect_values(&x, false, 4, (double[]){0, 0.1115717757, 0.3465735903, 0.3465735903}, 4, TOL,
                "TV-8 x");
  expect_values(&y, false, 4, TV5_Y, 4, TOL, "TV-8 y");
  blob_free(&x);
  blob_free(&y);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(id_vectors, local_knn_tv3_centre_is_nan) {
  char dir[64], args[512], out[128], ctx[] = "TV-3";
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(args, sizeof args, "local-knn --data " FX ":/tv3 --k 2 --out %s", out);
  run_result r = run_cli_np(4, args);
  expect_ok(&r, ctx);
  expect_json(r.out, "nan_count", "#", 1, (double[]){1}, 1, 0, ctx);
  expect_json(r.out, "mean", "#", 1, (double[]){2}, 1, TOL, ctx);
  expect_json(r.out, "median", "#", 1, (double[]){2}, 1, TOL, ctx);
  blob d = h5_read(dir, out, "/dimension");
  expect_layout(&d, "/dimension", "H5T_IEEE_F32LE", "( 5 )", 5, 4);
  expect_values(&d, true, 5, (double[]){2, 2, 2, 2, NAN}, 5, 1e-6, "TV-3 /dimension");
  blob_free(&d);
  run_free(&r);
  cli_remove_dir(dir);
}

/* TV-1: --k auto on N = 5 is k = 2, so the TV-4 values (given for k = 2) come out. */
Test(id_vectors, local_knn_tv4_auto_k) {
  char dir[64], args[512], out[128], ctx[] = "TV-4 auto";
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(args, sizeof args, "local-knn --data " FX ":/tv4 --k auto --out %s", out);
  run_result r = run_cli_np(2, args);
  expect_ok(&r, ctx);
  expect_json(r.out, "k", "#", 1, (double[]){2}, 1, 0, ctx);
  expect_json(r.out, "nan_count", "#", 1, (double[]){0}, 1, 0, ctx);
  blob d = h5_read(dir, out, "/dimension");
  expect_layout(&d, "/dimension", "H5T_IEEE_F32LE", "( 5 )", 5, 4);
  expect_values(&d, true, 5, (double[]){1, 0.6309297536, 1, 0.6309297536, 1}, 5, 1e-6,
                "TV-4 /dimension");
  blob_free(&d);
  run_free(&r);
  cli_remove_dir(dir);
}

/* ---- batched datasets: B = 6 at np 1, 2, 4 (whole items per rank, a partial last round on
 * 4 ranks) and B = 2 at np 3, 4 (fewer items than ranks: rows split) ---------------------- */

typedef struct batch_case {
  const char *dset, *json_shape, *h5_batch; /* e.g. "/batch6", "[[#,#,#],[#,#,#]]", "2, 3" */
  int B;
  const double *scale;
} batch_case;

static const batch_case B6 = {"/batch6", "[[#,#,#],[#,#,#]]", "2, 3", 6, SCALE6};
static const batch_case B2 = {"/batch2", "[#,#]", "2", 2, SCALE2};
static const struct {
  const batch_case *c;
  int np;
} BATCH_RUNS[] = {{&B6, 1}, {&B6, 2}, {&B6, 4}, {&B2, 3}, {&B2, 4}};
#define NBATCH_RUNS ((int)(sizeof BATCH_RUNS / sizeof BATCH_RUNS[0]))

Test(id_batch, twonn_nested_dimension_and_xy) {
  char dir[64], args[512], out[128], ctx[64], shape[64];
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  for (int t = 0; t < NBATCH_RUNS; t++) {
    const batch_case *c = BATCH_RUNS[t].c;
    int np = BATCH_RUNS[t].np;
    snprintf(ctx, sizeof ctx, "twonn %s np=%d", c->dset, np);
    snprintf(args, sizeof args, "twonn --data " FX ":%s --return-xy --out %s", c->dset, out);
    run_result r = run_cli_np(np, args);
    expect_ok(&r, ctx);
    expect_json(r.out, "dimension", c->json_shape, c->B, &TV5_D, 1, TOL, ctx);
    expect_json(r.out, "n_valid", c->json_shape, c->B, (double[]){5}, 1, 0, ctx);
    blob x = h5_read(dir, out, "/dimension_x"), y = h5_read(dir, out, "/dimension_y");
    snprintf(shape, sizeof shape, "( %s, 4 )", c->h5_batch);
    expect_layout(&x, ctx, "H5T_IEEE_F64LE", shape, (size_t)c->B * 4, 8);
    expect_layout(&y, ctx, "H5T_IEEE_F64LE", shape, (size_t)c->B * 4, 8);
    expect_values(&x, false, (size_t)c->B * 4, TV5_X, 4, TOL, ctx);
    expect_values(&y, false, (size_t)c->B * 4, TV5_Y, 4, TOL, ctx);
    blob d = h5_read(dir, out, "/dimension");
    snprintf(shape, sizeof shape, "( %s )", c->h5_batch);
    expect_layout(&d, ctx, "H5T_IEEE_F32LE", shape, (size_t)c->B, 4);
    expect_values(&d, true, (size_t)c->B, &TV5_D, 1, 1e-7, ctx);
    blob_free(&x);
    blob_free(&y);
    blob_free(&d);
    run_free(&r);
    unlink(out);
  }
  cli_remove_dir(dir);
}

Test(id_batch, local_knn_per_point_dimension) {
  char dir[64], args[512], out[128], ctx[64], shape[64];
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  const double mean = (TV2_D[0] + TV2_D[1] + TV2_D[2] + TV2_D[3] + TV2_D[4]) / 5;
  for (int t = 0; t < NBATCH_RUNS; t++) {
    const batch_case *c = BATCH_RUNS[t].c;
    int np = BATCH_RUNS[t].np;
    snprintf(ctx, sizeof ctx, "local-knn %s np=%d", c->dset, np);
    snprintf(args, sizeof args, "local-knn --data " FX ":%s --k 2 --out %s", c->dset, out);
    run_result r = run_cli_np(np, args);
    expect_ok(&r, ctx);
    expect_json(r.out, "k", "#", 1, (double[]){2}, 1, 0, ctx);
    expect_json(r.out, "mean", c->json_shape, c->B, &mean, 1, TOL, ctx);
    expect_json(r.out, "median", c->json_shape, c->B, (double[]){0.5}, 1, TOL, ctx);
    expect_json(r.out, "nan_count", c->json_shape, c->B, (double[]){0}, 1, 0, ctx);
    blob d = h5_read(dir, out, "/dimension");
    snprintf(shape, sizeof shape, "( %s, 5 )", c->h5_batch);
    expect_layout(&d, ctx, "H5T_IEEE_F32LE", shape, (size_t)c->B * 5, 4);
    expect_values(&d, true, (size_t)c->B * 5, TV2_D, 5, 1e-6, ctx);
    blob_free(&d);
    run_free(&r);
    unlink(out);
  }
  cli_remove_dir(dir);
}

/* Distances scale with each item's factor, so an item written to the wrong place shows. */
Test(id_batch, knn_distances_and_indices) {
  char dir[64], args[512], out[128], ctx[64], shape[64];
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  for (int t = 0; t < NBATCH_RUNS; t++) {
    const batch_case *c = BATCH_RUNS[t].c;
    int np = BATCH_RUNS[t].np;
    snprintf(ctx, sizeof ctx, "knn %s np=%d", c->dset, np);
    snprintf(args, sizeof args, "knn --data " FX ":%s --k 2 --out %s", c->dset, out);
    run_result r = run_cli_np(np, args);
    expect_ok(&r, ctx);
    expect_json(r.out, "absent", c->json_shape, c->B, (double[]){0}, 1, 0, ctx);
    blob d = h5_read(dir, out, "/distances"), ix = h5_read(dir, out, "/indices");
    snprintf(shape, sizeof shape, "( %s, 5, 2 )", c->h5_batch);
    expect_layout(&d, ctx, "H5T_IEEE_F64LE", shape, (size_t)c->B * 10, 8);
    expect_layout(&ix, ctx, "H5T_STD_I64LE", shape, (size_t)c->B * 10, 8);
    for (int b = 0; b < c->B; b++)
      for (int i = 0; i < 5; i++)
        for (int j = 0; j < 2; j++) {
          size_t at = ((size_t)b * 5 + (size_t)i) * 2 + (size_t)j;
          double w = NN_DIST[i][j] * c->scale[b];
          cr_expect_eq(f64_at(&d, at), w, "%s: distances[%d][%d][%d] = %.17g, want %.17g", ctx,
                       b, i, j, f64_at(&d, at), w);
          cr_expect_eq(i64_at(&ix, at), NN_IDX[i][j], "%s: indices[%d][%d][%d] = %lld, want %lld",
                       ctx, b, i, j, (long long)i64_at(&ix, at), (long long)NN_IDX[i][j]);
        }
    blob_free(&d);
    blob_free(&ix);
    run_free(&r);
    unlink(out);
  }
  cli_remove_dir(dir);
}

/* ---- identical results on 1, 2, 3 and 4 ranks --------------------------------------------
 * /cloud: 320 float32 points in 5-D with an equidistant pair around row 0, a duplicate pair
 * (37, 101) and a NaN row (203). Every rank count must print the same bytes and write the
 * same bytes; closed-form facts of the construction are checked on top. */

#define CLOUD_N 320

static void identical_on_1_to_4(const char *fmt, const char *const *dsets, int ndsets,
                                void (*check)(const char *json, blob *data, const char *dir)) {
  char dir[64], args[512], out[128], ctx[64];
  cli_make_dir(dir, "id");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(args, sizeof args, fmt, out);
  char *json1 = NULL;
  blob first[4] = {{0}};
  for (int np = 1; np <= 4; np++) {
    snprintf(ctx, sizeof ctx, "np=%d: %.50s", np, args);
    run_result r = run_cli_np(np, args);
    expect_ok(&r, ctx);
    blob now[4] = {{0}};
    for (int k = 0; k < ndsets; k++) now[k] = h5_read(dir, out, dsets[k]);
    if (np == 1) {
      if (check) check(r.out, now, dir);
      json1 = strdup(r.out);
      memcpy(first, now, sizeof first);
    } else {
      cr_expect_str_eq(r.out, json1, "%s: stdout differs from 1 rank's", ctx);
      for (int k = 0; k < ndsets; k++) {
        cr_expect_str_eq(now[k].header, first[k].header, "%s: %s header", ctx, dsets[k]);
        bool same = now[k].nbytes == first[k].nbytes &&
                    memcmp(now[k].data, first[k].data, now[k].nbytes) == 0;
        cr_expect(same, "%s: %s differs from 1 rank's", ctx, dsets[k]);
        blob_free(&now[k]);
      }
    }
    run_free(&r);
    unlink(out);
  }
  for (int k = 0; k < ndsets; k++) blob_free(&first[k]);
  free(json1);
  cli_remove_dir(dir);
}

static void check_twonn_cloud(const char *json, blob *data, const char *dir) {
  (void)data;
  (void)dir;
  expect_json(json, "n_valid", "#", 1, (double[]){CLOUD_N - 1}, 1, 0, "cloud twonn");
  cr_expect(strstr(json, "\"discard_fraction\": 0.10000000000000001") != NULL, "%s", json);
  /* subsets of N/2 .. 20 points: 160, 80, 40, 20 (N/32 = 10 < 16 ends the analysis) */
  cr_expect_eq(count_lines_with(json, "\"subset_size\""), 4, "%s", json);
  for (int s = 1; s <= 4; s++) {
    char sz[64];
    snprintf(sz, sizeof sz, "\"subset_size\": %d,", CLOUD_N >> s);
    const char *p = strstr(json, sz), *q = p ? strstr(p, "\"subsets\": ") : NULL;
    cr_expect(q != NULL, "no scale of %d points:\n%s", CLOUD_N >> s, json);
    if (q) cr_expect_eq(atoi(q + strlen("\"subsets\": ")), 1 << s, "subsets of %d", CLOUD_N >> s);
  }
  double d[1];
  char shape[16];
  cr_expect_eq(json_numbers(json, "dimension", d, 1, shape, sizeof shape), 1);
  /* a uniform grid in 5-D: about 5 */
  cr_expect(d[0] > 3.5 && d[0] < 5.5, "dimension %g", d[0]);
}

Test(id_ranks, twonn_scales_discard_identical) {
  static const char *const dsets[] = {"/dimension", "/dimension_mle"};
  identical_on_1_to_4("twonn --data " FX ":/cloud --scales --discard-fraction 0.1 --out %s",
                      dsets, 2, check_twonn_cloud);
}

/* Items whose block analyses stop at different scales: each keeps its own list, and the
 * document is the same on every rank count (a regression: the count of one item was used
 * for all). */
Test(id_ranks, twonn_scales_per_item) {
  char *first = NULL;
  for (int np = 1; np <= 3; np++) {
    run_result r = run_cli_np(np, "twonn --data " FX ":/scales_mixed --scales");
    expect_ok(&r, "scales_mixed");
    cr_expect(strstr(r.out, "\"subset_size\": 32") && strstr(r.out, "\"subset_size\": 16"),
              "np=%d: item 0 lost its scales:\n%s", np, r.out);
    cr_expect(!strstr(r.out, "\"subset_size\": 0"), "np=%d: invented scales:\n%s", np, r.out);
    cr_expect(strstr(r.out, "[]") != NULL, "np=%d: item 1 should have no scales:\n%s", np, r.out);
    if (!first)
      first = strdup(r.out);
    else
      cr_expect_str_eq(r.out, first, "np=%d differs from np=1", np);
    run_free(&r);
  }
  free(first);
}

static void check_local_cloud(const char *json, blob *data, const char *dir) {
  (void)dir;
  /* TV-1: auto k for N = 320 is min(floor(sqrt 320), 159) = 17 */
  expect_json(json, "k", "#", 1, (double[]){17}, 1, 0, "cloud local-knn");
  expect_json(json, "nan_count", "#", 1, (double[]){1}, 1, 0, "cloud local-knn");
  expect_layout(&data[0], "/dimension", "H5T_IEEE_F32LE", "( 320 )", CLOUD_N, 4);
  for (int i = 0; i < CLOUD_N; i++) {
    double v = f32_at(&data[0], (size_t)i);
    if (i == 203)
      cr_expect(isnan(v), "NaN row: dimension %g", v);
    else
      cr_expect(isfinite(v) && v > 0, "dimension[%d] = %g", i, v);
  }
}

Test(id_ranks, local_knn_identical) {
  static const char *const dsets[] = {"/dimension"};
  identical_on_1_to_4("local-knn --data " FX ":/cloud --out %s", dsets, 1, check_local_cloud);
}

#define K5 5
static void check_knn_cloud(const char *json, blob *data, const char *dir) {
  (void)dir;
  blob *d = &data[0], *ix = &data[1];
  expect_json(json, "absent", "#", 1, (double[]){K5}, 1, 0, "cloud knn"); /* row 203 */
  expect_layout(d, "/distances", "H5T_IEEE_F64LE", "( 320, 5 )", CLOUD_N * K5, 8);
  expect_layout(ix, "/indices", "H5T_STD_I64LE", "( 320, 5 )", CLOUD_N * K5, 8);
  /* rows 1, 2 are row 0 -+ 1/64 along x: a tie at 1/64, the lower index first */
  cr_expect_eq(i64_at(ix, 0), 1);
  cr_expect_eq(i64_at(ix, 1), 2);
  cr_expect_eq(f64_at(d, 0), 1.0 / 64);
  cr_expect_eq(f64_at(d, 1), 1.0 / 64);
  /* row 1: row 0 at 1/64, row 2 at 2/64 */
  cr_expect_eq(i64_at(ix, K5), 0);
  cr_expect_eq(i64_at(ix, K5 + 1), 2);
  cr_expect_eq(f64_at(d, K5 + 1), 2.0 / 64);
  for (int i = 0; i < CLOUD_N; i++)
    for (int j = 0; j < K5; j++) {
      size_t at = (size_t)i * K5 + (size_t)j;
      int64_t n = i64_at(ix, at);
      double r = f64_at(d, at);
      if (i == 203) {
        cr_expect(n == -1 && isinf(r), "NaN row: neighbour %d = (%g, %lld)", j, r, (long long)n);
        continue;
      }
      cr_expect(n >= 0 && n < CLOUD_N && n != i && n != 203, "row %d: neighbour %lld", i,
                (long long)n);
      cr_expect(!((i == 37 && n == 101) || (i == 101 && n == 37)), "duplicates are neighbours");
      if (j > 0) cr_expect(r >= f64_at(d, at - 1), "row %d: distances not sorted", i);
      /* the duplicate pair has the same neighbours */
      if (i == 37) {
        cr_expect_eq(n, i64_at(ix, 101 * K5 + (size_t)j));
        cr_expect_eq(r, f64_at(d, 101 * K5 + (size_t)j));
      }
    }
}

Test(id_ranks, knn_identical) {
  static const char *const dsets[] = {"/distances", "/indices"};
  identical_on_1_to_4("knn --data " FX ":/cloud --k 5 --out %s", dsets, 2, check_knn_cloud);
}

/* ---- errors: one error line, empty stdout, the exit status, nothing left behind --------- */

/* `fmt` holds one %s for a fresh, empty directory (or none: then the argument is ignored), which
 * must still be empty afterwards. */
static void expect_error(const char *fmt, int want_status, const char *needle) {
  static const int NPS[] = {1, 3};
  for (int t = 0; t < 2; t++) {
    int np = NPS[t];
    char dir[64], args[512], left[512];
    cli_make_dir(dir, "id");
    snprintf(args, sizeof args, fmt, dir);
    run_result r = np == 1 ? run_cli(np, args) : run_cli_noleak(np, args);
    cr_expect_eq(r.status, want_status, "np=%d '%s': exit %d (stderr: %s)", np, args, r.status,
                 r.err);
    cr_expect_eq(count_lines_with(r.err, "error"), 1, "np=%d '%s': stderr:\n%s", np, args, r.err);
    cr_expect_eq(count_lines_with(r.err, needle), 1, "np=%d '%s': no '%s' in:\n%s", np, args,
                 needle, r.err);
    cr_expect_str_eq(r.out, "", "np=%d '%s': stdout not empty", np, args);
    dir_entries(dir, left, sizeof left);
    cr_expect_str_eq(left, "", "np=%d '%s': left behind: %s", np, args, left);
    run_free(&r);
    cli_remove_dir(dir);
  }
}

Test(id_errors, twonn_two_points) {
  expect_error("twonn --data " FX ":/two --out %s/OUT.h5", 1,
               "At least 3 points required for Two NN dimension estimation");
}
Test(id_errors, twonn_no_valid_points) {
  /* fails after the output file and its x/y datasets were created */
  expect_error("twonn --data " FX ":/ones --return-xy --out %s/OUT.h5", 1,
               "At least 3 valid points required");
}
Test(id_errors, twonn_return_xy_without_out) {
  expect_error("twonn --data " FX ":/tv5 --return-xy", 2, "--return-xy writes to --out");
}
Test(id_errors, twonn_discard_fraction_one) {
  expect_error("twonn --data " FX ":/tv5 --discard-fraction 1 --out %s/OUT.h5", 2,
               "--discard-fraction must be in [0, 1), got 1");
}
Test(id_errors, local_knn_k_one) {
  expect_error("local-knn --data " FX ":/tv5 --k 1 --out %s/OUT.h5", 2, "k must be greater than 1");
}
Test(id_errors, local_knn_k_not_int) {
  expect_error("local-knn --data " FX ":/tv5 --k 2.5 --out %s/OUT.h5", 2,
               "k must be an int or 'auto'");
  expect_error("local-knn --data " FX ":/tv5 --k foo --out %s/OUT.h5", 2,
               "k must be an int or 'auto'");
}
Test(id_errors, local_knn_too_few_points) {
  expect_error("local-knn --data " FX ":/four --k 2 --out %s/OUT.h5", 1,
               "At least 2k+1 points required for local KNN (k=2), got 4");
}
Test(id_errors, local_knn_missing_out) {
  expect_error("local-knn --data " FX ":/tv5 --k 2", 2, "--out OUT.h5 is required");
}
Test(id_errors, knn_bad_or_missing_k) {
  expect_error("knn --data " FX ":/tv5 --k 0 --out %s/OUT.h5", 2, "--k must be at least 1");
  expect_error("knn --data " FX ":/tv5 --out %s/OUT.h5", 2, "--k K is required");
}
Test(id_errors, output_folder_missing) {
  expect_error("knn --data " FX ":/tv5 --k 2 --out %s/nope/OUT.h5", 1, "/nope' does not exist");
}
