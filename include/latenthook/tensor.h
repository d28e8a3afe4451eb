/*
 * tensor.h: a strided-free view of a float32 tensor, the currency of the hooked forward pass.
 *
 * Activations flow between modules as contiguous row-major float32 arrays whose first
 * dimension is the sample (the rows of one batch). A view does not own its data. Token ids
 * travel as float32 too (exact below 2^24, far above any vocabulary), so that every hook sees
 * the same type whatever the module.
 */
#ifndef LATENTHOOK_TENSOR_H
#define LATENTHOOK_TENSOR_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LH_TENSOR_MAX_DIMS 6

typedef struct lh_tensor {
  float *data; /* contiguous, row-major */
  int ndim;    /* 1..LH_TENSOR_MAX_DIMS; shape[0] is the sample count of the batch */
  int64_t shape[LH_TENSOR_MAX_DIMS];
} lh_tensor;

/* Product of the dimensions (1 for ndim = 0). Pure. */
static inline int64_t lh_tensor_numel(const lh_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

/* Elements per sample: the product of shape[1..]. Pure. */
static inline int64_t lh_tensor_row_len(const lh_tensor *t) {
  int64_t n = 1;
  for (int i = 1; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

#ifdef __cplusplus
}
#endif
#endif
