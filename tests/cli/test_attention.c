/* `latenthook attention` from the command line on the small GPT-2 of tests/golden/nn: the
 * written rollout and attention maps against PyTorch's (tests/golden/rollout, from
 * make_golden_rollout.py) by h5diff, the files of 1 and 3 ranks equal without tolerance, the
 * heatmaps (names, PNG signature, IHDR size LH_PLOT_WIDTH x LH_PLOT_HEIGHT = 900 x 700, no
 * temporary files), labels from a vocabulary, the head mean; errors: one message, empty stdout,
 * non-zero exit, no HDF5 file and no PNG left behind (also when a figure fails after others
 * were drawn). */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define NN LH_SOURCE_DIR "/tests/golden/nn"
#define RO LH_SOURCE_DIR "/tests/golden/rollout"
#define GPT2 "--model " NN "/gpt2 --inputs " NN "/gpt2/data.h5:/tokens"

static void expect_png(const char *dir, const char *name) {
  char path[256];
  unsigned w = 0, h = 0;
  snprintf(path, sizeof path, "%s/%s", dir, name);
  cr_expect(cli_png_size(path, &w, &h), "%s: missing or not a PNG", path);
  cr_expect(w == 900 && h == 700, "%s: %u x %u, expected 900 x 700", path, w, h);
}

/* A vocabulary of 64 tokens, one per line, to label the figures. */
static void write_vocab(const char *path) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  for (int i = 0; i < 64; i++) fprintf(f, "%stok%d\n", i % 2 ? " " : "", i);
  fclose(f);
}

Test(attention, rollout_maps_and_heatmaps_on_1_and_3_ranks, .timeout = 300) {
  char dir[64], out[2][128], png[2][128], vocab[128], args[1024];
  cli_make_dir(dir, "attn");
  snprintf(vocab, sizeof vocab, "%s/vocab.txt", dir);
  write_vocab(vocab);
  const int nps[2] = {1, 3};
  const char *figs[] = {"rollout_sample0.png", "attn_sample0_L1_H0.png", "attn_sample0_L1_H2.png",
                        "rollout_sample3.png", "attn_sample3_L1_H0.png", "attn_sample3_L1_H2.png"};
  for (int k = 0; k < 2; k++) {
    snprintf(out[k], sizeof out[k], "%s/np%d.h5", dir, nps[k]);
    snprintf(png[k], sizeof png[k], "%s/png%d", dir, nps[k]);
    cr_assert_eq(mkdir(png[k], 0755), 0);
    snprintf(args, sizeof args,
             "attention " GPT2
             " --samples 0,3 --layers 1 --heads 0,2 --vocab %s --png-dir %s "
             "--batch-size 2 --out %s",
             vocab, png[k], out[k]);
    run_result r = run_cli_np(nps[k], args);
    cr_assert_eq(r.status, 0, "np=%d exit %d: %s", nps[k], r.status, r.err);
    cr_expect(strstr(r.out, "\"samples\": 5") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "\"transformer.h.1.attn.attn_dropout\"") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "\"/attention/sample_3\"") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "attn_sample3_L1_H2.png\"") != NULL, "%s", r.out);
    cr_expect_eq(cli_h5diff("-d 1e-6", out[k], "/rollout", RO "/expected.h5", "/rollout"), 0,
                 "np=%d: /rollout differs from PyTorch by more than 1e-6", nps[k]);
    for (int f = 0; f < 6; f++) expect_png(png[k], figs[f]);
    cr_expect_eq(cli_entries(png[k]), 6, "np=%d: files besides the 6 figures", nps[k]);
    run_free(&r);
  }
  cr_expect_eq(cli_h5diff("", out[0], "/rollout", out[1], "/rollout"), 0, "rollout: 3 ranks != 1");
  cr_expect_eq(cli_h5diff("", out[0], "/attention", out[1], "/attention"), 0,
               "attention: 3 ranks != 1");
  /* the maps are PyTorch's probabilities of layer 1, heads 0 and 2 (float32 in the fixture) */
  char cmd[512];
  snprintf(cmd, sizeof cmd, "h5dump -y -w 0 -m %%.6f -d /attention/sample_3 %s", out[0]);
  run_result a = run_shell(cmd);
  snprintf(cmd, sizeof cmd,
           "h5dump -y -w 0 -m %%.6f -d /attention -s 3,1,2,0,0 -c 1,1,1,16,16 %s/expected.h5", RO);
  run_result g = run_shell(cmd);
  cr_expect_eq(a.status, 0);
  cr_expect_eq(g.status, 0);
  /* the last 16 x 16 block of sample_3 (head 2) against PyTorch's, printed to 6 decimals */
  const char *pa = strstr(a.out, "DATA {"), *pg = strstr(g.out, "DATA {");
  cr_assert(pa && pg, "h5dump output: %s / %s", a.out, g.out);
  pa += 6;
  pg += 6;
  int skip = 256; /* head 0 first */
  while (skip > 0 && *pa) skip -= *pa++ == ',';
  int same = 0;
  double total = 0; /* 16 rows of probabilities: 16, so the values were really read */
  for (int i = 0; i < 256; i++) {
    double x = strtod(pa, (char **)&pa), y = strtod(pg, (char **)&pg);
    same += x - y < 2e-6 && y - x < 2e-6;
    total += x;
    while (*pa == ',' || *pa == ' ' || *pa == '\n') pa++;
    while (*pg == ',' || *pg == ' ' || *pg == '\n') pg++;
  }
  cr_expect_eq(same, 256, "sample 3, layer 1, head 2: %d of 256 values match PyTorch", same);
  cr_expect(total > 15.999 && total < 16.001, "sample 3, layer 1, head 2 sums to %g", total);
  run_free(&a);
  run_free(&g);
  cli_remove_dir(dir);
}

Test(attention, head_mean_all_layers, .timeout = 120) {
  char dir[64], args[1024];
  cli_make_dir(dir, "attn");
  snprintf(args, sizeof args,
           "attention " GPT2
           " --samples 1 --heads mean --rollout-heads 1,3 --alpha 0.3 "
           "--png-dir %s --out %s/m.h5",
           dir, dir);
  run_result r = run_cli_np(2, args);
  cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
  cr_expect(strstr(r.out, "\"shown_heads\": \"mean\"") != NULL, "%s", r.out);
  char out[128];
  snprintf(out, sizeof out, "%s/m.h5", dir);
  cr_expect_eq(cli_h5diff("-d 1e-6", out, "/rollout", RO "/expected.h5", "/rollout_h13_a03"), 0,
               "heads 1,3 alpha 0.3 differ from PyTorch");
  expect_png(dir, "rollout_sample1.png");
  expect_png(dir, "attn_sample1_L0_Hmean.png");
  expect_png(dir, "attn_sample1_L1_Hmean.png");
  cr_expect_eq(cli_entries(dir), 4, "m.h5 and 3 figures");
  run_free(&r);
  cli_remove_dir(dir);
}

/* Each error: non-zero exit, one message naming the problem, nothing on stdout, and nothing in
 * the output folder (which is also the PNG folder). */
static void expect_error(int np, const char *opts, const char *fragment) {
  char dir[64], args[2048];
  cli_make_dir(dir, "attn");
  snprintf(args, sizeof args, "attention %s --out %s/x.h5", opts, dir);
  char *at = strstr(args, "@DIR"); /* --png-dir @DIR: the output folder */
  if (at) {
    char rest[2048];
    snprintf(rest, sizeof rest, "%s", at + 4);
    snprintf(at, sizeof args - (size_t)(at - args), "%s%s", dir, rest);
  }
  run_result r = run_cli_np(np, args);
  cr_expect_neq(r.status, 0, "'%s' succeeded", opts);
  cr_expect(strstr(r.err, fragment) != NULL, "'%s': expected '%s' in: %s", opts, fragment, r.err);
  cr_expect_eq(count_lines_with(r.err, "error (rank"), 1, "one error line: %s", r.err);
  cr_expect_eq(r.out[0], '\0', "stdout not empty: %s", r.out);
  cr_expect_eq(cli_entries(dir), 0, "'%s' left a file behind", opts);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(attention, errors, .timeout = 300) {
  expect_error(2, GPT2 " --samples 0,5 --png-dir @DIR", "sample 5 out of range");
  expect_error(2, GPT2 " --samples 0 --layers 2 --png-dir @DIR", "layer 2 out of range");
  expect_error(2, GPT2 " --samples 0 --heads 4 --png-dir @DIR", "head 4 out of range");
  expect_error(2, GPT2 " --rollout-heads 1,1", "head 1 given twice");
  expect_error(2, GPT2 " --heads 0,x", "--heads");
  expect_error(1, GPT2 " --alpha 2", "--alpha must be in [0, 1]");
  expect_error(2, GPT2 " --key-pattern nothing", "matches no module");
  expect_error(2, GPT2 " --key-pattern 'transformer\\.h\\.0\\.mlp$'", "(H, T, T)");
  expect_error(2, GPT2 " --samples 0 --png-dir /nonexistent_lh_dir", "not a writable folder");
  expect_error(2, GPT2 " --png-dir @DIR", "--samples");
  expect_error(2, GPT2 " --samples 0 --vocab /nonexistent_lh_vocab.json", "--vocab");
  expect_error(2, "--model " NN "/gpt2 --inputs " NN "/mlp/data.h5:/inputs",
               "expected integer token ids");
}

/* A figure that cannot be written after others were: the ones drawn are removed, no HDF5. */
Test(attention, failing_figure_leaves_nothing, .timeout = 120) {
  char dir[64], blocker[128], args[1024];
  cli_make_dir(dir, "attn");
  snprintf(blocker, sizeof blocker, "%s/attn_sample0_L0_H1.png", dir);
  cr_assert_eq(mkdir(blocker, 0755), 0); /* a folder where the third figure goes */
  snprintf(args, sizeof args, "attention " GPT2 " --samples 0 --png-dir %s --out %s/x.h5", dir,
           dir);
  run_result r = run_cli_np(2, args);
  cr_expect_neq(r.status, 0, "succeeded: %s", r.out);
  cr_expect_eq(count_lines_with(r.err, "error (rank"), 1, "one error line: %s", r.err);
  cr_expect_eq(r.out[0], '\0', "stdout not empty: %s", r.out);
  cr_expect_eq(cli_entries(dir), 1, "files left besides the blocking folder");
  run_free(&r);
  cli_remove_dir(dir);
}

Test(attention, help) {
  run_result r = run_cli(1, "attention --help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--png-dir") != NULL, "%s", r.out);
  run_free(&r);
}
