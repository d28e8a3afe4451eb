/*
 * steer.h: SteeringVectors (SPEC 2.3): edit module outputs in place during an ordinary forward.
 *
 * A steer callback receives the module key it was registered for and the module's output
 * (B, s...), which it may change in place; the forward goes on with the changed tensor. Each
 * hook carries its own copy of its key, so a callback registered on several modules always
 * learns which module fired (tdhook's reference version passed the last key to every hook,
 * SPEC 9.2; this is the fix HEAD made).
 *
 * Built-in callbacks (lh_steer_builtin as user data of lh_steer_builtin_apply):
 *   add      y + alpha v
 *   project  y - (y . v^) v^ with v^ = v / |v| (v's direction projected out)
 *   scale    s y
 * v has the module's per-sample shape s, or s's last dimension, and is then broadcast over
 * the positions (every sample and every position gets the same vector, the usual steering of
 * a residual stream (T, C) by a (C) vector); any other shape is LH_ERR_VALUE naming both.
 *
 * lh_steer_forward runs the data-parallel forward over an input dataset with whatever hooks
 * are on the model (batches on a global grid, as cache.h: results bit-identical for any rank
 * count) and keeps the model output.
 */
#ifndef LATENTHOOK_STEER_H
#define LATENTHOOK_STEER_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/dmat.h"
#include "latenthook/model.h"
#include "latenthook/status.h"
#include "latenthook/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Edits `output` (B, s...) of module `module_key` in place. Local: never calls MPI. An error
 * stops the forward, which returns it. */
typedef lh_status (*lh_steer_fn)(const char *module_key, lh_tensor *output, void *user);

typedef enum lh_steer_op { LH_STEER_ADD = 0, LH_STEER_PROJECT, LH_STEER_SCALE } lh_steer_op;

/* User data of lh_steer_builtin_apply. v is borrowed and must outlive the hooks. */
typedef struct lh_steer_builtin {
  lh_steer_op op;
  double alpha;   /* add: the factor of v; scale: the factor of y */
  const float *v; /* add, project: the vector, vshape[0..vk) row-major */
  int vk;
  int64_t vshape[LH_TENSOR_MAX_DIMS];
  const char *what; /* names v in messages ("--add F.h5:/v"); may be NULL */
} lh_steer_builtin;

/* The built-in steer callback: `user` is a const lh_steer_builtin *. LH_ERR_VALUE when v
 * fits neither the module's per-sample shape nor its last dimension, or when projecting out
 * a zero vector. Local. */
LH_NODISCARD lh_status lh_steer_builtin_apply(const char *module_key, lh_tensor *output,
                                              void *user);

typedef struct lh_steer lh_steer;

/* Registers fn on the output (fwd) of each of modules[0..count) (relative names or tdhook
 * paths, "" for the root; model.h), in list order. LH_ERR_KEY naming the closest existing
 * names for an unknown module (nothing stays registered then). `user` is borrowed. Local. */
LH_NODISCARD lh_status lh_steer_attach(lh_model *m, const char *const *modules, int64_t count,
                                       lh_steer_fn fn, void *user, lh_steer **out);

/* Removes the hooks; accepts NULL and NULLs the handle. Call before destroying the model.
 * Local. */
void lh_steer_detach(lh_steer **s);

/* Runs `model` (with its hooks) over every row of `inputs` ("FILE.h5:/dset", (N, F) features
 * or (N, T) token ids) on the ranks of comm, batch_size samples per forward, and returns the
 * model output as an N x E float32 matrix (rows split as lh_dmat's) with its per-sample shape
 * (*k dims into shape). A one-sample probe forward on every rank first, so that shape errors
 * of the hooks surface on every rank alike. Collective. Errors (agreed): those of h5.h, of
 * the inputs (not 2-D, width, token ids) and of the hooks and the model. */
LH_NODISCARD lh_status lh_steer_forward(MPI_Comm comm, lh_model *model, const char *inputs,
                                        int64_t batch_size, lh_dmat **out, int *k, int64_t *shape);

/* Reads a whole small float dataset ("FILE.h5:/v", 1 to LH_TENSOR_MAX_DIMS dims) on every
 * rank; *v (release with lh_free) holds shape[0..*k) row-major. Collective. */
LH_NODISCARD lh_status lh_steer_read_vector(MPI_Comm comm, const char *spec, float **v, int *k,
                                            int64_t *shape);

#ifdef __cplusplus
}
#endif
#endif
