/* Exact summation: closed forms, rounding corner cases, order independence, and exact sums
 * computed offline with Python fractions (tests/golden/xsum.json). */
#include <float.h>
#include <math.h>
#include <stdlib.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "latenthook/xsum.h"
#include "testgen.h"

static double sum_of(const double *x, int n) {
  lh_xsum a;
  lh_xsum_init(&a);
  for (int i = 0; i < n; i++) lh_xsum_add(&a, x[i]);
  return lh_xsum_round(&a);
}

static void same(double got, double want) {
  cr_expect(got == want || (isnan(got) && isnan(want)), "got %a, expected %a", got, want);
  cr_expect(signbit(got) == signbit(want) || got != 0, "sign of zero");
}

Test(xsum, empty_is_zero) { same(sum_of(NULL, 0), 0.0); }

Test(xsum, cancellation_exact) {
  double x[] = {1e16, 1.0, -1e16};
  same(sum_of(x, 3), 1.0); /* naive left-to-right gives 0 */
  double y[] = {DBL_MAX, DBL_MAX, -DBL_MAX};
  same(sum_of(y, 3), DBL_MAX); /* naive overflows to inf */
  double z[] = {0x1p-1074, 0x1p-1074, 0x1p-1074};
  same(sum_of(z, 3), 0x1.8p-1073);
}

Test(xsum, rounding_ties_to_even_and_sticky) {
  double t1[] = {1.0, 0x1p-53};
  same(sum_of(t1, 2), 1.0); /* exact tie: stays on the even 1.0 */
  double t2[] = {1.0, 0x1p-53, 0x1p-200};
  same(sum_of(t2, 3), 1.0 + 0x1p-52); /* just above the tie: rounds up */
  double t3[] = {1.0 + 0x1p-52, 0x1p-53};
  same(sum_of(t3, 2), 1.0 + 0x1p-51); /* tie from an odd mantissa: to even, upwards */
  double t4[] = {-1.0, -0x1p-53, -0x1p-200};
  same(sum_of(t4, 3), -1.0 - 0x1p-52);
  double t5[] = {DBL_MAX, 0x1p970};
  same(sum_of(t5, 2), INFINITY); /* rounds past the largest double */
}

Test(xsum, nan_and_infinities) {
  double a[] = {1.0, INFINITY, 2.0};
  same(sum_of(a, 3), INFINITY);
  double b[] = {-INFINITY, 1.0};
  same(sum_of(b, 2), -INFINITY);
  double c[] = {INFINITY, -INFINITY};
  cr_expect(isnan(sum_of(c, 2)));
  double d[] = {1.0, NAN};
  cr_expect(isnan(sum_of(d, 2)));
}

Test(xsum, products_are_exact) {
  lh_xsum a;
  lh_xsum_init(&a);
  double x = 1.0 + 0x1p-30;
  lh_xsum_add_product(&a, x, x);  /* 1 + 2^-29 + 2^-60: not representable */
  lh_xsum_add(&a, -1.0);
  lh_xsum_add(&a, -0x1p-29);
  same(lh_xsum_round(&a), 0x1p-60);
}

Test(xsum, order_and_merge_independent) {
  enum { N = 5000 };
  double *x = malloc(N * sizeof *x);
  for (int i = 0; i < N; i++) x[i] = tg_wide(11, (uint64_t)i);
  double fwd = sum_of(x, N);
  for (int i = 0; i < N / 2; i++) {
    double t = x[i];
    x[i] = x[N - 1 - i];
    x[N - 1 - i] = t;
  }
  same(sum_of(x, N), fwd);
  /* split into three unequal parts, merged in a different order */
  lh_xsum p[3];
  for (int k = 0; k < 3; k++) lh_xsum_init(&p[k]);
  for (int i = 0; i < N; i++) lh_xsum_add(&p[i < 17 ? 0 : (i < 4000 ? 1 : 2)], x[i]);
  lh_xsum_merge(&p[2], &p[0]);
  lh_xsum_merge(&p[2], &p[1]);
  same(lh_xsum_round(&p[2]), fwd);
  free(x);
}

Test(xsum, golden_exact_sums) {
  json_error_t err;
  json_t *doc = json_load_file(LH_GOLDEN_DIR "/xsum.json", 0, &err);
  cr_assert_not_null(doc, "cannot read xsum.json: %s", err.text);
  json_t *cases = json_object_get(doc, "sums"), *c;
  size_t idx;
  cr_assert(json_array_size(cases) >= 4);
  json_array_foreach(cases, idx, c) {
    uint64_t seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
    int n = (int)json_integer_value(json_object_get(c, "n"));
    double want = strtod(json_string_value(json_object_get(c, "sum")), NULL);
    lh_xsum a;
    lh_xsum_init(&a);
    for (int k = 0; k < n; k++) lh_xsum_add(&a, tg_wide(seed, (uint64_t)k));
    double got = lh_xsum_round(&a);
    cr_expect(got == want, "seed %llu n %d: got %a, exact %a", (unsigned long long)seed, n, got,
              want);
  }
  json_decref(doc);
}
