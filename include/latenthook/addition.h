/*
 * addition.h: ActivationAddition (SPEC 2.4): steering vectors from contrasting inputs.
 *
 * For each listed module m, steer[m] = mean over the samples i of (P_m[i] - N_m[i]), where
 * P_m / N_m are the module's forward outputs on the positive and negative inputs (paired row
 * by row), optionally reduced per sample first (reduce.h: tdhook's cache_callback). The
 * result has the module's per-sample shape after the reduction: (C) for a Linear, (T, C) for
 * a hidden state, (C) with mean / last / position:I. It is not applied here: hand it to
 * SteeringVectors (steer.h), e.g. `latenthook steer --add OUT.h5:/steer/<module>`.
 *
 * Both passes are lh_cache_run forwards (cache.h, rows split over the ranks); the difference
 * is taken row by row in float64 and averaged with one exact column reduction (xsum.h), so
 * the result is bit-identical for any rank count.
 */
#ifndef LATENTHOOK_ADDITION_H
#define LATENTHOOK_ADDITION_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/h5.h"
#include "latenthook/model.h"
#include "latenthook/reduce.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_addition lh_addition;

/* Computes the steering vectors of modules[0..count) (relative module names as
 * named_modules() gives them; a name listed twice counts once) from the datasets `positive`
 * and `negative` ("FILE.h5:/dset", inputs as cache.h takes them), batch_size samples per
 * forward. Collective. Errors (agreed): an unknown module (LH_ERR_KEY naming the closest
 * names), the root "" (LH_ERR_VALUE), positive and negative with different sample counts,
 * a module whose activation shape differs between the two (LH_ERR_VALUE naming both), and
 * those of lh_cache_run. */
LH_NODISCARD lh_status lh_addition_run(MPI_Comm comm, lh_model *model, const char *positive,
                                       const char *negative, const char *const *modules,
                                       int64_t count, const lh_reduce *reduce, int64_t batch_size,
                                       lh_addition **out);

/* Vectors in list order. Local. */
int64_t lh_addition_count(const lh_addition *a);
const char *lh_addition_key(const lh_addition *a, int64_t i);
/* The vector of entry i, float64, its per-sample shape in shape[0..*k); the same on every
 * rank. Local. */
const double *lh_addition_vector(const lh_addition *a, int64_t i, int *k, int64_t *shape);

/* Writes /steer/<key> (float32, the per-sample shape) for every entry. Collective. */
LH_NODISCARD lh_status lh_addition_write(const lh_addition *a, lh_h5_out *o);

/* Frees everything; accepts NULL and NULLs the handle. Local. */
void lh_addition_destroy(lh_addition **a);

#ifdef __cplusplus
}
#endif
#endif
