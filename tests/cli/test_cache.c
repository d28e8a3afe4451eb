/* `latenthook cache` from the command line: the small GPT-2 and tdhook's test MLP of
 * tests/golden/nn (PyTorch fixtures written by make_golden_nn.py) cached on 1 to 3 ranks; the
 * written datasets are compared with PyTorch's by h5diff (absolute tolerance 1e-5 on values of
 * magnitude <= 1.7, the fixtures' largest), and the files of different rank counts with each
 * other without tolerance. Errors: one message, empty stdout, non-zero exit, no output file. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "cli/spawn.h"

#define NN LH_SOURCE_DIR "/tests/golden/nn"
#define GPT2 "--model " NN "/gpt2 --inputs " NN "/gpt2/data.h5:/tokens"
#define MLP "--model " NN "/mlp/model.yaml --inputs " NN "/mlp/data.h5:/inputs"

Test(cache, gpt2_attention_blocks_and_logits_match_pytorch_on_1_to_3_ranks, .timeout = 300) {
  char dir[64], out[3][128], args[1024];
  cli_make_dir(dir, "cache");
  const char *keys[] = {"transformer.h.0.attn.attn_dropout", "transformer.h.1.attn.attn_dropout",
                        "transformer.h.0", "transformer.h.1", "transformer.ln_f"};
  for (int np = 1; np <= 3; np++) {
    snprintf(out[np - 1], sizeof out[0], "%s/np%d.h5", dir, np);
    snprintf(args, sizeof args,
             "cache " GPT2
             " --key-pattern 'transformer\\.h\\.\\d+(\\.attn\\.attn_dropout)?$|"
             "transformer\\.ln_f' --batch-size 2 --out %s",
             out[np - 1]);
    run_result r = run_cli_np(np, args);
    cr_assert_eq(r.status, 0, "np=%d exit %d: %s", np, r.status, r.err);
    cr_expect(strstr(r.out, "\"samples\": 5") != NULL, "np=%d: %s", np, r.out);
    cr_expect(strstr(r.out, "\"transformer.h.1.attn.attn_dropout\"") != NULL, "%s", r.out);
    for (int k = 0; k < 5; k++) {
      char a[128], b[128];
      snprintf(a, sizeof a, "/cache/%s", keys[k]);
      snprintf(b, sizeof b, "/fwd/%s", keys[k]);
      cr_expect_eq(cli_h5diff("-d 1e-5", out[np - 1], a, NN "/gpt2/expected.h5", b), 0,
                   "np=%d: %s differs from PyTorch by more than 1e-5", np, keys[k]);
    }
    cr_expect_eq(cli_h5diff("-d 1e-5", out[np - 1], "/output", NN "/gpt2/expected.h5", "/output"), 0,
                 "np=%d: logits differ from PyTorch", np);
    run_free(&r);
  }
  for (int np = 2; np <= 3; np++) {
    cr_expect_eq(cli_h5diff("", out[0], "/cache", out[np - 1], "/cache"), 0,
                 "cache on %d ranks differs from 1 rank", np);
    cr_expect_eq(cli_h5diff("", out[0], "/output", out[np - 1], "/output"), 0,
                 "output on %d ranks differs from 1 rank", np);
  }
  cli_remove_dir(dir);
}

Test(cache, mlp_both_directions_nested_keys, .timeout = 120) {
  char dir[64], args[1024], out[128];
  cli_make_dir(dir, "cache");
  snprintf(out, sizeof out, "%s/mlp.h5", dir);
  snprintf(args, sizeof args,
           "cache " MLP
           " --key-pattern 'linear2$|activation' --direction fwd,fwd_pre "
           "--batch-size 3 --out %s",
           out);
  run_result r = run_cli_np(2, args);
  cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
  const char *paths[][2] = {{"/cache/fwd/linear2", "/fwd/linear2"},
                            {"/cache/fwd_pre/linear2", "/fwd_pre/linear2"},
                            {"/cache/fwd/activation", "/fwd/activation"},
                            {"/cache/fwd_pre/activation", "/fwd_pre/activation"},
                            {"/output", "/output"}};
  for (int k = 0; k < 5; k++)
    cr_expect_eq(cli_h5diff("-d 1e-5", out, paths[k][0], NN "/mlp/expected.h5", paths[k][1]), 0,
                 "%s differs from PyTorch's %s", paths[k][0], paths[k][1]);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(cache, absolute_names, .timeout = 120) {
  char dir[64], args[1024], out[128];
  cli_make_dir(dir, "cache");
  snprintf(out, sizeof out, "%s/abs.h5", dir);
  snprintf(args, sizeof args,
           "cache " MLP
           " --key-pattern 'td_module\\.module\\.linear2' --absolute --no-output "
           "--out %s",
           out);
  run_result r = run_cli_np(1, args);
  cr_assert_eq(r.status, 0, "exit %d: %s", r.status, r.err);
  cr_expect_eq(cli_h5diff("-d 1e-5", out, "/cache/td_module.module.linear2", NN "/mlp/expected.h5",
                      "/fwd/linear2"),
               0);
  cr_expect(strstr(r.out, "output_shape") == NULL, "--no-output still reports an output: %s",
            r.out);
  run_free(&r);
  cli_remove_dir(dir);
}

/* Each error: exit status non-zero, one message naming the problem, nothing on stdout, and
 * no file left in the output folder. */
static void expect_error(int np, const char *opts, const char *fragment) {
  char dir[64], args[2048];
  cli_make_dir(dir, "cache");
  snprintf(args, sizeof args, "cache %s --out %s/x.h5", opts, dir);
  run_result r = run_cli_np(np, args);
  cr_expect_neq(r.status, 0, "'%s' succeeded", opts);
  cr_expect(strstr(r.err, fragment) != NULL, "'%s': expected '%s' in: %s", opts, fragment, r.err);
  cr_expect_eq(count_lines_with(r.err, "error (rank"), 1, "one error line: %s", r.err);
  cr_expect_eq(r.out[0], '\0', "stdout not empty: %s", r.out);
  cr_expect_eq(cli_entries(dir), 0, "'%s' left a file behind", opts);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(cache, errors, .timeout = 300) {
  expect_error(2, GPT2 " --key-pattern 'transformer\\.h\\.('", "missing closing parenthesis");
  expect_error(2, GPT2 " --key-pattern 'nothing'", "matches no module");
  expect_error(2, GPT2 " --key-pattern 'transformer\\.h$'", "never called");
  expect_error(2, MLP " --key-pattern linear --reduce mean", "no position axis");
  expect_error(2, GPT2 " --key-pattern lm_head --reduce position:16", "16 positions");
  expect_error(2, "--model " NN "/gpt2 --inputs " NN "/mlp/data.h5:/inputs --key-pattern lm_head",
               "expected integer token ids");
  expect_error(2,
               "--model " NN "/mlp/model.yaml --inputs " NN
               "/gpt2/data.h5:/tokens "
               "--key-pattern linear",
               "the model expects 10");
  expect_error(2, "--model " NN "/nowhere --inputs " NN "/mlp/data.h5:/inputs --key-pattern x",
               "--model");
  expect_error(2, MLP " --key-pattern linear --direction bwd", "Invalid direction");
  expect_error(1, MLP " --key-pattern linear --reduce median", "unknown reduction");
  expect_error(2, MLP " --key-pattern linear --batch-size 0", "--batch-size");
}

Test(cache, help) {
  run_result r = run_cli(1, "cache --help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--key-pattern") != NULL, "%s", r.out);
  run_free(&r);
}
