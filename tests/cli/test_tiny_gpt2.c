/* The shipped tiny GPT-2 (jobs/models/tiny-gpt2, trained on copying) on the shipped induction
 * data (jobs/data/induction.h5), against PyTorch (tests/golden/make_golden_tiny_gpt2.py, HF's
 * GPT2LMHeadModel transcribed): `latenthook cache` (last-position logits and last-row attention
 * probabilities of both layers) and the patching sweep of `latenthook patch --sweep
 * --per-position` (per-sample metrics, their means and normalised effects), on 1 and 2 ranks;
 * the files of 1 and 2 ranks are also compared with each other without tolerance. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define MODEL LH_SOURCE_DIR "/jobs/models/tiny-gpt2"
#define DATA LH_SOURCE_DIR "/jobs/data/induction.h5"
#define EXPECTED LH_SOURCE_DIR "/tests/golden/tiny_gpt2/expected.h5"
#define MODULES \
  "transformer.h.0,transformer.h.0.attn,transformer.h.1,transformer.h.1.attn,transformer.h.1.mlp"

Test(tiny_gpt2, cache_matches_pytorch_on_1_and_2_ranks, .timeout = 120) {
  char dir[64], out[2][128], args[1024];
  cli_make_dir(dir, "tiny");
  for (int np = 1; np <= 2; np++) {
    snprintf(out[np - 1], sizeof out[0], "%s/cache%d.h5", dir, np);
    snprintf(args, sizeof args,
             "cache --model " MODEL " --inputs " DATA ":/clean --key-pattern "
             "'transformer\\.h\\.\\d\\.attn\\.attn_dropout$' --reduce last --output-reduce last "
             "--out %s",
             out[np - 1]);
    run_result r = run_cli(np, args);
    cr_assert_eq(r.status, 0, "np=%d exit %d: %s", np, r.status, r.err);
    /* logits up to ~20 in magnitude (deviation from PyTorch measured: 5.7e-6), attention
     * probabilities in [0, 1] (3.6e-7): tolerances about ten times those */
    cr_expect_eq(cli_h5diff("-d 5e-5", out[np - 1], "/output", EXPECTED, "/cache/output"), 0,
                 "np=%d: last-position logits differ from PyTorch's:\n%s", np, cli_h5diff_report);
    for (int L = 0; L < 2; L++) {
      char p[128];
      snprintf(p, sizeof p, "/cache/transformer.h.%d.attn.attn_dropout", L);
      cr_expect_eq(cli_h5diff("-d 4e-6", out[np - 1], p, EXPECTED, p), 0,
                   "np=%d: %s differs from PyTorch's:\n%s", np, p, cli_h5diff_report);
      cr_expect_eq(cli_h5diff("", out[0], p, out[np - 1], p), 0, "np=%d: %s differs from 1 rank:\n%s", np,
                   p, cli_h5diff_report);
    }
    cr_expect_eq(cli_h5diff("", out[0], "/output", out[np - 1], "/output"), 0,
                 "np=%d: /output differs from 1 rank:\n%s", np, cli_h5diff_report);
    run_free(&r);
  }
  cli_remove_dir(dir);
}

Test(tiny_gpt2, patching_sweep_matches_pytorch_on_1_and_2_ranks, .timeout = 300) {
  char dir[64], out[2][128], args[1024];
  cli_make_dir(dir, "tiny");
  for (int np = 1; np <= 2; np++) {
    snprintf(out[np - 1], sizeof out[0], "%s/sweep%d.h5", dir, np);
    snprintf(args, sizeof args,
             "patch --model " MODEL " --inputs " DATA ":/clean --patched-inputs " DATA
             ":/corrupted --modules " MODULES
             " --sweep --per-position --metric logit-diff --tokens 0,1 --out %s",
             out[np - 1]);
    run_result r = run_cli(np, args);
    cr_assert_eq(r.status, 0, "np=%d exit %d: %s", np, r.status, r.err);
    cr_expect(strstr(r.err, "transformer.h.1.mlp") != NULL, "no effect table: %s", r.err);
    /* metrics are float32 logit differences of magnitude ~10-20 (deviation from PyTorch
     * measured: 6.7e-6); their means 5.8e-7; normalised effects are those divided by the
     * clean-corrupted gap of 30.8 (1.6e-8): tolerances about ten times those */
    const char *abs_pairs[][3] = {
        {"/clean_metric", "/sweep/clean_metric", "-d 5e-5"},
        {"/corrupted_metric", "/sweep/corrupted_metric", "-d 5e-5"},
        {"/effects_per_sample", "/sweep/effects_per_sample", "-d 5e-5"},
        {"/effects_positions_per_sample", "/sweep/effects_positions_per_sample", "-d 5e-5"},
        {"/effects", "/sweep/effects", "-d 5e-6"},
        {"/effects_positions", "/sweep/effects_positions", "-d 5e-6"},
        {"/normalised_effects", "/sweep/normalised_effects", "-d 2e-7"},
        {"/normalised_effects_positions", "/sweep/normalised_effects_positions", "-d 2e-7"}};
    for (int k = 0; k < 8; k++)
      cr_expect_eq(cli_h5diff(abs_pairs[k][2], out[np - 1], abs_pairs[k][0], EXPECTED, abs_pairs[k][1]),
                   0, "np=%d: %s differs from PyTorch's %s:\n%s", np, abs_pairs[k][0], abs_pairs[k][1],
                   cli_h5diff_report);
    run_free(&r);
  }
  const char *all[] = {"/output",
                       "/patched/output",
                       "/clean_metric",
                       "/corrupted_metric",
                       "/effects",
                       "/normalised_effects",
                       "/effects_positions",
                       "/normalised_effects_positions",
                       "/effects_positions_per_sample"};
  for (int k = 0; k < 9; k++)
    cr_expect_eq(cli_h5diff("", out[0], all[k], out[1], all[k]), 0, "%s: 2 ranks differ from 1:\n%s",
                 all[k], cli_h5diff_report);
  cli_remove_dir(dir);
}
