/*
 * cmd_cache.c: `latenthook cache`: ActivationCaching (SPEC 2.1) over the data-parallel hooked
 * forward pass, written collectively to HDF5 (cache.h).
 */
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/cache.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/model.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook cache --model PATH --inputs FILE.h5:/dset\n"
    "                                     --key-pattern REGEX --out OUT.h5 [options]\n\n"
    "Runs the model over every row of the inputs, the rows split over the ranks, and caches\n"
    "what every module whose name matches REGEX outputs (as tdhook's ActivationCaching:\n"
    "Python re.match, anchored at the start only; '$' anchors the end; a module called twice\n"
    "keeps its last call). Writes OUT.h5:/output (the model output: logits for GPT-2) and\n"
    "OUT.h5:/cache/<module name> (OUT.h5:/cache/<direction>/<module name> with nested keys),\n"
    "each (N, ...) in the module's per-sample shape after the reduction, float32; prints a\n"
    "JSON summary.\n\n"
    "Options:\n"
    "  --model PATH            a model YAML file or a Hugging Face GPT-2 directory (required)\n"
    "  --inputs FILE.h5:/dset  (N, F) float features or (N, T) integer token ids (required)\n"
    "  --key-pattern REGEX     modules to cache (required)\n"
    "  --out OUT.h5            output file (required)\n"
    "  --absolute              match and name modules as seen from tdhook's HookedModule\n"
    "                          (td_module.module.<name>) instead of relative names\n"
    "  --direction D           fwd (module output, default) or fwd_pre (module input); give\n"
    "                          it twice (or fwd,fwd_pre) for both, which implies nested keys\n"
    "  --nested-keys           /cache/<direction>/<name> even with one direction\n"
    "  --reduce R              none (default), mean (over positions), last, position:I,\n"
    "                          flatten; positions are the second-last axis: (T, C) -> (C),\n"
    "                          attention (H, T, T) -> (H, T)\n"
    "  --output-reduce R       the same for /output (e.g. last: next-token logits only)\n"
    "  --no-output             do not keep the model output\n"
    "  --batch-size B          samples per forward on each rank (default 32)\n" CLI_COMMON_HELP;

enum {
  OPT_MODEL = 1,
  OPT_INPUTS,
  OPT_PATTERN,
  OPT_OUT,
  OPT_ABSOLUTE,
  OPT_DIRECTION,
  OPT_NESTED,
  OPT_REDUCE,
  OPT_OUTPUT_REDUCE,
  OPT_NO_OUTPUT,
  OPT_BATCH
};

typedef struct args {
  const char *model, *inputs, *out;
  lh_cache_opts o;
  bool dir_given;
} args;

static lh_status add_dir(args *a, const char *s) {
  lh_hook_dir d;
  if (lh_hook_dir_parse(s, &d) != LH_OK) {
    lh_error_clear();
    return LH_ERROR(LH_ERR_USAGE, "--direction: Invalid direction: '%s' (expected fwd or fwd_pre)",
                    s);
  }
  if (!a->dir_given) a->o.ndirs = 0;
  a->dir_given = true;
  for (int i = 0; i < a->o.ndirs; i++)
    if (a->o.dirs[i] == d) return LH_ERROR(LH_ERR_USAGE, "--direction %s given twice", s);
  if (a->o.ndirs == LH_CACHE_MAX_DIRS)
    return LH_ERROR(LH_ERR_USAGE, "--direction: at most fwd and fwd_pre");
  a->o.dirs[a->o.ndirs++] = d;
  return LH_OK;
}

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_MODEL:
      a->model = arg;
      return LH_OK;
    case OPT_INPUTS:
      a->inputs = arg;
      return LH_OK;
    case OPT_PATTERN:
      a->o.key_pattern = arg;
      return LH_OK;
    case OPT_OUT:
      a->out = arg;
      return LH_OK;
    case OPT_ABSOLUTE:
      a->o.relative = false;
      return LH_OK;
    case OPT_NESTED:
      a->o.nested_keys = true;
      return LH_OK;
    case OPT_NO_OUTPUT:
      a->o.keep_output = false;
      return LH_OK;
    case OPT_REDUCE:
      return lh_reduce_parse(arg, &a->o.reduce);
    case OPT_OUTPUT_REDUCE:
      return lh_reduce_parse(arg, &a->o.output_reduce);
    case OPT_DIRECTION: {
      char buf[64];
      snprintf(buf, sizeof buf, "%s", arg);
      char *comma = strchr(buf, ',');
      if (comma) *comma = '\0';
      lh_status st = add_dir(a, buf);
      if (st == LH_OK && comma) st = add_dir(a, comma + 1);
      return st;
    }
    case OPT_BATCH: {
      long long b;
      lh_status st = cli_parse_int("--batch-size", arg, &b);
      if (st != LH_OK) return st;
      if (b < 1) return LH_ERROR(LH_ERR_USAGE, "--batch-size must be >= 1, got %s", arg);
      a->o.batch_size = b;
      return LH_OK;
    }
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

lh_status cmd_cache(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {
      {"model", required_argument, NULL, OPT_MODEL},
      {"inputs", required_argument, NULL, OPT_INPUTS},
      {"key-pattern", required_argument, NULL, OPT_PATTERN},
      {"out", required_argument, NULL, OPT_OUT},
      {"absolute", no_argument, NULL, OPT_ABSOLUTE},
      {"direction", required_argument, NULL, OPT_DIRECTION},
      {"nested-keys", no_argument, NULL, OPT_NESTED},
      {"reduce", required_argument, NULL, OPT_REDUCE},
      {"output-reduce", required_argument, NULL, OPT_OUTPUT_REDUCE},
      {"no-output", no_argument, NULL, OPT_NO_OUTPUT},
      {"batch-size", required_argument, NULL, OPT_BATCH},
      CLI_COMMON_OPTIONS,
      {0, 0, 0, 0}};
  args a = {.o = lh_cache_defaults()};
  lh_model *m = NULL;
  lh_cache *c = NULL;
  lh_h5_out *o = NULL;
  int pos;

  LH_TRY(cli_parse("cache", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook cache --help')", argv[pos]);
  if (!a.model) LH_FAIL(LH_ERR_USAGE, "--model PATH is required (a YAML file or a GPT-2 folder)");
  if (!a.inputs) LH_FAIL(LH_ERR_USAGE, "--inputs FILE.h5:/dataset is required");
  if (!a.o.key_pattern) LH_FAIL(LH_ERR_USAGE, "--key-pattern REGEX is required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");
  a.o.progress = cc->progress;

  lh_status local = lh_model_load(a.model, &m);
  if (local != LH_OK) lh_error_prefix("--model: ");
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_h5_out_create(comm, a.out, &o)); /* fails early on an unwritable folder */
  double t0 = MPI_Wtime();
  LH_TRY(lh_cache_run(comm, m, a.inputs, &a.o, &c));
  double t_run = MPI_Wtime() - t0;
  LH_TRY(lh_cache_write(c, o));
  LH_TRY(lh_h5_out_commit(&o));

  json_t *doc = json_object(), *keys = json_array();
  int64_t shape[LH_TENSOR_MAX_DIMS];
  for (int64_t i = 0; i < lh_cache_count(c); i++) {
    json_t *e = json_object(), *sh = json_array();
    int k = lh_cache_shape(c, i, shape);
    json_array_append_new(sh, json_integer(lh_dmat_rows(lh_cache_matrix(c, i))));
    for (int j = 0; j < k; j++) json_array_append_new(sh, json_integer(shape[j]));
    json_object_set_new(e, "key", json_string(lh_cache_key(c, i)));
    json_object_set_new(e, "shape", sh);
    json_array_append_new(keys, e);
  }
  int ok;
  lh_dmat *out = lh_cache_output(c, shape, &ok);
  int64_t N =
      out ? lh_dmat_rows(out) : (lh_cache_count(c) ? lh_dmat_rows(lh_cache_matrix(c, 0)) : 0);
  json_object_set_new(doc, "out", json_string(a.out));
  json_object_set_new(doc, "samples", json_integer(N));
  if (out) {
    json_t *sh = json_array();
    json_array_append_new(sh, json_integer(N));
    for (int j = 0; j < ok; j++) json_array_append_new(sh, json_integer(shape[j]));
    json_object_set_new(doc, "output_shape", sh);
  }
  json_object_set_new(doc, "cache", keys);
  json_object_set_new(doc, "seconds", json_real(t_run));
  json_object_set_new(doc, "samples_per_second", json_real(t_run > 0 ? (double)N / t_run : 0));
  cli_emit_json(comm, doc);
done:
  lh_h5_out_discard(&o);
  lh_cache_destroy(&c);
  lh_model_destroy(&m);
  return st;
}
