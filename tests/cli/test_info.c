/* `latenthook info`, --help, --version, and the collective error contract of the CLI: each bad
 * input gives exactly one error line (from one rank), nothing on stdout, and a non-zero exit,
 * on 1 to 4 ranks. */
#include <string.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define FX LH_FIXTURE_DIR "/good.h5"

Test(info, prints_shape_and_row_split_on_3_ranks) {
  run_result r = run_cli(3, "info " FX ":/a");
  cr_expect_eq(r.status, 0, "exit %d, stderr: %s", r.status, r.err);
  cr_expect(strstr(r.out, "shape:     (3, 100, 8)") != NULL, "stdout: %s", r.out);
  cr_expect(strstr(r.out, "B = 3 of N = 100 rows x D = 8 columns") != NULL, "%s", r.out);
  cr_expect(strstr(r.out, "rank 0   rows 0..33 (34)") != NULL, "%s", r.out);
  cr_expect(strstr(r.out, "rank 2   rows 67..99 (33)") != NULL, "%s", r.out);
  cr_expect_eq(count_lines_with(r.out, "dataset:"), 1, "printed once: %s", r.out);
  run_free(&r);
}

Test(info, json_document_with_chunks_and_empty_ranks) {
  run_result r = run_cli(4, "info " FX ":/z --json");
  cr_expect_eq(r.status, 0, "stderr: %s", r.err);
  cr_expect(strstr(r.out, "\"chunks\": [\n    7,\n    6\n  ]") != NULL, "%s", r.out);
  cr_expect(strstr(r.out, "\"filters\": \"shuffle, deflate\"") != NULL, "%s", r.out);
  run_free(&r);
  r = run_cli(4, "info " FX ":/tiny");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "rank 3   no rows") != NULL, "%s", r.out);
  run_free(&r);
}

Test(info, help_and_version) {
  run_result r = run_cli(2, "info --help");
  cr_expect_eq(r.status, 0);
  cr_expect_eq(count_lines_with(r.out, "usage: mpiexec -n P latenthook info"), 1, "%s", r.out);
  run_free(&r);
  r = run_cli(1, "--version");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "latenthook 0.") != NULL && strstr(r.out, "OpenBLAS core:") != NULL,
            "%s", r.out);
  run_free(&r);
  r = run_cli(2, "--help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "info") != NULL);
  run_free(&r);
}

/* One bad input: on every rank count, a single error line naming the problem. */
static void expect_error(const char *args, int want_status, const char *needle) {
  for (int np = 1; np <= 4; np++) {
    run_result r = np == 1 ? run_cli(np, args) : run_cli_noleak(np, args);
    cr_expect_eq(r.status, want_status, "np=%d '%s': exit %d (stderr: %s)", np, args, r.status,
                 r.err);
    cr_expect_eq(count_lines_with(r.err, "error"), 1, "np=%d '%s': stderr:\n%s", np, args, r.err);
    cr_expect_eq(count_lines_with(r.err, needle), 1, "np=%d '%s': no '%s' in:\n%s", np, args,
                 needle, r.err);
    cr_expect_str_eq(r.out, "", "np=%d: stdout not empty", np);
    run_free(&r);
  }
}

Test(info_errors, missing_file) {
  expect_error("info " LH_FIXTURE_DIR "/missing.h5:/a", 1,
               "cannot open '" LH_FIXTURE_DIR "/missing.h5': No such file or directory");
}
Test(info_errors, missing_dataset) {
  expect_error("info " FX ":/nope", 1, "no dataset '/nope' in '" FX "'");
}
Test(info_errors, group_instead_of_dataset) {
  expect_error("info " FX ":/g", 1, "'/g' in '" FX "' is a group, not a dataset (members: member)");
}
Test(info_errors, one_dimensional_dataset) {
  expect_error("info " FX ":/v", 1, "has shape (10,); expected (..., N, D), at least 2 dimensions");
}
Test(info_errors, string_dataset) {
  expect_error("info " FX ":/s", 1, "holds strings; expected numbers");
}
Test(info_errors, not_an_hdf5_file) {
  expect_error("info " LH_FIXTURE_DIR "/not_hdf5.h5:/a", 1, "is not an HDF5 file");
}
Test(info_errors, bad_usage) {
  expect_error("info " FX, 2, "expected FILE.h5:/path/to/dataset");
  expect_error("info --bogus " FX ":/a", 2, "unknown option '--bogus'");
  expect_error("nosuchcommand", 2, "unknown command 'nosuchcommand'");
  expect_error("info -ab " FX ":/a", 2, "unknown option '-a'");
  expect_error("info --json=1 " FX ":/a", 2, "option '--json' takes no value");
}
