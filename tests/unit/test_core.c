/* Error records, checked allocation and the progress line. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "latenthook/mem.h"
#include "latenthook/progress.h"
#include "latenthook/status.h"

Test(status, message_prefix_and_clear) {
  cr_expect_eq(lh_error_set(LH_ERR_KEY, "src/x.c", 3, "no module '%s'", "lin"), LH_ERR_KEY);
  cr_expect_str_eq(lh_error_message(), "no module 'lin'");
  lh_error_prefix("--modules: ");
  cr_expect_str_eq(lh_error_message(), "--modules: no module 'lin'");
  cr_expect(lh_error_pending());
  lh_error_clear();
  cr_expect_str_eq(lh_error_message(), "");
  cr_expect_str_eq(lh_status_name(LH_ERR_VALUE), "ValueError");
  cr_expect_str_eq(lh_status_name(LH_ERR_NOTIMPL), "NotImplementedError");
}

Test(mem, overflow_is_an_error_not_a_crash) {
  void *p = NULL;
  cr_expect_eq(lh_alloc(SIZE_MAX / 2, 4, false, "huge buffer", &p), LH_ERR_NOMEM);
  cr_expect(strstr(lh_error_message(), "huge buffer") != NULL);
  cr_expect_null(p);
  double *d = NULL;
  cr_assert_eq(lh_alloc(10, sizeof *d, true, "ten doubles", &d), LH_OK);
  cr_expect_eq((uintptr_t)d % 64, 0);
  for (int i = 0; i < 10; i++) cr_expect_eq(d[i], 0.0);
  lh_free(d);
  void *z = NULL;
  cr_assert_eq(lh_alloc(0, 8, false, "nothing", &z), LH_OK);
  cr_expect_not_null(z);
  lh_free(z);
  char b[32];
  cr_expect_str_eq(lh_format_bytes(1536.0, b, sizeof b), "1.5 KiB");
}

Test(progress, line_format) {
  char buf[256];
  lh_progress_format(buf, sizeof buf, "knn", "rows", 50, 200, 10.0);
  cr_expect(strstr(buf, "knn [######..................]  25.0%") != NULL, "%s", buf);
  cr_expect(strstr(buf, "5 rows/s") != NULL, "%s", buf);
  cr_expect(strstr(buf, "ETA 0:00:30") != NULL, "%s", buf);
  lh_progress_format(buf, sizeof buf, "knn", "rows", 200, 200, 3725.0);
  cr_expect(strstr(buf, "100.0%") != NULL && strstr(buf, "took 1:02:05") != NULL, "%s", buf);
}
