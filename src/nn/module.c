/*
 * module.c: the module tree, its parameters, the per-forward activation arena, the forward of
 * every module type and the one dispatcher all calls go through (see module.h and model.h).
 *
 * The forward follows PyTorch in eval mode, module by module, so that every hook point of a
 * PyTorch model exists here with the same name, sees the same tensor and fires the same
 * number of times: Dropout returns its input, GPT2Attention calls its attn_dropout child on
 * the attention probabilities (as Hugging Face's eager attention does), GPT2Block returns the
 * hidden state only (not the tuple). The numerical work is done by the kernels of kernels.h.
 *
 * One deliberate difference from Hugging Face: GPT2Model looks up wpe with position ids of
 * shape (B, T) rather than a broadcast (1, T), so that every activation a hook sees has the
 * batch's samples as its first dimension (the invariant of tensor.h that row-distributed
 * caches rely on). The values are the same for every sample.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "nn/kernels.h"
#include "nn/module.h"

/* Arena allocations are rounded up to 16 floats (64 bytes). */
#define ARENA_ALIGN 16
#define ARENA_MIN_BLOCK (INT64_C(1) << 16)

/* --- small helpers --------------------------------------------------------------------- */

static lh_status str_dup(const char *s, const char *what, char **out) {
  size_t n = strlen(s);
  char *p = NULL;
  lh_status st = lh_alloc(n + 1, 1, false, what, &p);
  if (st != LH_OK) return st;
  memcpy(p, s, n + 1);
  *out = p;
  return LH_OK;
}

/* Grows *arr (elements of `size` bytes, capacity *cap) to hold at least `need`. */
static lh_status grow(void *arr, int64_t *cap, int64_t need, size_t size, const char *what) {
  void *old;
  memcpy(&old, arr, sizeof old);
  if (need <= *cap) return LH_OK;
  int64_t nc = *cap ? *cap : 8;
  while (nc < need) nc *= 2;
  void *p = NULL;
  lh_status st = lh_alloc((size_t)nc, size, true, what, &p);
  if (st != LH_OK) return st;
  if (old) memcpy(p, old, (size_t)*cap * size);
  lh_free(old);
  memcpy(arr, &p, sizeof p);
  *cap = nc;
  return LH_OK;
}

const char *lh_mod_shape_str(int ndim, const int64_t *shape, char *buf, int cap) {
  int k = snprintf(buf, (size_t)cap, "(");
  for (int i = 0; i < ndim && k < cap; i++)
    k += snprintf(buf + k, (size_t)(cap - k), "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (ndim == 1 && k < cap) k += snprintf(buf + k, (size_t)(cap - k), ",");
  if (k < cap) snprintf(buf + k, (size_t)(cap - k), ")");
  return buf;
}

static const char *tshape(const lh_tensor *t, char *buf, int cap) {
  return lh_mod_shape_str(t->ndim, t->shape, buf, cap);
}

/* Levenshtein distance on at most the first 255 bytes of each string. */
static int edit_distance(const char *a, const char *b) {
  int row[256], prev[256];
  int la = (int)strnlen(a, 255), lb = (int)strnlen(b, 255);
  for (int j = 0; j <= lb; j++) prev[j] = j;
  for (int i = 1; i <= la; i++) {
    row[0] = i;
    for (int j = 1; j <= lb; j++) {
      int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
      int del = prev[j] + 1, ins = row[j - 1] + 1;
      row[j] = LH_MIN(sub, LH_MIN(del, ins));
    }
    memcpy(prev, row, sizeof(int) * (size_t)(lb + 1));
  }
  return prev[lb];
}

void lh_mod_closest(const char *name, const char *const *cand, int64_t ncand, int max, char *buf,
                    int cap) {
  int k = 0;
  buf[0] = '\0';
  int last_d = -1;
  int64_t last_i = -1;
  for (int r = 0; r < max; r++) {
    /* the smallest (distance, index) after the previous pick: no allocation needed */
    int best_d = -1;
    int64_t best_i = -1;
    for (int64_t i = 0; i < ncand; i++) {
      int d = edit_distance(name, cand[i]);
      bool after = d > last_d || (d == last_d && i > last_i);
      if (!after) continue;
      if (best_i < 0 || d < best_d) {
        best_d = d;
        best_i = i;
      }
    }
    if (best_i < 0) break;
    if (k < cap) k += snprintf(buf + k, (size_t)(cap - k), "%s'%s'", r ? ", " : "", cand[best_i]);
    last_d = best_d;
    last_i = best_i;
  }
}

/* --- building -------------------------------------------------------------------------- */

static void module_init(lh_module *mod, lh_mod_kind kind, const char *type, int64_t parent) {
  memset(mod, 0, sizeof *mod);
  mod->kind = kind;
  mod->type = type;
  mod->parent = parent;
  mod->weight = -1;
  mod->bias = -1;
  mod->dim = -1;
  mod->eps = 1e-5f;
  mod->scale = 1.0f;
}

lh_status lh_mod_model_new(const char *path, lh_mod_kind kind, const char *type, lh_model **out) {
  lh_status st = LH_OK;
  lh_model *m = NULL;
  LH_TRY(lh_alloc(1, sizeof *m, true, "model", &m));
  LH_TRY(str_dup(path, "model path", &m->path));
  m->min_block = ARENA_MIN_BLOCK;
  m->stop_mod = -1;
  LH_TRY(grow(&m->mod, &m->capmod, 1, sizeof *m->mod, "module table"));
  module_init(&m->mod[0], kind, type, -1);
  LH_TRY(str_dup("", "module name", &m->mod[0].name));
  m->nmod = 1;
  *out = m;
  m = NULL;
done:
  lh_model_destroy(&m);
  return st;
}

lh_status lh_mod_add(lh_model *m, int64_t parent, const char *attr, lh_mod_kind kind,
                     const char *type, int64_t *idx) {
  lh_status st = LH_OK;
  char *name = NULL;
  if (parent < 0 || parent >= m->nmod)
    LH_FAIL(LH_ERR_INTERNAL, "bad parent module %lld", (long long)parent);
  {
    const char *pn = m->mod[parent].name;
    size_t n = strlen(pn) + 1 + strlen(attr) + 1;
    LH_TRY(lh_alloc(n, 1, false, "module name", &name));
    snprintf(name, n, "%s%s%s", pn, pn[0] ? "." : "", attr);
  }
  LH_TRY(grow(&m->mod, &m->capmod, m->nmod + 1, sizeof *m->mod, "module table"));
  {
    lh_module *p = &m->mod[parent];
    LH_TRY(grow(&p->child, &p->capchild, p->nchild + 1, sizeof *p->child, "module children"));
    p->child[p->nchild++] = m->nmod;
  }
  module_init(&m->mod[m->nmod], kind, type, parent);
  m->mod[m->nmod].name = name;
  name = NULL;
  *idx = m->nmod++;
done:
  lh_free(name);
  return st;
}

lh_status lh_mod_add_param(lh_model *m, int64_t module, const char *suffix, int ndim, int64_t d0,
                           int64_t d1, int64_t *idx) {
  lh_status st = LH_OK;
  char *name = NULL;
  if (d0 < 0 || d1 < 0 || ndim < 1 || ndim > 2)
    LH_FAIL(LH_ERR_INTERNAL, "bad parameter shape for %s", suffix);
  if (ndim == 2 && d0 > 0 && d1 > INT64_MAX / d0)
    LH_FAIL(LH_ERR_NOMEM, "parameter %s.%s: size overflows", m->mod[module].name, suffix);
  {
    const char *mn = m->mod[module].name;
    size_t n = strlen(mn) + 1 + strlen(suffix) + 1;
    LH_TRY(lh_alloc(n, 1, false, "parameter name", &name));
    snprintf(name, n, "%s%s%s", mn, mn[0] ? "." : "", suffix);
  }
  LH_TRY(grow(&m->param, &m->capparam, m->nparam + 1, sizeof *m->param, "parameter table"));
  lh_param *p = &m->param[m->nparam];
  memset(p, 0, sizeof *p);
  p->name = name;
  name = NULL;
  p->ndim = ndim;
  p->shape[0] = d0;
  p->shape[1] = ndim == 2 ? d1 : 1;
  p->numel = ndim == 2 ? d0 * d1 : d0;
  p->offset = -1;
  p->tied = -1;
  p->module = module;
  *idx = m->nparam++;
done:
  lh_free(name);
  return st;
}

lh_status lh_mod_tie_param(lh_model *m, int64_t p, int64_t target) {
  lh_param *a = &m->param[p], *b = &m->param[target];
  if (a->ndim != b->ndim || a->shape[0] != b->shape[0] || a->shape[1] != b->shape[1] ||
      b->tied >= 0)
    return LH_ERROR(LH_ERR_INTERNAL, "cannot tie %s to %s", a->name, b->name);
  a->tied = target;
  return LH_OK;
}

lh_status lh_mod_alloc_params(lh_model *m) {
  lh_status st = LH_OK;
  int64_t total = 0;
  for (int64_t i = 0; i < m->nparam; i++) {
    lh_param *p = &m->param[i];
    if (p->tied >= 0) continue;
    p->offset = total;
    int64_t padded = (p->numel + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (padded > INT64_MAX - total) LH_FAIL(LH_ERR_NOMEM, "parameter count overflows");
    total += padded;
  }
  LH_TRY(lh_alloc((size_t)total, sizeof(float), true, "model parameters", &m->slab));
  m->slab_len = total;
  for (int64_t i = 0; i < m->nparam; i++) m->param[i].data = m->slab + m->param[i].offset;
  for (int64_t i = 0; i < m->nparam; i++) {
    lh_param *p = &m->param[i];
    if (p->tied >= 0) p->data = m->param[p->tied].data;
  }
done:
  return st;
}

lh_status lh_mod_param_from_st(lh_model *m, int64_t pi, const lh_safetensors *st_file,
                               const lh_st_tensor *t) {
  lh_param *p = &m->param[pi];
  bool same = t->ndim == p->ndim;
  for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
  if (!same) {
    char want[64], got[128];
    lh_mod_shape_str(p->ndim, p->shape, want, sizeof want);
    lh_mod_shape_str(t->ndim, t->shape, got, sizeof got);
    bool renamed = strcmp(t->name, p->name) != 0; /* e.g. a bare GPT-2 checkpoint key */
    return LH_ERROR(LH_ERR_VALUE, "%s: tensor '%s' has shape %s, expected %s%s%s%s",
                    lh_safetensors_path(st_file), t->name, got, want,
                    renamed ? " for parameter '" : "", renamed ? p->name : "", renamed ? "'" : "");
  }
  lh_status st = lh_safetensors_read_f32(st_file, t, p->data);
  if (st != LH_OK) lh_error_prefix("parameter '%s': ", p->name);
  return st;
}

lh_status lh_mod_finish(lh_model *m) {
  lh_status st = LH_OK;
  for (int64_t i = 0; i < m->nmod; i++)
    if (m->mod[i].parent >= i) LH_FAIL(LH_ERR_INTERNAL, "module table not in pre-order");
  LH_TRY(lh_alloc((size_t)(2 * (m->nmod + 1)), sizeof *m->hooks, true, "hook lists", &m->hooks));
done:
  return st;
}

/* --- arena ------------------------------------------------------------------------------ */

/* The arena is a list of blocks used in order: m->cur is the block being filled, and every
 * block after it is empty. A block that cannot hold a request is left with its tail unused
 * and the next one (or a new, larger one) is taken; at the next forward the blocks are merged
 * into one of their total size, so after the first pass a forward of the same shape allocates
 * nothing. */

static lh_status arena_reset(lh_model *m) {
  if (m->nblk > 1) {
    int64_t total = 0;
    for (int64_t i = 0; i < m->nblk; i++) {
      total += m->blk[i].cap;
      lh_free(m->blk[i].data);
    }
    m->nblk = 0;
    lh_status st =
        lh_alloc((size_t)total, sizeof(float), false, "activation arena", &m->blk[0].data);
    if (st != LH_OK) return st;
    m->blk[0].cap = total;
    m->nblk = 1;
  }
  if (m->nblk == 1) m->blk[0].used = 0;
  m->cur = 0;
  return LH_OK;
}

/* n floats (a multiple of ARENA_ALIGN) from the arena. */
static lh_status arena_alloc(lh_model *m, int64_t n, float **out) {
  lh_status st = LH_OK;
  while (m->cur < m->nblk && m->blk[m->cur].cap - m->blk[m->cur].used < n) m->cur++;
  if (m->cur == m->nblk) {
    int64_t cap = LH_MAX(n, m->min_block);
    if (m->nblk) cap = LH_MAX(cap, 2 * m->blk[m->nblk - 1].cap);
    LH_TRY(grow(&m->blk, &m->capblk, m->nblk + 1, sizeof *m->blk, "arena blocks"));
    lh_arena_block *b = &m->blk[m->nblk];
    LH_TRY(lh_alloc((size_t)cap, sizeof(float), false, "activation arena", &b->data));
    b->cap = cap;
    b->used = 0;
    m->nblk++;
  }
  lh_arena_block *b = &m->blk[m->cur];
  *out = b->data + b->used;
  b->used += n;
done:
  return st;
}

static int64_t arena_size(const lh_tensor *t) {
  return (lh_tensor_numel(t) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
}

typedef struct arena_mark {
  int64_t blk, used;
} arena_mark;

static arena_mark arena_mark_now(const lh_model *m) {
  return (arena_mark){m->cur, m->cur < m->nblk ? m->blk[m->cur].used : 0};
}

/* Releases everything allocated since `mk` except y (allocated after mk), which moves down to
 * the mark. Cannot fail: y's own block has room for it at or before its current place. */
static void arena_release_keep(lh_model *m, arena_mark mk, lh_tensor *y) {
  for (int64_t b = mk.blk + 1; b < m->nblk; b++) m->blk[b].used = 0;
  m->cur = mk.blk;
  if (m->cur < m->nblk) m->blk[m->cur].used = mk.used;
  int64_t n = arena_size(y);
  while (m->cur < m->nblk && m->blk[m->cur].cap - m->blk[m->cur].used < n) m->cur++;
  lh_arena_block *b = &m->blk[m->cur];
  float *dst = b->data + b->used;
  b->used += n;
  if (dst != y->data && lh_tensor_numel(y) > 0)
    memmove(dst, y->data, (size_t)lh_tensor_numel(y) * sizeof(float)); /* dst <= y->data */
  y->data = dst;
}

lh_status lh_mod_tensor(lh_model *m, int ndim, const int64_t *shape, lh_tensor *out) {
  lh_status st = LH_OK;
  if (ndim < 1 || ndim > LH_TENSOR_MAX_DIMS)
    LH_FAIL(LH_ERR_VALUE, "tensor with %d dimensions (at most %d supported)", ndim,
            LH_TENSOR_MAX_DIMS);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) LH_FAIL(LH_ERR_VALUE, "negative dimension %lld", (long long)shape[i]);
    if (shape[i] > 0 && n > (INT64_MAX / 4) / shape[i])
      LH_FAIL(LH_ERR_NOMEM, "activation size overflows");
    n *= shape[i];
  }
  n = (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
  float *data = NULL;
  LH_TRY(arena_alloc(m, n, &data));
  out->data = data;
  out->ndim = ndim;
  for (int i = 0; i < LH_TENSOR_MAX_DIMS; i++) out->shape[i] = i < ndim ? shape[i] : 0;
done:
  return st;
}

/* A new tensor shaped like x with its last dimension replaced by `last`. */
static lh_status tensor_like(lh_model *m, const lh_tensor *x, int64_t last, lh_tensor *out) {
  int64_t shape[LH_TENSOR_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = last;
  return lh_mod_tensor(m, x->ndim, shape, out);
}

/* --- forward of each module type --------------------------------------------------------- */

static lh_status bad_input(const lh_model *m, int64_t mi, const lh_tensor *x, const char *want) {
  char b[128];
  return LH_ERROR(LH_ERR_VALUE, "module '%s' (%s): input has shape %s, expected %s",
                  m->mod[mi].name, m->mod[mi].type, tshape(x, b, sizeof b), want);
}

static lh_status need_last(const lh_model *m, int64_t mi, const lh_tensor *x, int64_t C) {
  if (x->ndim >= 1 && x->shape[x->ndim - 1] == C) return LH_OK;
  char want[64];
  snprintf(want, sizeof want, "last dimension %lld", (long long)C);
  return bad_input(m, mi, x, want);
}

static const float *pdata(const lh_model *m, int64_t p) {
  return p >= 0 ? m->param[p].data : NULL;
}

static lh_status fwd_matmul(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  LH_TRY(need_last(m, mi, x, mod->in));
  LH_TRY(tensor_like(m, x, mod->out, y));
  int64_t BT = 1; /* every leading dimension flattened into rows */
  for (int i = 0; i < x->ndim - 1; i++) BT *= x->shape[i];
  if (mod->kind == LH_MOD_LINEAR)
    lh_k_linear(y->data, x->data, pdata(m, mod->weight), pdata(m, mod->bias), BT, mod->in,
                mod->out);
  else
    lh_k_conv1d(y->data, x->data, pdata(m, mod->weight), pdata(m, mod->bias), BT, mod->in,
                mod->out);
done:
  return st;
}

/* Writes the multi-index of flat element i of x as "(3, 5)". */
static const char *index_str(const lh_tensor *x, int64_t i, char *buf, int cap) {
  int64_t idx[LH_TENSOR_MAX_DIMS];
  for (int d = x->ndim - 1; d >= 0; d--) {
    int64_t n = x->shape[d] ? x->shape[d] : 1;
    idx[d] = i % n;
    i /= n;
  }
  return lh_mod_shape_str(x->ndim, idx, buf, cap);
}

static lh_status fwd_embedding(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  int64_t V = mod->in, C = mod->out, n = lh_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) {
    float v = x->data[i];
    if (!(v >= 0.0f && v < (float)V && v == floorf(v))) {
      char b[128];
      LH_FAIL(LH_ERR_VALUE,
              "module '%s' (Embedding): index %g at %s is not an integer in [0, %lld)", mod->name,
              (double)v, index_str(x, i, b, sizeof b), (long long)V);
    }
  }
  if (x->ndim >= LH_TENSOR_MAX_DIMS) LH_TRY(bad_input(m, mi, x, "fewer dimensions"));
  int64_t shape[LH_TENSOR_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim] = C;
  LH_TRY(lh_mod_tensor(m, x->ndim + 1, shape, y));
  lh_k_embedding(y->data, x->data, pdata(m, mod->weight), n, C);
done:
  return st;
}

static lh_status fwd_layernorm(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  LH_TRY(need_last(m, mi, x, mod->in));
  LH_TRY(tensor_like(m, x, mod->in, y));
  int64_t BT = 1;
  for (int i = 0; i < x->ndim - 1; i++) BT *= x->shape[i];
  lh_k_layernorm(y->data, x->data, pdata(m, mod->weight), pdata(m, mod->bias), BT, mod->in,
                 mod->eps);
done:
  return st;
}

/* Softmax over a dimension other than the last: (outer, n, inner) with a stride. */
static void softmax_strided(float *out, const float *inp, int64_t outer, int64_t n, int64_t inner) {
  for (int64_t o = 0; o < outer; o++)
    for (int64_t j = 0; j < inner; j++) {
      const float *a = inp + o * n * inner + j;
      float *b = out + o * n * inner + j;
      float mx = -INFINITY;
      for (int64_t k = 0; k < n; k++) mx = fmaxf(mx, a[k * inner]);
      double sum = 0.0;
      for (int64_t k = 0; k < n; k++) sum += exp((double)a[k * inner] - (double)mx);
      for (int64_t k = 0; k < n; k++)
        b[k * inner] = (float)(exp((double)a[k * inner] - (double)mx) / sum);
    }
}

static lh_status fwd_softmax(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  int d = mod->dim < 0 ? mod->dim + x->ndim : mod->dim;
  if (d < 0 || d >= x->ndim) {
    char want[64];
    snprintf(want, sizeof want, "a dimension %d", mod->dim);
    LH_TRY(bad_input(m, mi, x, want));
  }
  LH_TRY(lh_mod_tensor(m, x->ndim, x->shape, y));
  int64_t outer = 1, inner = 1, n = x->shape[d];
  for (int i = 0; i < d; i++) outer *= x->shape[i];
  for (int i = d + 1; i < x->ndim; i++) inner *= x->shape[i];
  if (inner == 1)
    lh_k_softmax(y->data, x->data, outer, n);
  else
    softmax_strided(y->data, x->data, outer, n, inner);
done:
  return st;
}

static lh_status fwd_elementwise(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  LH_TRY(lh_mod_tensor(m, x->ndim, x->shape, y));
  int64_t n = lh_tensor_numel(x);
  switch (m->mod[mi].kind) {
    case LH_MOD_RELU:
      lh_k_relu(y->data, x->data, n);
      break;
    case LH_MOD_GELU:
      lh_k_gelu(y->data, x->data, n);
      break;
    case LH_MOD_GELU_TANH:
      lh_k_gelu_tanh(y->data, x->data, n);
      break;
    case LH_MOD_TANH:
      lh_k_tanh(y->data, x->data, n);
      break;
    case LH_MOD_SIGMOID:
      lh_k_sigmoid(y->data, x->data, n);
      break;
    default:
      LH_FAIL(LH_ERR_INTERNAL, "not an element-wise module");
  }
done:
  return st;
}

static bool same_shape(const lh_tensor *a, const lh_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

/* y = a + b in a new tensor. */
static lh_status add_new(lh_model *m, int64_t mi, const lh_tensor *a, const lh_tensor *b,
                         lh_tensor *y) {
  lh_status st = LH_OK;
  if (!same_shape(a, b)) {
    char sa[128], sb[128];
    LH_FAIL(LH_ERR_VALUE, "module '%s' (%s): cannot add tensors of shapes %s and %s",
            m->mod[mi].name, m->mod[mi].type, tshape(a, sa, sizeof sa), tshape(b, sb, sizeof sb));
  }
  LH_TRY(lh_mod_tensor(m, a->ndim, a->shape, y));
  lh_k_add(y->data, a->data, b->data, lh_tensor_numel(a));
done:
  return st;
}

/* Calls the modules idx[0..n) one after the other, starting from x. */
static lh_status chain(lh_model *m, const int64_t *idx, int64_t n, const lh_tensor *x,
                       lh_tensor *y) {
  lh_status st = LH_OK;
  lh_tensor h = *x;
  for (int64_t i = 0; i < n; i++) {
    lh_tensor next;
    LH_TRY(lh_mod_call(m, idx[i], &h, &next));
    h = next;
  }
  *y = h;
done:
  return st;
}

static lh_status fwd_attention(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  int64_t C = mod->in, NH = mod->nhead;
  if (x->ndim != 3 || x->shape[2] != C) {
    char want[64];
    snprintf(want, sizeof want, "(B, T, %lld)", (long long)C);
    LH_TRY(bad_input(m, mi, x, want));
  }
  int64_t B = x->shape[0], T = x->shape[1];
  const int64_t c_attn = mod->child[0], c_proj = mod->child[1], attn_drop = mod->child[2],
                resid_drop = mod->child[3];
  lh_tensor qkv, probs, probs_d, mixed, proj;
  LH_TRY(lh_mod_call(m, c_attn, x, &qkv));                       /* (B, T, 3C) */
  LH_TRY(lh_mod_tensor(m, 4, (int64_t[]){B, NH, T, T}, &probs)); /* (B, NH, T, T) */
  lh_k_attn_probs(probs.data, qkv.data, B, T, C, NH, mod->scale);
  LH_TRY(lh_mod_call(m, attn_drop, &probs, &probs_d));
  LH_TRY(lh_mod_tensor(m, 3, (int64_t[]){B, T, C}, &mixed)); /* (B, T, C) */
  lh_k_attn_mix(mixed.data, probs_d.data, qkv.data, B, T, C, NH);
  LH_TRY(lh_mod_call(m, c_proj, &mixed, &proj));
  LH_TRY(lh_mod_call(m, resid_drop, &proj, y));
done:
  return st;
}

static lh_status fwd_block(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  const int64_t ln_1 = mod->child[0], attn = mod->child[1], ln_2 = mod->child[2],
                mlp = mod->child[3];
  lh_tensor a, b, hidden;
  /* the block's intermediates (among them the (B, NH, T, T) attention probabilities) are
   * released when it returns: memory grows with one block, not with the depth */
  arena_mark mk = arena_mark_now(m);
  LH_TRY(lh_mod_call(m, ln_1, x, &a));
  LH_TRY(lh_mod_call(m, attn, &a, &a));
  LH_TRY(add_new(m, mi, x, &a, &hidden)); /* hidden = x + attn(ln_1(x)) */
  LH_TRY(lh_mod_call(m, ln_2, &hidden, &b));
  LH_TRY(lh_mod_call(m, mlp, &b, &b));
  LH_TRY(add_new(m, mi, &hidden, &b, y)); /* out = hidden + mlp(ln_2(hidden)) */
  arena_release_keep(m, mk, y);
done:
  return st;
}

static lh_status fwd_gpt2(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  const int64_t wte = mod->child[0], wpe = mod->child[1], drop = mod->child[2], h = mod->child[3],
                ln_f = mod->child[4];
  if (x->ndim != 2) LH_TRY(bad_input(m, mi, x, "token ids (B, T)"));
  int64_t B = x->shape[0], T = x->shape[1];
  lh_tensor tok, pos, pe, sum, hid;
  LH_TRY(lh_mod_call(m, wte, x, &tok)); /* (B, T, C) */
  LH_TRY(lh_mod_tensor(m, 2, (int64_t[]){B, T}, &pos));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) pos.data[b * T + t] = (float)t;
  LH_TRY(lh_mod_call(m, wpe, &pos, &pe)); /* (B, T, C) */
  LH_TRY(add_new(m, mi, &tok, &pe, &sum));
  LH_TRY(lh_mod_call(m, drop, &sum, &hid));
  const lh_module *list = &m->mod[h];
  LH_TRY(chain(m, list->child, list->nchild, &hid, &hid));
  LH_TRY(lh_mod_call(m, ln_f, &hid, y));
done:
  return st;
}

static lh_status fwd_mlp(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  /* registered c_fc, c_proj, act, dropout; called c_fc, act, c_proj, dropout */
  const int64_t c_fc = mod->child[0], c_proj = mod->child[1], act = mod->child[2],
                drop = mod->child[3];
  lh_tensor h;
  LH_TRY(lh_mod_call(m, c_fc, x, &h));
  LH_TRY(lh_mod_call(m, act, &h, &h));
  LH_TRY(lh_mod_call(m, c_proj, &h, &h));
  LH_TRY(lh_mod_call(m, drop, &h, y));
done:
  return st;
}

static lh_status fwd_residual(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  lh_status st = LH_OK;
  const lh_module *mod = &m->mod[mi];
  lh_tensor r;
  LH_TRY(chain(m, mod->child, mod->nchild, x, &r));
  LH_TRY(add_new(m, mi, x, &r, y));
done:
  return st;
}

static lh_status run_module(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *y) {
  const lh_module *mod = &m->mod[mi];
  switch (mod->kind) {
    case LH_MOD_LINEAR:
    case LH_MOD_CONV1D:
      return fwd_matmul(m, mi, x, y);
    case LH_MOD_EMBEDDING:
      return fwd_embedding(m, mi, x, y);
    case LH_MOD_LAYERNORM:
      return fwd_layernorm(m, mi, x, y);
    case LH_MOD_RELU:
    case LH_MOD_GELU:
    case LH_MOD_GELU_TANH:
    case LH_MOD_TANH:
    case LH_MOD_SIGMOID:
      return fwd_elementwise(m, mi, x, y);
    case LH_MOD_SOFTMAX:
      return fwd_softmax(m, mi, x, y);
    case LH_MOD_DROPOUT:
      *y = *x;
      return LH_OK;
    case LH_MOD_SEQUENTIAL:
      return chain(m, mod->child, mod->nchild, x, y);
    case LH_MOD_GPT2_MLP:
      return fwd_mlp(m, mi, x, y);
    case LH_MOD_RESIDUAL:
      return fwd_residual(m, mi, x, y);
    case LH_MOD_GPT2_ATTN:
      return fwd_attention(m, mi, x, y);
    case LH_MOD_GPT2_BLOCK:
      return fwd_block(m, mi, x, y);
    case LH_MOD_GPT2_MODEL:
      return fwd_gpt2(m, mi, x, y);
    case LH_MOD_GPT2_LMHEAD:
      return chain(m, mod->child, mod->nchild, x, y);
    case LH_MOD_YAML_ROOT:
      return chain(m, mod->seq, mod->nseq, x, y);
    case LH_MOD_MODULELIST:
      break;
  }
  return LH_ERROR(LH_ERR_RUNTIME, "module '%s' (%s) cannot be called", mod->name, mod->type);
}

lh_status lh_mod_call(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *out) {
  lh_status st = LH_OK;
  int call = m->mod[mi].calls++;
  lh_tensor in = *x, y;
  if (lh_hook_any(m, mi, LH_HOOK_FWD_PRE)) {
    /* hooks may replace the input: give them a private copy so that the producer's output
     * (which other modules, e.g. a residual branch, may read too) stays as it was */
    LH_TRY(lh_mod_tensor(m, x->ndim, x->shape, &in));
    if (lh_tensor_numel(x) > 0)
      memcpy(in.data, x->data, (size_t)lh_tensor_numel(x) * sizeof(float));
    LH_TRY(lh_hook_fire(m, mi, LH_HOOK_FWD_PRE, &in, call));
  }
  LH_TRY(run_module(m, mi, &in, &y));
  LH_TRY(lh_hook_fire(m, mi, LH_HOOK_FWD, &y, call));
  if (mi == m->stop_mod && call == m->stop_call) {
    /* unwind without an error message: lh_model_forward turns this back into success */
    m->stopped = true;
    return LH_ERR_RUNTIME;
  }
  *out = y;
done:
  return st;
}

/* --- public API -------------------------------------------------------------------------- */

static bool has_suffix(const char *s, const char *suf) {
  size_t n = strlen(s), k = strlen(suf);
  return n >= k && strcasecmp(s + n - k, suf) == 0;
}

lh_status lh_model_load(const char *path, lh_model **out) {
  lh_status st = LH_OK;
  struct stat sb;
  if (!path || !out) LH_FAIL(LH_ERR_VALUE, "lh_model_load: NULL argument");
  if (stat(path, &sb) != 0) LH_FAIL(LH_ERR_IO, "cannot load model '%s': %s", path, strerror(errno));
  if (S_ISDIR(sb.st_mode))
    LH_TRY(lh_model_load_hf(path, out));
  else if (has_suffix(path, ".yaml") || has_suffix(path, ".yml"))
    LH_TRY(lh_model_load_yaml(path, out));
  else
    LH_FAIL(LH_ERR_VALUE,
            "cannot load model '%s': expected a .yaml/.yml model file or a Hugging Face model "
            "directory (with config.json)",
            path);
done:
  return st;
}

void lh_model_destroy(lh_model **mp) {
  if (!mp || !*mp) return;
  lh_model *m = *mp;
  lh_hook_remove_all(m);
  lh_free(m->handles);
  if (m->hooks)
    for (int64_t i = 0; i < 2 * (m->nmod + 1); i++) lh_free(m->hooks[i].e);
  lh_free(m->hooks);
  for (int64_t i = 0; i < m->nblk; i++) lh_free(m->blk[i].data);
  lh_free(m->blk);
  for (int64_t i = 0; i < m->nparam; i++) lh_free(m->param[i].name);
  lh_free(m->param);
  lh_free(m->slab);
  for (int64_t i = 0; i < m->nmod; i++) {
    lh_free(m->mod[i].name);
    lh_free(m->mod[i].child);
    lh_free(m->mod[i].seq);
  }
  lh_free(m->mod);
  lh_free(m->path);
  lh_free(m);
  *mp = NULL;
}

lh_input_kind lh_model_input_kind(const lh_model *m) {
  return m->kind;
}
int64_t lh_model_input_width(const lh_model *m) {
  return m->width;
}
int64_t lh_model_vocab(const lh_model *m) {
  return m->vocab;
}
int64_t lh_model_module_count(const lh_model *m) {
  return m->nmod;
}

const char *lh_model_module_name(const lh_model *m, int64_t i) {
  return i >= 0 && i < m->nmod ? m->mod[i].name : NULL;
}

const char *lh_model_module_type(const lh_model *m, int64_t i) {
  return i >= 0 && i < m->nmod ? m->mod[i].type : NULL;
}

int64_t lh_model_module_find(const lh_model *m, const char *name) {
  if (!name) return -1;
  for (int64_t i = 0; i < m->nmod; i++)
    if (strcmp(m->mod[i].name, name) == 0) return i;
  return -1;
}

void lh_model_set_row0(lh_model *m, int64_t row0) {
  m->row0 = row0;
}

void lh_model_stop_after(lh_model *m, int64_t module, int call) {
  m->stop_mod = module >= 0 && module < m->nmod ? module : -1;
  m->stop_call = call;
}

static lh_status check_input(const lh_model *m, const lh_tensor *x) {
  lh_status st = LH_OK;
  char b[128];
  if (x->ndim < 1 || x->ndim > LH_TENSOR_MAX_DIMS)
    LH_FAIL(LH_ERR_VALUE, "model input has %d dimensions", x->ndim);
  if (lh_tensor_numel(x) > 0 && !x->data) LH_FAIL(LH_ERR_VALUE, "model input has no data");
  if (m->kind == LH_INPUT_FEATURES) {
    if (x->ndim != 2 || x->shape[0] < 0 || x->shape[1] != m->width)
      LH_FAIL(LH_ERR_VALUE, "model input has shape %s, expected (B, %lld) features",
              tshape(x, b, sizeof b), (long long)m->width);
    goto done;
  }
  if (x->ndim != 2 || x->shape[0] < 0 || x->shape[1] < 1 || x->shape[1] > m->width)
    LH_FAIL(LH_ERR_VALUE, "model input has shape %s, expected token ids (B, T) with 1 <= T <= %lld",
            tshape(x, b, sizeof b), (long long)m->width);
  int64_t T = x->shape[1], n = lh_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) {
    float v = x->data[i];
    if (!(v >= 0.0f && v < (float)m->vocab && v == floorf(v)))
      LH_FAIL(LH_ERR_VALUE,
              "token id %g at sample %lld, position %lld is not an integer in [0, %lld)", (double)v,
              (long long)(i / T), (long long)(i % T), (long long)m->vocab);
  }
done:
  return st;
}

lh_status lh_model_forward(lh_model *m, const lh_tensor *input, lh_tensor *output) {
  lh_status st = LH_OK;
  bool entered = false;
  if (!m || !input || !output) LH_FAIL(LH_ERR_VALUE, "lh_model_forward: NULL argument");
  if (m->in_forward) LH_FAIL(LH_ERR_RUNTIME, "lh_model_forward called again from inside a hook");
  LH_TRY(check_input(m, input));
  LH_TRY(arena_reset(m));
  for (int64_t i = 0; i < m->nmod; i++) m->mod[i].calls = 0;
  m->wrapper_calls = 0;
  m->stopped = false;
  m->in_forward = entered = true;
  lh_tensor x, y;
  LH_TRY(lh_mod_tensor(m, input->ndim, input->shape, &x));
  if (lh_tensor_numel(input) > 0)
    memcpy(x.data, input->data, (size_t)lh_tensor_numel(input) * sizeof(float));
  /* tdhook's "td_module" wrapper around the model: sees the model's input and output */
  int call = m->wrapper_calls++;
  LH_TRY(lh_hook_fire(m, m->nmod, LH_HOOK_FWD_PRE, &x, call));
  LH_TRY(lh_mod_call(m, 0, &x, &y));
  LH_TRY(lh_hook_fire(m, m->nmod, LH_HOOK_FWD, &y, call));
  *output = y;
done:
  if (st != LH_OK && m && m->stopped) {
    /* stopped early on purpose: no model output */
    st = LH_OK;
    memset(output, 0, sizeof *output);
  }
  if (entered) {
    m->in_forward = false;
    lh_hook_reap(m); /* handles removed by hooks during the pass */
  }
  return st;
}
