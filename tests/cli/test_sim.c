/* `latenthook cka`, `information-imbalance` and `similarity` from the command line: the SPEC
 * section 10 test vectors (TV-9, TV-10, TV-11) through stdout JSON on 1 to 4 ranks and on both
 * CKA paths, the RBF kernel's invariance to isotropic scaling (held and streamed kernels),
 * batched datasets as nested lists, the layer matrix of `similarity` (JSON, OUT.h5:/matrix,
 * the heatmap) byte-identical on 1 to 4 ranks, and the error contract (one error line, empty
 * stdout, exit status 2 or 1, no output file left behind).
 *
 * Reference values are the SPEC's test vectors or closed forms of the fixtures in sim.h5 (see
 * tools/mkfixtures.c). The information imbalance between the similarity layers that are not
 * scaled copies of each other comes from a naive O(N^2) count on the same closed-form data in
 * integer arithmetic (squared distances are integers, and distinct within each row, so no tie
 * rule enters). Only the cross-rank-count checks compare the program with itself. */
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

#define FX LH_FIXTURE_DIR "/sim.h5"
#define TOL 1e-9 /* against the SPEC's 10-decimal values */

/* TV-9: the three cases, in the order of /tv9_1x.., and as items of /cka_ba, /cka_bb */
static const double TV9[3] = {0.9183673469, 0.8574929257, 0.2989210413};
static const int BATCH_CASE[6] = {0, 1, 2, 2, 0, 1}; /* (2, 3) items, row-major */
/* TV-10: A = [0,1,3,7,15], B = [0,6,1,13,4] */
static const double TV10_AB = 1.28, TV10_BA = 1.04;

/* The similarity layers (sim.h5:/layers): 32 rows, the 5-bit sign pattern p(i) = 13 i + 5 mod
 * 32; layer0 = s_j h_j, layer1 = 2 layer0[:, 4 - j], layer2 = t_j g_j (see mkfixtures.c). */
#define NL 32
static const int64_t S0[5] = {1, 2, 3, 5, 7}, T2[5] = {7, 5, 1, 2, 3};
/* CKA(layer0, layer2): columns h0, h1 shared, the rest orthogonal:
 * ((1 * 7)^2 + (2 * 5)^2) / sqrt(sum s^4 * sum t^4) with sum s^4 = sum t^4 = 3124 */
static const double CKA02 = 149.0 / 3124.0;

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

static int count_char(const char *s, char c) {
  int n = 0;
  for (; *s; s++) n += *s == c;
  return n;
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

/* Expects "key" to be `n` values shaped as `shape`, each within tol of want[i % nwant]
 * (NaN must be null). */
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

static double f64_at(const blob *b, size_t i) {
  double v = NAN;
  if ((i + 1) * sizeof v <= b->nbytes) memcpy(&v, b->data + i * sizeof v, sizeof v);
  return v;
}

/* ---- cka ------------------------------------------------------------------------------ */

/* TV-9's three cases, unbatched: on 1 rank and with the 4 rows split 2/1/1 over 3 ranks. */
static void cka_tv9_on_path(const char *path) {
  static const int NPS[2] = {1, 3};
  char args[512], ctx[96];
  for (int c = 0; c < 3; c++)
    for (int t = 0; t < 2; t++) {
      snprintf(args, sizeof args, "cka --a " FX ":/tv9_%dx --b " FX ":/tv9_%dy --path %s", c + 1,
               c + 1, path);
      snprintf(ctx, sizeof ctx, "TV-9 case %d, --path %s, np=%d", c + 1, path, NPS[t]);
      run_result r = run_cli_np(NPS[t], args);
      expect_ok(&r, ctx);
      expect_json(r.out, "cka", "#", 1, &TV9[c], 1, TOL, ctx);
      expect_json(r.out, "n_points", "#", 1, (double[]){4}, 1, 0, ctx);
      cr_expect(strstr(r.out, "\"kernel\": \"linear\"") != NULL, "%s:\n%s", ctx, r.out);
      run_free(&r);
    }
}

Test(sim_cka, tv9_gram) { cka_tv9_on_path("gram"); }
Test(sim_cka, tv9_scalapack) { cka_tv9_on_path("scalapack"); }

/* (2, 3) items: TV-9 cases in the order {{1,2,3},{3,1,2}}, each X and Y scaled by its own
 * factor (CKA is invariant to isotropic scaling), so an item put in the wrong place shows. */
Test(sim_cka, batched_nested_list) {
  static const struct {
    int np;
    const char *path;
  } RUNS[2] = {{2, "gram"}, {4, "scalapack"}};
  double want[6];
  for (int b = 0; b < 6; b++) want[b] = TV9[BATCH_CASE[b]];
  for (int t = 0; t < 2; t++) {
    char args[512], ctx[64];
    snprintf(args, sizeof args, "cka --a " FX ":/cka_ba --b " FX ":/cka_bb --path %s",
             RUNS[t].path);
    snprintf(ctx, sizeof ctx, "batched, --path %s, np=%d", RUNS[t].path, RUNS[t].np);
    run_result r = run_cli_np(RUNS[t].np, args);
    expect_ok(&r, ctx);
    expect_json(r.out, "cka", "[[#,#,#],[#,#,#]]", 6, want, 6, TOL, ctx);
    run_free(&r);
  }
}

/* Empty batches (2, 0, N, D): no matrix to compare, a result of the batch shape (SPEC 5). */
Test(sim_cka, empty_batch) {
  const char *cmds[3] = {"cka --a " FX ":/empty_ba --b " FX ":/empty_bb",
                         "cka --kernel rbf --a " FX ":/empty_ba --b " FX ":/empty_bb",
                         "information-imbalance --a " FX ":/empty_ba --b " FX ":/empty_bb"};
  for (int c = 0; c < 3; c++) {
    run_result r = run_cli_np(c == 0 ? 1 : 3, cmds[c]);
    expect_ok(&r, cmds[c]);
    cr_expect(strstr(r.out, c == 2 ? "\"information_imbalance_a_to_b\": [\n    [],\n    []\n  ]"
                                   : "\"cka\": [\n    [],\n    []\n  ]") != NULL,
              "%s: expected an empty (2, 0) result, got:\n%s", cmds[c], r.out);
    run_free(&r);
  }
}

/* /rbf_a = [R, R], /rbf_b = [R, 7.5 R]: the median bandwidth scales with the data, so both
 * items give 1 (a fixed bandwidth would not). B = 2 < 3 ranks splits the rows of each item. */
Test(sim_cka, rbf_identical_and_scaled) {
  static const char *const KMAT[2] = {"held", "stream"};
  static const int NPS[2] = {1, 3};
  for (int m = 0; m < 2; m++)
    for (int t = 0; t < 2; t++) {
      char args[512], ctx[64];
      snprintf(args, sizeof args, "cka --a " FX ":/rbf_a --b " FX ":/rbf_b --kernel rbf --kmat %s",
               KMAT[m]);
      snprintf(ctx, sizeof ctx, "rbf --kmat %s np=%d", KMAT[m], NPS[t]);
      run_result r = run_cli_np(NPS[t], args);
      expect_ok(&r, ctx);
      expect_json(r.out, "cka", "[#,#]", 2, (double[]){1}, 1, TOL, ctx);
      expect_json(r.out, "n_points", "#", 1, (double[]){24}, 1, 0, ctx);
      cr_expect(strstr(r.out, "\"kernel\": \"rbf\"") != NULL, "%s:\n%s", ctx, r.out);
      run_free(&r);
    }
}

Test(sim_cka, int64_input_and_constant) {
  /* int64 arange(512).reshape(128, 4) with itself (SPEC 5.1) */
  run_result r = run_cli_np(2, "cka --a " FX ":/arange --b " FX ":/arange");
  expect_ok(&r, "arange");
  expect_json(r.out, "cka", "#", 1, (double[]){1}, 1, TOL, "arange");
  expect_json(r.out, "n_points", "#", 1, (double[]){128}, 1, 0, "arange");
  run_free(&r);
  /* constant X: zero after centring, the denominator is 0 -> NaN, printed as null */
  r = run_cli_np(1, "cka --a " FX ":/const --b " FX ":/tv9_2x");
  expect_ok(&r, "constant");
  expect_json(r.out, "cka", "#", 1, (double[]){NAN}, 1, 0, "constant");
  run_free(&r);
}

/* ---- information-imbalance ------------------------------------------------------------ */

#define II_AB "information_imbalance_a_to_b"
#define II_BA "information_imbalance_b_to_a"

/* TV-10 on 1 rank and with the 5 rows split over 3 ranks; then p = inf and p = 1 (in 1-D
 * every p orders the distances the same way). */
Test(sim_ii, tv10_every_p) {
  static const struct {
    int np;
    const char *opt, *p_json;
  } RUNS[4] = {{1, "", "2.0"}, {3, "", "2.0"}, {2, "--p inf", "\"inf\""}, {4, "--p 1", "1.0"}};
  for (int t = 0; t < 4; t++) {
    char args[512], ctx[64], pj[32];
    snprintf(args, sizeof args, "information-imbalance --a " FX ":/tv10_a --b " FX ":/tv10_b %s",
             RUNS[t].opt);
    snprintf(ctx, sizeof ctx, "TV-10 np=%d '%s'", RUNS[t].np, RUNS[t].opt);
    run_result r = run_cli_np(RUNS[t].np, args);
    expect_ok(&r, ctx);
    expect_json(r.out, II_AB, "#", 1, &TV10_AB, 1, TOL, ctx);
    expect_json(r.out, II_BA, "#", 1, &TV10_BA, 1, TOL, ctx);
    expect_json(r.out, "floor", "#", 1, (double[]){2.0 / 5}, 1, TOL, ctx);
    expect_json(r.out, "n_points", "#", 1, (double[]){5}, 1, 0, ctx);
    snprintf(pj, sizeof pj, "\"p\": %s", RUNS[t].p_json);
    cr_expect(strstr(r.out, pj) != NULL, "%s: no '%s' in:\n%s", ctx, pj, r.out);
    run_free(&r);
  }
}

/* TV-11: ties, with LatentHook's rule (lower index first): 4/3 both ways. */
Test(sim_ii, tv11_ties_lower_index) {
  run_result r = run_cli_np(2, "information-imbalance --a " FX ":/tv11_a --b " FX ":/tv11_b");
  expect_ok(&r, "TV-11");
  expect_json(r.out, II_AB, "#", 1, (double[]){4.0 / 3}, 1, TOL, "TV-11");
  expect_json(r.out, II_BA, "#", 1, (double[]){4.0 / 3}, 1, TOL, "TV-11");
  run_free(&r);
}

/* Identical views: the source's k nearest have ranks 1..k in the target, mean (k+1)/2, so
 * (2/N)(k+1)/2 = (k+1)/N: 2/32 for k = 1, 4/32 for k = 3. */
Test(sim_ii, identical_views_floor) {
  static const struct {
    int np, k;
  } RUNS[2] = {{3, 1}, {4, 3}};
  for (int t = 0; t < 2; t++) {
    char args[512], ctx[64];
    snprintf(args, sizeof args,
             "information-imbalance --a " FX ":/layers/layer0 --b " FX ":/layers/layer0 --k %d",
             RUNS[t].k);
    snprintf(ctx, sizeof ctx, "identical views k=%d np=%d", RUNS[t].k, RUNS[t].np);
    run_result r = run_cli_np(RUNS[t].np, args);
    expect_ok(&r, ctx);
    double want = (RUNS[t].k + 1.0) / NL;
    expect_json(r.out, II_AB, "#", 1, &want, 1, TOL, ctx);
    expect_json(r.out, II_BA, "#", 1, &want, 1, TOL, ctx);
    expect_json(r.out, "floor", "#", 1, &want, 1, TOL, ctx);
    expect_json(r.out, "k", "#", 1, (double[]){RUNS[t].k}, 1, 0, ctx);
    run_free(&r);
  }
}

/* (2, 2) items (A, B), (3B, A/2), (4A, A), (B, A) with A, B of TV-10. */
Test(sim_ii, batched_nested_list) {
  run_result r = run_cli_np(3, "information-imbalance --a " FX ":/ii_ba --b " FX ":/ii_bb");
  expect_ok(&r, "batched");
  expect_json(r.out, II_AB, "[[#,#],[#,#]]", 4, (double[]){TV10_AB, TV10_BA, 0.4, TV10_BA}, 4,
              TOL, "batched");
  expect_json(r.out, II_BA, "[[#,#],[#,#]]", 4, (double[]){TV10_BA, TV10_AB, 0.4, TV10_AB}, 4,
              TOL, "batched");
  run_free(&r);
}

/* ---- similarity ------------------------------------------------------------------------- */

/* Layer `l` of sim.h5:/layers as integers, rows (NL, 5). */
static void layer_rows(int l, int64_t x[NL][5]) {
  for (int i = 0; i < NL; i++) {
    int p = (13 * i + 5) % 32;
    int64_t h[5];
    for (int j = 0; j < 5; j++) h[j] = 1 - 2 * ((p >> j) & 1);
    const int64_t g[5] = {h[0], h[1], h[0] * h[1] * h[2], h[2] * h[3], h[3] * h[4]};
    for (int j = 0; j < 5; j++)
      x[i][j] = l == 0 ? S0[j] * h[j] : l == 1 ? 2 * S0[4 - j] * h[4 - j] : T2[j] * g[j];
  }
}

static int64_t dist2(const int64_t *a, const int64_t *b) {
  int64_t s = 0;
  for (int j = 0; j < 5; j++) s += (a[j] - b[j]) * (a[j] - b[j]);
  return s;
}

/* Delta(A -> B) by the definition (SPEC 5.2), ties to the lower index. */
static double naive_ii(int64_t A[NL][5], int64_t B[NL][5]) {
  int64_t total = 0;
  for (int i = 0; i < NL; i++) {
    int best = -1;
    int64_t bd = 0;
    for (int j = 0; j < NL; j++) {
      if (j == i) continue;
      int64_t d = dist2(A[i], A[j]);
      if (best < 0 || d < bd) best = j, bd = d;
    }
    int64_t db = dist2(B[i], B[best]), rank = 1;
    for (int k = 0; k < NL; k++) {
      if (k == i || k == best) continue;
      int64_t d = dist2(B[i], B[k]);
      if (d < db || (d == db && k < best)) rank++;
    }
    total += rank;
  }
  return 2.0 * (double)total / ((double)NL * NL);
}

/* The expected L x L matrix of each metric over layer0, layer1, layer2. */
static void expected_matrix(bool cka, double want[9]) {
  static int64_t X[3][NL][5];
  for (int l = 0; l < 3; l++) layer_rows(l, X[l]);
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      bool same = a == b || a + b == 1; /* layer1 is a scaled, permuted layer0 */
      if (cka)
        want[a * 3 + b] = same ? 1.0 : CKA02;
      else
        want[a * 3 + b] = same ? 2.0 / NL : naive_ii(X[a], X[b]);
    }
}

static bool has_png_signature(const char *path) {
  static const unsigned char SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  unsigned char got[8] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t n = fread(got, 1, 8, f);
  fclose(f);
  return n == 8 && memcmp(got, SIG, 8) == 0;
}

/* What the 1-rank run wrote: the JSON matrix and layer names, OUT.h5:/matrix and its
 * attributes, the heatmap. */
static void check_similarity_outputs(const char *json, const char *dir, const char *out,
                                     const char *png, bool cka) {
  const char *ctx = cka ? "similarity cka" : "similarity information-imbalance";
  double want[9];
  expected_matrix(cka, want);
  expect_json(json, "matrix", "[[#,#,#],[#,#,#],[#,#,#]]", 9, want, 9, 1e-12, ctx);
  expect_json(json, "n_points", "#", 1, (double[]){NL}, 1, 0, ctx);
  const char *l0 = strstr(json, "\"layer0\""), *l1 = strstr(json, "\"layer1\""),
             *l2 = strstr(json, "\"layer2\"");
  cr_expect(l0 && l1 && l2 && l0 < l1 && l1 < l2, "%s: layers not layer0, layer1, layer2:\n%s",
            ctx, json);
  cr_expect(strstr(json, "labels") == NULL, "%s: the 1-D dataset was not skipped:\n%s", ctx, json);
  if (out) {
    blob m = h5_read(dir, out, "/matrix");
    cr_expect(strstr(m.header, "DATATYPE  H5T_IEEE_F64LE") != NULL, "%s:\n%s", ctx, m.header);
    cr_expect(strstr(m.header, "DATASPACE  SIMPLE { ( 3, 3 ) /") != NULL, "%s:\n%s", ctx,
              m.header);
    cr_expect_eq(m.nbytes, 9 * sizeof(double), "%s: /matrix has %zu bytes", ctx, m.nbytes);
    for (size_t i = 0; i < 9; i++) {
      double v = f64_at(&m, i);
      cr_expect(absd(v - want[i]) <= 1e-12, "%s: /matrix[%zu] = %.17g, want %.17g", ctx, i, v,
                want[i]);
    }
    blob_free(&m);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "h5dump -a /matrix/layers -a /matrix/metric %s", out);
    run_result a = run_shell(cmd);
    cr_expect_eq(a.status, 0, "%s: %s%s", cmd, a.out, a.err);
    cr_expect(strstr(a.out, "\"[\"layer0\",\"layer1\",\"layer2\"]\"") != NULL,
              "%s: layers attribute:\n%s", ctx, a.out);
    cr_expect(strstr(a.out, cka ? "\"cka\"" : "\"information-imbalance\"") != NULL,
              "%s: metric attribute:\n%s", ctx, a.out);
    run_free(&a);
  }
  cr_expect(has_png_signature(png), "%s: no PNG at %s", ctx, png);
}

/* `similarity` on 1..4 ranks: the same stdout and the same OUT.h5:/matrix bytes on each; the
 * 1-D /layers/labels skipped with one warning line (not one per rank). `use_out` selects
 * --out OUT.h5 (heatmap beside it, OUT.png) or only --png FIG.png. */
static void similarity_identical(const char *metric, bool use_out) {
  bool cka = strcmp(metric, "cka") == 0;
  char dir[64], args[512], out[128], png[128], ctx[96], left[256];
  cli_make_dir(dir, "sim");
  snprintf(out, sizeof out, "%s/OUT.h5", dir);
  snprintf(png, sizeof png, "%s/%s", dir, use_out ? "OUT.png" : "fig.png");
  if (use_out)
    snprintf(args, sizeof args, "similarity --metric %s --data " FX ":/layers --out %s", metric,
             out);
  else
    snprintf(args, sizeof args, "similarity --metric %s --data " FX ":/layers --png %s", metric,
             png);
  char *json1 = NULL;
  blob first = {0};
  for (int np = 1; np <= 4; np++) {
    snprintf(ctx, sizeof ctx, "np=%d similarity --metric %s", np, metric);
    run_result r = run_cli_np(np, args);
    expect_ok(&r, ctx);
    cr_expect_eq(count_lines_with(r.err, "warning"), 1, "%s: stderr:\n%s", ctx, r.err);
    cr_expect_eq(count_lines_with(r.err, "labels"), 1, "%s: stderr:\n%s", ctx, r.err);
    char png_json[160];
    snprintf(png_json, sizeof png_json, "\"png\": \"%s\"", png);
    cr_expect(strstr(r.out, png_json) != NULL, "%s: no '%s' in:\n%s", ctx, png_json, r.out);
    blob now = {0};
    if (use_out) now = h5_read(dir, out, "/matrix");
    if (np == 1) {
      check_similarity_outputs(r.out, dir, use_out ? out : NULL, png, cka);
      json1 = strdup(r.out);
      first = now;
    } else {
      cr_expect(has_png_signature(png), "%s: no PNG at %s", ctx, png);
      cr_expect_str_eq(r.out, json1, "%s: stdout differs from 1 rank's", ctx);
      if (use_out) {
        bool same = now.nbytes == first.nbytes && now.nbytes > 0 &&
                    memcmp(now.data, first.data, now.nbytes) == 0;
        cr_expect(same, "%s: /matrix differs from 1 rank's", ctx);
        blob_free(&now);
      }
    }
    /* the figure and, with --out, the file; nothing else (no temporaries) */
    dir_entries(dir, left, sizeof left);
    int want_files = use_out ? 2 : 1, files = left[0] ? 1 + count_char(left, ',') : 0;
    cr_expect_eq(files, want_files, "%s: files: %s", ctx, left);
    cr_expect(!use_out || access(out, F_OK) == 0, "%s: no %s (files: %s)", ctx, out, left);
    run_free(&r);
    unlink(out);
    unlink(png);
  }
  blob_free(&first);
  free(json1);
  cli_remove_dir(dir);
}

Test(sim_similarity, cka_identical_on_1_to_4) { similarity_identical("cka", true); }
Test(sim_similarity, ii_identical_on_1_to_4) {
  similarity_identical("information-imbalance", false);
}

/* ---- errors: one error line, empty stdout, the exit status, nothing left behind --------- */

/* `fmt` may hold one %s for a fresh, empty directory, which must still be empty afterwards. */
static void expect_error_np(int np, const char *fmt, int want_status, const char *needle) {
  char dir[64], args[512], left[512];
  cli_make_dir(dir, "sim");
  snprintf(args, sizeof args, fmt, dir);
  run_result r = np == 1 ? run_cli(np, args) : run_cli_noleak(np, args);
  cr_expect_eq(r.status, want_status, "np=%d '%s': exit %d (stderr: %s)", np, args, r.status,
               r.err);
  cr_expect_eq(count_lines_with(r.err, "error"), 1, "np=%d '%s': stderr:\n%s", np, args, r.err);
  cr_expect_eq(count_lines_with(r.err, needle), 1, "np=%d '%s': no '%s' in:\n%s", np, args, needle,
               r.err);
  cr_expect_str_eq(r.out, "", "np=%d '%s': stdout not empty", np, args);
  dir_entries(dir, left, sizeof left);
  cr_expect_str_eq(left, "", "np=%d '%s': left behind: %s", np, args, left);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(sim_errors, cka_sample_counts) {
  for (int np = 1; np <= 3; np += 2)
    expect_error_np(np, "cka --a " FX ":/tv10_a --b " FX ":/tv9_1x", 1,
                    "Expected matching sample counts, got 5 and 4");
}
Test(sim_errors, batch_shapes) {
  expect_error_np(4, "cka --a " FX ":/cka_ba --b " FX ":/tv9_3y", 1,
                  "Expected matching batch shapes, got (2, 3) and ()");
  expect_error_np(2, "information-imbalance --a " FX ":/ii_ba --b " FX ":/cka_ba", 1,
                  "Expected matching batch shapes, got (2, 2) and (2, 3)");
}
Test(sim_errors, cka_one_dimensional) {
  expect_error_np(2, "cka --a " FX ":/vec --b " FX ":/tv9_1x", 1,
                  "has shape (4,); expected (..., N, D)");
}
Test(sim_errors, ii_one_sample) {
  expect_error_np(3, "information-imbalance --a " FX ":/one --b " FX ":/one", 1,
                  "Expected at least 2 samples, got 1");
}
Test(sim_errors, cka_unknown_kernel) {
  expect_error_np(2, "cka --a " FX ":/tv9_1x --b " FX ":/tv9_1y --kernel foo", 2,
                  "Unsupported kernel 'foo'");
}
Test(sim_errors, cka_debiased_three_samples) {
  expect_error_np(3, "cka --a " FX ":/tv11_a --b " FX ":/tv11_b --debiased", 1,
                  "debiased CKA needs at least 4 samples, got 3");
}
Test(sim_errors, similarity_one_layer) {
  expect_error_np(2, "similarity --metric cka --data " FX ":/single --out %s/OUT.h5", 1,
                  "holds 1 (N, D) dataset; at least 2 are needed");
}
Test(sim_errors, similarity_sample_counts) {
  expect_error_np(4, "similarity --metric information-imbalance --data " FX ":/mixed --out %s/OUT.h5",
                  1, "Expected matching sample counts, got 32 ('a') and 5 ('b')");
}
Test(sim_errors, similarity_dataset_not_group) {
  expect_error_np(3, "similarity --metric cka --data " FX ":/layers/layer0 --out %s/OUT.h5", 1,
                  "'/layers/layer0' in '" FX "' is not a group");
}
Test(sim_errors, similarity_metric_missing) {
  expect_error_np(1, "similarity --data " FX ":/layers --out %s/OUT.h5", 2, "--metric");
}
/* The heatmap cannot be written: the matrix must not be left behind either (no partial
 * outputs). */
Test(sim_errors, similarity_png_folder_missing) {
  expect_error_np(2,
                  "similarity --metric cka --data " FX ":/layers --out %s/OUT.h5 --png "
                  "/nonexistent_lh_dir/fig.png",
                  1, "/nonexistent_lh_dir/fig.png");
}
