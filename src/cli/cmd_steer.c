/*
 * cmd_steer.c: `latenthook steer`: SteeringVectors (SPEC 2.3) with a built-in steer function
 * (add alpha v, project v out, scale) over the data-parallel forward, the steered model output
 * written collectively to HDF5 (steer.h).
 */
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/model.h"
#include "latenthook/steer.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook steer --model PATH --inputs FILE.h5:/dset --modules M[,M...]\n"
    "                                     (--add F.h5:/v [--alpha A] | --project F.h5:/v |\n"
    "                                      --scale S) --out OUT.h5 [options]\n\n"
    "Runs the model over every row of the inputs, the rows split over the ranks, with the\n"
    "output of each listed module edited in place (tdhook's SteeringVectors), and writes the\n"
    "steered model output to OUT.h5:/output (N, ...) float32 (logits for GPT-2); prints a JSON\n"
    "summary. v has the module's per-sample output shape, or its last dimension, and is then\n"
    "broadcast over the positions; `latenthook activation-addition` writes such vectors\n"
    "(--add OUT.h5:/steer/<module>).\n\n"
    "Options:\n"
    "  --model PATH            a model YAML file or a Hugging Face GPT-2 directory (required)\n"
    "  --inputs FILE.h5:/dset  (N, F) float features or (N, T) integer token ids (required)\n"
    "  --modules M[,M...]      modules to steer: names (transformer.h.0) or paths (h[0], \"\"\n"
    "                          for the root); may be repeated (required)\n"
    "  --add FILE.h5:/v        y + A v\n"
    "  --alpha A               the factor of --add (default 1)\n"
    "  --project FILE.h5:/v    y - (y . v/|v|) v/|v|: the direction of v projected out\n"
    "  --scale S               S y\n"
    "  --out OUT.h5            output file (required)\n"
    "  --batch-size B          samples per forward on each rank (default 32)\n" CLI_COMMON_HELP;

enum {
  OPT_MODEL = 1,
  OPT_INPUTS,
  OPT_MODULES,
  OPT_ADD,
  OPT_ALPHA,
  OPT_PROJECT,
  OPT_SCALE,
  OPT_OUT,
  OPT_BATCH
};

#define MAX_MODULES 256

typedef struct args {
  const char *model, *inputs, *out, *vec;
  char *mods[MAX_MODULES];
  int64_t nmods;
  int nops;
  bool alpha_given;
  lh_steer_builtin b;
  long long batch;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_MODEL:
      a->model = arg;
      return LH_OK;
    case OPT_INPUTS:
      a->inputs = arg;
      return LH_OK;
    case OPT_OUT:
      a->out = arg;
      return LH_OK;
    case OPT_MODULES:
      return cli_add_names("--modules", arg, a->mods, &a->nmods, MAX_MODULES);
    case OPT_ADD:
    case OPT_PROJECT:
      a->b.op = code == OPT_ADD ? LH_STEER_ADD : LH_STEER_PROJECT;
      a->vec = arg;
      a->nops++;
      return LH_OK;
    case OPT_SCALE:
      a->b.op = LH_STEER_SCALE;
      a->nops++;
      return cli_parse_double("--scale", arg, &a->b.alpha);
    case OPT_ALPHA:
      a->alpha_given = true;
      return cli_parse_double("--alpha", arg, &a->b.alpha);
    case OPT_BATCH: {
      lh_status st = cli_parse_int("--batch-size", arg, &a->batch);
      if (st == LH_OK && a->batch < 1)
        return LH_ERROR(LH_ERR_USAGE, "--batch-size must be >= 1, got %s", arg);
      return st;
    }
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

lh_status cmd_steer(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                       {"inputs", required_argument, NULL, OPT_INPUTS},
                                       {"modules", required_argument, NULL, OPT_MODULES},
                                       {"add", required_argument, NULL, OPT_ADD},
                                       {"alpha", required_argument, NULL, OPT_ALPHA},
                                       {"project", required_argument, NULL, OPT_PROJECT},
                                       {"scale", required_argument, NULL, OPT_SCALE},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"batch-size", required_argument, NULL, OPT_BATCH},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.batch = 32};
  a.b.alpha = 1.0;
  lh_model *m = NULL;
  lh_steer *s = NULL;
  lh_dmat *Y = NULL;
  lh_h5_out *o = NULL;
  lh_h5_dset *ds = NULL;
  float *v = NULL;
  char what[LH_H5_PATH_CAP + 16];
  int pos;

  LH_TRY(cli_parse("steer", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook steer --help')", argv[pos]);
  if (!a.model) LH_FAIL(LH_ERR_USAGE, "--model PATH is required (a YAML file or a GPT-2 folder)");
  if (!a.inputs) LH_FAIL(LH_ERR_USAGE, "--inputs FILE.h5:/dataset is required");
  if (a.nmods == 0) LH_FAIL(LH_ERR_USAGE, "--modules M[,M...] is required");
  if (a.nops != 1)
    LH_FAIL(LH_ERR_USAGE, "give exactly one of --add FILE.h5:/v, --project FILE.h5:/v, --scale S");
  if (a.alpha_given && a.b.op != LH_STEER_ADD) LH_FAIL(LH_ERR_USAGE, "--alpha goes with --add");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");

  lh_status local = lh_model_load(a.model, &m);
  if (local != LH_OK) lh_error_prefix("--model: ");
  LH_TRY(lh_agree(comm, local));
  if (a.vec) {
    snprintf(what, sizeof what, "--%s %s", a.b.op == LH_STEER_ADD ? "add" : "project", a.vec);
    local = lh_steer_read_vector(comm, a.vec, &v, &a.b.vk, a.b.vshape);
    if (local != LH_OK) lh_error_prefix("%s: ", what);
    LH_TRY(local);
    a.b.v = v;
    a.b.what = what;
  }
  local =
      lh_steer_attach(m, (const char *const *)a.mods, a.nmods, lh_steer_builtin_apply, &a.b, &s);
  if (local != LH_OK) lh_error_prefix("--modules: ");
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_h5_out_create(comm, a.out, &o)); /* fails early on an unwritable folder */
  double t0 = MPI_Wtime();
  int k = 0;
  int64_t shape[LH_TENSOR_MAX_DIMS + 1];
  LH_TRY(lh_steer_forward(comm, m, a.inputs, a.batch, &Y, &k, shape + 1));
  double t_run = MPI_Wtime() - t0;
  shape[0] = lh_dmat_rows(Y);
  LH_TRY(lh_h5_out_dataset(o, "/output", LH_F32, k + 1, shape, 0, &ds));
  LH_TRY(lh_h5_write_dmat(ds, 0, Y));
  lh_h5_close(&ds);
  static const char *OPS[] = {"add", "project", "scale"};
  LH_TRY(lh_h5_out_attr_string(o, "/output", "steer", OPS[a.b.op]));
  LH_TRY(lh_h5_out_commit(&o));

  json_t *doc = json_object(), *mods = json_array(), *sh = json_array();
  for (int64_t i = 0; i < a.nmods; i++) json_array_append_new(mods, json_string(a.mods[i]));
  for (int j = 0; j <= k; j++) json_array_append_new(sh, json_integer(shape[j]));
  json_object_set_new(doc, "out", json_string(a.out));
  json_object_set_new(doc, "samples", json_integer(shape[0]));
  json_object_set_new(doc, "output_shape", sh);
  json_object_set_new(doc, "modules", mods);
  json_object_set_new(doc, "steer", json_string(OPS[a.b.op]));
  if (a.vec) json_object_set_new(doc, "vector", json_string(a.vec));
  if (a.b.op != LH_STEER_PROJECT)
    json_object_set_new(doc, a.b.op == LH_STEER_ADD ? "alpha" : "scale", json_real(a.b.alpha));
  json_object_set_new(doc, "seconds", json_real(t_run));
  cli_emit_json(comm, doc);
done:
  lh_h5_close(&ds);
  lh_h5_out_discard(&o);
  lh_dmat_destroy(&Y);
  lh_steer_detach(&s);
  lh_model_destroy(&m);
  lh_free(v);
  for (int64_t i = 0; i < a.nmods; i++) lh_free(a.mods[i]);
  return st;
}
