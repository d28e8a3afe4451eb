/*
 * cmd_addition.c: `latenthook activation-addition`: ActivationAddition (SPEC 2.4), the
 * steering vector mean(positive - negative) of each listed module, written to
 * OUT.h5:/steer/<module> for `latenthook steer --add` (addition.h).
 */
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/addition.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/model.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook activation-addition --model PATH --positive FILE.h5:/p\n"
    "           --negative FILE.h5:/n --modules M[,M...] --out OUT.h5 [options]\n\n"
    "Runs the model over the positive and the negative inputs (paired row by row, the rows\n"
    "split over the ranks) and writes, for each listed module, the mean over the samples of\n"
    "(positive - negative) activation to OUT.h5:/steer/<module>, in the module's per-sample\n"
    "shape after the reduction (tdhook's ActivationAddition); the mean is exact, the same for\n"
    "any rank count. `latenthook steer --add OUT.h5:/steer/<module>` applies it. Prints a JSON\n"
    "summary.\n\n"
    "Options:\n"
    "  --model PATH            a model YAML file or a Hugging Face GPT-2 directory (required)\n"
    "  --positive FILE.h5:/p   (N, F) features or (N, T) token ids (required)\n"
    "  --negative FILE.h5:/n   the same N samples' contrasts (required)\n"
    "  --modules M[,M...]      module names (named_modules(): transformer.h.1); may be\n"
    "                          repeated (required)\n"
    "  --reduce R              per-sample reduction before the mean: none (default), mean\n"
    "                          (over positions), last, position:I, flatten\n"
    "  --out OUT.h5            output file (required)\n"
    "  --batch-size B          samples per forward on each rank (default 32)\n" CLI_COMMON_HELP;

enum { OPT_MODEL = 1, OPT_POSITIVE, OPT_NEGATIVE, OPT_MODULES, OPT_REDUCE, OPT_OUT, OPT_BATCH };

#define MAX_MODULES 256

typedef struct args {
  const char *model, *positive, *negative, *out;
  char *mods[MAX_MODULES];
  int64_t nmods;
  lh_reduce reduce;
  long long batch;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_MODEL:
      a->model = arg;
      return LH_OK;
    case OPT_POSITIVE:
      a->positive = arg;
      return LH_OK;
    case OPT_NEGATIVE:
      a->negative = arg;
      return LH_OK;
    case OPT_OUT:
      a->out = arg;
      return LH_OK;
    case OPT_MODULES:
      return cli_add_names("--modules", arg, a->mods, &a->nmods, MAX_MODULES);
    case OPT_REDUCE:
      return lh_reduce_parse(arg, &a->reduce);
    case OPT_BATCH: {
      lh_status st = cli_parse_int("--batch-size", arg, &a->batch);
      if (st == LH_OK && a->batch < 1)
        return LH_ERROR(LH_ERR_USAGE, "--batch-size must be >= 1, got %s", arg);
      return st;
    }
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

lh_status cmd_addition(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                       {"positive", required_argument, NULL, OPT_POSITIVE},
                                       {"negative", required_argument, NULL, OPT_NEGATIVE},
                                       {"modules", required_argument, NULL, OPT_MODULES},
                                       {"reduce", required_argument, NULL, OPT_REDUCE},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"batch-size", required_argument, NULL, OPT_BATCH},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.batch = 32, .reduce = {LH_REDUCE_NONE, 0}};
  lh_model *m = NULL;
  lh_addition *ad = NULL;
  lh_h5_out *o = NULL;
  int pos;

  LH_TRY(cli_parse("activation-addition", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook activation-addition --help')",
            argv[pos]);
  if (!a.model) LH_FAIL(LH_ERR_USAGE, "--model PATH is required (a YAML file or a GPT-2 folder)");
  if (!a.positive) LH_FAIL(LH_ERR_USAGE, "--positive FILE.h5:/dataset is required");
  if (!a.negative) LH_FAIL(LH_ERR_USAGE, "--negative FILE.h5:/dataset is required");
  if (a.nmods == 0) LH_FAIL(LH_ERR_USAGE, "--modules M[,M...] is required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");

  lh_status local = lh_model_load(a.model, &m);
  if (local != LH_OK) lh_error_prefix("--model: ");
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_h5_out_create(comm, a.out, &o)); /* fails early on an unwritable folder */
  double t0 = MPI_Wtime();
  LH_TRY(lh_addition_run(comm, m, a.positive, a.negative, (const char *const *)a.mods, a.nmods,
                         &a.reduce, a.batch, &ad));
  double t_run = MPI_Wtime() - t0;
  LH_TRY(lh_addition_write(ad, o));
  char red[32];
  LH_TRY(lh_h5_out_attr_string(o, "/steer", "reduce", lh_reduce_name(&a.reduce, red, sizeof red)));
  LH_TRY(lh_h5_out_commit(&o));

  json_t *doc = json_object(), *keys = json_array();
  for (int64_t i = 0; i < lh_addition_count(ad); i++) {
    json_t *e = json_object(), *sh = json_array();
    int k;
    int64_t shape[LH_TENSOR_MAX_DIMS];
    lh_addition_vector(ad, i, &k, shape);
    for (int j = 0; j < k; j++) json_array_append_new(sh, json_integer(shape[j]));
    json_object_set_new(e, "module", json_string(lh_addition_key(ad, i)));
    json_object_set_new(e, "shape", sh);
    json_array_append_new(keys, e);
  }
  json_object_set_new(doc, "out", json_string(a.out));
  json_object_set_new(doc, "reduce", json_string(red));
  json_object_set_new(doc, "steer", keys);
  json_object_set_new(doc, "seconds", json_real(t_run));
  cli_emit_json(comm, doc);
done:
  lh_h5_out_discard(&o);
  lh_addition_destroy(&ad);
  lh_model_destroy(&m);
  for (int64_t i = 0; i < a.nmods; i++) lh_free(a.mods[i]);
  return st;
}
