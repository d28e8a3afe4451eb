/*
 * model.h: a neural network as a tree of named modules, with a forward pass that fires hooks.
 *
 * Two sources (SPEC 1.1 names, issue "hooked forward pass"):
 *   - a YAML file (libcyaml): `weights:` a safetensors or HDF5 file relative to the YAML,
 *     `input: {features: F}`, `modules:` a list of {name, type, sizes...} in registration
 *     order (containers `sequential` and `residual` hold their own `modules:`), `forward:` the
 *     top-level call order (a module may be called more than once);
 *   - a Hugging Face GPT-2 directory: config.json (jansson) + model.safetensors; module names
 *     as GPT2LMHeadModel's (transformer.wte, transformer.h.0.attn.c_attn, lm_head, ...).
 * Parameters are named as in a PyTorch state_dict (<module>.weight, <module>.bias).
 *
 * Inputs: float features (B, F) for YAML models, token ids (B, T) (integer-valued float32,
 * 1 <= T <= n_positions) for GPT-2. Outputs: (B, out) and logits (B, T, vocab).
 *
 * Lifecycle: load -> (hooks added / removed) -> forward ... -> destroy. Every function is
 * Local (no MPI); loading reads the files on the calling rank, so callers agree on errors
 * with lh_agree.
 */
#ifndef LATENTHOOK_MODEL_H
#define LATENTHOOK_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/hook.h"
#include "latenthook/status.h"
#include "latenthook/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_model lh_model;

typedef enum lh_input_kind { LH_INPUT_FEATURES = 0, LH_INPUT_TOKENS = 1 } lh_input_kind;

/* Loads a model from a YAML file or a Hugging Face model directory. Local. Errors name the
 * file and the key / YAML line / tensor at fault and what was expected. */
LH_NODISCARD lh_status lh_model_load(const char *path, lh_model **out);

/* Frees the model, its parameters, workspaces and hooks (their user_free runs); accepts NULL
 * and NULLs the handle. Hook handles still registered go with the model: do not
 * lh_hook_remove them afterwards. Local. */
void lh_model_destroy(lh_model **m);

/* Input description: kind, and the feature count F (features) or the largest T (tokens);
 * vocab is the embedding's row count for tokens (0 for features). Local. */
lh_input_kind lh_model_input_kind(const lh_model *m);
int64_t lh_model_input_width(const lh_model *m);
int64_t lh_model_vocab(const lh_model *m);

/* Modules in named_modules() order (index 0 is the root ""). Local. */
int64_t lh_model_module_count(const lh_model *m);
const char *lh_model_module_name(const lh_model *m, int64_t i);
const char *lh_model_module_type(const lh_model *m, int64_t i);

/* Index of the module called `name` (relative name), or -1. Local. */
int64_t lh_model_module_find(const lh_model *m, const char *name);

/* Registers `spec` on module `name` (a relative name, "" for the root; an absolute name
 * when relative is false; or a tdhook path: "h[0]", "h[-1]" into a Sequential/ModuleList,
 * "<literal>" segments, extra dots ignored). LH_ERR_KEY naming the closest existing names
 * when there is no such module. The handle removes the hook. LH_ERR_RUNTIME from inside a hook. Local. */
LH_NODISCARD lh_status lh_model_hook(lh_model *m, const char *name, bool relative,
                                     lh_hook_dir dir, lh_hook_spec spec, lh_hook_handle **out);

/* Registers `spec` on every module whose name re.match()es `pattern` (hook.h), in
 * named_modules() order; one handle for all of them (possibly none matched: *count = 0).
 * An invalid pattern is LH_ERR_VALUE with PCRE2's message and offset. Local. */
LH_NODISCARD lh_status lh_model_hook_pattern(lh_model *m, const char *pattern, bool relative,
                                             lh_hook_dir dir, lh_hook_spec spec,
                                             lh_hook_handle **out, int64_t *count);

/* Removes the hooks of a handle (running user_free once); accepts NULL, NULLs it. Local. */
void lh_hook_remove(lh_hook_handle **h);

/* Global index of the next forward's first sample, passed to hooks as ev->row0. Local. */
void lh_model_set_row0(lh_model *m, int64_t row0);

/* Makes the following forwards stop right after the fwd hooks of call `call` (0 = first) of
 * module `module` (an index as lh_model_module_find gives), skipping the rest of the model,
 * as tdhook's stopping hook does; *output is then an empty tensor (ndim 0). module < 0
 * restores full forwards. Local. */
void lh_model_stop_after(lh_model *m, int64_t module, int call);

/* Runs the model on `input` (features (B, F) or token ids (B, T)), firing hooks. *output
 * becomes a view of the model output inside the model's workspace, valid until the next
 * forward or destroy. Token ids outside [0, vocab) and wrong widths are LH_ERR_VALUE; a hook's
 * error stops the pass and is returned; LH_ERR_RUNTIME from inside a hook. Every activation
 * has the batch's samples first: GPT-2's wpe is called on position ids (B, T), where
 * transformers uses (1, T). Local. */
LH_NODISCARD lh_status lh_model_forward(lh_model *m, const lh_tensor *input, lh_tensor *output);

#ifdef __cplusplus
}
#endif
#endif
