/*
 * dtype.h: the element types of LatentHook's in-memory arrays.
 *
 * Arrays in memory are float32 or float64. Files may hold other types (float16, integers);
 * the HDF5 layer converts them on read (io/h5.h).
 */
#ifndef LATENTHOOK_DTYPE_H
#define LATENTHOOK_DTYPE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lh_dtype { LH_F32 = 0, LH_F64 = 1 } lh_dtype;

/* Bytes per element. Pure. */
static inline size_t lh_dtype_size(lh_dtype t) { return t == LH_F64 ? 8 : 4; }

/* "float32" / "float64". Pure. */
static inline const char *lh_dtype_name(lh_dtype t) { return t == LH_F64 ? "float64" : "float32"; }

#ifdef __cplusplus
}
#endif
#endif
