/*
 * reduce.h: the named built-in reductions of cached activations (tdhook's ActivationCaching
 * `callback`, SPEC 2.1), usable from the command line and job files.
 *
 * A module's output for one sample has a per-sample shape s = (s1, ..., sk). With k >= 2 the
 * positions are the axis k-1 (second last): (T, C) for a hidden state, (H, Tq, Tk) for
 * attention probabilities (query positions). The reductions:
 *   none        s unchanged
 *   mean        mean over the positions: (T, C) -> (C), (H, Tq, Tk) -> (H, Tk)
 *   last        the last position
 *   position:I  position I (negative counts from the end, as Python indexing)
 *   flatten     (prod s): one row of features per sample
 * mean, last and position need k >= 2 (a position axis); asking for them on a per-sample
 * vector is LH_ERR_VALUE naming the module and its shape.
 */
#ifndef LATENTHOOK_REDUCE_H
#define LATENTHOOK_REDUCE_H

#include <stdint.h>

#include "latenthook/status.h"
#include "latenthook/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lh_reduce_kind {
  LH_REDUCE_NONE = 0,
  LH_REDUCE_MEAN,
  LH_REDUCE_LAST,
  LH_REDUCE_POSITION,
  LH_REDUCE_FLATTEN
} lh_reduce_kind;

typedef struct lh_reduce {
  lh_reduce_kind kind;
  int64_t position; /* LH_REDUCE_POSITION only; may be negative */
} lh_reduce;

/* Parses "none", "mean", "last", "position:I", "flatten"; anything else is LH_ERR_USAGE
 * listing the choices. Pure. */
LH_NODISCARD lh_status lh_reduce_parse(const char *s, lh_reduce *out);

/* Writes the name ("position:-1") into buf and returns it. Pure. */
const char *lh_reduce_name(const lh_reduce *r, char *buf, size_t cap);

/* The per-sample shape after the reduction of per-sample shape in[0..k). `what` names the
 * module in the error (a per-sample vector with mean/last/position; a position outside
 * [-T, T)). Pure. */
LH_NODISCARD lh_status lh_reduce_shape(const lh_reduce *r, const char *what, int k,
                                       const int64_t *in, int *k_out, int64_t *out);

/* Applies the reduction to t (shape (b, s...)) into out (b x the reduced row length),
 * accumulating means in float64. The shape must have passed lh_reduce_shape. Pure. */
void lh_reduce_apply(const lh_reduce *r, const lh_tensor *t, float *out);

#ifdef __cplusplus
}
#endif
#endif
