/*
 * maxact.c: maximally activating samples of every unit (maxact.h; Chen et al. 2020).
 *
 * Three steps. (1) Hooks on every module the key pattern matches and a one-sample probe
 * forward on every rank find the modules that fire and their per-sample shapes (B, ..., U):
 * every rank, with rows or not, then holds the same lists in the same order. (2) The forward
 * pass over the global batch grid (grid.h); a hook reduces each call of a module to one
 * candidate (score, value, position) per local sample and unit in a per-batch scratch (a later
 * call overwrites an earlier one: the last call counts), and after each forward the
 * candidates go into the rank's sorted top-k list of each unit. (3) One MPI_Allreduce with a
 * user-defined operation merges the lists: the order (score desc, sample asc, position asc) is
 * total and every sample lives on one rank, so the top k of the union is unique and the
 * merge is exact, associative and commutative: the result does not depend on the rank count.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/check.h"
#include "latent/grid.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/maxact.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/timer.h"

#define MAX_MODULES 4096
#define KEY_CAP 512

/* One candidate: a sample's best activation of one unit. Padding has sample -1. 24 bytes,
 * no padding bytes, shipped as raw bytes through the reduction. */
typedef struct cand {
  int64_t sample;
  int64_t pos;
  float score; /* value or |value| */
  float value;
} cand;

typedef struct mod {
  char key[KEY_CAP];
  int64_t order; /* module index, for sorting and early stop */
  int k;         /* per-sample dims */
  int64_t shape[LH_TENSOR_MAX_DIMS];
  int64_t U, M;  /* units (last dim), positions (product of the middle dims) */
  bool fired;    /* in the current forward */
  cand *top;     /* U x K, sorted, then the merged result */
  cand *batch;   /* rows of the current forward kept here x U */
  float *values; /* U x K results, filled after the merge */
  int64_t *samples, *positions;
} mod;

struct lh_maxact {
  mod *m;
  int64_t count, K, N, T;
  bool tokens, absolute;
  int rank; /* in the run's communicator: rank 0 writes */
  char pattern[KEY_CAP];
};

typedef struct ctx {
  lh_maxact *r;
  lh_model *model;
  bool probing, absolute;
  int64_t nb;     /* samples in the current forward */
  int64_t lo, hi; /* global rows of the current forward this rank keeps */
  int64_t last_order;
  int last_call;
} ctx;

lh_maxact_opts lh_maxact_defaults(void) {
  lh_maxact_opts o = {
      .key_pattern = NULL, .k = 10, .absolute = false, .batch_size = 32, .progress = false};
  return o;
}

/* Is a ranked before b? Padding (sample < 0) comes last. */
static inline bool before(const cand *a, const cand *b) {
  if (a->sample < 0) return false;
  if (b->sample < 0) return true;
  if (a->score != b->score) return a->score > b->score;
  if (a->sample != b->sample) return a->sample < b->sample;
  return a->pos < b->pos;
}

/* Inserts c into the sorted list[0..K) if it ranks among the first K. */
static void insert(cand *list, int64_t K, const cand *c) {
  if (!before(c, &list[K - 1])) return;
  int64_t j = K - 1;
  while (j > 0 && before(c, &list[j - 1])) {
    list[j] = list[j - 1];
    j--;
  }
  list[j] = *c;
}

static void pad(cand *list, int64_t count) {
  for (int64_t i = 0; i < count; i++)
    list[i] = (cand){.sample = -1, .pos = -1, .score = NAN, .value = NAN};
}

static mod *find(lh_maxact *r, const char *name) {
  for (int64_t i = 0; i < r->count; i++)
    if (strcmp(r->m[i].key, name) == 0) return &r->m[i];
  return NULL;
}

/* Reduces the rows of tensor t (b, mid..., U) that this rank keeps to one candidate per
 * sample and unit: the best score over the middle positions, the first one on ties. */
static void reduce_rows(const ctx *x, mod *e, const lh_tensor *t, int64_t row0) {
  const int64_t U = e->U, M = e->M, nkeep = x->hi - x->lo;
  const bool shared = t->shape[0] == 1 && x->nb > 1;
  const bool has_pos = t->ndim >= 3;
  for (int64_t s = 0; s < nkeep; s++) {
    const int64_t row = shared ? 0 : x->lo + s - row0;
    const float *y = t->data + row * M * U;
    cand *c = e->batch + s * U;
    pad(c, U);
    for (int64_t p = 0; p < M; p++) {
      const float *yp = y + p * U;
      for (int64_t u = 0; u < U; u++) {
        const float v = yp[u], sc = x->absolute ? fabsf(v) : v;
        if (isnan(sc)) continue;
        if (c[u].sample < 0 || sc > c[u].score) {
          c[u].sample = x->lo + s;
          c[u].pos = has_pos ? p : -1;
          c[u].score = sc;
          c[u].value = v;
        }
      }
    }
  }
}

static lh_status on_output(const lh_hook_event *ev, void *user) {
  ctx *x = user;
  lh_maxact *r = x->r;
  const lh_tensor *t = ev->tensor;
  mod *e = find(r, ev->name);
  if (x->probing) {
    if (!e) {
      if (r->count == MAX_MODULES)
        return LH_ERROR(LH_ERR_VALUE, "the key pattern matches more than %d modules", MAX_MODULES);
      e = &r->m[r->count++];
      memset(e, 0, sizeof *e);
      snprintf(e->key, sizeof e->key, "%s", ev->name);
      int64_t i = lh_model_module_find(x->model, ev->name);
      e->order = i < 0 ? INT64_MAX : i;
    }
    x->last_order = e->order;
    x->last_call = ev->call;
    e->k = t->ndim - 1; /* the last call's shape counts */
    for (int i = 1; i < t->ndim; i++) e->shape[i - 1] = t->shape[i];
    return LH_OK;
  }
  if (!e || !e->top)
    return LH_ERROR(LH_ERR_RUNTIME, "module '%s' fired a hook it did not fire in the probe forward",
                    ev->name);
  int64_t M = 1;
  for (int i = 1; i < t->ndim - 1; i++) M *= t->shape[i];
  if (t->ndim - 1 != e->k || t->shape[t->ndim - 1] != e->U || M != e->M)
    return LH_ERROR(LH_ERR_RUNTIME,
                    "module '%s' changed its output shape between the probe and "
                    "the batch at sample %lld",
                    ev->name, (long long)ev->row0);
  if (t->shape[0] != x->nb && t->shape[0] != 1)
    return LH_ERROR(LH_ERR_RUNTIME, "module '%s' gave %lld rows for a batch of %lld samples",
                    ev->name, (long long)t->shape[0], (long long)x->nb);
  e->fired = true;
  reduce_rows(x, e, t, ev->row0);
  return LH_OK;
}

/* The hooks' view of a round of the pass, and no module fired yet. */
static void begin_batch(const lh_grid_batch *b, void *user) {
  ctx *x = user;
  x->lo = b->lo;
  x->hi = b->hi;
  x->nb = b->gsz;
  for (int64_t i = 0; i < x->r->count; i++) x->r->m[i].fired = false;
}

/* Every module must have fired; its batch candidates go into the unit's top-k list. */
static lh_status after_forward(const lh_grid_batch *b, void *user) {
  const ctx *x = user;
  const lh_maxact *r = x->r;
  const int64_t K = r->K;
  for (int64_t i = 0; i < r->count; i++) {
    mod *e = &r->m[i];
    if (!e->fired)
      return LH_ERROR(LH_ERR_RUNTIME,
                      "module '%s' was not called in the batch at sample "
                      "%lld (it was in the probe forward)",
                      e->key, (long long)b->g0);
    for (int64_t s = 0; s < x->hi - x->lo; s++)
      for (int64_t u = 0; u < e->U; u++) {
        const cand *c = &e->batch[s * e->U + u];
        if (c->sample >= 0) insert(e->top + u * K, K, c);
      }
  }
  return LH_OK;
}

static int by_order(const void *a, const void *b) {
  const mod *x = a, *y = b;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* The user-defined reduction: inout[u] = the first K of in[u] and inout[u] merged. K comes
 * from the datatype (K candidates per element); the scratch is set before the reduction (the
 * operation runs inside the MPI call, on this thread). */
static cand *g_merge_tmp;

static void merge_op(void *in, void *inout, int *len, MPI_Datatype *dt) {
  int size = 0;
  MPI_Type_size(*dt, &size);
  const int64_t K = size / (int64_t)sizeof(cand);
  const cand *a = in;
  cand *b = inout;
  for (int u = 0; u < *len; u++, a += K, b += K) {
    int64_t i = 0, j = 0;
    for (int64_t o = 0; o < K; o++) g_merge_tmp[o] = before(&a[i], &b[j]) ? a[i++] : b[j++];
    memcpy(b, g_merge_tmp, (size_t)K * sizeof *b);
  }
}

/* Merges the local lists of module e over comm (every rank gets the result). */
static lh_status merge(MPI_Comm comm, mod *e, int64_t K, cand *tmp) {
  lh_status st = LH_OK;
  int bytes, count;
  MPI_Datatype t = MPI_DATATYPE_NULL;
  MPI_Op op = MPI_OP_NULL;
  LH_TRY(lh_int_cast(K * (int64_t)sizeof(cand), "top-k list bytes", &bytes));
  LH_TRY(lh_int_cast(e->U, "units", &count));
  MPI_Type_contiguous(bytes, MPI_BYTE, &t);
  MPI_Type_commit(&t);
  MPI_Op_create(merge_op, 1, &op);
  g_merge_tmp = tmp;
  MPI_Allreduce(MPI_IN_PLACE, e->top, count, t, op, comm);
  g_merge_tmp = NULL;
done:
  if (op != MPI_OP_NULL) MPI_Op_free(&op);
  if (t != MPI_DATATYPE_NULL) MPI_Type_free(&t);
  return st;
}

lh_status lh_maxact_run(MPI_Comm comm, lh_model *model, const char *inputs,
                        const lh_maxact_opts *opts, lh_maxact **out) {
  lh_status st = LH_OK, local = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  lh_h5_dset *d = NULL;
  lh_maxact *r = NULL;
  lh_hook_handle *h = NULL;
  float *buf = NULL;
  cand *tmp = NULL;
  ctx x = {.model = model, .absolute = opts->absolute, .last_order = -1};
  static lh_event ev = -2;
  if (ev == -2) ev = lh_event_get("maxact.forward");

  if (!opts->key_pattern) LH_FAIL(LH_ERR_USAGE, "a key pattern is required");
  if (opts->k < 1) LH_FAIL(LH_ERR_USAGE, "--top-k must be >= 1, got %lld", (long long)opts->k);
  if (opts->batch_size < 1)
    LH_FAIL(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", (long long)opts->batch_size);
  const int64_t K = opts->k;

  LH_TRY(lh_h5_open(comm, inputs, 0, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  int64_t W = 0;
  LH_TRY(lh_agree(comm, lh_grid_check_inputs(model, in, &W)));
  const int64_t N = in->dims[0];
  const int64_t n = lh_part_count(N, P, rank);

  local = lh_alloc(1, sizeof *r, true, "maximal activations", &r);
  if (local == LH_OK) local = lh_alloc(MAX_MODULES, sizeof *r->m, true, "module list", &r->m);
  LH_TRY(lh_agree(comm, local));
  r->K = K;
  r->N = N;
  r->T = W;
  r->tokens = lh_model_input_kind(model) == LH_INPUT_TOKENS;
  r->absolute = opts->absolute;
  r->rank = rank;
  snprintf(r->pattern, sizeof r->pattern, "%s", opts->key_pattern);
  x.r = r;

  /* (1) hooks and the probe forward: one zero sample (token 0), row0 = -1 */
  int64_t matched = 0;
  lh_hook_spec spec = {.fn = on_output, .user = &x, .user_free = NULL};
  LH_TRY(lh_agree(comm, lh_model_hook_pattern(model, opts->key_pattern, true, LH_HOOK_FWD, spec, &h,
                                              &matched)));
  const int64_t bs = opts->batch_size;
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(bs * W), sizeof *buf, true, "input batch", &buf)));
  {
    lh_tensor pin = {.data = buf, .ndim = 2, .shape = {1, W}}, pout;
    x.probing = true;
    x.nb = 1;
    lh_model_set_row0(model, -1);
    local = lh_model_forward(model, &pin, &pout);
    x.probing = false;
  }
  LH_TRY(lh_agree(comm, local));
  if (r->count == 0) {
    char names[2048];
    lh_grid_list_modules(model, true, names, sizeof names);
    LH_FAIL(LH_ERR_VALUE, "--key-pattern '%s' matches %s; the model's modules are: %s",
            opts->key_pattern,
            matched ? "only modules that are never called (containers)" : "no module", names);
  }
  qsort(r->m, (size_t)r->count, sizeof *r->m, by_order);
  for (int64_t i = 0; i < r->count && local == LH_OK; i++) {
    mod *e = &r->m[i];
    if (e->k < 1) {
      local = LH_ERROR(LH_ERR_VALUE,
                       "module '%s' outputs one value per sample (B,): no unit "
                       "axis to rank",
                       e->key);
      break;
    }
    e->U = e->shape[e->k - 1];
    e->M = 1;
    for (int j = 0; j < e->k - 1; j++) e->M *= e->shape[j];
    local = lh_alloc((size_t)(e->U * K), sizeof *e->top, false, "top-k lists", &e->top);
    if (local == LH_OK)
      local = lh_alloc((size_t)(LH_MAX(n, 1) < bs ? LH_MAX(n, 1) : bs) * (size_t)e->U,
                       sizeof *e->batch, false, "batch candidates", &e->batch);
    if (local == LH_OK) pad(e->top, e->U * K);
  }
  if (local == LH_OK) local = lh_alloc((size_t)K, sizeof *tmp, false, "merge scratch", &tmp);
  LH_TRY(lh_agree(comm, local));
  /* nothing but the hooks is needed: stop after the last hooked call */
  if (x.last_order >= 0 && x.last_order < lh_model_module_count(model))
    lh_model_stop_after(model, x.last_order, x.last_call);

  /* (2) the pass over the global batch grid (grid.h explains why) */
  lh_grid_ops ops = {.begin = begin_batch,
                     .after = after_forward,
                     .agreed = NULL,
                     .user = &x,
                     .progress = opts->progress ? "forward" : NULL,
                     .event = ev};
  LH_TRY(lh_grid_run(comm, model, d, inputs, bs, buf, &ops, NULL));

  /* (3) the merge, module by module, then the results as plain arrays */
  for (int64_t i = 0; i < r->count; i++) {
    mod *e = &r->m[i];
    lh_free(e->batch);
    e->batch = NULL;
    LH_TRY(merge(comm, e, K, tmp));
    const int64_t UK = e->U * K;
    local = lh_alloc((size_t)UK, sizeof *e->values, false, "top-k values", &e->values);
    if (local == LH_OK)
      local = lh_alloc((size_t)UK, sizeof *e->samples, false, "top-k samples", &e->samples);
    if (local == LH_OK)
      local = lh_alloc((size_t)UK, sizeof *e->positions, false, "top-k positions", &e->positions);
    LH_TRY(lh_agree(comm, local));
    for (int64_t j = 0; j < UK; j++) {
      e->values[j] = e->top[j].value;
      e->samples[j] = e->top[j].sample;
      e->positions[j] = e->top[j].pos;
    }
    lh_free(e->top);
    e->top = NULL;
  }
  *out = r;
  r = NULL;
done:
  lh_model_stop_after(model, -1, 0);
  lh_hook_remove(&h);
  lh_maxact_destroy(&r);
  lh_h5_close(&d);
  lh_free(buf);
  lh_free(tmp);
  return st;
}

int64_t lh_maxact_count(const lh_maxact *r) {
  return r->count;
}
const char *lh_maxact_key(const lh_maxact *r, int64_t i) {
  return r->m[i].key;
}
int lh_maxact_shape(const lh_maxact *r, int64_t i, int64_t *shape) {
  memcpy(shape, r->m[i].shape, (size_t)r->m[i].k * sizeof *shape);
  return r->m[i].k;
}
int64_t lh_maxact_units(const lh_maxact *r, int64_t i) {
  return r->m[i].U;
}
int64_t lh_maxact_k(const lh_maxact *r) {
  return r->K;
}
int64_t lh_maxact_samples(const lh_maxact *r) {
  return r->N;
}
bool lh_maxact_tokens(const lh_maxact *r) {
  return r->tokens;
}
int64_t lh_maxact_seq_len(const lh_maxact *r) {
  return r->T;
}
const float *lh_maxact_values(const lh_maxact *r, int64_t i) {
  return r->m[i].values;
}
const int64_t *lh_maxact_sample_ids(const lh_maxact *r, int64_t i) {
  return r->m[i].samples;
}
const int64_t *lh_maxact_positions(const lh_maxact *r, int64_t i) {
  return r->m[i].positions;
}

void lh_maxact_destroy(lh_maxact **rp) {
  if (!rp || !*rp) return;
  lh_maxact *r = *rp;
  for (int64_t i = 0; r->m && i < r->count; i++) {
    lh_free(r->m[i].top);
    lh_free(r->m[i].batch);
    lh_free(r->m[i].values);
    lh_free(r->m[i].samples);
    lh_free(r->m[i].positions);
  }
  lh_free(r->m);
  lh_free(r);
  *rp = NULL;
}

static void shape_str(int64_t N, int k, const int64_t *s, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "(%lld", (long long)N);
  for (int i = 0; i < k && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, ", %lld", (long long)s[i]);
  if (n < cap) snprintf(buf + n, cap - n, ")");
}

lh_status lh_maxact_write(const lh_maxact *r, lh_h5_out *o) {
  lh_status st = LH_OK;
  lh_h5_dset *ds = NULL;
  char path[KEY_CAP + 32], txt[256];
  for (int64_t i = 0; i < r->count; i++) {
    const mod *e = &r->m[i];
    const int64_t dims[2] = {e->U, r->K}, rows = r->rank == 0 ? e->U : 0;
    snprintf(path, sizeof path, "/%s/values", e->key);
    LH_TRY(lh_h5_out_dataset(o, path, LH_F32, 2, dims, 0, &ds));
    LH_TRY(lh_h5_write_rows(ds, 0, 0, rows, LH_F32, e->values));
    lh_h5_close(&ds);
    snprintf(path, sizeof path, "/%s/samples", e->key);
    LH_TRY(lh_h5_out_dataset_i64(o, path, 2, dims, 0, &ds));
    LH_TRY(lh_h5_write_rows_i64(ds, 0, 0, rows, e->samples));
    lh_h5_close(&ds);
    snprintf(path, sizeof path, "/%s/positions", e->key);
    LH_TRY(lh_h5_out_dataset_i64(o, path, 2, dims, 0, &ds));
    LH_TRY(lh_h5_write_rows_i64(ds, 0, 0, rows, e->positions));
    lh_h5_close(&ds);
    snprintf(path, sizeof path, "/%s", e->key);
    shape_str(r->N, e->k, e->shape, txt, sizeof txt);
    LH_TRY(lh_h5_out_attr_string(o, path, "output_shape", txt));
  }
  LH_TRY(lh_h5_out_attr_string(o, "/", "key_pattern", r->pattern));
  snprintf(txt, sizeof txt, "%lld", (long long)r->K);
  LH_TRY(lh_h5_out_attr_string(o, "/", "top_k", txt));
  LH_TRY(lh_h5_out_attr_string(o, "/", "ranking", r->absolute ? "absolute" : "signed"));
done:
  lh_h5_close(&ds);
  return st;
}

/* ---- the readable table (rank 0 only) ----------------------------------------------------- */

typedef struct table {
  FILE *f;
  hid_t file, dset, space;
  int64_t *ids; /* 2 context + 1 */
  const lh_vocab *vocab;
  int64_t C;
} table;

static lh_status open_tokens(table *t, const char *inputs) {
  lh_h5_addr a;
  if (lh_h5_addr_parse(inputs, &a) != LH_OK) return LH_ERR_USAGE;
  H5E_BEGIN_TRY {
    t->file = H5Fopen(a.file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (t->file >= 0) t->dset = H5Dopen2(t->file, a.path, H5P_DEFAULT);
    if (t->dset >= 0) t->space = H5Dget_space(t->dset);
  }
  H5E_END_TRY;
  if (t->space < 0)
    return LH_ERROR(LH_ERR_IO, "%s: cannot open the token ids for the table", inputs);
  return LH_OK;
}

/* Writes " ... a b [c] d ..." for sample s around position p into the table. */
static lh_status write_context(table *t, int64_t s, int64_t p, int64_t T) {
  const int64_t lo = LH_MAX(0, p - t->C), hi = LH_MIN(T - 1, p + t->C), cnt = hi - lo + 1;
  hsize_t start[2] = {(hsize_t)s, (hsize_t)lo}, count[2] = {1, (hsize_t)cnt}, mdim = (hsize_t)cnt;
  hid_t mem = H5Screate_simple(1, &mdim, NULL);
  herr_t e = mem < 0 ? -1 : H5Sselect_hyperslab(t->space, H5S_SELECT_SET, start, NULL, count, NULL);
  if (e >= 0) e = H5Dread(t->dset, H5T_NATIVE_INT64, mem, t->space, H5P_DEFAULT, t->ids);
  if (mem >= 0) H5Sclose(mem);
  if (e < 0)
    return LH_ERROR(LH_ERR_IO, "cannot read the tokens of sample %lld for the table", (long long)s);
  char tok[256];
  fputs(lo > 0 ? "  ..." : " ", t->f);
  for (int64_t i = 0; i < cnt; i++) {
    const int64_t id = t->ids[i];
    const char *txt = t->vocab ? lh_vocab_display(t->vocab, id, tok, sizeof tok) : NULL;
    if (!txt) {
      snprintf(tok, sizeof tok, "%lld", (long long)id);
      txt = tok;
    }
    fprintf(t->f, lo + i == p ? " [%s]" : " %s", txt);
  }
  if (hi < T - 1) fputs(" ...", t->f);
  return LH_OK;
}

static lh_status write_lines(table *t, const lh_maxact *r) {
  int width = 6;
  for (int64_t i = 0; i < r->count; i++) width = LH_MAX(width, (int)strlen(r->m[i].key));
  fprintf(t->f, "# maximally activating samples: key pattern '%s', top %lld by %s value\n",
          r->pattern, (long long)r->K, r->absolute ? "absolute" : "signed");
  fprintf(t->f, "%-*s %6s %4s %13s %8s %8s%s\n", width, "module", "unit", "rank", "value", "sample",
          "position", r->tokens ? "  context" : "");
  for (int64_t i = 0; i < r->count; i++) {
    const mod *e = &r->m[i];
    const bool ctx_on = r->tokens && e->k == 2 && e->shape[0] == r->T;
    for (int64_t u = 0; u < e->U; u++)
      for (int64_t j = 0; j < r->K; j++) {
        const int64_t q = u * r->K + j;
        if (e->samples[q] < 0) continue;
        fprintf(t->f, "%-*s %6lld %4lld %13.6g %8lld %8lld", width, e->key, (long long)u,
                (long long)j, (double)e->values[q], (long long)e->samples[q],
                (long long)e->positions[q]);
        if (ctx_on && e->positions[q] >= 0) {
          lh_status st = write_context(t, e->samples[q], e->positions[q], r->T);
          if (st != LH_OK) return st;
        }
        fputc('\n', t->f);
      }
  }
  if (ferror(t->f)) return LH_ERROR(LH_ERR_IO, "cannot write the table: %s", strerror(errno));
  return LH_OK;
}

lh_status lh_maxact_write_table(MPI_Comm comm, const lh_maxact *r, const char *inputs,
                                const lh_vocab *vocab, int64_t context, const char *path) {
  lh_status st = LH_OK, local = LH_OK;
  int rank;
  MPI_Comm_rank(comm, &rank);
  table t = {.f = NULL, .file = -1, .dset = -1, .space = -1, .vocab = vocab, .C = context};
  char tmp[4096];
  bool have_tmp = false;
  if (context < 0) LH_FAIL(LH_ERR_USAGE, "--context must be >= 0, got %lld", (long long)context);
  if (rank == 0) {
    int fd = -1;
    if (snprintf(tmp, sizeof tmp, "%s.XXXXXX", path) >= (int)sizeof tmp)
      local = LH_ERROR(LH_ERR_USAGE, "table path too long: %s", path);
    if (local == LH_OK && (fd = mkstemp(tmp)) < 0)
      local = LH_ERROR(LH_ERR_IO, "cannot write the table '%s': %s", path, strerror(errno));
    if (fd >= 0) {
      have_tmp = true;
      fchmod(fd, 0644); /* mkstemp's 0600 would surprise next to the HDF5 output */
      t.f = fdopen(fd, "w");
      if (!t.f) {
        close(fd);
        local = LH_ERROR(LH_ERR_IO, "cannot write the table '%s': %s", path, strerror(errno));
      }
    }
    if (local == LH_OK && r->tokens)
      local = lh_alloc((size_t)(2 * context + 1), sizeof *t.ids, false, "token window", &t.ids);
    if (local == LH_OK && r->tokens) local = open_tokens(&t, inputs);
    if (local == LH_OK) local = write_lines(&t, r);
    if (t.f) {
      if (fclose(t.f) != 0 && local == LH_OK)
        local = LH_ERROR(LH_ERR_IO, "cannot write the table '%s': %s", path, strerror(errno));
      t.f = NULL;
    }
    if (local == LH_OK && rename(tmp, path) != 0)
      local = LH_ERROR(LH_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
    if (local == LH_OK) have_tmp = false;
  }
  LH_TRY(lh_agree(comm, local));
done:
  if (t.f) fclose(t.f);
  if (have_tmp) unlink(tmp);
  if (t.space >= 0) H5Sclose(t.space);
  if (t.dset >= 0) H5Dclose(t.dset);
  if (t.file >= 0) H5Fclose(t.file);
  lh_free(t.ids);
  return st;
}
