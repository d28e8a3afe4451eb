/* `latenthook steer` and `latenthook activation-addition` from the command line, against the
 * PyTorch fixtures of tests/golden/latent (make_golden_latent.py): the steered outputs and the
 * steering vectors are compared with PyTorch's by h5diff (absolute tolerance 1e-5 on values of
 * magnitude <= 0.6, the fixtures' largest), files of different rank counts with each other
 * without tolerance; the round trip activation-addition -> steer --add OUT.h5:/steer/<module>;
 * SPEC TV-14 / TV-15. Errors: one message, empty stdout, non-zero exit, no output file. */
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
#define INPUTS LAT "/inputs.h5"
#define MLP "--model " NN "/mlp/model.yaml --inputs " NN "/mlp/data.h5:/inputs"
#define GPT2 "--model " NN "/gpt2 --inputs " NN "/gpt2/data.h5:/tokens"
#define MLP_PN                                                                           \
  "--model " NN "/mlp/model.yaml --positive " INPUTS ":/mlp/positive --negative " INPUTS \
  ":/mlp/negative"
#define GPT2_PN                                                                        \
  "--model " NN "/gpt2 --positive " INPUTS ":/gpt2/positive_tokens --negative " INPUTS \
  ":/gpt2/negative_tokens"

/* Runs `args --out DIR/name` on np ranks, expecting success. */
static void ok(int np, const char *args, const char *out) {
  char cmd[2048];
  snprintf(cmd, sizeof cmd, "%s --out %s", args, out);
  run_result r = run_cli_np(np, cmd);
  cr_assert_eq(r.status, 0, "np=%d '%s': exit %d: %s", np, args, r.status, r.err);
  cr_expect(strstr(r.out, "\"out\"") != NULL, "no JSON summary: %s", r.out);
  run_free(&r);
}

Test(steer, mlp_add_project_scale_match_pytorch, .timeout = 300) {
  char dir[64], out[128];
  cli_make_dir(dir, "steer");
  const char *ops[][2] = {{"--add " INPUTS ":/mlp/v --alpha 2", "/mlp/steer/add/output"},
                          {"--project " INPUTS ":/mlp/v", "/mlp/steer/project/output"},
                          {"--scale 0.5", "/mlp/steer/scale/output"}};
  for (int i = 0; i < 3; i++) {
    char args[1024];
    snprintf(out, sizeof out, "%s/mlp%d.h5", dir, i);
    snprintf(args, sizeof args, "steer " MLP " --modules linear2 %s --batch-size 3", ops[i][0]);
    ok(2, args, out);
    cr_expect_eq(cli_h5diff("-d 1e-5", out, "/output", EXPECTED, ops[i][1]), 0,
                 "%s differs from PyTorch", ops[i][1]);
  }
  cli_remove_dir(dir);
}

Test(steer, gpt2_on_1_to_3_ranks, .timeout = 300) {
  char dir[64], out[3][128], args[1024];
  cli_make_dir(dir, "steer");
  for (int np = 1; np <= 3; np++) {
    snprintf(out[np - 1], sizeof out[0], "%s/np%d.h5", dir, np);
    ok(np,
       "steer " GPT2 " --modules transformer.h.0 --add " INPUTS ":/gpt2/v --alpha 4 --batch-size 2",
       out[np - 1]);
    cr_expect_eq(cli_h5diff("-d 1e-5", out[np - 1], "/output", EXPECTED, "/gpt2/steer/add/output"), 0,
                 "np=%d: steered logits differ from PyTorch", np);
  }
  for (int np = 2; np <= 3; np++)
    cr_expect_eq(cli_h5diff("", out[0], "/output", out[np - 1], "/output"), 0,
                 "steered logits on %d ranks differ from 1 rank", np);
  snprintf(args, sizeof args, "%s/proj.h5", dir);
  ok(3, "steer " GPT2 " --modules transformer.h.1.mlp --project " INPUTS ":/gpt2/v --batch-size 2",
     args);
  cr_expect_eq(cli_h5diff("-d 1e-5", args, "/output", EXPECTED, "/gpt2/steer/project/output"), 0,
               "projected logits differ from PyTorch");
  cli_remove_dir(dir);
}

Test(addition, match_pytorch_on_1_to_3_ranks, .timeout = 300) {
  char dir[64], out[3][128], o2[128];
  cli_make_dir(dir, "steer");
  for (int np = 1; np <= 3; np++) {
    snprintf(out[np - 1], sizeof out[0], "%s/np%d.h5", dir, np);
    ok(np, "activation-addition " MLP_PN " --modules linear1,linear2 --batch-size 3", out[np - 1]);
    cr_expect_eq(
        cli_h5diff("-d 1e-5", out[np - 1], "/steer/linear1", EXPECTED, "/mlp/addition/linear1"), 0,
        "np=%d: linear1", np);
    cr_expect_eq(
        cli_h5diff("-d 1e-5", out[np - 1], "/steer/linear2", EXPECTED, "/mlp/addition/linear2"), 0,
        "np=%d: linear2", np);
  }
  for (int np = 2; np <= 3; np++)
    cr_expect_eq(cli_h5diff("", out[0], "/steer", out[np - 1], "/steer"), 0,
                 "vectors on %d ranks differ from 1 rank", np);
  const char *gpt[][3] = {
      {"none", "transformer.h.1", "/gpt2/addition/transformer.h.1"},
      {"mean", "transformer.h.1", "/gpt2/addition_mean/transformer.h.1"},
      {"last", "transformer.h.0.mlp", "/gpt2/addition_last/transformer.h.0.mlp"}};
  for (int i = 0; i < 3; i++) {
    char args[1024], path[128];
    snprintf(o2, sizeof o2, "%s/gpt2_%s.h5", dir, gpt[i][0]);
    snprintf(args, sizeof args, "activation-addition " GPT2_PN " --modules %s --reduce %s",
             gpt[i][1], gpt[i][0]);
    ok(2, args, o2);
    snprintf(path, sizeof path, "/steer/%s", gpt[i][1]);
    cr_expect_eq(cli_h5diff("-d 1e-5", o2, path, EXPECTED, gpt[i][2]), 0, "%s differs from PyTorch",
                 gpt[i][2]);
  }
  cli_remove_dir(dir);
}

/* activation-addition -> steer --add OUT.h5:/steer/<module>: the vector applies as written,
 * (16, 48) per sample for a GPT-2 block, (20,) for linear2 */
Test(addition, round_trip_into_steer, .timeout = 300) {
  char dir[64], vec[128], out[128], args[1024];
  cli_make_dir(dir, "steer");
  snprintf(vec, sizeof vec, "%s/vec.h5", dir);
  ok(2, "activation-addition " GPT2_PN " --modules transformer.h.0,transformer.h.1", vec);
  snprintf(out, sizeof out, "%s/steered.h5", dir);
  snprintf(args, sizeof args,
           "steer " GPT2 " --modules transformer.h.1 --add %s:/steer/transformer.h.1 --alpha 3",
           vec);
  ok(3, args, out);
  snprintf(args, sizeof args, "%s/plain.h5", dir);
  ok(1, "steer " GPT2 " --modules transformer.h.1 --scale 1", args);
  cr_expect_neq(cli_h5diff("-d 1e-3", out, "/output", args, "/output"), 0,
                "steering by the addition vector changed nothing");
  /* the same forward without steering: bit for bit */
  snprintf(out, sizeof out, "%s/cache.h5", dir);
  ok(2, "cache " GPT2 " --key-pattern lm_head", out);
  cr_expect_eq(cli_h5diff("", args, "/output", out, "/output"), 0, "--scale 1 changed the logits");
  snprintf(vec, sizeof vec, "%s/mlp.h5", dir);
  ok(1, "activation-addition " MLP_PN " --modules linear2", vec);
  snprintf(args, sizeof args, "steer " MLP " --modules linear2 --add %s:/steer/linear2", vec);
  snprintf(out, sizeof out, "%s/mlp_steered.h5", dir);
  ok(2, args, out);
  cli_remove_dir(dir);
}

/* SPEC TV-14 (addition on the identity Linear(3, 3)) and TV-15 (steering its root) */
Test(addition, tv14_tv15_identity, .timeout = 120) {
  char dir[64], out[128];
  cli_make_dir(dir, "steer");
  const char *id = "--model " LAT "/identity/model.yaml";
  const char *grp[] = {"addition", "addition_b1"};
  for (int i = 0; i < 2; i++) {
    char args[1024], want[64];
    snprintf(out, sizeof out, "%s/tv14_%d.h5", dir, i);
    snprintf(args, sizeof args,
             "activation-addition %s --positive " EXPECTED
             ":/identity/%s/positive --negative " EXPECTED
             ":/identity/%s/negative --modules linear",
             id, grp[i], grp[i]);
    ok(3, args, out);
    snprintf(want, sizeof want, "/identity/%s/linear", grp[i]);
    cr_expect_eq(cli_h5diff("", out, "/steer/linear", EXPECTED, want), 0, "TV-14 %s", grp[i]);
  }
  char args[1024];
  snprintf(out, sizeof out, "%s/tv15.h5", dir);
  snprintf(args, sizeof args,
           "steer %s --inputs " EXPECTED ":/identity/steer/input --modules '' --add " EXPECTED
           ":/identity/steer/v",
           id);
  ok(2, args, out);
  cr_expect_eq(cli_h5diff("", out, "/output", EXPECTED, "/identity/steer/output"), 0, "TV-15");
  cli_remove_dir(dir);
}

/* Each error: exit status non-zero, one message naming the problem, nothing on stdout, and
 * no file left in the output folder. */
static void expect_error(int np, const char *args0, const char *fragment) {
  char dir[64], args[2048];
  cli_make_dir(dir, "steer");
  snprintf(args, sizeof args, "%s --out %s/x.h5", args0, dir);
  run_result r = run_cli_np(np, args);
  cr_expect_neq(r.status, 0, "'%s' succeeded", args0);
  cr_expect(strstr(r.err, fragment) != NULL, "'%s': expected '%s' in: %s", args0, fragment, r.err);
  cr_expect_eq(count_lines_with(r.err, "error (rank"), 1, "one error line: %s", r.err);
  cr_expect_eq(r.out[0], '\0', "stdout not empty: %s", r.out);
  cr_expect_eq(cli_entries(dir), 0, "'%s' left a file behind", args0);
  run_free(&r);
  cli_remove_dir(dir);
}

Test(steer, errors, .timeout = 300) {
  expect_error(2, "steer " MLP " --modules linear2,lnear3 --scale 2", "closest relative names");
  expect_error(2, "steer " MLP " --modules linear2 --add " INPUTS ":/gpt2/v",
               "v has shape (48,), module 'linear2' outputs per sample (20,)");
  expect_error(2, "steer " GPT2 " --modules transformer.h.0 --project " INPUTS ":/mlp/v",
               "expected that shape or its last dimension (48,)");
  expect_error(1, "steer " MLP " --modules linear2 --scale 2 --add " INPUTS ":/mlp/v",
               "exactly one of");
  expect_error(1, "steer " MLP " --modules linear2", "exactly one of");
  expect_error(1, "steer " MLP " --modules linear2 --scale 2 --alpha 3", "--alpha goes with --add");
  expect_error(1, "steer " MLP " --scale 2", "--modules");
  expect_error(2, "steer " MLP " --modules linear2 --add " INPUTS ":/mlp/nothing", "nothing");
}

Test(addition, errors, .timeout = 300) {
  expect_error(2, "activation-addition " MLP_PN " --modules linear1,linaer2", "'linear2'");
  expect_error(2,
               "activation-addition --model " NN "/gpt2 --positive " INPUTS
               ":/gpt2/positive_tokens --negative " EXPECTED
               ":/gpt2/sweep/metric --modules transformer.h.1",
               "has 4");
  expect_error(2, "activation-addition " GPT2_PN " --modules transformer.h", "never called");
  expect_error(2, "activation-addition " MLP_PN " --modules linear1 --reduce mean",
               "no position axis");
  expect_error(1, "activation-addition " MLP_PN " --modules ''", "root");
  expect_error(1, "activation-addition " MLP_PN, "--modules");
}

Test(steer, help) {
  run_result r = run_cli(1, "steer --help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--project") != NULL, "%s", r.out);
  run_free(&r);
  r = run_cli(1, "activation-addition --help");
  cr_expect_eq(r.status, 0);
  cr_expect(strstr(r.out, "--positive") != NULL, "%s", r.out);
  run_free(&r);
}
