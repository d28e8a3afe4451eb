/* Dataset addresses FILE.h5:/path. */
#include <criterion/criterion.h>

#include "latenthook/h5.h"

Test(addr, splits_at_last_colon_slash) {
  lh_h5_addr a;
  cr_assert_eq(lh_h5_addr_parse("data/acts.h5:/layer/0", &a), LH_OK);
  cr_expect_str_eq(a.file, "data/acts.h5");
  cr_expect_str_eq(a.path, "/layer/0");
  cr_assert_eq(lh_h5_addr_parse("odd:name.h5:/x", &a), LH_OK);
  cr_expect_str_eq(a.file, "odd:name.h5");
  cr_expect_str_eq(a.path, "/x");
  cr_assert_eq(lh_h5_addr_parse("f.h5:/g/", &a), LH_OK);
  cr_expect_str_eq(a.path, "/g");
}

Test(addr, rejects_malformed) {
  lh_h5_addr a;
  const char *bad[] = {"f.h5", "f.h5:", "f.h5:/", ":/x", "f.h5:x", ""};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_expect_eq(lh_h5_addr_parse(bad[i], &a), LH_ERR_USAGE, "'%s' accepted", bad[i]);
    cr_expect(strstr(lh_error_message(), "FILE.h5:/path/to/dataset") != NULL, "message: %s",
              lh_error_message());
  }
}
