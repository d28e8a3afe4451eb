/*
 * cmd_patch.c: `latenthook patch`: ActivationPatching (SPEC 2.2) over the data-parallel
 * forward pass, and a patching sweep with a logit-difference metric (patch.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/model.h"
#include "latenthook/patch.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook patch --model PATH --inputs FILE.h5:/clean\n"
    "           --patched-inputs FILE.h5:/other --modules M1[,M2...] --out OUT.h5 [options]\n\n"
    "Interchange intervention (tdhook's ActivationPatching): runs the model on the clean\n"
    "inputs, recording the listed modules' outputs, then on the patched inputs (same shape)\n"
    "with those outputs replaced, sample by sample, by the clean ones. Writes OUT.h5:/output\n"
    "(clean run) and OUT.h5:/patched/output (patched run), (N, ...) float32; prints a JSON\n"
    "summary. Modules are tdhook paths: linear2, transformer.h.0, transformer.h[-1], <name>.\n"
    "A module called twice in a forward is replaced at every call by its last clean call.\n\n"
    "Options:\n"
    "  --model PATH               a model YAML file or a Hugging Face GPT-2 directory\n"
    "  --inputs FILE.h5:/dset     clean inputs: (N, F) features or (N, T) token ids\n"
    "  --patched-inputs F:/dset   the inputs of the patched run, same shape\n"
    "  --modules M1[,M2...]       modules whose outputs are replaced\n"
    "  --out OUT.h5               output file\n"
    "  --positions I:J            replace only positions I..J-1 (second-last axis: (T, C) -> T;\n"
    "                             'I' alone is I:I+1)\n"
    "  --units U1[,U2...] | I:J   replace only these units (last axis, negative from the end)\n"
    "  --sweep                    also patch each module alone and write the effects on a\n"
    "                             logit difference (Zhang & Nanda 2023): OUT.h5:/effects (M)\n"
    "                             mean metric, /normalised_effects (M) = (effect - corrupted)\n"
    "                             / (clean - corrupted), /effects_per_sample (M, N),\n"
    "                             /clean_metric and /corrupted_metric (N)\n"
    "  --per-position             with --sweep: each position of each module alone too:\n"
    "                             /effects_positions, /normalised_effects_positions (M, T),\n"
    "                             /effects_positions_per_sample (M, T, N)\n"
    "  --metric logit-diff        the sweep metric: out[a] - out[b] at the last position\n"
    "  --tokens A,B               the two output indices of the metric (required by --sweep)\n"
    "  --batch-size B             samples per forward on each rank (default 32)\n" CLI_COMMON_HELP;

enum {
  OPT_MODEL = 1,
  OPT_INPUTS,
  OPT_PATCHED,
  OPT_MODULES,
  OPT_OUT,
  OPT_POSITIONS,
  OPT_UNITS,
  OPT_SWEEP,
  OPT_PER_POSITION,
  OPT_METRIC,
  OPT_TOKENS,
  OPT_BATCH
};

#define MAX_LIST 1024

typedef struct args {
  const char *model, *inputs, *patched, *out;
  char *modules_buf;
  const char *modules[MAX_LIST];
  int64_t nmodules;
  bool positions_given, units_given, sweep, per_position, tokens_given;
  lh_patch_positions pos;
  int64_t units[MAX_LIST];
  lh_patch_units u;
  int64_t a, b;
  int64_t batch;
} args;

/* Parses an integer that must be the whole of [s, end). */
static bool parse_i64(const char *s, const char *end, int64_t *out) {
  char buf[32];
  size_t n = (size_t)(end - s);
  if (n == 0 || n >= sizeof buf) return false;
  memcpy(buf, s, n);
  buf[n] = '\0';
  char *e = NULL;
  long long v = strtoll(buf, &e, 10);
  if (*e) return false;
  *out = v;
  return true;
}

/* "I:J" or "I" (I:I+1); with allow_list "U1,U2,..." too, into units. */
static lh_status parse_range(const char *opt, const char *arg, int64_t *lo, int64_t *hi) {
  const char *colon = strchr(arg, ':');
  if (colon) {
    if (parse_i64(arg, colon, lo) && parse_i64(colon + 1, arg + strlen(arg), hi) && *lo < *hi)
      return LH_OK;
  } else if (parse_i64(arg, arg + strlen(arg), lo)) {
    *hi = *lo + 1;
    return LH_OK;
  }
  return LH_ERROR(LH_ERR_USAGE, "%s: expected I:J with I < J or one index I, got '%s'", opt, arg);
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
    case OPT_PATCHED:
      a->patched = arg;
      return LH_OK;
    case OPT_OUT:
      a->out = arg;
      return LH_OK;
    case OPT_SWEEP:
      a->sweep = true;
      return LH_OK;
    case OPT_PER_POSITION:
      a->per_position = true;
      return LH_OK;
    case OPT_MODULES: {
      free(a->modules_buf);
      a->modules_buf = strdup(arg);
      if (!a->modules_buf) return LH_ERROR(LH_ERR_NOMEM, "--modules");
      a->nmodules = 0;
      for (char *s = a->modules_buf;;) {
        char *c = strchr(s, ',');
        if (c) *c = '\0';
        if (a->nmodules == MAX_LIST)
          return LH_ERROR(LH_ERR_USAGE, "--modules: at most %d modules", MAX_LIST);
        a->modules[a->nmodules++] = s;
        if (!c) break;
        s = c + 1;
      }
      return LH_OK;
    }
    case OPT_POSITIONS:
      a->positions_given = true;
      return parse_range("--positions", arg, &a->pos.lo, &a->pos.hi);
    case OPT_UNITS: {
      a->units_given = true;
      a->u.count = 0;
      if (strchr(arg, ':')) {
        int64_t lo, hi;
        lh_status st = parse_range("--units", arg, &lo, &hi);
        if (st != LH_OK) return st;
        if (hi - lo > MAX_LIST)
          return LH_ERROR(LH_ERR_USAGE, "--units: at most %d units", MAX_LIST);
        for (int64_t i = lo; i < hi; i++) a->units[a->u.count++] = i;
      } else {
        for (const char *s = arg;;) {
          const char *c = strchr(s, ',');
          const char *e = c ? c : s + strlen(s);
          if (a->u.count == MAX_LIST)
            return LH_ERROR(LH_ERR_USAGE, "--units: at most %d units", MAX_LIST);
          if (!parse_i64(s, e, &a->units[a->u.count++]))
            return LH_ERROR(LH_ERR_USAGE, "--units: expected U1[,U2...] or I:J, got '%s'", arg);
          if (!c) break;
          s = c + 1;
        }
      }
      a->u.index = a->units;
      return LH_OK;
    }
    case OPT_METRIC:
      if (strcmp(arg, "logit-diff") != 0)
        return LH_ERROR(LH_ERR_USAGE, "--metric: unknown metric '%s' (available: logit-diff)", arg);
      return LH_OK;
    case OPT_TOKENS: {
      const char *c = strchr(arg, ',');
      if (!c || !parse_i64(arg, c, &a->a) || !parse_i64(c + 1, c + strlen(c), &a->b))
        return LH_ERROR(LH_ERR_USAGE, "--tokens: expected A,B (two output indices), got '%s'", arg);
      a->tokens_given = true;
      return LH_OK;
    }
    case OPT_BATCH: {
      long long v;
      lh_status st = cli_parse_int("--batch-size", arg, &v);
      if (st != LH_OK) return st;
      if (v < 1) return LH_ERROR(LH_ERR_USAGE, "--batch-size must be >= 1, got %s", arg);
      a->batch = v;
      return LH_OK;
    }
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

static lh_status write_output(lh_h5_out *o, const char *path, const lh_cache *c) {
  lh_status st = LH_OK;
  lh_h5_dset *ds = NULL;
  int64_t shape[LH_TENSOR_MAX_DIMS], dims[LH_TENSOR_MAX_DIMS + 1];
  int k = 0;
  const lh_dmat *m = lh_cache_output(c, shape, &k);
  dims[0] = lh_dmat_rows(m);
  for (int j = 0; j < k; j++) dims[j + 1] = shape[j];
  LH_TRY(lh_h5_out_dataset(o, path, LH_F32, k + 1, dims, 0, &ds));
  LH_TRY(lh_h5_write_dmat(ds, 0, m));
done:
  lh_h5_close(&ds);
  return st;
}

static json_t *shape_json(const lh_cache *c) {
  int64_t shape[LH_TENSOR_MAX_DIMS];
  int k = 0;
  const lh_dmat *m = lh_cache_output(c, shape, &k);
  json_t *sh = json_array();
  json_array_append_new(sh, json_integer(lh_dmat_rows(m)));
  for (int j = 0; j < k; j++) json_array_append_new(sh, json_integer(shape[j]));
  return sh;
}

lh_status cmd_patch(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                       {"inputs", required_argument, NULL, OPT_INPUTS},
                                       {"patched-inputs", required_argument, NULL, OPT_PATCHED},
                                       {"modules", required_argument, NULL, OPT_MODULES},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"positions", required_argument, NULL, OPT_POSITIONS},
                                       {"units", required_argument, NULL, OPT_UNITS},
                                       {"sweep", no_argument, NULL, OPT_SWEEP},
                                       {"per-position", no_argument, NULL, OPT_PER_POSITION},
                                       {"metric", required_argument, NULL, OPT_METRIC},
                                       {"tokens", required_argument, NULL, OPT_TOKENS},
                                       {"batch-size", required_argument, NULL, OPT_BATCH},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.batch = 32};
  lh_model *m = NULL;
  lh_patch *p = NULL;
  lh_cache *clean = NULL, *patched = NULL;
  lh_h5_out *o = NULL;
  lh_patch_sweep sw = {0};
  int pos, rank;
  MPI_Comm_rank(comm, &rank);

  LH_TRY(cli_parse("patch", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook patch --help')", argv[pos]);
  if (!a.model) LH_FAIL(LH_ERR_USAGE, "--model PATH is required (a YAML file or a GPT-2 folder)");
  if (!a.inputs) LH_FAIL(LH_ERR_USAGE, "--inputs FILE.h5:/dataset is required (clean inputs)");
  if (!a.patched) LH_FAIL(LH_ERR_USAGE, "--patched-inputs FILE.h5:/dataset is required");
  if (a.nmodules == 0) LH_FAIL(LH_ERR_USAGE, "--modules M1[,M2...] is required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");
  if (a.positions_given && a.units_given)
    LH_FAIL(LH_ERR_USAGE, "--positions and --units: give one of them");
  if (a.sweep && !a.tokens_given)
    LH_FAIL(LH_ERR_USAGE, "--sweep needs --tokens A,B (the logit difference out[A] - out[B])");
  if (a.per_position && !a.sweep) LH_FAIL(LH_ERR_USAGE, "--per-position needs --sweep");

  lh_status local = lh_model_load(a.model, &m);
  if (local != LH_OK) lh_error_prefix("--model: ");
  LH_TRY(lh_agree(comm, local));
  local = lh_patch_create(comm, m, a.modules, a.nmodules, &p);
  if (local != LH_OK) lh_error_prefix("--modules: ");
  LH_TRY(local);
  LH_TRY(lh_patch_check_inputs(comm, a.inputs, a.patched));
  LH_TRY(lh_h5_out_create(comm, a.out, &o)); /* fails early on an unwritable folder */
  double t0 = MPI_Wtime();
  LH_TRY(lh_patch_record(p, a.inputs, a.batch, cc->progress, &clean));
  lh_patch_fn fn = a.positions_given ? lh_patch_replace_positions
                   : a.units_given   ? lh_patch_replace_units
                                     : lh_patch_replace;
  void *user = a.positions_given ? (void *)&a.pos : a.units_given ? (void *)&a.u : NULL;
  LH_TRY(lh_patch_run(p, a.patched, NULL, fn, user, NULL, &patched));
  if (a.sweep)
    LH_TRY(lh_patch_sweep_run(p, clean, a.patched, a.per_position, a.a, a.b, cc->progress, &sw));
  double t_run = MPI_Wtime() - t0;
  LH_TRY(write_output(o, "/output", clean));
  LH_TRY(write_output(o, "/patched/output", patched));
  if (a.sweep) LH_TRY(lh_patch_sweep_write(p, &sw, a.a, a.b, o));
  LH_TRY(lh_h5_out_commit(&o));

  json_t *doc = json_object(), *mods = json_array();
  for (int64_t i = 0; i < a.nmodules; i++) json_array_append_new(mods, json_string(a.modules[i]));
  json_object_set_new(doc, "out", json_string(a.out));
  json_object_set_new(doc, "samples",
                      json_integer(lh_dmat_rows(lh_cache_output(clean, NULL, NULL))));
  json_object_set_new(doc, "modules", mods);
  json_object_set_new(doc, "patch",
                      json_string(a.positions_given ? "positions"
                                  : a.units_given   ? "units"
                                                    : "replace"));
  json_object_set_new(doc, "output_shape", shape_json(clean));
  if (a.sweep) {
    json_t *sj = json_object(), *eff = json_array();
    json_object_set_new(sj, "metric", json_string("logit-diff"));
    json_t *tk = json_array();
    json_array_append_new(tk, json_integer(a.a));
    json_array_append_new(tk, json_integer(a.b));
    json_object_set_new(sj, "tokens", tk);
    json_object_set_new(sj, "clean_metric", cli_real(sw.clean_mean));
    json_object_set_new(sj, "corrupted_metric", cli_real(sw.corrupted_mean));
    for (int64_t i = 0; i < sw.M; i++) {
      json_t *e = json_object();
      json_object_set_new(e, "module", json_string(a.modules[i]));
      json_object_set_new(e, "effect", cli_real(sw.mean[i]));
      json_object_set_new(e, "normalised", cli_real(sw.normalised[i]));
      json_array_append_new(eff, e);
    }
    json_object_set_new(sj, "effects", eff);
    json_object_set_new(doc, "sweep", sj);
    /* the compact table for people: on stderr, stdout holding exactly one JSON document */
    if (rank == 0 && lh_log_get_level() >= LH_LOG_INFO) {
      fprintf(stderr, "%-40s %14s %12s\n", "module (logit-diff effect)", "mean metric",
              "normalised");
      fprintf(stderr, "%-40s %14.6g %12s\n", "(clean run)", sw.clean_mean, "1");
      fprintf(stderr, "%-40s %14.6g %12s\n", "(corrupted run)", sw.corrupted_mean, "0");
      for (int64_t i = 0; i < sw.M; i++)
        fprintf(stderr, "%-40s %14.6g %12.4f\n", a.modules[i], sw.mean[i], sw.normalised[i]);
      fflush(stderr);
    }
  }
  json_object_set_new(doc, "seconds", json_real(t_run));
  cli_emit_json(comm, doc);
done:
  lh_h5_out_discard(&o);
  lh_patch_sweep_free(&sw);
  lh_cache_destroy(&clean);
  lh_cache_destroy(&patched);
  lh_patch_destroy(&p);
  lh_model_destroy(&m);
  free(a.modules_buf);
  return st;
}
