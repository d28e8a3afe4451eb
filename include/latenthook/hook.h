/*
 * hook.h: hooks on the modules of a model (tdhook's register_forward_hook /
 * register_forward_pre_hook, and MultiHookManager's regex selection, SPEC 1.4 and 1.6).
 *
 * A hook is a typed callback with one event struct and a user pointer, grouped with an
 * optional destructor for the user data (redis style). It fires per call, not per module: a
 * module called twice in one forward fires twice. Hooks on one module fire in registration
 * order and each sees the tensor as earlier hooks left it. A hook may replace what the
 * module passes on by writing into ev->tensor->data in place (same shape): for LH_HOOK_FWD the
 * module's output, for LH_HOOK_FWD_PRE the module's (first) input before the module runs.
 * Hooks are Local: they never call MPI. A hook returning an error stops the forward, which
 * returns that error. A hook may remove handles (its own too): they stop firing at once and
 * their user_free runs when the forward returns; it may not register hooks or run a forward.
 *
 * Names. Module names are PyTorch's named_modules() names of the user's model (root ""). A
 * pattern registers on every module whose name re.match()es it (PCRE2, anchored at the start
 * only, so "linear1" also matches "linear10"; "$" anchors the end), in pre-order, never the
 * root "" itself. With relative = false, names are those seen from tdhook's HookedModule
 * around a raw model: "td_module", "td_module.module" (the user's model root) and
 * "td_module.module.<name>" (SPEC 1.2, TV-16); the two wrappers pass the model's input and
 * output through, so hooking them sees the model input (fwd_pre) and output (fwd).
 */
#ifndef LATENTHOOK_HOOK_H
#define LATENTHOOK_HOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "latenthook/status.h"
#include "latenthook/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lh_hook_dir { LH_HOOK_FWD = 0, LH_HOOK_FWD_PRE = 1 } lh_hook_dir;

/* "fwd" / "fwd_pre". Pure. */
const char *lh_hook_dir_name(lh_hook_dir d);
/* Parses "fwd" / "fwd_pre"; anything else is LH_ERR_VALUE ("Invalid direction: ..."). Pure. */
LH_NODISCARD lh_status lh_hook_dir_parse(const char *s, lh_hook_dir *out);

typedef struct lh_hook_event {
  const char *name;   /* the module's name as the hook was registered: relative or absolute */
  const char *type;   /* PyTorch class name: "Linear", "Conv1D", "GPT2Attention", ... */
  lh_hook_dir dir;
  lh_tensor *tensor;  /* output (fwd) or first input (fwd_pre); shape[0] = batch samples;
                       * writable in place; valid during the call only: copy what you keep */
  int64_t row0;       /* global index of the batch's first sample (lh_model_set_row0) */
  int call;           /* 0 for the module's first call in this forward, 1 for the second... */
} lh_hook_event;

typedef lh_status (*lh_hook_fn)(const lh_hook_event *ev, void *user);

typedef struct lh_hook_spec {
  lh_hook_fn fn;
  void *user;
  void (*user_free)(void *user); /* called once when the handle is removed; may be NULL */
} lh_hook_spec;

typedef struct lh_hook_handle lh_hook_handle;

#ifdef __cplusplus
}
#endif
#endif
