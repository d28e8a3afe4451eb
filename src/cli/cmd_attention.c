/*
 * cmd_attention.c: `latenthook attention`: attention rollout (Abnar & Zuidema 2020) of every
 * sample over the data-parallel forward pass, written to HDF5, and heatmaps of the rollout and
 * of chosen layers and heads for chosen samples (attention.h, rollout.h, plot.h).
 *
 * Order of the outputs: the HDF5 file is created first (an unwritable folder fails before the
 * forward), the pass writes it, rank 0 draws the PNGs (each under a temporary name, renamed
 * when complete), and the HDF5 file is committed last. A failure anywhere removes the PNGs
 * already drawn and the temporary HDF5 file: nothing partial is left behind.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/attention.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/model.h"
#include "latenthook/plot.h"
#include "latenthook/vocab.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook attention --model PATH --inputs FILE.h5:/ids --out OUT.h5\n"
    "                     [--samples I,J,...] [--png-dir DIR] [options]\n\n"
    "Attention rollout (Abnar & Zuidema 2020) of every sample: per layer the attention\n"
    "probabilities averaged over the heads, mixed with the residual connection and\n"
    "renormalised, A^ = rownorm(alpha I + (1 - alpha) mean_h A_h), multiplied over the layers,\n"
    "R = A^_L ... A^_1. Rows are query positions, columns key positions; R[i, j] is the share of\n"
    "position i's information that comes from token j. The samples are split over the ranks.\n"
    "Writes OUT.h5:/rollout (N, T, T) and, for each sample of --samples,\n"
    "OUT.h5:/attention/sample_<i> (layers, heads, T, T) for the layers and heads shown, all\n"
    "float64. With --png-dir, draws DIR/rollout_sample<i>.png and\n"
    "DIR/attn_sample<i>_L<l>_H<h>.png (DIR/attn_sample<i>_L<l>_Hmean.png with --heads mean)\n"
    "for every chosen sample, layer and head, labelled with the tokens. Prints a JSON summary.\n\n"
    "Options:\n"
    "  --model PATH            a Hugging Face GPT-2 directory or a model YAML (required)\n"
    "  --inputs FILE.h5:/ids   (N, T) integer token ids (required)\n"
    "  --out OUT.h5            output file (required)\n"
    "  --samples I,J,...       samples whose maps are kept and drawn (default none)\n"
    "  --layers L1,L2|all      layers shown, 0 = first (default all)\n"
    "  --heads H1,H2|all|mean  heads shown, or their mean (default all)\n"
    "  --rollout-heads H1,H2|all   heads averaged in the rollout (default all)\n"
    "  --alpha A               residual weight in [0, 1] (default 0.5, the paper's)\n"
    "  --key-pattern REGEX     the attention modules, whose output is the probabilities\n"
    "                          (B, H, T, T) or (B, T, T) (default: GPT-2's\n"
    "                          transformer\\.h\\.\\d+\\.attn\\.attn_dropout$)\n"
    "  --vocab FILE            vocab.json or one token per line: label the heatmaps with the\n"
    "                          tokens (default: the token ids)\n"
    "  --png-dir DIR           draw the heatmaps into DIR (an existing folder)\n"
    "  --batch-size B          samples per forward on each rank (default 32)\n" CLI_COMMON_HELP;

enum {
  OPT_MODEL = 1,
  OPT_INPUTS,
  OPT_OUT,
  OPT_SAMPLES,
  OPT_LAYERS,
  OPT_HEADS,
  OPT_ROLLOUT_HEADS,
  OPT_ALPHA,
  OPT_PATTERN,
  OPT_VOCAB,
  OPT_PNG_DIR,
  OPT_BATCH
};

#define MAX_LIST 4096

typedef struct list {
  int64_t v[MAX_LIST];
  int64_t n;
  bool given;
} list;

typedef struct args {
  const char *model, *inputs, *out, *vocab, *png_dir;
  list samples, layers, heads, rheads;
  bool head_mean;
  lh_attention_opts o;
} args;

/* "I,J,..." of non-negative integers into l. */
static lh_status parse_list(const char *opt, const char *arg, list *l) {
  const char *s = arg;
  l->n = 0;
  l->given = true;
  while (*s) {
    char *e = NULL;
    long long v = strtoll(s, &e, 10);
    if (e == s || (*e && *e != ',') || v < 0)
      return LH_ERROR(LH_ERR_USAGE,
                      "%s: expected non-negative integers separated by commas, got '%s'", opt, arg);
    if (l->n == MAX_LIST) return LH_ERROR(LH_ERR_USAGE, "%s: more than %d entries", opt, MAX_LIST);
    l->v[l->n++] = v;
    s = *e ? e + 1 : e;
    if (*e && !*s) return LH_ERROR(LH_ERR_USAGE, "%s: trailing comma in '%s'", opt, arg);
  }
  if (l->n == 0) return LH_ERROR(LH_ERR_USAGE, "%s: an empty list", opt);
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
    case OPT_OUT:
      a->out = arg;
      return LH_OK;
    case OPT_VOCAB:
      a->vocab = arg;
      return LH_OK;
    case OPT_PNG_DIR:
      a->png_dir = arg;
      return LH_OK;
    case OPT_PATTERN:
      a->o.key_pattern = arg;
      return LH_OK;
    case OPT_SAMPLES:
      return parse_list("--samples", arg, &a->samples);
    case OPT_LAYERS:
      if (strcmp(arg, "all") == 0) {
        a->layers.given = false;
        return LH_OK;
      }
      return parse_list("--layers", arg, &a->layers);
    case OPT_HEADS:
      a->head_mean = strcmp(arg, "mean") == 0;
      if (a->head_mean || strcmp(arg, "all") == 0) {
        a->heads.given = false;
        return LH_OK;
      }
      return parse_list("--heads", arg, &a->heads);
    case OPT_ROLLOUT_HEADS:
      if (strcmp(arg, "all") == 0) {
        a->rheads.given = false;
        return LH_OK;
      }
      return parse_list("--rollout-heads", arg, &a->rheads);
    case OPT_ALPHA: {
      lh_status st = cli_parse_double("--alpha", arg, &a->o.rollout.alpha);
      if (st == LH_OK && !(a->o.rollout.alpha >= 0 && a->o.rollout.alpha <= 1))
        return LH_ERROR(LH_ERR_USAGE, "--alpha must be in [0, 1], got %s", arg);
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

/* The last component of the model path ("gpt2" for "models/gpt2/"), for titles. */
static void model_name(const char *path, char *buf, size_t cap) {
  snprintf(buf, cap, "%s", path);
  size_t n = strlen(buf);
  while (n > 1 && buf[n - 1] == '/') buf[--n] = '\0';
  const char *s = strrchr(buf, '/');
  if (s) memmove(buf, s + 1, strlen(s + 1) + 1);
}

#define LABEL_CAP 64

/* Rank 0: every PNG; on failure removes those drawn. files: the paths drawn (appended). */
static lh_status draw(const args *a, const lh_attention_result *r, const lh_vocab *vocab,
                      json_t *files) {
  lh_status st = LH_OK;
  const int64_t T = r->T, TT = T * T;
  char(*text)[LABEL_CAP] = NULL;
  const char **labels = NULL;
  char path[4400], title[1024], mname[256], layer[600];
  model_name(a->model, mname, sizeof mname);
  LH_TRY(lh_alloc((size_t)T, sizeof *text, false, "labels", &text));
  LH_TRY(lh_alloc((size_t)T, sizeof *labels, false, "labels", &labels));
  for (int64_t i = 0; i < r->nsamples; i++) {
    const int64_t s = r->samples[i];
    bool dup = false;
    for (int64_t j = 0; j < i; j++) dup = dup || r->samples[j] == s;
    if (dup) continue;
    for (int64_t t = 0; t < T; t++) {
      if (r->inputs) {
        const int64_t id = (int64_t)r->inputs[i * T + t];
        if (vocab)
          lh_vocab_display(vocab, id, text[t], LABEL_CAP);
        else
          snprintf(text[t], LABEL_CAP, "%lld", (long long)id);
      } else {
        snprintf(text[t], LABEL_CAP, "%lld", (long long)t);
      }
      labels[t] = text[t];
    }
    snprintf(path, sizeof path, "%s/rollout_sample%lld.png", a->png_dir, (long long)s);
    if (a->o.rollout.heads)
      snprintf(title, sizeof title,
               "%s, sample %lld: attention rollout over %lld layers (alpha %g, %lld heads)", mname,
               (long long)s, (long long)r->L, a->o.rollout.alpha, (long long)a->o.rollout.nheads);
    else
      snprintf(title, sizeof title,
               "%s, sample %lld: attention rollout over %lld layers (alpha %g, all heads)", mname,
               (long long)s, (long long)r->L, a->o.rollout.alpha);
    LH_TRY(lh_plot_heatmap(path, T, T, r->rollout + i * TT, labels, labels, title,
                           "rollout (rows: queries)", 0.0, 1.0));
    json_array_append_new(files, json_string(path));
    for (int64_t li = 0; li < r->nshow_layers; li++) {
      const int64_t l = r->show_layers[li];
      snprintf(layer, sizeof layer, "%s", r->layer_names[l]);
      for (int64_t hi = 0; hi < r->nshow_heads; hi++) {
        const int64_t h = r->show_heads[hi];
        char hname[32];
        if (h < 0)
          snprintf(hname, sizeof hname, "mean");
        else
          snprintf(hname, sizeof hname, "%lld", (long long)h);
        snprintf(path, sizeof path, "%s/attn_sample%lld_L%lld_H%s.png", a->png_dir, (long long)s,
                 (long long)l, hname);
        snprintf(title, sizeof title, "%s, sample %lld: layer %lld (%s), %s%s", mname, (long long)s,
                 (long long)l, layer, h < 0 ? "mean of all heads" : "head ", h < 0 ? "" : hname);
        const double *m = r->attention + ((i * r->nshow_layers + li) * r->nshow_heads + hi) * TT;
        LH_TRY(lh_plot_heatmap(path, T, T, m, labels, labels, title, "attention (rows: queries)",
                               0.0, 1.0));
        json_array_append_new(files, json_string(path));
      }
    }
  }
done:
  if (st != LH_OK) /* no partial set of figures */
    for (size_t k = 0; k < json_array_size(files); k++)
      unlink(json_string_value(json_array_get(files, k)));
  lh_free(text);
  lh_free(labels);
  return st;
}

static json_t *int_array(const int64_t *v, int64_t n) {
  json_t *a = json_array();
  for (int64_t i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
  return a;
}

lh_status cmd_attention(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {
      {"model", required_argument, NULL, OPT_MODEL},
      {"inputs", required_argument, NULL, OPT_INPUTS},
      {"out", required_argument, NULL, OPT_OUT},
      {"samples", required_argument, NULL, OPT_SAMPLES},
      {"layers", required_argument, NULL, OPT_LAYERS},
      {"heads", required_argument, NULL, OPT_HEADS},
      {"rollout-heads", required_argument, NULL, OPT_ROLLOUT_HEADS},
      {"alpha", required_argument, NULL, OPT_ALPHA},
      {"key-pattern", required_argument, NULL, OPT_PATTERN},
      {"vocab", required_argument, NULL, OPT_VOCAB},
      {"png-dir", required_argument, NULL, OPT_PNG_DIR},
      {"batch-size", required_argument, NULL, OPT_BATCH},
      CLI_COMMON_OPTIONS,
      {0, 0, 0, 0}};
  args *a = NULL;
  lh_model *m = NULL;
  lh_vocab *vocab = NULL;
  lh_h5_out *o = NULL;
  lh_attention_result r = {0};
  json_t *files = json_array();
  int pos, rank;
  MPI_Comm_rank(comm, &rank);

  LH_TRY(lh_agree(comm, lh_alloc(1, sizeof *a, true, "arguments", &a)));
  a->o = lh_attention_defaults();
  LH_TRY(cli_parse("attention", argc, argv, opts, NULL, cc, on_option, a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook attention --help')",
            argv[pos]);
  if (!a->model) LH_FAIL(LH_ERR_USAGE, "--model PATH is required (a GPT-2 folder or a YAML file)");
  if (!a->inputs) LH_FAIL(LH_ERR_USAGE, "--inputs FILE.h5:/dataset is required");
  if (!a->out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");
  if (a->png_dir && !a->samples.given)
    LH_FAIL(LH_ERR_USAGE, "--png-dir draws the samples of --samples: give --samples I,J,...");
  a->o.progress = cc->progress;
  if (a->samples.given) {
    a->o.samples = a->samples.v;
    a->o.nsamples = a->samples.n;
  }
  if (a->layers.given) {
    a->o.layers = a->layers.v;
    a->o.nlayers = a->layers.n;
  }
  if (a->heads.given) {
    a->o.heads = a->heads.v;
    a->o.nheads = a->heads.n;
  }
  a->o.head_mean = a->head_mean;
  if (a->rheads.given) {
    a->o.rollout.heads = a->rheads.v;
    a->o.rollout.nheads = a->rheads.n;
  }

  /* everything that can fail early, before the forward */
  if (rank == 0 && a->png_dir && access(a->png_dir, W_OK | X_OK) != 0)
    local = LH_ERROR(LH_ERR_IO, "--png-dir '%s': not a writable folder", a->png_dir);
  if (local == LH_OK && rank == 0 && a->vocab) {
    local = lh_vocab_load(a->vocab, &vocab);
    if (local != LH_OK) lh_error_prefix("--vocab: ");
  }
  LH_TRY(lh_agree(comm, local));
  local = lh_model_load(a->model, &m);
  if (local != LH_OK) lh_error_prefix("--model: ");
  LH_TRY(lh_agree(comm, local));
  if (rank == 0 && vocab && lh_model_input_kind(m) == LH_INPUT_TOKENS &&
      lh_vocab_size(vocab) != lh_model_vocab(m))
    lh_log_warn("attention: --vocab '%s' has %lld tokens, the model %lld", a->vocab,
                (long long)lh_vocab_size(vocab), (long long)lh_model_vocab(m));
  LH_TRY(lh_h5_out_create(comm, a->out, &o));
  LH_TRY(lh_attention_run(comm, m, a->inputs, &a->o, o, &r));
  if (a->png_dir) {
    if (r.T * r.T > 1000000) /* the same on every rank: agreed so that one rank reports */
      LH_TRY(lh_agree(comm, LH_ERROR(LH_ERR_VALUE,
                                     "--png-dir: heatmaps of %lld x %lld positions exceed the "
                                     "figures' limit of 10^6 cells (T <= 1000)",
                                     (long long)r.T, (long long)r.T)));
    LH_TRY(lh_agree(comm, rank == 0 ? draw(a, &r, vocab, files) : LH_OK));
  }
  local = lh_h5_out_commit(&o);
  if (local != LH_OK && rank == 0) /* the figures go with the file */
    for (size_t k = 0; k < json_array_size(files); k++)
      unlink(json_string_value(json_array_get(files, k)));
  LH_TRY(local);

  json_t *doc = json_object(), *att = json_array(), *names = json_array();
  for (int64_t l = 0; l < r.L; l++) json_array_append_new(names, json_string(r.layer_names[l]));
  for (int64_t i = 0; i < r.nsamples; i++) {
    bool dup = false;
    for (int64_t j = 0; j < i; j++) dup = dup || r.samples[j] == r.samples[i];
    if (dup) continue;
    char path[64];
    snprintf(path, sizeof path, "/attention/sample_%lld", (long long)r.samples[i]);
    const int64_t shape[4] = {r.nshow_layers, r.nshow_heads, r.T, r.T};
    json_t *e = json_object();
    json_object_set_new(e, "sample", json_integer(r.samples[i]));
    json_object_set_new(e, "dataset", json_string(path));
    json_object_set_new(e, "shape", int_array(shape, 4));
    json_array_append_new(att, e);
  }
  const int64_t rshape[3] = {r.N, r.T, r.T};
  json_object_set_new(doc, "out", json_string(a->out));
  json_object_set_new(doc, "samples", json_integer(r.N));
  json_object_set_new(doc, "positions", json_integer(r.T));
  json_object_set_new(doc, "heads", json_integer(r.H));
  json_object_set_new(doc, "alpha", json_real(a->o.rollout.alpha));
  json_object_set_new(doc, "layers", names);
  json_object_set_new(doc, "rollout", json_string("/rollout"));
  json_object_set_new(doc, "rollout_shape", int_array(rshape, 3));
  json_object_set_new(doc, "shown_layers", int_array(r.show_layers, r.nshow_layers));
  json_object_set_new(doc, "shown_heads",
                      a->head_mean ? json_string("mean") : int_array(r.show_heads, r.nshow_heads));
  json_object_set_new(doc, "attention", att);
  json_object_set_new(doc, "png", files);
  files = NULL;
  json_object_set_new(doc, "seconds", json_real(r.seconds));
  json_object_set_new(doc, "samples_per_second",
                      json_real(r.seconds > 0 ? (double)r.N / r.seconds : 0));
  cli_emit_json(comm, doc);
done:
  json_decref(files);
  lh_h5_out_discard(&o);
  lh_attention_result_free(&r);
  lh_vocab_free(vocab);
  lh_model_destroy(&m);
  lh_free(a);
  return st;
}
