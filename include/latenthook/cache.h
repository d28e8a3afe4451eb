/*
 * cache.h: ActivationCaching over the data-parallel hooked forward pass (SPEC 2.1).
 *
 * The rows of an input dataset (N, F) features or (N, T) token ids are split over the ranks
 * as an lh_dmat's rows are; each rank runs its rows through its own copy of the model in
 * batches, and hooks on every module whose name matches the key pattern copy what the module
 * outputs (fwd) or receives (fwd_pre), reduced by a built-in reduction (reduce.h), into
 * distributed matrices with the same row distribution. As in tdhook, a module called several
 * times in one forward keeps its last call, and the model output is kept beside the cache.
 *
 * Keys: the module name (relative to the user's model, or tdhook's absolute
 * "td_module.module.<name>"), or "<direction>/<name>" with nested keys (several directions
 * or nested_keys set). Written to HDF5 as OUT:/cache/<key> and OUT:/output, each (N, ...)
 * in the module's natural per-sample shape after the reduction.
 *
 * Shapes are found before the pass by a one-sample probe forward on every rank, so ranks
 * without rows (N < P) create the same distributed matrices as the others. The probe runs
 * with row0 = -1 on a zero input (token 0), and hooks the caller registered on the model see
 * it too; the forwards of the pass then run whole batches of a global grid (batch j = rows
 * [j B, (j + 1) B), row0 = j B) in which the rows of other ranks are zeros.
 */
#ifndef LATENTHOOK_CACHE_H
#define LATENTHOOK_CACHE_H

#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>

#include "latenthook/dmat.h"
#include "latenthook/h5.h"
#include "latenthook/hook.h"
#include "latenthook/model.h"
#include "latenthook/reduce.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LH_CACHE_MAX_DIRS 2

typedef struct lh_cache_opts {
  const char *key_pattern; /* Python re.match semantics (hook.h); NULL: no cache, only the
                            * model output (needs keep_output) */
  bool relative;           /* default true */
  lh_hook_dir dirs[LH_CACHE_MAX_DIRS];
  int ndirs;               /* default 1: fwd */
  bool nested_keys;        /* forced on with several directions */
  lh_reduce reduce;        /* applied to every cached tensor; default none */
  bool keep_output;        /* default true */
  lh_reduce output_reduce; /* applied to the model output; default none */
  int64_t batch_size;      /* samples per forward on each rank; default 32 */
  bool progress;           /* progress bar on rank 0 */
} lh_cache_opts;

/* Defaults as commented above (key_pattern NULL: must be set). Pure. */
lh_cache_opts lh_cache_defaults(void);

typedef struct lh_cache lh_cache;

/* Runs `model` over every row of `inputs` ("FILE.h5:/dset") on the ranks of comm, caching
 * the modules matched by opts->key_pattern. Collective. Errors (agreed over comm): the
 * dataset errors of h5.h; LH_ERR_VALUE for a dataset that is not 2-D, token ids that are
 * not integers or out of the vocabulary, T above the model's positions, F different from the
 * model's features, a pattern matching no module (listing the module names), a reduction a
 * module's shape does not allow; errors of a hook or the model. */
LH_NODISCARD lh_status lh_cache_run(MPI_Comm comm, lh_model *model, const char *inputs,
                                    const lh_cache_opts *opts, lh_cache **out);

/* Entries in registration order (direction by direction, modules in named_modules order).
 * Local. */
int64_t lh_cache_count(const lh_cache *c);
const char *lh_cache_key(const lh_cache *c, int64_t i);
/* The cached rows: N x E (E = product of the per-sample shape), float32. Local. */
lh_dmat *lh_cache_matrix(const lh_cache *c, int64_t i);
/* Per-sample shape of entry i (k dims into shape, k <= LH_TENSOR_MAX_DIMS). Local. */
int lh_cache_shape(const lh_cache *c, int64_t i, int64_t *shape);
/* The model output (N x E) and its per-sample shape, or NULL without keep_output. Local. */
lh_dmat *lh_cache_output(const lh_cache *c, int64_t *shape, int *k);

/* Writes /output and /cache/<key> into o, collectively, float32, rows along the first axis,
 * with the key pattern, directions and reduction as attributes of /cache. Collective. */
LH_NODISCARD lh_status lh_cache_write(const lh_cache *c, lh_h5_out *o);

/* Frees everything; accepts NULL and NULLs the handle. Local. */
void lh_cache_destroy(lh_cache **c);

#ifdef __cplusplus
}
#endif
#endif
