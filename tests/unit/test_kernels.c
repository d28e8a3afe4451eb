/* Layer kernels (src/nn/kernels.h). Two kinds of tests:
 *  - each fast kernel against its naive float64 reference on seeded random inputs at awkward
 *    sizes, with an explicit tolerance max|fast - ref| <= tol * max|ref| (the observed ratio is
 *    logged at info level: run with --verbose to see it);
 *  - closed forms and properties that check the references themselves, independently of the
 *    fast code; they are run on both implementations (the IMPLS table), so a bug shared by
 *    both cannot hide behind their agreement. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>

#include "nn/kernels.h"
#include "testgen.h"

/* ---- helpers -------------------------------------------------------------------------------- */

/* n floats, normal with standard deviation sd around mean; value k of stream seed. */
static float *randn(int64_t n, uint64_t seed, double mean, double sd) {
  float *x = malloc((size_t)(n > 0 ? n : 1) * sizeof *x);
  cr_assert(x);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(mean + sd * tg_normal(seed, (uint64_t)i));
  return x;
}

static float *zeros(int64_t n) {
  float *x = calloc((size_t)(n > 0 ? n : 1), sizeof *x);
  cr_assert(x);
  return x;
}

/* Asserts max|got - want| <= tol * max|want| (NaN counts as infinitely far) and that the data
 * is not all zero (which would make the check vacuous); prints the worst element. */
static void expect_close(const char *what, const float *got, const float *want, int64_t n,
                         double tol) {
  double md = 0.0, mr = 0.0;
  int64_t at = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - want[i]);
    if (isnan(d)) d = INFINITY;
    if (d > md) md = d, at = i;
    if (fabs(want[i]) > mr) mr = fabs(want[i]);
  }
  cr_log_info("%-28s max|diff| %.3g  max|ref| %.3g  relative %.3g", what, md, mr, md / mr);
  cr_expect(mr > 0, "%s: reference is all zero", what);
  cr_expect(md <= tol * mr,
            "%s: max|diff| = %.3g at %lld (got %.9g, ref %.9g) > %.1g * max|ref| = %.3g", what, md,
            (long long)at, (double)got[at], (double)want[at], tol, tol * mr);
}

/* |got - want| <= rel * |want| for one value, printed on failure. */
static void expect_value(const char *what, double got, double want, double rel) {
  cr_expect(fabs(got - want) <= rel * fabs(want), "%s: got %.10g, expected %.10g (rel. %.1g)", what,
            got, want, rel);
}

/* The two implementations behind one table, so that closed forms check both. */
typedef void unary_fn(float *, const float *, int64_t);
typedef void matmul_fn(float *, const float *, const float *, const float *, int64_t, int64_t,
                       int64_t);
typedef struct {
  const char *name;
  matmul_fn *linear, *conv1d;
  void (*embedding)(float *, const float *, const float *, int64_t, int64_t);
  void (*layernorm)(float *, const float *, const float *, const float *, int64_t, int64_t, float);
  unary_fn *relu, *gelu, *gelu_tanh, *tanh_, *sigmoid;
  void (*add)(float *, const float *, const float *, int64_t);
  void (*softmax)(float *, const float *, int64_t, int64_t);
  void (*attn_probs)(float *, const float *, int64_t, int64_t, int64_t, int64_t, float);
  void (*attn_mix)(float *, const float *, const float *, int64_t, int64_t, int64_t, int64_t);
} impl;

static const impl IMPLS[2] = {
    {"fast", lh_k_linear, lh_k_conv1d, lh_k_embedding, lh_k_layernorm, lh_k_relu, lh_k_gelu,
     lh_k_gelu_tanh, lh_k_tanh, lh_k_sigmoid, lh_k_add, lh_k_softmax, lh_k_attn_probs,
     lh_k_attn_mix},
    {"ref", lh_kref_linear, lh_kref_conv1d, lh_kref_embedding, lh_kref_layernorm, lh_kref_relu,
     lh_kref_gelu, lh_kref_gelu_tanh, lh_kref_tanh, lh_kref_sigmoid, lh_kref_add, lh_kref_softmax,
     lh_kref_attn_probs, lh_kref_attn_mix},
};
#define FOR_EACH_IMPL(k) for (const impl *k = IMPLS; k < IMPLS + 2; k++)

/* ---- fast against reference ----------------------------------------------------------------- */

static void check_matmul(int64_t BT, int64_t C, int64_t OC, int with_bias, uint64_t seed) {
  float *inp = randn(BT * C, seed, 0.0, 1.0);                  /* (BT, C) */
  float *w = randn(OC * C, seed + 1, 0.0, 0.2);                /* (OC, C) or (C, OC) */
  float *b = with_bias ? randn(OC, seed + 2, 0.0, 1.0) : NULL; /* (OC) */
  float *fast = randn(BT * OC, seed + 3, 0.0, 1e6);            /* garbage: must be overwritten */
  float *ref = zeros(BT * OC);
  char what[96];

  lh_k_linear(fast, inp, w, b, BT, C, OC);
  lh_kref_linear(ref, inp, w, b, BT, C, OC);
  snprintf(what, sizeof what, "linear %lldx%lldx%lld%s", (long long)BT, (long long)C, (long long)OC,
           b ? "+b" : "");
  expect_close(what, fast, ref, BT * OC, 1e-5);

  lh_k_conv1d(fast, inp, w, b, BT, C, OC);
  lh_kref_conv1d(ref, inp, w, b, BT, C, OC);
  snprintf(what, sizeof what, "conv1d %lldx%lldx%lld%s", (long long)BT, (long long)C, (long long)OC,
           b ? "+b" : "");
  expect_close(what, fast, ref, BT * OC, 1e-5);
  free(inp), free(w), free(b), free(fast), free(ref);
}

Test(kernels_vs_ref, linear_conv1d) {
  check_matmul(7, 48, 144, 1, 100);
  check_matmul(7, 48, 144, 0, 110);
  check_matmul(1, 5, 3, 1, 120);
  check_matmul(33, 97, 301, 1, 130);
  check_matmul(64, 768, 2304, 1, 140); /* GPT-2 small's c_attn */
}

Test(kernels_vs_ref, embedding) {
  const int64_t V = 11, BT = 7, C = 48;
  float *table = randn(V * C, 200, 0.0, 1.0); /* (V, C) */
  float ids[7];                               /* (BT) */
  for (int64_t i = 0; i < BT; i++) ids[i] = (float)((i * 5 + 3) % V);
  float *fast = zeros(BT * C), *ref = zeros(BT * C);
  lh_k_embedding(fast, ids, table, BT, C);
  lh_kref_embedding(ref, ids, table, BT, C);
  cr_expect(memcmp(fast, ref, (size_t)(BT * C) * sizeof *fast) == 0, "embedding differs");
  free(table), free(fast), free(ref);
}

Test(kernels_vs_ref, layernorm) {
  const struct {
    int64_t BT, C;
    double mean, sd;
    int affine;
  } cases[] = {{7, 48, 0.0, 1.0, 1},
               {7, 48, 0.0, 1.0, 0},
               {5, 768, 0.0, 3.0, 1},
               /* a large common offset: a one-pass float variance would lose it all */
               {3, 768, 1000.0, 0.01, 1}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    const int64_t BT = cases[k].BT, C = cases[k].C;
    float *x = randn(BT * C, 300 + k, cases[k].mean, cases[k].sd);
    float *w = cases[k].affine ? randn(C, 310 + k, 1.0, 0.5) : NULL;
    float *b = cases[k].affine ? randn(C, 320 + k, 0.0, 0.5) : NULL;
    float *fast = zeros(BT * C), *ref = zeros(BT * C);
    lh_k_layernorm(fast, x, w, b, BT, C, 1e-5f);
    lh_kref_layernorm(ref, x, w, b, BT, C, 1e-5f);
    char what[64];
    snprintf(what, sizeof what, "layernorm %lldx%lld case %zu", (long long)BT, (long long)C, k);
    expect_close(what, fast, ref, BT * C, 1e-6);
    free(x), free(w), free(b), free(fast), free(ref);
  }
}

Test(kernels_vs_ref, elementwise) {
  const int64_t n = 1001;
  float *x = randn(n, 400, 0.0, 3.0), *y = randn(n, 401, 0.0, 3.0);
  float *fast = zeros(n), *ref = zeros(n);
  const struct {
    const char *name;
    unary_fn *f, *r;
  } u[] = {{"relu", lh_k_relu, lh_kref_relu},
           {"gelu", lh_k_gelu, lh_kref_gelu},
           {"gelu_tanh", lh_k_gelu_tanh, lh_kref_gelu_tanh},
           {"tanh", lh_k_tanh, lh_kref_tanh},
           {"sigmoid", lh_k_sigmoid, lh_kref_sigmoid}};
  for (size_t k = 0; k < sizeof u / sizeof u[0]; k++) {
    u[k].f(fast, x, n);
    u[k].r(ref, x, n);
    expect_close(u[k].name, fast, ref, n, 1e-6);
  }
  lh_k_add(fast, x, y, n);
  lh_kref_add(ref, x, y, n);
  expect_close("add", fast, ref, n, 0.0);
  free(x), free(y), free(fast), free(ref);
}

Test(kernels_vs_ref, softmax) {
  const int64_t shapes[][2] = {{7, 48}, {3, 1000}, {4, 1}};
  for (size_t k = 0; k < 3; k++) {
    const int64_t rows = shapes[k][0], C = shapes[k][1];
    float *x = randn(rows * C, 500 + k, 2.0, 5.0);
    float *fast = zeros(rows * C), *ref = zeros(rows * C);
    lh_k_softmax(fast, x, rows, C);
    lh_kref_softmax(ref, x, rows, C);
    char what[64];
    snprintf(what, sizeof what, "softmax %lldx%lld", (long long)rows, (long long)C);
    expect_close(what, fast, ref, rows * C, 1e-6);
    free(x), free(fast), free(ref);
  }
}

static void check_attention(int64_t B, int64_t T, int64_t C, int64_t NH, double sd, uint64_t seed) {
  const float scale = 1.0f / sqrtf((float)(C / NH));
  float *qkv = randn(B * T * 3 * C, seed, 0.0, sd); /* (B, T, 3C) */
  float *pf = randn(B * NH * T * T, seed + 1, 0.0, 1e6), *pr = zeros(B * NH * T * T);
  float *of = randn(B * T * C, seed + 2, 0.0, 1e6), *orf = zeros(B * T * C);
  char what[96];

  lh_k_attn_probs(pf, qkv, B, T, C, NH, scale);
  lh_kref_attn_probs(pr, qkv, B, T, C, NH, scale);
  snprintf(what, sizeof what, "attn_probs B%lld T%lld C%lld NH%lld", (long long)B, (long long)T,
           (long long)C, (long long)NH);
  expect_close(what, pf, pr, B * NH * T * T, 1e-5);
  /* Above the diagonal exactly 0, each row sums to 1. */
  for (int64_t r = 0; r < B * NH * T; r++) {
    const int64_t t = r % T;
    double sum = 0.0;
    for (int64_t j = 0; j < T; j++) {
      if (j > t)
        cr_expect(pf[r * T + j] == 0.0f, "%s: row %lld col %lld not masked", what, (long long)r,
                  (long long)j);
      sum += pf[r * T + j];
    }
    cr_expect(fabs(sum - 1.0) <= 1e-5, "%s: row %lld sums to %.9g", what, (long long)r, sum);
  }

  /* The mix from the same (reference) probabilities, so that it is tested on its own. */
  lh_k_attn_mix(of, pr, qkv, B, T, C, NH);
  lh_kref_attn_mix(orf, pr, qkv, B, T, C, NH);
  snprintf(what, sizeof what, "attn_mix B%lld T%lld C%lld NH%lld", (long long)B, (long long)T,
           (long long)C, (long long)NH);
  expect_close(what, of, orf, B * T * C, 1e-5);
  free(qkv), free(pf), free(pr), free(of), free(orf);
}

Test(kernels_vs_ref, attention) {
  check_attention(2, 5, 48, 4, 1.0, 600);
  check_attention(2, 16, 48, 4, 2.0, 610);
  check_attention(3, 1, 48, 4, 1.0, 620);
  check_attention(1, 7, 12, 12, 1.5, 630);   /* hs = 1 */
  check_attention(1, 64, 768, 12, 1.0, 640); /* GPT-2 small's shape */
}

/* ---- closed forms (both implementations) ---------------------------------------------------- */

Test(closed_form, linear_identity_and_bias) {
  const int64_t BT = 3, C = 4;
  float eye[16] = {0}, x[12], b[4] = {0.5f, -1.0f, 2.0f, 0.25f}, out[12];
  for (int i = 0; i < 4; i++) eye[i * 4 + i] = 1.0f;
  for (int i = 0; i < 12; i++) x[i] = (float)(i * i) - 3.5f;
  FOR_EACH_IMPL(k) {
    k->linear(out, x, eye, b, BT, C, C);
    for (int i = 0; i < 12; i++)
      cr_expect(out[i] == x[i] + b[i % 4], "%s: linear(I)[%d] = %g", k->name, i, out[i]);
    k->linear(out, x, eye, NULL, BT, C, C);
    cr_expect(memcmp(out, x, sizeof x) == 0, "%s: linear(I) without bias", k->name);
  }
}

Test(closed_form, linear_and_conv1d_by_hand) {
  /* inp (2, 2); linear W (3, 2); conv1d W (2, 3) = its transpose. */
  const float x[4] = {1, 2, -1, 3}, wl[6] = {1, 2, 3, 4, 5, 6}, wc[6] = {1, 3, 5, 2, 4, 6};
  const float b[3] = {0.5f, 0, -1};
  const float want[6] = {5.5f, 11, 16, 5.5f, 9, 12};
  float out[6];
  FOR_EACH_IMPL(k) {
    k->linear(out, x, wl, b, 2, 2, 3);
    for (int i = 0; i < 6; i++)
      cr_expect(out[i] == want[i], "%s: linear[%d] = %g, want %g", k->name, i, out[i], want[i]);
    k->conv1d(out, x, wc, b, 2, 2, 3);
    for (int i = 0; i < 6; i++)
      cr_expect(out[i] == want[i], "%s: conv1d[%d] = %g, want %g", k->name, i, out[i], want[i]);
  }
}

Test(closed_form, conv1d_is_linear_with_transposed_weight) {
  const int64_t BT = 5, C = 9, OC = 13;
  float *x = randn(BT * C, 700, 0, 1), *w = randn(OC * C, 701, 0, 1), *b = randn(OC, 702, 0, 1);
  float *wt = zeros(C * OC), *a = zeros(BT * OC), *c = zeros(BT * OC);
  for (int64_t o = 0; o < OC; o++)
    for (int64_t i = 0; i < C; i++) wt[i * OC + o] = w[o * C + i];
  FOR_EACH_IMPL(k) {
    k->linear(a, x, w, b, BT, C, OC);
    k->conv1d(c, x, wt, b, BT, C, OC);
    expect_close(k->name, c, a, BT * OC, 1e-6);
  }
  free(x), free(w), free(b), free(wt), free(a), free(c);
}

Test(closed_form, matmul_with_empty_inner_dim_is_bias) {
  const float b[3] = {1, -2, 3};
  float out[6];
  FOR_EACH_IMPL(k) {
    for (int pass = 0; pass < 2; pass++) {
      matmul_fn *f = pass ? k->conv1d : k->linear;
      memset(out, 0x7f, sizeof out);
      f(out, NULL, NULL, b, 2, 0, 3);
      for (int i = 0; i < 6; i++)
        cr_expect(out[i] == b[i % 3], "%s pass %d: [%d]", k->name, pass, i);
      memset(out, 0x7f, sizeof out);
      f(out, NULL, NULL, NULL, 2, 0, 3);
      for (int i = 0; i < 6; i++) cr_expect(out[i] == 0.0f, "%s pass %d: [%d]", k->name, pass, i);
    }
  }
}

Test(closed_form, empty_sizes_write_nothing) {
  float out[4] = {7, 7, 7, 7}, x[4] = {1, 2, 3, 4};
  FOR_EACH_IMPL(k) {
    k->linear(out, x, x, x, 0, 2, 2);
    k->conv1d(out, x, x, x, 0, 2, 2);
    k->layernorm(out, x, x, x, 0, 4, 1e-5f);
    k->softmax(out, x, 0, 4);
    k->gelu(out, x, 0);
    k->attn_probs(out, x, 0, 1, 1, 1, 1.0f);
    k->attn_probs(out, x, 1, 0, 1, 1, 1.0f);
    k->attn_mix(out, x, x, 1, 0, 1, 1);
    for (int i = 0; i < 4; i++) cr_expect(out[i] == 7.0f, "%s: out[%d] written", k->name, i);
  }
}

Test(closed_form, embedding_picks_rows) {
  const float table[5 * 3] = {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32, 40, 41, 42};
  const float ids[4] = {4, 0, 2, 2};
  float out[12];
  FOR_EACH_IMPL(k) {
    k->embedding(out, ids, table, 4, 3);
    for (int i = 0; i < 4; i++)
      for (int c = 0; c < 3; c++)
        cr_expect(out[i * 3 + c] == 10.0f * ids[i] + (float)c, "%s: row %d col %d", k->name, i, c);
  }
}

Test(closed_form, layernorm_1234) {
  /* mean 2.5, biased variance 1.25 */
  const float x[4] = {1, 2, 3, 4}, w[4] = {1, 2, 0.5f, -1}, b[4] = {0, 1, -1, 0.5f};
  const float eps = 1e-5f;
  float out[4];
  FOR_EACH_IMPL(k) {
    k->layernorm(out, x, w, b, 1, 4, eps);
    for (int c = 0; c < 4; c++) {
      const double want = (x[c] - 2.5) / sqrt(1.25 + (double)eps) * w[c] + b[c];
      expect_value(k->name, out[c], want, 2e-7);
    }
    k->layernorm(out, x, NULL, NULL, 1, 4, 0.0f);
    for (int c = 0; c < 4; c++) expect_value(k->name, out[c], (x[c] - 2.5) / sqrt(1.25), 2e-7);
    /* A constant row: 0 / sqrt(eps), so the bias alone. */
    const float flat[4] = {3, 3, 3, 3};
    k->layernorm(out, flat, w, b, 1, 4, eps);
    for (int c = 0; c < 4; c++) cr_expect(out[c] == b[c], "%s: constant row [%d]", k->name, c);
  }
}

Test(closed_form, activations_known_values) {
  const float x[3] = {0.0f, 1.0f, -1.0f};
  float out[3];
  FOR_EACH_IMPL(k) {
    k->gelu(out, x, 3);
    cr_expect(out[0] == 0.0f, "%s: gelu(0) = %g", k->name, out[0]);
    expect_value("gelu(1)", out[1], 0.8413447460685429, 2e-7);
    expect_value("gelu(-1)", out[2], -0.15865525393145705, 2e-7);
    k->gelu_tanh(out, x, 3);
    cr_expect(out[0] == 0.0f, "%s: gelu_tanh(0) = %g", k->name, out[0]);
    expect_value("gelu_tanh(1)", out[1], 0.8411919906082768, 2e-7);
    k->sigmoid(out, x, 3);
    cr_expect(out[0] == 0.5f, "%s: sigmoid(0) = %g", k->name, out[0]);
    expect_value("sigmoid(1)", out[1], 0.7310585786300049, 2e-7);
    expect_value("sigmoid(-1)", out[2], 0.2689414213699951, 2e-7);
    k->tanh_(out, x, 3);
    cr_expect(out[0] == 0.0f, "%s: tanh(0)", k->name);
    expect_value("tanh(1)", out[1], 0.7615941559557649, 2e-7);
    expect_value("tanh(-1)", out[2], -0.7615941559557649, 2e-7);
    const float r[5] = {-2.5f, -0.0f, 0.0f, 3.25f, -1e-30f};
    float ro[5];
    k->relu(ro, r, 5);
    const float rw[5] = {0, 0, 0, 3.25f, 0};
    for (int i = 0; i < 5; i++) cr_expect(ro[i] == rw[i], "%s: relu[%d] = %g", k->name, i, ro[i]);
    const float a[3] = {1.5f, -2, 1e20f}, b[3] = {0.25f, 2, -1e20f};
    k->add(out, a, b, 3);
    cr_expect(out[0] == 1.75f && out[1] == 0.0f && out[2] == 0.0f, "%s: add", k->name);
  }
}

Test(closed_form, activation_tails) {
  const float x[4] = {-5.0f, -30.0f, 30.0f, -100.0f};
  float out[4];
  FOR_EACH_IMPL(k) {
    k->gelu(out, x, 4);
    expect_value("gelu(-5)", out[0], -1.433257859395969e-06, 1e-5);
    cr_expect(out[1] <= 0.0f && out[1] > -1e-30f, "%s: gelu(-30) = %g", k->name, out[1]);
    cr_expect(out[2] == 30.0f, "%s: gelu(30) = %g", k->name, out[2]);
    cr_expect(out[3] <= 0.0f && out[3] > -1e-30f, "%s: gelu(-100) = %g", k->name, out[3]);
    k->gelu_tanh(out, x, 4);
    expect_value("gelu_tanh(-5)", out[0], -2.291796196629506e-07, 1e-5);
    cr_expect(out[1] <= 0.0f && out[1] > -1e-30f, "%s: gelu_tanh(-30) = %g", k->name, out[1]);
    cr_expect(out[2] == 30.0f, "%s: gelu_tanh(30) = %g", k->name, out[2]);
    cr_expect(out[3] <= 0.0f && out[3] > -1e-30f, "%s: gelu_tanh(-100) = %g", k->name, out[3]);
    const float s[4] = {100.0f, -100.0f, 1e30f, -1e30f};
    k->sigmoid(out, s, 4);
    cr_expect(out[0] == 1.0f && out[2] == 1.0f, "%s: sigmoid(+big)", k->name);
    /* exp(-100) = 3.7e-44 is a float subnormal; the stable form keeps it. */
    for (int i = 1; i < 4; i += 2)
      cr_expect(isfinite(out[i]) && out[i] >= 0.0f && out[i] < 1e-40f, "%s: sigmoid(%g) = %g",
                k->name, s[i], out[i]);
    cr_expect(out[1] > 0.0f, "%s: sigmoid(-100) flushed to 0", k->name);
  }
}

Test(closed_form, softmax_known_and_extreme) {
  const float x[3] = {0.0f, (float)log(2.0), (float)log(3.0)};
  const float huge[2][3] = {{1e30f, 1e30f, -1e30f}, {-FLT_MAX, 0.0f, FLT_MAX}};
  const float huge_want[2][3] = {{0.5f, 0.5f, 0.0f}, {0.0f, 0.0f, 1.0f}};
  float out[3];
  FOR_EACH_IMPL(k) {
    k->softmax(out, x, 1, 3);
    for (int i = 0; i < 3; i++) expect_value(k->name, out[i], (i + 1) / 6.0, 3e-7);
    for (int r = 0; r < 2; r++) {
      k->softmax(out, huge[r], 1, 3);
      for (int i = 0; i < 3; i++)
        cr_expect(out[i] == huge_want[r][i], "%s: softmax huge row %d [%d] = %g", k->name, r, i,
                  out[i]);
    }
    /* Shift invariance: softmax(x + 100) = softmax(x). */
    float xs[3], o2[3];
    for (int i = 0; i < 3; i++) xs[i] = x[i] + 100.0f;
    k->softmax(out, x, 1, 3);
    k->softmax(o2, xs, 1, 3);
    for (int i = 0; i < 3; i++) expect_value(k->name, o2[i], out[i], 1e-5);
  }
}

Test(closed_form, attention_single_position) {
  /* T = 1: the only probability is 1 and out = v, for every head. */
  const int64_t B = 2, T = 1, C = 8, NH = 4;
  float *qkv = randn(B * T * 3 * C, 800, 0, 3);
  float probs[2 * 4], out[2 * 8];
  FOR_EACH_IMPL(k) {
    k->attn_probs(probs, qkv, B, T, C, NH, 0.7f);
    for (int i = 0; i < 8; i++) cr_expect(probs[i] == 1.0f, "%s: probs[%d]", k->name, i);
    k->attn_mix(out, probs, qkv, B, T, C, NH);
    for (int64_t b = 0; b < B; b++)
      for (int64_t c = 0; c < C; c++)
        cr_expect(out[b * C + c] == qkv[b * 3 * C + 2 * C + c], "%s: out[%lld][%lld]", k->name,
                  (long long)b, (long long)c);
  }
  free(qkv);
}

Test(closed_form, attention_zero_queries_are_uniform) {
  /* q = 0: every score is 0, row t is uniform over j <= t, and out[t] = mean of v[0..t]. */
  const int64_t B = 2, T = 6, C = 6, NH = 3;
  float *qkv = randn(B * T * 3 * C, 810, 0, 2);
  for (int64_t r = 0; r < B * T; r++)
    for (int64_t c = 0; c < C; c++) qkv[r * 3 * C + c] = 0.0f;
  float *probs = zeros(B * NH * T * T), *out = zeros(B * T * C);
  FOR_EACH_IMPL(k) {
    k->attn_probs(probs, qkv, B, T, C, NH, 0.5f);
    for (int64_t r = 0; r < B * NH * T; r++) {
      const int64_t t = r % T;
      for (int64_t j = 0; j < T; j++) {
        const float p = probs[r * T + j];
        if (j > t)
          cr_expect(p == 0.0f, "%s: row %lld col %lld = %g", k->name, (long long)r, (long long)j,
                    p);
        else
          expect_value(k->name, p, 1.0 / (double)(t + 1), 2e-7);
      }
    }
    k->attn_mix(out, probs, qkv, B, T, C, NH);
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++)
        for (int64_t c = 0; c < C; c++) {
          double mean = 0.0;
          for (int64_t j = 0; j <= t; j++) mean += qkv[(b * T + j) * 3 * C + 2 * C + c];
          mean /= (double)(t + 1);
          cr_expect(fabs(out[(b * T + t) * C + c] - mean) <= 1e-6 * (1.0 + fabs(mean)),
                    "%s: out[%lld][%lld][%lld] = %.9g, want %.9g", k->name, (long long)b,
                    (long long)t, (long long)c, (double)out[(b * T + t) * C + c], mean);
        }
  }
  free(qkv), free(probs), free(out);
}

Test(closed_form, attention_by_hand) {
  /* T = 2, C = 2, NH = 2 (hs = 1), scale 0.5. Head 0 has q = 0: row 1 is [1/2, 1/2].
   * Head 1: q = (0, 2), k = (1, 2): row 1 scores 0.5 * 2 * 1 = 1 and 0.5 * 2 * 2 = 2, so
   * [1, e] / (1 + e); swapping q and k (q_j . k_t) would give scores 0 and 2 instead.
   * v of head 0 = (4, 8), of head 1 = (1, -1). Layout per position: [q0 q1 | k0 k1 | v0 v1]. */
  const float qkv[2 * 6] = {0, 0, 5,  1, 4, 1, /* t = 0 */
                            0, 2, -3, 2, 8, -1 /* t = 1 */};
  const double e = exp(1.0), p10 = 1.0 / (1.0 + e), p11 = e / (1.0 + e);
  const double want_p[8] = {1, 0, 0.5, 0.5, /* head 0 */ 1, 0, p10, p11 /* head 1 */};
  const double want_o[4] = {4, 1, 6, p10 * 1 + p11 * -1};
  float probs[8], out[4];
  FOR_EACH_IMPL(k) {
    k->attn_probs(probs, qkv, 1, 2, 2, 2, 0.5f);
    for (int i = 0; i < 8; i++) {
      if (want_p[i] == 0.0)
        cr_expect(probs[i] == 0.0f, "%s: probs[%d] = %g", k->name, i, probs[i]);
      else
        expect_value(k->name, probs[i], want_p[i], 2e-7);
    }
    k->attn_mix(out, probs, qkv, 1, 2, 2, 2);
    for (int i = 0; i < 4; i++)
      cr_expect(fabs(out[i] - want_o[i]) <= 1e-6, "%s: out[%d] = %.9g, want %.9g", k->name, i,
                (double)out[i], want_o[i]);
  }
}

Test(closed_form, in_place_equals_out_of_place) {
  const int64_t n = 257, rows = 5, C = 31;
  float *x = randn(n, 900, 0, 4), *y = randn(n, 901, 0, 4);
  float *a = zeros(n), *b = zeros(n);
  FOR_EACH_IMPL(k) {
    unary_fn *u[] = {k->relu, k->gelu, k->gelu_tanh, k->tanh_, k->sigmoid};
    for (size_t f = 0; f < 5; f++) {
      u[f](a, x, n);
      memcpy(b, x, (size_t)n * sizeof *b);
      u[f](b, b, n);
      cr_expect(memcmp(a, b, (size_t)n * sizeof *a) == 0, "%s: unary %zu in place", k->name, f);
    }
    k->add(a, x, y, n);
    memcpy(b, x, (size_t)n * sizeof *b);
    k->add(b, b, y, n);
    cr_expect(memcmp(a, b, (size_t)n * sizeof *a) == 0, "%s: add, out == a", k->name);
    memcpy(b, y, (size_t)n * sizeof *b);
    k->add(b, x, b, n);
    cr_expect(memcmp(a, b, (size_t)n * sizeof *a) == 0, "%s: add, out == b", k->name);
    k->softmax(a, x, rows, C);
    memcpy(b, x, (size_t)(rows * C) * sizeof *b);
    k->softmax(b, b, rows, C);
    cr_expect(memcmp(a, b, (size_t)(rows * C) * sizeof *a) == 0, "%s: softmax in place", k->name);
  }
  free(x), free(y), free(a), free(b);
}
