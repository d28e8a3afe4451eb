/*
 * cache.c: ActivationCaching over the data-parallel hooked forward pass (cache.h).
 *
 * Three steps. (1) Hooks go on every module the key pattern matches, once per direction; a
 * one-sample probe forward on every rank records which (direction, module) pairs fire and
 * the per-sample shapes they see, so that every rank, with rows or not, creates the same
 * distributed matrices in the same order. (2) The pass over the global batch grid (grid.h):
 * each rank reads its row slab batch by batch (collective reads; a rank past its last batch
 * joins with an empty selection) and runs the model; the hooks copy the reduced tensors into
 * the local rows of the matrices, a later call of the same module overwriting an earlier one
 * (tdhook keeps the last call). Errors are agreed after every batch, so a bad token on one
 * rank stops all ranks at the same point.
 * (3) The caller writes the matrices (lh_cache_write) or hands them to the analyses.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "latent/grid.h"
#include "latenthook/cache.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/timer.h"

#define MAX_ENTRIES 4096
#define KEY_CAP 512

typedef struct entry {
  char key[KEY_CAP];  /* "name" or "dir/name" */
  char name[KEY_CAP]; /* the module name as hooked */
  lh_hook_dir dir;
  int64_t order; /* module index for sorting (absolute wrappers first) */
  int k;         /* per-sample dims seen by the probe, then after the reduction */
  int64_t shape[LH_TENSOR_MAX_DIMS];
  int64_t E; /* elements per sample after the reduction */
  lh_dmat *m;
} entry;

struct lh_cache {
  entry *e;
  int64_t count;
  lh_dmat *out;
  int out_k;
  int64_t out_shape[LH_TENSOR_MAX_DIMS];
  char pattern[KEY_CAP];
  char reduce[32];
  char dirs[32];
};

/* What the hooks share. */
typedef struct ctx {
  lh_cache *c;
  lh_model *model;
  const lh_cache_opts *o;
  bool nested;
  bool probing;
  int64_t nb;         /* samples in the current forward (a whole global batch) */
  int64_t lo, hi;     /* global rows of the current forward this rank keeps */
  int64_t row_offset; /* global index of this rank's first row */
  int64_t outE;       /* elements per sample of the reduced model output */
  int64_t last_order; /* module index and call of the probe's last event (early stop) */
  int last_call;
} ctx;

lh_cache_opts lh_cache_defaults(void) {
  lh_cache_opts o = {.key_pattern = NULL,
                     .relative = true,
                     .dirs = {LH_HOOK_FWD, LH_HOOK_FWD_PRE},
                     .ndirs = 1,
                     .nested_keys = false,
                     .reduce = {LH_REDUCE_NONE, 0},
                     .keep_output = true,
                     .output_reduce = {LH_REDUCE_NONE, 0},
                     .batch_size = 32,
                     .progress = false};
  return o;
}

static entry *find(lh_cache *c, lh_hook_dir dir, const char *name) {
  for (int64_t i = 0; i < c->count; i++)
    if (c->e[i].dir == dir && strcmp(c->e[i].name, name) == 0) return &c->e[i];
  return NULL;
}

/* Module index of a hooked name, for ordering: the absolute wrappers come first. */
static int64_t module_order(const lh_model *m, const char *name, bool relative) {
  static const char *PFX = "td_module.module";
  if (!relative) {
    if (strcmp(name, "td_module") == 0) return -2;
    if (strcmp(name, PFX) == 0) return -1;
    size_t n = strlen(PFX);
    if (strncmp(name, PFX, n) == 0 && name[n] == '.') name += n + 1;
  }
  int64_t i = lh_model_module_find(m, name);
  return i < 0 ? INT64_MAX : i;
}

/* Copies, reduced, the rows [x->lo, x->hi) of a forward over the global batch starting at
 * row0 into the local rows of a matrix (dst: local rows x E). A tensor with one row where the
 * batch has several is one the whole batch shares (GPT-2's position embeddings, called on
 * positions (1, T)): every sample saw it. */
static lh_status keep_rows(const lh_reduce *r, const lh_tensor *t, const char *name, int64_t row0,
                           const ctx *x, float *dst, int64_t E) {
  if (x->hi <= x->lo) return LH_OK;
  float *d = dst + (x->lo - x->row_offset) * E;
  if (t->shape[0] == x->nb) {
    lh_tensor v = *t;
    v.data = t->data + (x->lo - row0) * lh_tensor_row_len(t);
    v.shape[0] = x->hi - x->lo;
    lh_reduce_apply(r, &v, d);
  } else if (t->shape[0] == 1) {
    lh_reduce_apply(r, t, d);
    for (int64_t s = 1; s < x->hi - x->lo; s++) memcpy(d + s * E, d, (size_t)E * sizeof *d);
  } else {
    return LH_ERROR(LH_ERR_RUNTIME, "module '%s' gave %lld rows for a batch of %lld samples", name,
                    (long long)t->shape[0], (long long)x->nb);
  }
  return LH_OK;
}

static lh_status on_tensor(const lh_hook_event *ev, void *user) {
  ctx *x = user;
  lh_cache *c = x->c;
  entry *e = find(c, ev->dir, ev->name);
  const lh_tensor *t = ev->tensor;
  if (x->probing) {
    if (!e) {
      if (c->count == MAX_ENTRIES)
        return LH_ERROR(LH_ERR_VALUE, "the key pattern matches more than %d module calls",
                        MAX_ENTRIES);
      e = &c->e[c->count++];
      memset(e, 0, sizeof *e);
      snprintf(e->name, sizeof e->name, "%s", ev->name);
      if (x->nested)
        snprintf(e->key, sizeof e->key, "%s/%s", lh_hook_dir_name(ev->dir), ev->name);
      else
        snprintf(e->key, sizeof e->key, "%s", ev->name);
      e->dir = ev->dir;
      e->order = module_order(x->model, ev->name, x->o->relative);
    }
    x->last_order = e->order;
    x->last_call = ev->call;
    e->k = t->ndim - 1; /* the last call's shape is the one kept */
    for (int i = 1; i < t->ndim; i++) e->shape[i - 1] = t->shape[i];
    return LH_OK;
  }
  if (!e || !e->m)
    return LH_ERROR(LH_ERR_RUNTIME,
                    "module '%s' (%s) fired a hook it did not fire in the "
                    "probe forward",
                    ev->name, lh_hook_dir_name(ev->dir));
  /* the per-sample size must be the probe's */
  int64_t in_shape[LH_TENSOR_MAX_DIMS];
  int k_red;
  int64_t red[LH_TENSOR_MAX_DIMS];
  for (int i = 1; i < t->ndim; i++) in_shape[i - 1] = t->shape[i];
  if (lh_reduce_shape(&x->o->reduce, ev->name, t->ndim - 1, in_shape, &k_red, red) != LH_OK)
    return LH_ERR_VALUE;
  int64_t E = 1;
  for (int i = 0; i < k_red; i++) E *= red[i];
  if (E != e->E)
    return LH_ERROR(LH_ERR_RUNTIME,
                    "module '%s' changed its output size between the probe "
                    "and batch %lld",
                    ev->name, (long long)ev->row0);
  return keep_rows(&x->o->reduce, t, ev->name, ev->row0, x, (float *)lh_dmat_local(e->m), E);
}

/* The hooks' view of a round of the pass: the rows of the forward this rank keeps. */
static void begin_batch(const lh_grid_batch *b, void *user) {
  ctx *x = user;
  x->lo = b->lo;
  x->hi = b->hi;
  x->nb = b->gsz;
}

/* Keeps this rank's rows of the model output. */
static lh_status after_forward(const lh_grid_batch *b, void *user) {
  ctx *x = user;
  if (!x->c->out) return LH_OK;
  return keep_rows(&x->o->output_reduce, b->out, "the model", b->g0, x,
                   (float *)lh_dmat_local(x->c->out), x->outE);
}

static int by_order(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->dir != y->dir) return x->dir < y->dir ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

lh_status lh_cache_run(MPI_Comm comm, lh_model *model, const char *inputs,
                       const lh_cache_opts *opts, lh_cache **out) {
  lh_status st = LH_OK, local = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  lh_h5_dset *d = NULL;
  lh_cache *c = NULL;
  lh_hook_handle *h[LH_CACHE_MAX_DIRS] = {NULL, NULL};
  float *buf = NULL, *probe = NULL;
  ctx x = {.model = model, .o = opts, .last_order = -1};
  static lh_event ev = -2;
  if (ev == -2) ev = lh_event_get("cache.forward");

  if (!opts->key_pattern && !opts->keep_output)
    LH_FAIL(LH_ERR_USAGE, "a key pattern or the model output is required");
  if (opts->batch_size < 1)
    LH_FAIL(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", (long long)opts->batch_size);
  if (opts->ndirs < 1 || opts->ndirs > LH_CACHE_MAX_DIRS)
    LH_FAIL(LH_ERR_USAGE, "expected 1 or 2 directions, got %d", opts->ndirs);
  if (opts->ndirs == 2 && opts->dirs[0] == opts->dirs[1])
    LH_FAIL(LH_ERR_USAGE, "direction %s given twice", lh_hook_dir_name(opts->dirs[0]));

  LH_TRY(lh_h5_open(comm, inputs, 0, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  int64_t T = 0;
  LH_TRY(lh_agree(comm, lh_grid_check_inputs(model, in, &T)));
  const int64_t N = in->dims[0];
  const int64_t off = lh_part_offset(N, P, rank);

  local = lh_alloc(1, sizeof *c, true, "activation cache", &c);
  if (local == LH_OK) local = lh_alloc(MAX_ENTRIES, sizeof *c->e, true, "cache entries", &c->e);
  LH_TRY(lh_agree(comm, local));
  x.c = c;
  x.nested = opts->nested_keys || opts->ndirs > 1;
  x.row_offset = off;
  snprintf(c->pattern, sizeof c->pattern, "%s", opts->key_pattern ? opts->key_pattern : "");
  lh_reduce_name(&opts->reduce, c->reduce, sizeof c->reduce);
  snprintf(c->dirs, sizeof c->dirs, "%s%s%s", lh_hook_dir_name(opts->dirs[0]),
           opts->ndirs > 1 ? "," : "", opts->ndirs > 1 ? lh_hook_dir_name(opts->dirs[1]) : "");

  /* (1) hooks and the probe forward */
  int64_t matched = 0;
  for (int i = 0; i < opts->ndirs && local == LH_OK && opts->key_pattern; i++) {
    int64_t cnt = 0;
    lh_hook_spec spec = {.fn = on_tensor, .user = &x, .user_free = NULL};
    local = lh_model_hook_pattern(model, opts->key_pattern, opts->relative, opts->dirs[i], spec,
                                  &h[i], &cnt);
    matched += cnt;
  }
  LH_TRY(lh_agree(comm, local));
  const int64_t W = T;
  LH_TRY(lh_agree(comm, lh_alloc((size_t)W, sizeof *probe, true, "probe input", &probe)));
  {
    lh_tensor pin = {.data = probe, .ndim = 2, .shape = {1, W}}, pout;
    x.probing = true;
    x.nb = 1;
    lh_model_set_row0(model, -1);
    local = lh_model_forward(model, &pin, &pout);
    x.probing = false;
    if (local == LH_OK) {
      c->out_k = pout.ndim - 1;
      for (int i = 1; i < pout.ndim; i++) c->out_shape[i - 1] = pout.shape[i];
    }
  }
  LH_TRY(lh_agree(comm, local));
  if (c->count == 0 && opts->key_pattern) {
    char names[2048];
    lh_grid_list_modules(model, opts->relative, names, sizeof names);
    LH_FAIL(LH_ERR_VALUE,
            "--key-pattern '%s' matches %s; the model's modules (%s names) "
            "are: %s",
            opts->key_pattern,
            matched ? "only modules that are never called (containers)" : "no module",
            opts->relative ? "relative" : "absolute", names);
  }
  qsort(c->e, (size_t)c->count, sizeof *c->e, by_order);
  for (int64_t i = 0; i < c->count && local == LH_OK; i++) {
    entry *e = &c->e[i];
    int64_t red[LH_TENSOR_MAX_DIMS];
    int kr;
    local = lh_reduce_shape(&opts->reduce, e->key, e->k, e->shape, &kr, red);
    if (local == LH_OK) {
      e->k = kr;
      memcpy(e->shape, red, sizeof red);
      e->E = 1;
      for (int j = 0; j < kr; j++) e->E *= red[j];
    }
  }
  if (local == LH_OK && opts->keep_output) {
    int64_t red[LH_TENSOR_MAX_DIMS];
    int kr;
    local =
        lh_reduce_shape(&opts->output_reduce, "the model output", c->out_k, c->out_shape, &kr, red);
    if (local == LH_OK) {
      c->out_k = kr;
      memcpy(c->out_shape, red, sizeof red);
    }
  }
  LH_TRY(lh_agree(comm, local));
  /* without the model output, the forwards stop after the last hooked call (tdhook's
   * stopping hook): e.g. the LM head of GPT-2 is never computed for a cache of its blocks */
  if (!opts->keep_output && x.last_order >= 0 && x.last_order < lh_model_module_count(model))
    lh_model_stop_after(model, x.last_order, x.last_call);
  int64_t outE = 1;
  for (int j = 0; j < c->out_k; j++) outE *= c->out_shape[j];
  for (int64_t i = 0; i < c->count; i++)
    LH_TRY(lh_dmat_create(comm, LH_F32, N, c->e[i].E, &c->e[i].m));
  if (opts->keep_output) LH_TRY(lh_dmat_create(comm, LH_F32, N, outE, &c->out));

  /* (2) the pass, on the global batch grid (grid.h explains why) */
  x.outE = outE;
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(opts->batch_size * W), sizeof *buf, false,
                                 "input batch", &buf)));
  lh_grid_ops ops = {.begin = begin_batch,
                     .after = after_forward,
                     .agreed = NULL,
                     .user = &x,
                     .progress = opts->progress ? "forward" : NULL,
                     .event = ev};
  LH_TRY(lh_grid_run(comm, model, d, inputs, opts->batch_size, buf, &ops, NULL));
  *out = c;
  c = NULL;
done:
  lh_model_stop_after(model, -1, 0);
  for (int i = 0; i < LH_CACHE_MAX_DIRS; i++) lh_hook_remove(&h[i]);
  lh_cache_destroy(&c);
  lh_h5_close(&d);
  lh_free(buf);
  lh_free(probe);
  return st;
}

int64_t lh_cache_count(const lh_cache *c) {
  return c->count;
}
const char *lh_cache_key(const lh_cache *c, int64_t i) {
  return c->e[i].key;
}
lh_dmat *lh_cache_matrix(const lh_cache *c, int64_t i) {
  return c->e[i].m;
}

int lh_cache_shape(const lh_cache *c, int64_t i, int64_t *shape) {
  memcpy(shape, c->e[i].shape, (size_t)c->e[i].k * sizeof *shape);
  return c->e[i].k;
}

lh_dmat *lh_cache_output(const lh_cache *c, int64_t *shape, int *k) {
  if (shape) memcpy(shape, c->out_shape, (size_t)c->out_k * sizeof *shape);
  if (k) *k = c->out_k;
  return c->out;
}

static lh_status write_one(lh_h5_out *o, const char *path, const lh_dmat *m, int k,
                           const int64_t *shape) {
  lh_status st = LH_OK;
  lh_h5_dset *ds = NULL;
  int64_t dims[LH_TENSOR_MAX_DIMS + 1];
  dims[0] = lh_dmat_rows(m);
  for (int j = 0; j < k; j++) dims[j + 1] = shape[j];
  LH_TRY(lh_h5_out_dataset(o, path, LH_F32, k + 1, dims, 0, &ds));
  LH_TRY(lh_h5_write_dmat(ds, 0, m));
done:
  lh_h5_close(&ds);
  return st;
}

lh_status lh_cache_write(const lh_cache *c, lh_h5_out *o) {
  lh_status st = LH_OK;
  char path[KEY_CAP + 16];
  if (c->out) LH_TRY(write_one(o, "/output", c->out, c->out_k, c->out_shape));
  for (int64_t i = 0; i < c->count; i++) {
    snprintf(path, sizeof path, "/cache/%s", c->e[i].key);
    LH_TRY(write_one(o, path, c->e[i].m, c->e[i].k, c->e[i].shape));
  }
  if (c->count > 0) {
    LH_TRY(lh_h5_out_attr_string(o, "/cache", "key_pattern", c->pattern));
    LH_TRY(lh_h5_out_attr_string(o, "/cache", "directions", c->dirs));
    LH_TRY(lh_h5_out_attr_string(o, "/cache", "reduce", c->reduce));
  }
done:
  return st;
}

void lh_cache_destroy(lh_cache **cp) {
  if (!cp || !*cp) return;
  lh_cache *c = *cp;
  for (int64_t i = 0; c->e && i < c->count; i++) lh_dmat_destroy(&c->e[i].m);
  lh_dmat_destroy(&c->out);
  lh_free(c->e);
  lh_free(c);
  *cp = NULL;
}
