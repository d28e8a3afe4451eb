/* `latenthook patch` from the command line: tdhook's test MLP and the small GPT-2 of
 * tests/golden/nn patched with the inputs of tests/golden/latent (PyTorch fixtures written by
 * make_golden_latent.py) on 1 to 3 ranks; /output and /patched/output and the sweep's
 * per-sample metrics are compared with PyTorch's by h5diff (absolute tolerance 1e-5 on values
 * of magnitude <= 1.7), and the files of different rank counts with each other without
 * tolerance. Errors: one message, empty stdout, non-zero exit, no output file. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define NN LH_SOURCE_DIR "/tests/golden/nn"
#define LAT LH_SOURCE_DIR "/tests/golden/latent"
#define EXPECTED LAT "/expected.h5"
#define GPT2                                                                       \
  "--model " NN "/gpt2 --inputs " NN "/gpt2/data.h5:/tokens --patched-inputs " LAT \
  "/inputs.h5:/gpt2/patched_tokens"
#define MLP                                                                                 \
  "--model " NN "/mlp/model.yaml --inputs " NN "/mlp/data.h5:/inputs --patched-inputs " LAT \
  "/inputs.h5:/mlp/patched"
#define IDENTITY                                           \
  "--model " LAT "/identity/model.yaml --inputs " EXPECTED \
  ":/identity/patch/input --patched-inputs " EXPECTED ":/identity/patch/patched_input"

/* One patch run on np ranks against expected.h5:<group>/{clean,patched}_output. */
static void golden(int np, const char *opts, const char *group, const char *out) {
  char args[2048], want[256];
  snprintf(args, sizeof args, "patch %s --batch-size 2 --out %s", opts, out);
  run_result r = run_cli_np(np, args);
  cr_assert_eq(r.status, 0, "np=%d '%s' exit %d: %s", np, opts, r.status, r.err);
  cr_expect(strstr(r.out, "\"output_shape\"") != NULL, "%s", r.out);
  snprintf(want, sizeof want, "%s/clean_output", group);
  cr_expect_eq(cli_h5diff("-d 1e-5", out, "/output", EXPECTED, want), 0, "np=%d: %s", np, want);
  snprintf(want, sizeof want, "%s/patched_output", group);
  cr_expect_eq(cli_h5diff("-d 1e-5", out, "/patched/output", EXPECTED, want), 0, "np=%d: %s", np, want);
  run_free(&r);
}

Test(patch, mlp_full_units_and_two_modules_match_pytorch, .timeout = 300) {
  char dir[64], out[128];
  cli_make_dir(dir, "patch");
  const char *cases[][2] = {{"--modules linear2", "/mlp/patch/linear2"},
                            {"--modules linear2,linear3", "/mlp/patch/linear2+linear3"},
                            {"--modules linear2 --units 0,3", "/mlp/patch/linear2@units=0,3"},
                            {"--modules linear2 --units 12,13", "/mlp/patch/linear2@units=12,13"}};
  for (int i = 0; i < 4; i++) {
    char opts[512];
    snprintf(opts, sizeof opts, MLP " %s", cases[i][0]);
    snprintf(out, sizeof out, "%s/mlp%d.h5", dir, i);
    golden(1 + i % 3, opts, cases[i][1], out);
  }
  cli_remove_dir(dir);
}

Test(patch, gpt2_attention_positions_units_on_1_to_3_ranks, .timeout = 300) {
  char dir[64], out[3][128];
  cli_make_dir(dir, "patch");
  const char *cases[][2] = {
      {"--modules transformer.h.1.attn", "/gpt2/patch/transformer.h.1.attn"},
      {"--modules transformer.h.0 --positions 3:7", "/gpt2/patch/transformer.h.0@positions=3:7"},
      {"--modules transformer.h.0.mlp --units 0:5", "/gpt2/patch/transformer.h.0.mlp@units=0:5"}};
  for (int i = 0; i < 3; i++) {
    char opts[512];
    snprintf(opts, sizeof opts, GPT2 " %s", cases[i][0]);
    for (int np = 1; np <= 3; np++) {
      snprintf(out[np - 1], sizeof out[0], "%s/g%d_np%d.h5", dir, i, np);
      golden(np, opts, cases[i][1], out[np - 1]);
    }
    for (int np = 2; np <= 3; np++)
      cr_expect_eq(cli_h5diff("", out[0], "/patched/output", out[np - 1], "/patched/output"), 0,
                   "%s: %d ranks differ from 1 rank", cases[i][1], np);
  }
  cli_remove_dir(dir);
}

Test(patch, tv15_identity_root_and_named_path, .timeout = 120) {
  char dir[64], out[128];
  cli_make_dir(dir, "patch");
  const char *cases[][2] = {{"--modules ''", "/identity/patch"},
                            {"--modules linear", "/identity/patch"},
                            {"--modules '' --units 0", "/identity/patch_col0"},
                            {"--modules linear --units 0", "/identity/patch_col0"}};
  for (int i = 0; i < 4; i++) {
    char opts[512];
    snprintf(opts, sizeof opts, IDENTITY " %s", cases[i][0]);
    snprintf(out, sizeof out, "%s/id%d.h5", dir, i);
    golden(i % 2 ? 2 : 1, opts, cases[i][1], out);
  }
  cli_remove_dir(dir);
}

Test(patch, sweep_matches_pytorch_and_is_rank_invariant, .timeout = 300) {
  char dir[64], out[3][128], args[2048];
  cli_make_dir(dir, "patch");
  for (int np = 1; np <= 3; np += 2) {
    snprintf(out[np - 1], sizeof out[0], "%s/sweep%d.h5", dir, np);
    snprintf(args, sizeof args,
             "patch " GPT2
             " --modules transformer.h.0,transformer.h.1,transformer.h.0.attn,"
             "transformer.h.1.mlp --sweep --per-position --metric logit-diff --tokens 1,2 "
             "--batch-size 2 --out %s",
             out[np - 1]);
    run_result r = run_cli_np(np, args);
    cr_assert_eq(r.status, 0, "np=%d exit %d: %s", np, r.status, r.err);
    cr_expect(strstr(r.out, "\"normalised\": 1.0") != NULL, "blocks restore the clean run: %s",
              r.out);
    cr_expect(strstr(r.err, "transformer.h.1.mlp") != NULL, "no effect table: %s", r.err);
    const char *pairs[][2] = {{"/clean_metric", "/gpt2/sweep/clean_metric"},
                              {"/corrupted_metric", "/gpt2/sweep/corrupted_metric"},
                              {"/effects_per_sample", "/gpt2/sweep/metric"},
                              {"/effects_positions_per_sample", "/gpt2/sweep/metric_positions"}};
    for (int k = 0; k < 4; k++)
      cr_expect_eq(cli_h5diff("-d 1e-5", out[np - 1], pairs[k][0], EXPECTED, pairs[k][1]), 0,
                   "np=%d: %s differs from PyTorch's %s", np, pairs[k][0], pairs[k][1]);
    run_free(&r);
  }
  const char *all[] = {
      "/effects", "/normalised_effects", "/effects_positions", "/effects_per_sample",
      "/output",  "/patched/output"};
  for (int k = 0; k < 6; k++)
    cr_expect_eq(cli_h5diff("", out[0], all[k], out[2], all[k]), 0, "%s: 3 ranks differ from 1",
                 all[k]);
  cli_remove_dir(dir);
}

/* Each error: exit status non-zero, one message naming the problem, nothing on stdout, and
 * no file left in the output folder. */
static void expect_error(int np, const char *opts, const char *fragment) {
  char dir[64], args[2048];
  cli_make_dir(dir, "patch");
  snprintf(args, sizeof args, "patch %s --out %s/x.h5", opts, dir);
  run_result r = run_cli_np(np, args);
  cr_expect_neq(r.status, 0, "'%s' succeeded", opts);
  cr_expect(strstr(r.err, fragment) != NULL, "'%s': expected '%s' in: %s", opts, fragment, r.err);
  cr_expect_eq(count_lines_with(r.err, "error (rank"), 1, "one error line: %s", r.err);
  cr_expect_eq(r.out[0], '\0', "stdout not empty: %s", r.out);
  cr_expect_eq(cli_entries(dir), 0, "'%s' left a file behind", opts);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(patch, errors, .timeout = 300) {
  expect_error(2, MLP " --modules linear22", "closest relative names: 'linear2'");
  expect_error(2, GPT2 " --modules transformer.h.0.atn", "'transformer.h.0.attn'");
  expect_error(2, GPT2 " --modules transformer.h", "never called");
  expect_error(2,
               "--model " LAT "/identity/model.yaml --inputs " EXPECTED
               ":/identity/addition/positive --patched-inputs " EXPECTED
               ":/identity/patch/input --modules linear",
               "must have the shape of the clean inputs (2, 3), got (1, 3)");
  expect_error(2,
               "--model " NN "/gpt2 --inputs " NN "/gpt2/data.h5:/tokens --patched-inputs " NN
               "/mlp/data.h5:/inputs --modules transformer.h.0",
               "(5, 16), got (7, 10)");
  expect_error(2, GPT2 " --modules transformer.h.0 --positions 3:17", "positions 3:17 outside");
  expect_error(2, MLP " --modules linear2 --positions 1:2", "no position axis");
  expect_error(2, MLP " --modules linear2 --units 20", "unit 20 outside the 20 units");
  expect_error(1, MLP " --modules linear2 --units 0 --positions 0:1", "give one of them");
  expect_error(1, MLP " --modules linear2 --sweep", "--tokens");
  expect_error(2, MLP " --modules linear2 --sweep --tokens 1,5", "has 5 entries");
  expect_error(1, MLP " --modules linear2 --sweep --tokens 1,2 --metric kl", "unknown metric");
  expect_error(2, MLP " --modules linear2 --sweep --per-position --tokens 1,2", "no position axis");
  expect_error(1, MLP " --modules linear2,linear2", "listed twice");
  expect_error(1, MLP " --modules linear2 --positions 7:3", "--positions");
  expect_error(1, MLP, "--modules");
}

Test(patch, help) {
  run_result r = run_cli(1, "patch --help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--patched-inputs") != NULL, "%s", r.out);
  run_free(&r);
}
