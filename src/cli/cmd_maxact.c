/*
 * cmd_maxact.c: `latenthook max-activations`: the maximally activating samples of every unit
 * of the matched modules (maxact.h), to HDF5 and optionally a readable table.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <libgen.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/maxact.h"
#include "latenthook/model.h"
#include "latenthook/vocab.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook max-activations --model PATH --inputs FILE.h5:/dset\n"
    "                     --key-pattern REGEX --top-k K --out OUT.h5 [options]\n\n"
    "Runs the model over every row of the inputs, the rows split over the ranks, and finds for\n"
    "every unit (last output dimension) of every module whose name matches REGEX the K samples\n"
    "that activate it most (Chen et al. 2020). A sample's score is the unit's largest\n"
    "activation over the positions of the output (B, T, U), and the position is kept (the\n"
    "first on ties); for (B, U) outputs the position is -1. Ties between samples go to the\n"
    "lower sample index; NaN activations are never selected; with fewer than K samples the\n"
    "lists are padded with value NaN, sample -1, position -1. Nothing is cached: memory is\n"
    "O(units x K) per module plus one batch. Writes OUT.h5:/<module>/values (U, K) float32,\n"
    "/<module>/samples and /<module>/positions (U, K) int64; prints a JSON summary.\n\n"
    "Options:\n"
    "  --model PATH            a model YAML file or a Hugging Face GPT-2 directory (required)\n"
    "  --inputs FILE.h5:/dset  (N, F) float features or (N, T) integer token ids (required)\n"
    "  --key-pattern REGEX     modules (Python re.match on relative names; required)\n"
    "  --top-k K               samples per unit (required, >= 1)\n"
    "  --out OUT.h5            output file (required)\n"
    "  --abs                   rank by |activation| (the signed value is reported)\n"
    "  --batch-size B          samples per forward on each rank (default 32)\n"
    "  --table FILE.txt        also write a readable table: one line per module, unit and\n"
    "                          rank, with the tokens around the position for token inputs\n"
    "  --context C             tokens shown on each side of the position (default 5)\n"
    "  --vocab FILE            decode token ids with a vocab.json or a one-token-per-line file\n"
    "                          (default: ids)\n" CLI_COMMON_HELP;

enum {
  OPT_MODEL = 1,
  OPT_INPUTS,
  OPT_PATTERN,
  OPT_TOPK,
  OPT_OUT,
  OPT_ABS,
  OPT_BATCH,
  OPT_TABLE,
  OPT_CONTEXT,
  OPT_VOCAB
};

typedef struct args {
  const char *model, *inputs, *out, *table, *vocab;
  lh_maxact_opts o;
  bool k_given;
  long long context;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  long long v;
  lh_status st;
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
    case OPT_TABLE:
      a->table = arg;
      return LH_OK;
    case OPT_VOCAB:
      a->vocab = arg;
      return LH_OK;
    case OPT_ABS:
      a->o.absolute = true;
      return LH_OK;
    case OPT_TOPK:
      if ((st = cli_parse_int("--top-k", arg, &v)) != LH_OK) return st;
      if (v < 1) return LH_ERROR(LH_ERR_USAGE, "--top-k must be >= 1, got %s", arg);
      a->o.k = v;
      a->k_given = true;
      return LH_OK;
    case OPT_BATCH:
      if ((st = cli_parse_int("--batch-size", arg, &v)) != LH_OK) return st;
      if (v < 1) return LH_ERROR(LH_ERR_USAGE, "--batch-size must be >= 1, got %s", arg);
      a->o.batch_size = v;
      return LH_OK;
    case OPT_CONTEXT:
      if ((st = cli_parse_int("--context", arg, &v)) != LH_OK) return st;
      if (v < 0) return LH_ERROR(LH_ERR_USAGE, "--context must be >= 0, got %s", arg);
      a->context = v;
      return LH_OK;
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

/* The table's folder must be writable before the pass starts (as lh_h5_out_create checks). */
static lh_status check_table_dir(const char *path) {
  char buf[4096];
  snprintf(buf, sizeof buf, "%s", path);
  const char *dir = dirname(buf);
  if (access(dir, W_OK) != 0)
    return LH_ERROR(LH_ERR_IO, "--table %s: folder '%s' is not writable: %s", path, dir,
                    strerror(errno));
  return LH_OK;
}

lh_status cmd_maxact(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                       {"inputs", required_argument, NULL, OPT_INPUTS},
                                       {"key-pattern", required_argument, NULL, OPT_PATTERN},
                                       {"top-k", required_argument, NULL, OPT_TOPK},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"abs", no_argument, NULL, OPT_ABS},
                                       {"batch-size", required_argument, NULL, OPT_BATCH},
                                       {"table", required_argument, NULL, OPT_TABLE},
                                       {"context", required_argument, NULL, OPT_CONTEXT},
                                       {"vocab", required_argument, NULL, OPT_VOCAB},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.o = lh_maxact_defaults(), .context = 5};
  lh_model *m = NULL;
  lh_maxact *r = NULL;
  lh_vocab *vocab = NULL;
  lh_h5_out *o = NULL;
  int pos, rank;
  bool table_done = false;
  MPI_Comm_rank(comm, &rank);

  LH_TRY(cli_parse("max-activations", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook max-activations --help')",
            argv[pos]);
  if (!a.model) LH_FAIL(LH_ERR_USAGE, "--model PATH is required (a YAML file or a GPT-2 folder)");
  if (!a.inputs) LH_FAIL(LH_ERR_USAGE, "--inputs FILE.h5:/dataset is required");
  if (!a.o.key_pattern) LH_FAIL(LH_ERR_USAGE, "--key-pattern REGEX is required");
  if (!a.k_given) LH_FAIL(LH_ERR_USAGE, "--top-k K is required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");
  if (a.vocab && !a.table) LH_FAIL(LH_ERR_USAGE, "--vocab is used only with --table FILE.txt");
  a.o.progress = cc->progress;

  local = lh_model_load(a.model, &m);
  if (local != LH_OK) lh_error_prefix("--model: ");
  LH_TRY(lh_agree(comm, local));
  if (a.vocab) {
    local = lh_vocab_load(a.vocab, &vocab);
    if (local != LH_OK) lh_error_prefix("--vocab: ");
    LH_TRY(lh_agree(comm, local));
  }
  if (a.table) LH_TRY(lh_agree(comm, rank == 0 ? check_table_dir(a.table) : LH_OK));
  LH_TRY(lh_h5_out_create(comm, a.out, &o)); /* fails early on an unwritable folder */
  double t0 = MPI_Wtime();
  LH_TRY(lh_maxact_run(comm, m, a.inputs, &a.o, &r));
  double t_run = MPI_Wtime() - t0;
  if (rank == 0 && vocab && lh_maxact_tokens(r) && lh_vocab_size(vocab) < lh_model_vocab(m))
    lh_log_warn("--vocab %s has %lld tokens, the model %lld: ids beyond are shown as <id>", a.vocab,
                (long long)lh_vocab_size(vocab), (long long)lh_model_vocab(m));
  LH_TRY(lh_maxact_write(r, o));
  if (a.table) {
    LH_TRY(lh_maxact_write_table(comm, r, a.inputs, vocab, a.context, a.table));
    table_done = true;
  }
  LH_TRY(lh_h5_out_commit(&o));
  table_done = false;

  json_t *doc = json_object(), *mods = json_array();
  int64_t shape[LH_TENSOR_MAX_DIMS];
  for (int64_t i = 0; i < lh_maxact_count(r); i++) {
    json_t *e = json_object(), *sh = json_array();
    int k = lh_maxact_shape(r, i, shape);
    json_array_append_new(sh, json_integer(lh_maxact_samples(r)));
    for (int j = 0; j < k; j++) json_array_append_new(sh, json_integer(shape[j]));
    json_object_set_new(e, "key", json_string(lh_maxact_key(r, i)));
    json_object_set_new(e, "output_shape", sh);
    json_object_set_new(e, "units", json_integer(lh_maxact_units(r, i)));
    json_array_append_new(mods, e);
  }
  json_object_set_new(doc, "out", json_string(a.out));
  if (a.table) json_object_set_new(doc, "table", json_string(a.table));
  json_object_set_new(doc, "samples", json_integer(lh_maxact_samples(r)));
  json_object_set_new(doc, "top_k", json_integer(lh_maxact_k(r)));
  json_object_set_new(doc, "ranking", json_string(a.o.absolute ? "absolute" : "signed"));
  json_object_set_new(doc, "modules", mods);
  json_object_set_new(doc, "seconds", json_real(t_run));
  json_object_set_new(doc, "samples_per_second",
                      json_real(t_run > 0 ? (double)lh_maxact_samples(r) / t_run : 0));
  cli_emit_json(comm, doc);
done:
  /* the table is complete when renamed, but must not outlive a failed HDF5 commit */
  if (table_done && rank == 0) unlink(a.table);
  lh_h5_out_discard(&o);
  lh_maxact_destroy(&r);
  lh_vocab_free(vocab);
  lh_model_destroy(&m);
  return st;
}
