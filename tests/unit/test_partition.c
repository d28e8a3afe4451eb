/* Row partition arithmetic: blocks tile [0, N) in rank order, the first N mod P ranks hold
 * one more row, and the owner of every row is the rank whose block contains it. */
#include <criterion/criterion.h>

#include "latenthook/partition.h"

Test(partition, tiles_rows_for_many_shapes) {
  for (int P = 1; P <= 9; P++)
    for (int64_t N = 0; N <= 40; N++) {
      int64_t next = 0;
      for (int r = 0; r < P; r++) {
        int64_t c = lh_part_count(N, P, r), o = lh_part_offset(N, P, r);
        cr_assert_eq(o, next, "N=%lld P=%d r=%d offset", (long long)N, P, r);
        cr_assert_eq(c, N / P + (r < N % P), "N=%lld P=%d r=%d count", (long long)N, P, r);
        for (int64_t i = o; i < o + c; i++)
          cr_assert_eq(lh_part_owner(N, P, i), r, "owner of row %lld", (long long)i);
        next = o + c;
      }
      cr_assert_eq(next, N);
    }
}

Test(partition, closed_form_examples) {
  /* 100 rows over 3 ranks: 34, 33, 33 */
  cr_expect_eq(lh_part_count(100, 3, 0), 34);
  cr_expect_eq(lh_part_offset(100, 3, 2), 67);
  /* fewer rows than ranks: the last ranks are empty */
  cr_expect_eq(lh_part_count(2, 4, 3), 0);
  cr_expect_eq(lh_part_offset(2, 4, 3), 2);
  /* large N does not overflow */
  int64_t N = (int64_t)1 << 40;
  cr_expect_eq(N % 3, 1); /* 2^40 = 1 mod 3: only rank 0 holds an extra row */
  cr_expect_eq(lh_part_offset(N, 3, 2), 2 * (N / 3) + 1);
  cr_expect_eq(lh_part_owner(N, 3, N - 1), 2);
}
