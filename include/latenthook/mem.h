/*
 * mem.h: checked allocation.
 *
 * Every allocation of a count of elements goes through lh_alloc(): it checks count * size
 * for overflow, aligns to 64 bytes (a cache line, and what AVX-512 kernels like) and, on
 * failure, records a message naming what was being allocated and how much.
 */
#ifndef LATENTHOOK_MEM_H
#define LATENTHOOK_MEM_H

#include <stddef.h>
#include <stdint.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Allocates count*size bytes, 64-byte aligned, and stores the pointer in *out. Local.
 * count == 0 yields a valid unique pointer. `zero` clears the memory. `what` names the
 * buffer in the error message. Fails with LH_ERR_NOMEM (overflow or out of memory). */
LH_NODISCARD lh_status lh_alloc(size_t count, size_t size, bool zero, const char *what,
                                void *out);

/* Releases memory from lh_alloc; accepts NULL. Local. */
void lh_free(void *p);

/* Formats a byte count as "12.0 GiB" into buf. Pure. */
const char *lh_format_bytes(double bytes, char *buf, size_t cap);

/* Checked products for sizes. Pure. Return false on overflow. */
bool lh_mul_overflows(size_t a, size_t b, size_t *out);

/* Peak resident memory of this process in bytes (from getrusage). Local. */
int64_t lh_peak_rss_bytes(void);

#ifdef __cplusplus
}
#endif
#endif
