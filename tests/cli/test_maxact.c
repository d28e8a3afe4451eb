/* `latenthook max-activations` from the command line: the GPT-2 and MLP fixtures of
 * tests/golden/nn on 1 to 3 ranks against the PyTorch reference of tests/golden/maxact
 * (make_golden_maxact.py) by h5diff (samples and positions exactly, values within 1e-5), the
 * files and tables of different rank counts identical, the table's first lines, and errors:
 * one message, empty stdout, non-zero exit, no file left (neither OUT.h5 nor the table). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define NN LH_SOURCE_DIR "/tests/golden/nn"
#define GOLD LH_SOURCE_DIR "/tests/golden/maxact"
#define GPT2 "--model " NN "/gpt2 --inputs " GOLD "/inputs.h5:/gpt2/tokens"
#define MLP "--model " NN "/mlp/model.yaml --inputs " NN "/mlp/data.h5:/inputs"
#define GPT2_PATTERN "'transformer\\.(wpe|h\\.0$|h\\.0\\.attn\\.attn_dropout|h\\.1\\.mlp$)'"

/* The reference of case/module against OUT:/module. */
static void expect_golden(const char *out, const char *kase, const char *module) {
  char a[256], b[256];
  const char *what[] = {"samples", "positions", "values"};
  for (int i = 0; i < 3; i++) {
    snprintf(a, sizeof a, "/%s/%s", module, what[i]);
    snprintf(b, sizeof b, "/%s/%s/%s", kase, module, what[i]);
    cr_expect_eq(cli_h5diff(i < 2 ? "" : "-d 1e-5", out, a, GOLD "/expected.h5", b), 0,
                 "%s: %s differs from the PyTorch reference %s", out, a, b);
  }
}

static int lines_of(const char *path, char first[3][512]) {
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f)) {
    if (n < 3) memcpy(first[n], line, sizeof line);
    n++;
  }
  fclose(f);
  return n;
}

Test(maxact, gpt2_matches_pytorch_and_is_the_same_on_1_to_3_ranks, .timeout = 300) {
  char dir[64], out[3][128], tab[3][128], args[2048];
  cli_make_dir(dir, "maxact");
  const char *mods[] = {"transformer.wpe", "transformer.h.0", "transformer.h.0.attn.attn_dropout",
                        "transformer.h.1.mlp"};
  for (int np = 1; np <= 3; np++) {
    snprintf(out[np - 1], sizeof out[0], "%s/np%d.h5", dir, np);
    snprintf(tab[np - 1], sizeof tab[0], "%s/np%d.txt", dir, np);
    snprintf(args, sizeof args,
             "max-activations " GPT2 " --key-pattern " GPT2_PATTERN
             " --top-k 4 --batch-size 3 --context 2 --out %s --table %s",
             out[np - 1], tab[np - 1]);
    run_result r = run_cli_np(np, args);
    cr_assert_eq(r.status, 0, "np=%d exit %d: %s", np, r.status, r.err);
    cr_expect(strstr(r.out, "\"samples\": 11") && strstr(r.out, "\"top_k\": 4") &&
                  strstr(r.out, "\"transformer.h.0.attn.attn_dropout\"") &&
                  strstr(r.out, "\"seconds\""),
              "np=%d: %s", np, r.out);
    for (int m = 0; m < 4; m++) expect_golden(out[np - 1], "gpt2_k4", mods[m]);
    run_free(&r);
  }
  char first[3][512];
  /* 2 header lines + one line per unit and rank: 48, 48, 16 (keys), 48 units, k = 4 */
  cr_expect_eq(lines_of(tab[0], first), 2 + 4 * (48 + 48 + 16 + 48));
  cr_expect(first[0][0] == '#', "%s", first[0]);
  cr_expect(strstr(first[1], "module") && strstr(first[1], "sample") &&
                strstr(first[1], "position") && strstr(first[1], "context"),
            "%s", first[1]);
  /* the position embedding ties over every sample: unit 0's first is sample 0 */
  char key[128];
  long long u, j, s, p;
  double v;
  cr_expect(sscanf(first[2], "%127s %lld %lld %lf %lld %lld", key, &u, &j, &v, &s, &p) == 6 &&
                strcmp(key, "transformer.wpe") == 0 && u == 0 && j == 0 && s == 0 && p >= 0 &&
                strchr(first[2], '[') && strchr(first[2], ']'),
            "%s", first[2]);
  for (int np = 2; np <= 3; np++) {
    cr_expect_eq(cli_h5diff("", out[0], "/", out[np - 1], "/"), 0, "%d ranks differ from 1", np);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", tab[0], tab[np - 1]);
    cr_expect_eq(system(cmd), 0, "the table of %d ranks differs from 1 rank's", np);
  }
  cli_remove_dir(dir);
}

Test(maxact, vocabulary_decodes_the_context, .timeout = 120) {
  char dir[64], out[128], tab[128], voc[128], args[2048];
  cli_make_dir(dir, "maxact");
  snprintf(out, sizeof out, "%s/v.h5", dir);
  snprintf(tab, sizeof tab, "%s/v.txt", dir);
  snprintf(voc, sizeof voc, "%s/vocab.txt", dir);
  FILE *f = fopen(voc, "w");
  cr_assert_not_null(f);
  for (int i = 0; i < 64; i++) fprintf(f, "tok%d\n", i);
  fclose(f);
  snprintf(args, sizeof args,
           "max-activations " GPT2
           " --key-pattern 'transformer\\.h\\.1$' --top-k 2 --abs "
           "--out %s --table %s --vocab %s",
           out, tab, voc);
  run_result r = run_cli_np(2, args);
  cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
  cr_expect(strstr(r.out, "\"ranking\": \"absolute\""), "%s", r.out);
  char first[3][512];
  cr_expect_eq(lines_of(tab, first), 2 + 48 * 2);
  cr_expect(strstr(first[0], "absolute"), "%s", first[0]);
  cr_expect(
      strstr(first[2], "transformer.h.1") && strstr(first[2], " [tok") && strstr(first[2], " tok"),
      "%s", first[2]);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(maxact, mlp_absolute_matches_pytorch, .timeout = 120) {
  char dir[64], out[128], args[1024];
  cli_make_dir(dir, "maxact");
  snprintf(out, sizeof out, "%s/mlp.h5", dir);
  snprintf(args, sizeof args,
           "max-activations " MLP
           " --key-pattern 'linear|activation' --top-k 3 --abs "
           "--batch-size 2 --out %s",
           out);
  run_result r = run_cli_np(2, args);
  cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
  const char *mods[] = {"linear1", "linear2", "linear3", "activation"};
  for (int m = 0; m < 4; m++) expect_golden(out, "mlp_k3_abs", mods[m]);
  cr_expect_eq(cli_entries(dir), 1, "only OUT.h5 expected without --table");
  run_free(&r);
  /* k > N: padded with NaN / -1 (ReLU ties at 0 ordered by sample) */
  snprintf(args, sizeof args,
           "max-activations " MLP " --key-pattern activation --top-k 10 --out %s", out);
  r = run_cli_np(1, args);
  cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
  expect_golden(out, "mlp_k10", "activation");
  run_free(&r);
  cli_remove_dir(dir);
}

/* Each error: exit status non-zero, one message naming the problem, nothing on stdout, and
 * no file left in the output folder (OUT.h5 and the table both go there). */
static void expect_error(int np, const char *opts, const char *fragment) {
  char dir[64], args[2048];
  cli_make_dir(dir, "maxact");
  snprintf(args, sizeof args, "max-activations %s --out %s/x.h5", opts, dir);
  if (!strstr(opts, "--table") && !strstr(opts, "--vocab")) {
    size_t n = strlen(args);
    snprintf(args + n, sizeof args - n, " --table %s/x.txt", dir);
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

Test(maxact, errors, .timeout = 300) {
  expect_error(1, MLP " --key-pattern linear --top-k 0", "--top-k must be >= 1");
  expect_error(1, MLP " --key-pattern linear", "--top-k K is required");
  expect_error(2, MLP " --key-pattern nothing --top-k 2", "matches no module");
  expect_error(2, GPT2 " --key-pattern 'transformer\\.h$' --top-k 2", "never called");
  expect_error(2, MLP " --key-pattern 'linear(' --top-k 2", "missing closing parenthesis");
  expect_error(1, MLP " --key-pattern linear --top-k 2 --batch-size 0", "--batch-size");
  expect_error(2, GPT2 " --key-pattern 'transformer\\.h\\.0$' --top-k 2 --context -1", "--context");
  expect_error(2,
               GPT2
               " --key-pattern 'transformer\\.h\\.0$' --top-k 2 --table /tmp/x.txt "
               "--vocab /nonexistent/vocab.json",
               "--vocab");
  expect_error(1, GPT2 " --key-pattern 'transformer\\.h\\.0$' --top-k 2 --vocab " GOLD "/README.md",
               "--vocab is used only with --table");
  expect_error(2,
               GPT2
               " --key-pattern 'transformer\\.h\\.0$' --top-k 2 --table "
               "/nonexistent/dir/t.txt",
               "not writable");
  expect_error(2,
               "--model " NN "/mlp/model.yaml --inputs " GOLD
               "/inputs.h5:/gpt2/tokens "
               "--key-pattern linear --top-k 2",
               "the model expects 10");
}

Test(maxact, bad_vocab_file, .timeout = 120) {
  char dir[64], args[2048], voc[128];
  cli_make_dir(dir, "maxact");
  snprintf(voc, sizeof voc, "/tmp/lh_cli_maxact_badvocab_%d.json", (int)getpid());
  FILE *f = fopen(voc, "w");
  cr_assert_not_null(f);
  fputs("{\"a\": 0, \"b\": \"one\"}\n", f);
  fclose(f);
  snprintf(args, sizeof args,
           "max-activations " GPT2
           " --key-pattern 'transformer\\.h\\.0$' --top-k 2 "
           "--out %s/x.h5 --table %s/x.txt --vocab %s",
           dir, dir, voc);
  run_result r = run_cli_np(2, args);
  cr_expect_neq(r.status, 0);
  cr_expect(strstr(r.err, "--vocab") != NULL, "%s", r.err);
  cr_expect_eq(count_lines_with(r.err, "error (rank"), 1, "one error line: %s", r.err);
  cr_expect_eq(cli_entries(dir), 0, "a file was left behind");
  run_free(&r);
  unlink(voc);
  cli_remove_dir(dir);
}

Test(maxact, help) {
  run_result r = run_cli(1, "max-activations --help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--top-k") && strstr(r.out, "--table"), "%s", r.out);
  run_free(&r);
}
