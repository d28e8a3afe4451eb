/*
 * attention.c: attention rollout over a dataset on the data-parallel hooked forward pass
 * (attention.h; Abnar & Zuidema 2020).
 *
 * Three steps, as cache.c. (1) Hooks on the attention modules; a one-sample probe forward on
 * every rank records the layers (hook events in call order) and their shape (H, T, T), so
 * every rank knows L, H and T before any data is read and checks the user's layers, heads and
 * samples against them. (2) Batches on the global grid of grid.h (bit-identical results for
 * any rank count); inside each layer's hook, every sample this rank owns in the batch gets
 * that layer folded into its running rollout R <- Â R, and the chosen samples copy the shown
 * heads of the shown layers. After each batch the rollouts go to OUT:/rollout collectively.
 * (3) The chosen samples' matrices travel from their owners to rank 0 (point to point, one
 * message per sample) and are written as OUT:/attention/sample_<i>.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/check.h"
#include "latent/grid.h"
#include "latenthook/attention.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/timer.h"

#define MAX_LAYERS 4096
#define NAME_CAP 512

/* A chosen sample this rank owns. */
typedef struct keep {
  int64_t sample;
  double *buf; /* rollout (T, T), then attention (L', H', T, T), then inputs (T) */
} keep;

typedef struct ctx {
  const lh_attention_opts *o;
  lh_model *model;
  bool probing;
  /* layers, from the probe */
  int64_t L, H, T;
  char (*names)[NAME_CAP];
  int *calls;
  int64_t last_module;
  int last_call;
  /* the current forward */
  int64_t layer;       /* hook events seen so far in this forward */
  int64_t nb;          /* samples in the forward (a whole global batch) */
  int64_t lo, hi;      /* global rows of it this rank owns */
  double *R;           /* (hi - lo, T, T) running rollouts */
  double *ahat, *work; /* (T, T) */
  /* shown maps */
  int64_t *show_at; /* (L) position of layer l among the shown layers, or -1 */
  int64_t nsl, nsh; /* shown layers, shown heads (1 with the mean) */
  keep *keeps;
  int64_t nkeeps;
  /* the pass */
  MPI_Comm comm;
  lh_h5_dset *ds; /* OUT:/rollout, or NULL */
  int64_t W;      /* input row width */
  int64_t E;      /* doubles per kept sample */
} ctx;

lh_attention_opts lh_attention_defaults(void) {
  lh_attention_opts o = {.key_pattern = LH_ATTENTION_GPT2_PATTERN,
                         .rollout = lh_rollout_defaults(),
                         .samples = NULL,
                         .nsamples = 0,
                         .layers = NULL,
                         .nlayers = 0,
                         .heads = NULL,
                         .nheads = 0,
                         .head_mean = false,
                         .batch_size = 32,
                         .progress = false};
  return o;
}

/* Per-sample shape (H, T, T) or (T, T) of a hooked tensor, else an error naming the module. */
static lh_status attn_shape(const lh_hook_event *ev, int64_t *H, int64_t *T) {
  const lh_tensor *t = ev->tensor;
  if ((t->ndim != 3 && t->ndim != 4) || t->shape[t->ndim - 1] != t->shape[t->ndim - 2]) {
    char sh[128];
    size_t n = 0;
    for (int i = 1; i < t->ndim && n + 1 < sizeof sh; i++)
      n += (size_t)snprintf(sh + n, sizeof sh - n, "%s%lld", i > 1 ? ", " : "",
                            (long long)t->shape[i]);
    if (t->ndim <= 1) sh[0] = '\0';
    return LH_ERROR(LH_ERR_VALUE,
                    "module '%s' outputs per-sample shape (%s); attention probabilities must be "
                    "(H, T, T) or (T, T)",
                    ev->name, sh);
  }
  *H = t->ndim == 4 ? t->shape[1] : 1;
  *T = t->shape[t->ndim - 1];
  return LH_OK;
}

/* True if `layer` (a probe name, "name" or "name#call") is module `name`. */
static bool same_module(const char *layer, const char *name) {
  size_t k = strlen(name);
  return strncmp(layer, name, k) == 0 && (layer[k] == '\0' || layer[k] == '#');
}

static lh_status on_attention(const lh_hook_event *ev, void *user) {
  ctx *x = user;
  int64_t H = 0, T = 0;
  lh_status st = attn_shape(ev, &H, &T);
  if (st != LH_OK) return st;
  if (x->probing) {
    if (x->L == MAX_LAYERS)
      return LH_ERROR(LH_ERR_VALUE, "the key pattern matches more than %d module calls",
                      MAX_LAYERS);
    if (x->L > 0 && (H != x->H || T != x->T))
      return LH_ERROR(LH_ERR_VALUE,
                      "module '%s' outputs attention (%lld, %lld, %lld), the earlier layers "
                      "(%lld, %lld, %lld)",
                      ev->name, (long long)H, (long long)T, (long long)T, (long long)x->H,
                      (long long)x->T, (long long)x->T);
    x->H = H;
    x->T = T;
    if (ev->call > 0)
      snprintf(x->names[x->L], NAME_CAP, "%s#%d", ev->name, ev->call);
    else
      snprintf(x->names[x->L], NAME_CAP, "%s", ev->name);
    x->calls[x->L] = ev->call;
    x->last_module = lh_model_module_find(x->model, ev->name);
    x->last_call = ev->call;
    x->L++;
    return LH_OK;
  }
  const int64_t l = x->layer++;
  if (l >= x->L || x->calls[l] != ev->call || !same_module(x->names[l], ev->name))
    return LH_ERROR(LH_ERR_RUNTIME,
                    "module '%s' fired as attention layer %lld, which the probe forward saw "
                    "as '%s'",
                    ev->name, (long long)l, l < x->L ? x->names[l] : "(none)");
  if (H != x->H || T != x->T || ev->tensor->shape[0] != x->nb)
    return LH_ERROR(LH_ERR_RUNTIME, "module '%s' changed its output shape after the probe",
                    ev->name);
  const int64_t TT = T * T;
  for (int64_t row = x->lo; row < x->hi; row++) {
    const float *A = ev->tensor->data + (row - ev->row0) * H * TT; /* (H, T, T) */
    double *R = x->R + (row - x->lo) * TT;
    lh_attention_head_mean(H, T, A, x->o->rollout.heads, x->o->rollout.nheads, x->ahat);
    st = lh_rollout_mix(T, x->o->rollout.alpha, x->ahat);
    if (st != LH_OK) {
      lh_error_prefix("sample %lld, layer %lld ('%s'): ", (long long)row, (long long)l, ev->name);
      return st;
    }
    if (l == 0)
      memcpy(R, x->ahat, (size_t)TT * sizeof *R);
    else
      lh_rollout_step(T, x->ahat, R, x->work);
    if (x->show_at[l] < 0) continue;
    for (int64_t k = 0; k < x->nkeeps; k++) {
      if (x->keeps[k].sample != row) continue;
      double *dst = x->keeps[k].buf + TT + x->show_at[l] * x->nsh * TT; /* (H', T, T) */
      if (x->o->head_mean) {
        lh_attention_head_mean(H, T, A, NULL, 0, dst);
      } else {
        for (int64_t h = 0; h < x->nsh; h++) {
          const float *a = A + (x->o->heads ? x->o->heads[h] : h) * TT;
          for (int64_t e = 0; e < TT; e++) dst[h * TT + e] = (double)a[e];
        }
      }
    }
  }
  return LH_OK;
}

/* The hooks' view of a round of the pass; the layers count from 0 in each forward. */
static void begin_batch(const lh_grid_batch *b, void *user) {
  ctx *x = user;
  x->lo = b->lo;
  x->hi = b->hi;
  x->nb = b->gsz;
  x->layer = 0;
}

/* Every layer must have fired; the chosen samples of the batch keep their rollout and their
 * inputs. */
static lh_status after_forward(const lh_grid_batch *b, void *user) {
  ctx *x = user;
  const int64_t T = x->T, TT = T * T, W = x->W;
  if (x->layer != x->L)
    return LH_ERROR(LH_ERR_RUNTIME,
                    "the forward of batch %lld called %lld attention layers, the probe %lld",
                    (long long)b->g0, (long long)x->layer, (long long)x->L);
  for (int64_t k = 0; k < x->nkeeps; k++) {
    const int64_t s = x->keeps[k].sample;
    if (s < x->lo || s >= x->hi) continue;
    memcpy(x->keeps[k].buf, x->R + (s - x->lo) * TT, (size_t)TT * sizeof(double));
    double *ids = x->keeps[k].buf + x->E - T;
    for (int64_t t = 0; t < T; t++) ids[t] = t < W ? (double)b->in[(s - b->g0) * W + t] : -1.0;
  }
  return LH_OK;
}

/* The round's rollouts to OUT:/rollout. Collective. */
static lh_status write_rollouts(const lh_grid_batch *b, void *user) {
  const ctx *x = user;
  if (!x->ds) return LH_OK;
  return lh_agree(x->comm, lh_h5_write_rows(x->ds, 0, b->lo, b->hi - b->lo, LH_F64, x->R));
}

/* lh_grid_check_inputs, but for floating-point token ids this file's own wording. */
static lh_status check_inputs(const lh_model *m, const lh_h5_info *in) {
  int64_t W;
  if (in->ndims == 2 && lh_model_input_kind(m) == LH_INPUT_TOKENS && in->cls == LH_H5_FLOAT)
    return LH_ERROR(LH_ERR_VALUE, "%s:%s: expected integer token ids, got floating-point data",
                    in->addr.file, in->addr.path);
  return lh_grid_check_inputs(m, in, &W);
}

/* The user's lists against N, L and H. Local (the same on every rank). */
static lh_status check_lists(const lh_attention_opts *o, int64_t N, int64_t L, int64_t H) {
  for (int64_t i = 0; i < o->nsamples; i++)
    if (o->samples[i] < 0 || o->samples[i] >= N)
      return LH_ERROR(LH_ERR_VALUE,
                      "sample %lld out of range: the inputs hold %lld samples (0 to %lld)",
                      (long long)o->samples[i], (long long)N, (long long)N - 1);
  if (o->layers && o->nlayers < 1) return LH_ERROR(LH_ERR_VALUE, "an empty list of layers");
  for (int64_t i = 0; o->layers && i < o->nlayers; i++) {
    if (o->layers[i] < 0 || o->layers[i] >= L)
      return LH_ERROR(LH_ERR_VALUE, "layer %lld out of range: %lld attention layers (0 to %lld)",
                      (long long)o->layers[i], (long long)L, (long long)L - 1);
    for (int64_t j = 0; j < i; j++)
      if (o->layers[j] == o->layers[i])
        return LH_ERROR(LH_ERR_VALUE, "layer %lld given twice", (long long)o->layers[i]);
  }
  if (!o->head_mean && o->heads) {
    lh_rollout_opts shown = {.alpha = 0.5, .heads = o->heads, .nheads = o->nheads};
    lh_status st = lh_rollout_check(&shown, H);
    if (st != LH_OK) {
      lh_error_prefix("heads shown: ");
      return st;
    }
  }
  lh_status st = lh_rollout_check(&o->rollout, H);
  if (st != LH_OK) lh_error_prefix("heads of the rollout: ");
  return st;
}

/* A malloc'ed copy of s, or NULL. */
static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* JSON list of integers ("[0, 2]") or `all` when v is NULL; caller frees. */
static char *json_ints(const int64_t *v, int64_t n, const char *all) {
  if (!v) return dup_string(all);
  json_t *a = json_array();
  for (int64_t i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
  char *s = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  return s;
}

static lh_status write_attrs(MPI_Comm comm, lh_h5_out *o, const lh_attention_opts *opts,
                             const ctx *x) {
  lh_status st = LH_OK;
  char alpha[64];
  char *heads = json_ints(opts->rollout.heads, opts->rollout.nheads, "all");
  char *shl = json_ints(opts->layers, x->nsl, "all");
  char *shh = json_ints(opts->heads, x->nsh, "all");
  json_t *a = json_array();
  for (int64_t l = 0; l < x->L; l++) json_array_append_new(a, json_string(x->names[l]));
  char *names = json_dumps(a, JSON_COMPACT);
  json_decref(a);
  snprintf(alpha, sizeof alpha, "%.17g", opts->rollout.alpha);
  LH_TRY(lh_agree(comm, heads && shl && shh && names
                            ? LH_OK
                            : LH_ERROR(LH_ERR_NOMEM, "out of memory for the attributes")));
  LH_TRY(lh_h5_out_attr_string(o, "/rollout", "key_pattern", opts->key_pattern));
  LH_TRY(lh_h5_out_attr_string(o, "/rollout", "alpha", alpha));
  LH_TRY(lh_h5_out_attr_string(o, "/rollout", "heads", heads));
  LH_TRY(lh_h5_out_attr_string(o, "/rollout", "layers", names));
  if (opts->nsamples > 0) {
    LH_TRY(lh_h5_out_attr_string(o, "/attention", "layers", shl));
    LH_TRY(lh_h5_out_attr_string(o, "/attention", "heads", opts->head_mean ? "mean" : shh));
  }
done:
  free(heads);
  free(names);
  free(shl);
  free(shh);
  return st;
}

lh_status lh_attention_run(MPI_Comm comm, lh_model *model, const char *inputs,
                           const lh_attention_opts *opts, lh_h5_out *o, lh_attention_result *out) {
  lh_status st = LH_OK, local = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  lh_h5_dset *d = NULL, *ds = NULL;
  lh_hook_handle *hook = NULL;
  float *buf = NULL;
  double *msg = NULL;
  ctx x = {.o = opts, .model = model, .last_module = -1};
  lh_attention_result r = {0};
  static lh_event ev = -2;
  if (ev == -2) ev = lh_event_get("attention.forward");

  if (opts->batch_size < 1)
    local =
        LH_ERROR(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", (long long)opts->batch_size);
  else if (!opts->key_pattern || !opts->key_pattern[0])
    local = LH_ERROR(LH_ERR_USAGE, "an empty key pattern");
  else if (opts->nsamples < 0 || (opts->nsamples > 0 && !opts->samples))
    local = LH_ERROR(LH_ERR_USAGE, "bad list of samples");
  else { /* alpha now; the heads after the probe, when H is known */
    lh_rollout_opts alpha_only = {.alpha = opts->rollout.alpha, .heads = NULL, .nheads = 0};
    local = lh_rollout_check(&alpha_only, 0);
  }
  LH_TRY(lh_agree(comm, local));

  LH_TRY(lh_h5_open(comm, inputs, 0, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  LH_TRY(lh_agree(comm, check_inputs(model, in)));
  const int64_t N = in->dims[0], W = in->dims[1];
  const int64_t n = lh_part_count(N, P, rank), off = lh_part_offset(N, P, rank);

  /* (1) hooks and the probe */
  local = lh_alloc(MAX_LAYERS, sizeof *x.names, false, "layer names", &x.names);
  if (local == LH_OK) local = lh_alloc(MAX_LAYERS, sizeof *x.calls, false, "layer calls", &x.calls);
  if (local == LH_OK) local = lh_alloc((size_t)W, sizeof *buf, true, "probe input", &buf);
  int64_t matched = 0;
  if (local == LH_OK) {
    lh_hook_spec spec = {.fn = on_attention, .user = &x, .user_free = NULL};
    local =
        lh_model_hook_pattern(model, opts->key_pattern, true, LH_HOOK_FWD, spec, &hook, &matched);
    if (local != LH_OK) lh_error_prefix("--key-pattern: ");
  }
  if (local == LH_OK) {
    lh_tensor pin = {.data = buf, .ndim = 2, .shape = {1, W}}, pout;
    x.probing = true;
    x.nb = 1;
    lh_model_set_row0(model, -1);
    local = lh_model_forward(model, &pin, &pout);
    x.probing = false;
  }
  LH_TRY(lh_agree(comm, local));
  lh_free(buf);
  buf = NULL;
  if (x.L == 0) {
    char names[2048];
    lh_grid_list_modules(model, true, names, sizeof names);
    LH_TRY(lh_agree(
        comm, LH_ERROR(LH_ERR_VALUE, "--key-pattern '%s' matches %s; the model's modules are: %s",
                       opts->key_pattern,
                       matched ? "only modules that are never called (containers)" : "no module",
                       names)));
  }
  const int64_t L = x.L, H = x.H, T = x.T, TT = T * T;
  LH_TRY(lh_agree(comm, check_lists(opts, N, L, H)));
  if (x.last_module >= 0) lh_model_stop_after(model, x.last_module, x.last_call);

  /* what is shown */
  x.nsl = opts->layers ? opts->nlayers : L;
  x.nsh = opts->head_mean ? 1 : (opts->heads ? opts->nheads : H);
  const int64_t E = TT + x.nsl * x.nsh * TT + T; /* doubles per kept sample */
  int msg_count = 0;
  LH_TRY(lh_agree(comm, lh_int_cast(E, "attention maps of one sample (elements)", &msg_count)));
  local = lh_alloc((size_t)L, sizeof *x.show_at, false, "shown layers", &x.show_at);
  if (local == LH_OK)
    local = lh_alloc((size_t)(x.nsl ? x.nsl : 1), sizeof *r.show_layers, false, "shown layers",
                     &r.show_layers);
  if (local == LH_OK)
    local = lh_alloc((size_t)x.nsh, sizeof *r.show_heads, false, "shown heads", &r.show_heads);
  if (local == LH_OK)
    local = lh_alloc((size_t)(opts->nsamples ? opts->nsamples : 1), sizeof *r.samples, false,
                     "samples", &r.samples);
  if (local == LH_OK)
    local = lh_alloc((size_t)L, sizeof *r.layer_names, true, "layer names", &r.layer_names);
  for (int64_t l = 0; local == LH_OK && l < L; l++) {
    r.layer_names[l] = dup_string(x.names[l]);
    if (!r.layer_names[l]) local = LH_ERROR(LH_ERR_NOMEM, "out of memory for layer names");
  }
  LH_TRY(lh_agree(comm, local));
  for (int64_t l = 0; l < L; l++) x.show_at[l] = opts->layers ? -1 : l;
  for (int64_t i = 0; i < x.nsl; i++) {
    r.show_layers[i] = opts->layers ? opts->layers[i] : i;
    x.show_at[r.show_layers[i]] = i;
  }
  for (int64_t h = 0; h < x.nsh; h++)
    r.show_heads[h] = opts->head_mean ? -1 : (opts->heads ? opts->heads[h] : h);
  for (int64_t i = 0; i < opts->nsamples; i++) r.samples[i] = opts->samples[i];

  /* the chosen samples this rank owns (each once), and rank 0's copies of all */
  const int64_t bs = opts->batch_size;
  local = lh_alloc((size_t)(opts->nsamples ? opts->nsamples : 1), sizeof *x.keeps, true,
                   "kept samples", &x.keeps);
  for (int64_t i = 0; local == LH_OK && i < opts->nsamples; i++) {
    const int64_t s = opts->samples[i];
    bool dup = false;
    for (int64_t j = 0; j < i; j++) dup = dup || opts->samples[j] == s;
    if (dup || s < off || s >= off + n) continue;
    x.keeps[x.nkeeps].sample = s;
    local = lh_alloc((size_t)E, sizeof(double), true, "attention maps of a sample",
                     &x.keeps[x.nkeeps].buf);
    x.nkeeps += local == LH_OK;
  }
  if (local == LH_OK && rank == 0 && opts->nsamples > 0) {
    const size_t ns = (size_t)opts->nsamples;
    local = lh_alloc(ns * (size_t)TT, sizeof(double), false, "rollouts shown", &r.rollout);
    if (local == LH_OK)
      local = lh_alloc(ns * (size_t)(x.nsl * x.nsh * TT), sizeof(double), false, "attention shown",
                       &r.attention);
    if (local == LH_OK) local = lh_alloc((size_t)E, sizeof *msg, false, "message", &msg);
    if (local == LH_OK && lh_model_input_kind(model) == LH_INPUT_TOKENS && T == W)
      local = lh_alloc(ns * (size_t)T, sizeof(double), false, "tokens shown", &r.inputs);
  }
  if (local == LH_OK)
    local = lh_alloc((size_t)(bs * TT), sizeof *x.R, false, "rollouts of a batch", &x.R);
  if (local == LH_OK) local = lh_alloc((size_t)TT, sizeof *x.ahat, false, "rollout layer", &x.ahat);
  if (local == LH_OK)
    local = lh_alloc((size_t)TT, sizeof *x.work, false, "rollout workspace", &x.work);
  if (local == LH_OK) local = lh_alloc((size_t)(bs * W), sizeof *buf, false, "input batch", &buf);
  LH_TRY(lh_agree(comm, local));
  if (o) {
    int64_t dims[3] = {N, T, T};
    LH_TRY(lh_h5_out_dataset(o, "/rollout", LH_F64, 3, dims, 0, &ds));
  }

  /* (2) the pass, on the global batch grid (grid.h) */
  x.comm = comm;
  x.ds = ds;
  x.W = W;
  x.E = E;
  lh_grid_ops ops = {.begin = begin_batch,
                     .after = after_forward,
                     .agreed = write_rollouts,
                     .user = &x,
                     .progress = opts->progress ? "attention" : NULL,
                     .event = ev};
  LH_TRY(lh_grid_run(comm, model, d, inputs, bs, buf, &ops, &r.seconds));
  MPI_Allreduce(MPI_IN_PLACE, &r.seconds, 1, MPI_DOUBLE, MPI_MAX, comm);
  lh_h5_close(&ds);

  /* (3) the chosen samples to rank 0 */
  for (int64_t i = 0; i < opts->nsamples; i++) {
    const int64_t s = opts->samples[i];
    const int owner = lh_part_owner(N, P, s);
    const double *src = NULL;
    for (int64_t k = 0; k < x.nkeeps; k++)
      if (x.keeps[k].sample == s) src = x.keeps[k].buf;
    if (rank == owner && owner != 0) {
      int64_t first = 0; /* send once per distinct sample */
      while (opts->samples[first] != s) first++;
      if (first == i) MPI_Send(src, msg_count, MPI_DOUBLE, 0, 0, comm);
    }
    if (rank != 0) continue;
    int64_t first = 0;
    while (opts->samples[first] != s) first++;
    if (first < i) { /* a repeat: copy what arrived before */
      memcpy(r.rollout + i * TT, r.rollout + first * TT, (size_t)TT * sizeof(double));
      memcpy(r.attention + i * x.nsl * x.nsh * TT, r.attention + first * x.nsl * x.nsh * TT,
             (size_t)(x.nsl * x.nsh * TT) * sizeof(double));
      if (r.inputs) memcpy(r.inputs + i * T, r.inputs + first * T, (size_t)T * sizeof(double));
      continue;
    }
    if (owner == 0)
      memcpy(msg, src, (size_t)E * sizeof *msg);
    else
      MPI_Recv(msg, msg_count, MPI_DOUBLE, owner, 0, comm, MPI_STATUS_IGNORE);
    memcpy(r.rollout + i * TT, msg, (size_t)TT * sizeof(double));
    memcpy(r.attention + i * x.nsl * x.nsh * TT, msg + TT,
           (size_t)(x.nsl * x.nsh * TT) * sizeof(double));
    if (r.inputs) memcpy(r.inputs + i * T, msg + E - T, (size_t)T * sizeof(double));
  }
  if (o) {
    for (int64_t i = 0; i < opts->nsamples; i++) {
      bool dup = false;
      for (int64_t j = 0; j < i; j++) dup = dup || opts->samples[j] == opts->samples[i];
      if (dup) continue;
      char path[64];
      int64_t dims[4] = {x.nsl, x.nsh, T, T};
      snprintf(path, sizeof path, "/attention/sample_%lld", (long long)opts->samples[i]);
      LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 4, dims,
                                   rank == 0 ? r.attention + i * x.nsl * x.nsh * TT : NULL));
    }
    LH_TRY(write_attrs(comm, o, opts, &x));
  }
  r.N = N;
  r.T = T;
  r.L = L;
  r.H = H;
  r.nshow_layers = x.nsl;
  r.nshow_heads = x.nsh;
  r.nsamples = opts->nsamples;
  *out = r;
  memset(&r, 0, sizeof r);
done:
  lh_model_stop_after(model, -1, 0);
  lh_hook_remove(&hook);
  lh_h5_close(&ds);
  lh_h5_close(&d);
  for (int64_t k = 0; x.keeps && k < x.nkeeps; k++) lh_free(x.keeps[k].buf);
  lh_free(x.keeps);
  lh_free(x.names);
  lh_free(x.calls);
  lh_free(x.show_at);
  lh_free(x.R);
  lh_free(x.ahat);
  lh_free(x.work);
  lh_free(buf);
  lh_free(msg);
  r.L = r.layer_names ? x.L : 0;
  lh_attention_result_free(&r);
  return st;
}

void lh_attention_result_free(lh_attention_result *r) {
  for (int64_t l = 0; r->layer_names && l < r->L; l++) free(r->layer_names[l]);
  lh_free(r->layer_names);
  lh_free(r->show_layers);
  lh_free(r->show_heads);
  lh_free(r->samples);
  lh_free(r->rollout);
  lh_free(r->attention);
  lh_free(r->inputs);
  memset(r, 0, sizeof *r);
}
