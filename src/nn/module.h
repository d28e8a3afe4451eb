/*
 * module.h (private): the module tree behind model.h, shared by the tree code (module.c), the
 * hook registry (hook.c) and the two loaders (io/model_yaml.c, io/model_hf.c).
 *
 * A model is an array of modules in PyTorch's named_modules() order: the loaders add modules
 * depth first (a parent, then each child with its whole subtree, in registration order), so
 * index 0 is the root "" and the array order is the pre-order walk. Each module knows its
 * dotted name, its PyTorch class name, its children, its sizes and the indices of its
 * parameters. Parameters are named views into one float32 slab (llm.c style); a tied parameter
 * (GPT-2's lm_head.weight) is a view of another one.
 *
 * Every call of every module goes through lh_mod_call(): it fires the module's fwd_pre hooks
 * on (a private copy of) its first input, runs the module, then fires its fwd hooks on the
 * output. Outputs live in a per-forward arena of chained blocks: each module output has its
 * own memory, which keeps the values hooks wrote for as long as later modules read it. The
 * model output stays valid until the next forward; views handed to hooks are valid during the
 * call (a GPT2Block releases its intermediates when it returns).
 */
#ifndef LH_NN_MODULE_H
#define LH_NN_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/hook.h"
#include "latenthook/model.h"
#include "latenthook/safetensors.h"
#include "latenthook/status.h"
#include "latenthook/tensor.h"

typedef enum lh_mod_kind {
  LH_MOD_LINEAR,
  LH_MOD_CONV1D,
  LH_MOD_EMBEDDING,
  LH_MOD_LAYERNORM,
  LH_MOD_RELU,
  LH_MOD_GELU,      /* exact (erf) */
  LH_MOD_GELU_TANH, /* tanh approximation */
  LH_MOD_TANH,
  LH_MOD_SIGMOID,
  LH_MOD_SOFTMAX,
  LH_MOD_DROPOUT, /* identity at inference: returns its input buffer */
  LH_MOD_SEQUENTIAL,
  LH_MOD_MODULELIST, /* never called */
  LH_MOD_RESIDUAL,   /* x + children(x) */
  LH_MOD_GPT2_ATTN,
  LH_MOD_GPT2_MLP,
  LH_MOD_GPT2_BLOCK,
  LH_MOD_GPT2_MODEL,
  LH_MOD_GPT2_LMHEAD,
  LH_MOD_YAML_ROOT /* calls the modules of its `forward:` list in order */
} lh_mod_kind;

typedef struct lh_param {
  char *name; /* state_dict key, "<module>.weight" */
  int ndim;   /* 1 or 2 */
  int64_t shape[2];
  int64_t numel;
  int64_t offset; /* in floats into the slab; -1 when tied */
  int64_t tied;   /* index of the parameter this one shares, or -1 */
  int64_t module; /* owning module */
  float *data;    /* set by lh_mod_alloc_params */
} lh_param;

typedef struct lh_module {
  char *name;       /* dotted, "" for the root */
  const char *type; /* PyTorch class name (static string) */
  lh_mod_kind kind;
  int64_t parent; /* -1 for the root */
  int64_t *child; /* indices, registration order */
  int64_t nchild, capchild;
  /* sizes: linear / conv1d in -> out features; embedding rows (in) x dim (out); layernorm
   * normalized size (in = out); attention: channels (in = out) */
  int64_t in, out;
  bool has_bias, affine;
  float eps;      /* layernorm */
  float p;        /* dropout probability (informative only) */
  int dim;        /* softmax dim (negative counts from the end) */
  int64_t nhead;  /* attention */
  float scale;    /* attention: multiplies q.k */
  int64_t weight; /* parameter indices, -1 when absent */
  int64_t bias;
  int64_t *seq; /* YAML root: modules called in order */
  int64_t nseq;
  int line;  /* YAML line of the definition (0 when unknown) */
  int calls; /* calls in the current forward */
} lh_module;

/* One registered hook on one module (hook.c). */
typedef struct lh_hook_entry lh_hook_entry;

typedef struct lh_hook_list {
  lh_hook_entry **e; /* registration order */
  int64_t n, cap;
} lh_hook_list;

typedef struct lh_arena_block {
  float *data;
  int64_t cap, used; /* floats */
} lh_arena_block;

struct lh_model {
  char *path;      /* what was loaded */
  char *root_type; /* class name of the root */
  lh_module *mod;
  int64_t nmod, capmod;
  lh_param *param;
  int64_t nparam, capparam;
  float *slab;
  int64_t slab_len;
  lh_input_kind kind;
  int64_t width; /* features F, or n_positions */
  int64_t vocab; /* token models: embedding rows */
  int64_t row0;
  /* per-forward arena: chained blocks, merged into one at the next reset (module.c) */
  lh_arena_block *blk;
  int64_t nblk, capblk;
  int64_t cur;       /* block being filled */
  int64_t min_block; /* floats in the first block (tests make it tiny) */
  /* hooks: list[2 * slot + dir], slot = module index, or nmod for the "td_module" wrapper */
  lh_hook_list *hooks;
  int wrapper_calls;
  lh_hook_handle **handles; /* live handles, removed with the model */
  int64_t nhandles, caphandles;
  bool in_forward;
  /* early stop (lh_model_stop_after): after the fwd hooks of call stop_call of module
   * stop_mod; stopped marks the unwinding */
  int64_t stop_mod;
  int stop_call;
  bool stopped;
};

/* --- building (module.c) --------------------------------------------------------------- */

/* A new empty model for `path` whose root (module 0, named "") has `kind` and class name
 * `type`. Local. */
LH_NODISCARD lh_status lh_mod_model_new(const char *path, lh_mod_kind kind, const char *type,
                                        lh_model **out);

/* Adds a child called `attr` under `parent`; its full name is parent.attr. Children must be
 * added depth first (see the top of this file). *idx receives the new module's index. Local. */
LH_NODISCARD lh_status lh_mod_add(lh_model *m, int64_t parent, const char *attr, lh_mod_kind kind,
                                  const char *type, int64_t *idx);

/* Declares parameter <module name>.<suffix> of the given shape (ndim 1 or 2). Local. */
LH_NODISCARD lh_status lh_mod_add_param(lh_model *m, int64_t module, const char *suffix, int ndim,
                                        int64_t d0, int64_t d1, int64_t *idx);

/* Makes parameter p a view of parameter `target` (same shape required). Local. */
LH_NODISCARD lh_status lh_mod_tie_param(lh_model *m, int64_t p, int64_t target);

/* Allocates the parameter slab (zeroed) and points every view into it. Local. */
LH_NODISCARD lh_status lh_mod_alloc_params(lh_model *m);

/* Copies safetensors tensor t into parameter p after checking its shape; errors name the file,
 * the tensor, and the expected and found shapes. Local. */
LH_NODISCARD lh_status lh_mod_param_from_st(lh_model *m, int64_t p, const lh_safetensors *st,
                                            const lh_st_tensor *t);

/* Finishes a loaded model: hook lists. Local. */
LH_NODISCARD lh_status lh_mod_finish(lh_model *m);

/* "(20, 10)" for a shape. Pure. */
const char *lh_mod_shape_str(int ndim, const int64_t *shape, char *buf, int cap);

/* --- forward (module.c) ---------------------------------------------------------------- */

/* Calls module mi on x through the hooks (see the top of this file); *out is its output.
 * Local. */
LH_NODISCARD lh_status lh_mod_call(lh_model *m, int64_t mi, const lh_tensor *x, lh_tensor *out);

/* A fresh arena tensor of the given shape (valid until the next forward, unless allocated
 * inside a GPT2Block, see above). Local. */
LH_NODISCARD lh_status lh_mod_tensor(lh_model *m, int ndim, const int64_t *shape, lh_tensor *out);

/* --- hooks (hook.c) -------------------------------------------------------------------- */

/* Fires the hooks of (slot, dir) on t, in registration order. Local. */
LH_NODISCARD lh_status lh_hook_fire(lh_model *m, int64_t slot, lh_hook_dir dir, lh_tensor *t,
                                    int call);

/* True when (slot, dir) has hooks. Local. */
bool lh_hook_any(const lh_model *m, int64_t slot, lh_hook_dir dir);

/* Finishes the removal of handles removed during a forward. Local. */
void lh_hook_reap(lh_model *m);

/* Removes every live handle (model destruction). Local. */
void lh_hook_remove_all(lh_model *m);

/* --- loaders --------------------------------------------------------------------------- */

/* A YAML model file (io/model_yaml.c). Local. */
LH_NODISCARD lh_status lh_model_load_yaml(const char *path, lh_model **out);
/* A Hugging Face GPT-2 directory (io/model_hf.c). Local. */
LH_NODISCARD lh_status lh_model_load_hf(const char *dir, lh_model **out);

/* Closest names to `name` among `cand` (edit distance), formatted "'a', 'b'" into buf, at
 * most `max` of them. Pure. */
void lh_mod_closest(const char *name, const char *const *cand, int64_t ncand, int max, char *buf,
                    int cap);

#endif
