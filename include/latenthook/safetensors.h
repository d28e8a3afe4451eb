/*
 * safetensors.h: a validating, memory-mapped reader of the safetensors format.
 *
 * Hugging Face's safetensors file is an 8-byte little-endian header length n, n bytes of
 * UTF-8 JSON mapping each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
 * (offsets relative to the end of the header; an optional "__metadata__" object of strings),
 * then the data. Model weights come from files users download, so nothing in the file is
 * trusted: the header length is bounded by the file size (and by 100 MB, as the reference
 * implementation does), the header must be a JSON object parsed by jansson, every dtype must
 * be a known one, the product of the shape times the element size must equal the byte range,
 * every range must lie inside the data section, and ranges must not overlap. A malformed file
 * is an LH_ERR_VALUE (LH_ERR_IO when it cannot be read) naming the file, the tensor and what
 * was expected; never a crash.
 *
 * The file is mapped read-only; tensor data pointers stay valid until lh_safetensors_close.
 * All functions are Local (no MPI): every rank opens the file itself.
 */
#ifndef LATENTHOOK_SAFETENSORS_H
#define LATENTHOOK_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LH_ST_MAX_DIMS 8

typedef struct lh_safetensors lh_safetensors;

typedef struct lh_st_tensor {
  const char *name;
  const char *dtype; /* as in the file: "F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", ... */
  int elem_size;     /* bytes per element */
  int ndim;          /* 0 (a scalar) .. LH_ST_MAX_DIMS */
  int64_t shape[LH_ST_MAX_DIMS];
  int64_t numel;
  size_t nbytes;
  const void *data;  /* inside the mapping; little-endian, possibly unaligned */
} lh_st_tensor;

/* Opens, maps and validates `path`. Local. */
LH_NODISCARD lh_status lh_safetensors_open(const char *path, lh_safetensors **out);

/* Unmaps and frees; accepts NULL and NULLs the handle. Local. */
void lh_safetensors_close(lh_safetensors **s);

/* Tensors in the order of their data offsets. Local. */
int64_t lh_safetensors_count(const lh_safetensors *s);
const lh_st_tensor *lh_safetensors_at(const lh_safetensors *s, int64_t i);

/* The tensor called `name`, or NULL. Local. */
const lh_st_tensor *lh_safetensors_find(const lh_safetensors *s, const char *name);

/* The metadata value for `key`, or NULL. Local. */
const char *lh_safetensors_metadata(const lh_safetensors *s, const char *key);

/* The path the reader was opened with. Local. */
const char *lh_safetensors_path(const lh_safetensors *s);

/* Converts tensor t (F32, F16, BF16 or F64) to float32 into dst (t->numel values). Other
 * dtypes: LH_ERR_TYPE naming the tensor and its dtype. Local. */
LH_NODISCARD lh_status lh_safetensors_read_f32(const lh_safetensors *s, const lh_st_tensor *t,
                                               float *dst);

#ifdef __cplusplus
}
#endif
#endif
