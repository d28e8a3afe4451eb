/*
 * test_rollout.c: the attention rollout kernels (rollout.h) against closed forms (identity
 * attention, one layer, uniform causal attention whose square has a harmonic-number form),
 * properties (row sums 1, head subsets equal the rollout of the sub-array), the BLAS path
 * against a naive product, and the PyTorch reference of tests/golden/rollout
 * (make_golden_rollout.py) from the same float32 probabilities.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <hdf5.h>

#include "latenthook/rollout.h"

/* Deterministic row-stochastic attention (L, H, T, T); causal when asked. */
static float *random_attention(int64_t L, int64_t H, int64_t T, int causal, unsigned seed) {
  float *a = malloc((size_t)(L * H * T * T) * sizeof *a);
  unsigned s = seed;
  for (int64_t m = 0; m < L * H * T; m++) {
    const int64_t i = m % T;
    float *row = a + m * T;
    double sum = 0;
    for (int64_t j = 0; j < T; j++) {
      s = s * 1103515245u + 12345u;
      row[j] = (causal && j > i) ? 0.0f : (float)(0.05 + (double)((s >> 8) % 1000) / 1000.0);
      sum += row[j];
    }
    for (int64_t j = 0; j < T; j++) row[j] = (float)(row[j] / sum);
  }
  return a;
}

static double max_diff(const double *a, const double *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

Test(rollout, identity_attention_gives_identity) {
  const int64_t L = 3, H = 2, T = 5;
  float *a = calloc((size_t)(L * H * T * T), sizeof *a);
  for (int64_t m = 0; m < L * H; m++)
    for (int64_t i = 0; i < T; i++) a[m * T * T + i * T + i] = 1.0f;
  double R[25];
  lh_rollout_opts o = lh_rollout_defaults();
  for (double alpha = 0.0; alpha <= 1.0; alpha += 0.25) {
    o.alpha = alpha;
    cr_assert_eq(lh_attention_rollout(L, H, T, a, &o, R), LH_OK);
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = 0; j < T; j++) cr_assert_eq(R[i * T + j], i == j ? 1.0 : 0.0);
  }
  free(a);
}

Test(rollout, one_layer_is_alpha_identity_plus_head_mean) {
  const int64_t H = 3, T = 6;
  float *a = random_attention(1, H, T, 0, 7u);
  double R[36];
  lh_rollout_opts o = lh_rollout_defaults();
  o.alpha = 0.3;
  cr_assert_eq(lh_attention_rollout(1, H, T, a, &o, R), LH_OK);
  /* the float32 rows sum to 1 only up to rounding: the renormalisation divides by the sum */
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < T; j++) {
      double mean = ((double)a[i * T + j] + a[T * T + i * T + j] + a[2 * T * T + i * T + j]) / 3;
      double sum = 0;
      for (int64_t k = 0; k < T; k++)
        sum += 0.3 * (i == k) +
               0.7 * ((double)a[i * T + k] + a[T * T + i * T + k] + a[2 * T * T + i * T + k]) / 3;
      double want = (0.3 * (i == j) + 0.7 * mean) / sum;
      cr_assert(fabs(sum - 1.0) < 1e-6);
      cr_assert(fabs(R[i * T + j] - want) < 1e-14, "R[%ld,%ld] %.17g, want %.17g", (long)i, (long)j,
                R[i * T + j], want);
    }
  free(a);
}

/* Uniform causal attention U[i, j] = 1/(i+1) for j <= i. With alpha = 0, two layers:
 * (U^2)[i, j] = (1/(i+1)) sum_{k=j..i} 1/(k+1) = (H_{i+1} - H_j) / (i+1). T = 10 runs the
 * naive loop, T = 80 BLAS. */
static void causal_square(int64_t T) {
  const int64_t L = 2, H = 2;
  float *a = calloc((size_t)(L * H * T * T), sizeof *a);
  double *R = malloc((size_t)(T * T) * sizeof *R), *harm = malloc((size_t)(T + 1) * sizeof *harm);
  for (int64_t m = 0; m < L * H; m++)
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = 0; j <= i; j++) a[m * T * T + i * T + j] = (float)(1.0 / (double)(i + 1));
  harm[0] = 0;
  for (int64_t k = 1; k <= T; k++) harm[k] = harm[k - 1] + 1.0 / (double)k;
  lh_rollout_opts o = lh_rollout_defaults();
  o.alpha = 0.0;
  cr_assert_eq(lh_attention_rollout(L, H, T, a, &o, R), LH_OK);
  double md = 0;
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j < T; j++) {
      double want = j <= i ? (harm[i + 1] - harm[j]) / (double)(i + 1) : 0.0;
      /* the float32 1/(i+1) is the input: relative error 6e-8 per factor */
      md = fmax(md, fabs(R[i * T + j] - want));
      if (j > i) cr_assert_eq(R[i * T + j], 0.0, "causality: R[%ld,%ld]", (long)i, (long)j);
    }
  cr_assert(md < 2e-7, "T = %ld: max |R - closed form| %.3g", (long)T, md);
  /* one layer, alpha 0.5: 0.5 I + 0.5 U exactly up to the float32 input */
  o.alpha = 0.5;
  cr_assert_eq(lh_attention_rollout(1, H, T, a, &o, R), LH_OK);
  for (int64_t i = 0; i < T; i++)
    for (int64_t j = 0; j <= i; j++) {
      double want = 0.5 * (i == j) + 0.5 / (double)(i + 1);
      cr_assert(fabs(R[i * T + j] - want) < 1e-7);
    }
  free(a);
  free(R);
  free(harm);
}

Test(rollout, uniform_causal_attention_closed_form_naive) {
  causal_square(10);
}
Test(rollout, uniform_causal_attention_closed_form_blas) {
  causal_square(80);
}

static void rows_sum_to_one(int64_t T) {
  const int64_t L = 4, H = 3;
  float *a = random_attention(L, H, T, 1, 3u);
  double *R = malloc((size_t)(T * T) * sizeof *R);
  lh_rollout_opts o = lh_rollout_defaults();
  cr_assert_eq(lh_attention_rollout(L, H, T, a, &o, R), LH_OK);
  for (int64_t i = 0; i < T; i++) {
    double s = 0;
    for (int64_t j = 0; j < T; j++) {
      s += R[i * T + j];
      cr_assert(R[i * T + j] >= 0);
    }
    cr_assert(fabs(s - 1.0) < 1e-12, "row %ld sums to %.17g", (long)i, s);
  }
  free(a);
  free(R);
}

Test(rollout, rows_sum_to_one) {
  rows_sum_to_one(9);
  rows_sum_to_one(70);
}

/* The BLAS path against a naive product written here. */
Test(rollout, blas_path_matches_naive_product) {
  const int64_t L = 3, H = 2, T = 70, TT = T * T;
  float *a = random_attention(L, H, T, 0, 5u);
  double *R = malloc((size_t)TT * sizeof *R), *want = malloc((size_t)TT * sizeof *want),
         *ah = malloc((size_t)TT * sizeof *ah), *tmp = malloc((size_t)TT * sizeof *tmp);
  lh_rollout_opts o = lh_rollout_defaults();
  o.alpha = 0.4;
  cr_assert_eq(lh_attention_rollout(L, H, T, a, &o, R), LH_OK);
  for (int64_t l = 0; l < L; l++) {
    for (int64_t i = 0; i < T; i++) {
      double s = 0;
      for (int64_t j = 0; j < T; j++) {
        double m = 0;
        for (int64_t h = 0; h < H; h++) m += a[(l * H + h) * TT + i * T + j];
        ah[i * T + j] = 0.4 * (i == j) + 0.6 * m / H;
        s += ah[i * T + j];
      }
      for (int64_t j = 0; j < T; j++) ah[i * T + j] /= s;
    }
    if (l == 0) {
      memcpy(want, ah, (size_t)TT * sizeof *want);
      continue;
    }
    for (int64_t i = 0; i < T; i++)
      for (int64_t j = 0; j < T; j++) {
        double s = 0;
        for (int64_t k = 0; k < T; k++) s += ah[i * T + k] * want[k * T + j];
        tmp[i * T + j] = s;
      }
    memcpy(want, tmp, (size_t)TT * sizeof *want);
  }
  double md = max_diff(R, want, TT);
  cr_assert(md < 1e-14, "max |BLAS - naive| %.3g", md);
  free(a);
  free(R);
  free(want);
  free(ah);
  free(tmp);
}

Test(rollout, head_subset_equals_rollout_of_those_heads) {
  const int64_t L = 2, H = 4, T = 7, TT = T * T;
  float *a = random_attention(L, H, T, 1, 9u);
  float *sub = malloc((size_t)(L * 2 * TT) * sizeof *sub);
  for (int64_t l = 0; l < L; l++) {
    memcpy(sub + (l * 2 + 0) * TT, a + (l * H + 3) * TT, (size_t)TT * sizeof *sub);
    memcpy(sub + (l * 2 + 1) * TT, a + (l * H + 1) * TT, (size_t)TT * sizeof *sub);
  }
  double R[49], W[49], A1[49];
  const int64_t heads[2] = {3, 1};
  lh_rollout_opts o = {.alpha = 0.5, .heads = heads, .nheads = 2};
  cr_assert_eq(lh_attention_rollout(L, H, T, a, &o, R), LH_OK);
  lh_rollout_opts all = lh_rollout_defaults();
  cr_assert_eq(lh_attention_rollout(L, 2, T, sub, &all, W), LH_OK);
  cr_assert(max_diff(R, W, TT) < 1e-15, "subset %.3g", max_diff(R, W, TT));
  /* and it is not the all-heads rollout */
  cr_assert_eq(lh_attention_rollout(L, H, T, a, &all, A1), LH_OK);
  cr_assert(max_diff(R, A1, TT) > 1e-3);
  /* one head: the head mean is that head */
  const int64_t one[1] = {2};
  double m[49];
  lh_attention_head_mean(H, T, a, one, 1, m);
  for (int64_t e = 0; e < TT; e++) cr_assert_eq(m[e], (double)a[2 * TT + e]);
  free(a);
  free(sub);
}

Test(rollout, errors) {
  float a[2 * 4] = {1, 0, 0.5f, 0.5f, 1, 0, 0.5f, 0.5f}; /* H = 2, T = 2 */
  double R[4] = {42, 42, 42, 42};
  lh_rollout_opts o = lh_rollout_defaults();
  o.alpha = -0.1;
  cr_assert_eq(lh_attention_rollout(1, 2, 2, a, &o, R), LH_ERR_VALUE);
  cr_assert(strstr(lh_error_message(), "[0, 1]"), "%s", lh_error_message());
  o.alpha = 1.5;
  cr_assert_eq(lh_attention_rollout(1, 2, 2, a, &o, R), LH_ERR_VALUE);
  o.alpha = NAN;
  cr_assert_eq(lh_attention_rollout(1, 2, 2, a, &o, R), LH_ERR_VALUE);
  o.alpha = 0.5;
  const int64_t bad[2] = {0, 2}, twice[2] = {1, 1};
  o.heads = bad;
  o.nheads = 2;
  cr_assert_eq(lh_attention_rollout(1, 2, 2, a, &o, R), LH_ERR_VALUE);
  cr_assert(strstr(lh_error_message(), "head 2 out of range"), "%s", lh_error_message());
  o.heads = twice;
  cr_assert_eq(lh_attention_rollout(1, 2, 2, a, &o, R), LH_ERR_VALUE);
  cr_assert(strstr(lh_error_message(), "twice"), "%s", lh_error_message());
  o.nheads = 0;
  cr_assert_eq(lh_attention_rollout(1, 2, 2, a, &o, R), LH_ERR_VALUE);
  o = lh_rollout_defaults();
  cr_assert_eq(lh_attention_rollout(0, 2, 2, a, &o, R), LH_ERR_VALUE);
  /* alpha 0 and an all-zero row: cannot renormalise */
  float z[4] = {0, 0, 0.5f, 0.5f};
  o.alpha = 0.0;
  cr_assert_eq(lh_attention_rollout(1, 1, 2, z, &o, R), LH_ERR_VALUE);
  cr_assert(strstr(lh_error_message(), "row 0"), "%s", lh_error_message());
  for (int i = 0; i < 4; i++) cr_assert_eq(R[i], 42, "out written on failure");
}

/* Reads a whole dataset of the rollout fixture as double. */
static double *golden(const char *name, hsize_t *dims) {
  hid_t f = H5Fopen(LH_GOLDEN_DIR "/rollout/expected.h5", H5F_ACC_RDONLY, H5P_DEFAULT);
  cr_assert(f >= 0);
  hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
  cr_assert(d >= 0, "%s", name);
  hid_t sp = H5Dget_space(d);
  int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
  hsize_t n = 1;
  for (int i = 0; i < nd; i++) n *= dims[i];
  double *v = malloc(n * sizeof *v);
  cr_assert_geq(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v), 0);
  H5Sclose(sp);
  H5Dclose(d);
  H5Fclose(f);
  return v;
}

/* The kernel on PyTorch's float32 probabilities reproduces PyTorch's float64 rollout up to
 * summation order. */
Test(rollout, pytorch_reference_from_the_same_probabilities) {
  hsize_t da[5], dr[3], dm[4];
  double *att = golden("/attention", da), *r = golden("/rollout", dr),
         *r13 = golden("/rollout_h13_a03", dr), *hm = golden("/head_mean", dm);
  const int64_t N = (int64_t)da[0], L = (int64_t)da[1], H = (int64_t)da[2], T = (int64_t)da[3],
                TT = T * T, S = L * H * TT;
  cr_assert_eq(N, 5);
  cr_assert_eq(T, 16);
  float *a = malloc((size_t)S * sizeof *a);
  double R[256];
  const int64_t heads[2] = {1, 3};
  for (int64_t s = 0; s < N; s++) {
    for (int64_t e = 0; e < S; e++) a[e] = (float)att[s * S + e]; /* exact: stored as float32 */
    lh_rollout_opts o = lh_rollout_defaults();
    cr_assert_eq(lh_attention_rollout(L, H, T, a, &o, R), LH_OK);
    cr_assert(max_diff(R, r + s * TT, TT) < 1e-14, "sample %ld: %.3g", (long)s,
              max_diff(R, r + s * TT, TT));
    o.alpha = 0.3;
    o.heads = heads;
    o.nheads = 2;
    cr_assert_eq(lh_attention_rollout(L, H, T, a, &o, R), LH_OK);
    cr_assert(max_diff(R, r13 + s * TT, TT) < 1e-14);
    for (int64_t l = 0; l < L; l++) {
      lh_attention_head_mean(H, T, a + l * H * TT, NULL, 0, R);
      cr_assert(max_diff(R, hm + (s * L + l) * TT, TT) < 1e-15);
    }
  }
  free(a);
  free(att);
  free(r);
  free(r13);
  free(hm);
}
