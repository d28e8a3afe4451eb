/*
 * dmat.h: the distributed matrix, LatentHook's central data structure.
 *
 * An lh_dmat is a global N x D matrix (float32 or float64, row-major) split in contiguous
 * row blocks over the ranks of a communicator (partition.h: the first N mod P ranks take one
 * more row; N < P leaves ranks empty). Each rank stores its n rows contiguously and knows the
 * global index of its first row. Samples are rows: activations of a hooked module, points of
 * a point cloud. An HDF5 dataset of shape (..., N, D) is a batch of B = prod(...) independent
 * lh_dmats (io/h5.h reads one batch item at a time).
 *
 * No rank ever holds the whole matrix unless asked with lh_dmat_gather(), which is meant for
 * small results and refuses large ones.
 *
 * Lifecycle: lh_dmat_create -> fill the local rows (lh_dmat_local) -> use ->
 * lh_dmat_destroy(&m). The communicator is borrowed: it must outlive the matrix.
 */
#ifndef LATENTHOOK_DMAT_H
#define LATENTHOOK_DMAT_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/dtype.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_dmat lh_dmat;

/* Creates an N x D matrix on `comm`, local rows zeroed. Collective (agrees on allocation
 * failure). N, D >= 0 and equal on all ranks (checked: LH_ERR_VALUE). */
LH_NODISCARD lh_status lh_dmat_create(MPI_Comm comm, lh_dtype dtype, int64_t N, int64_t D,
                                      lh_dmat **out);

/* Creates a matrix with the same communicator, shape and dtype as `like`. Collective. */
LH_NODISCARD lh_status lh_dmat_create_like(const lh_dmat *like, lh_dmat **out);

/* Releases the matrix and sets *m to NULL; accepts NULL and *m == NULL. Local. */
void lh_dmat_destroy(lh_dmat **m);

/* Shape and layout. Local. */
MPI_Comm lh_dmat_comm(const lh_dmat *m);
lh_dtype lh_dmat_dtype(const lh_dmat *m);
int64_t lh_dmat_rows(const lh_dmat *m);       /* N */
int64_t lh_dmat_cols(const lh_dmat *m);       /* D */
int64_t lh_dmat_local_rows(const lh_dmat *m); /* n, rows on this rank */
int64_t lh_dmat_row_offset(const lh_dmat *m); /* global index of local row 0 */

/* The local rows, n x D row-major (`float *` or `double *` by dtype). Local. */
void *lh_dmat_local(lh_dmat *m);
const void *lh_dmat_local_const(const lh_dmat *m);

/* Column reductions, result `out[D]` on every rank, in float64. Collective.
 * SUM, MEAN and SUMSQ are exact sums rounded once (xsum.h): bit-identical for any rank
 * count. MEAN of N == 0 rows is NaN. MIN/MAX ignore NaN (NaN if a column is all NaN). */
typedef enum lh_colop { LH_COL_SUM, LH_COL_MEAN, LH_COL_SUMSQ, LH_COL_MIN, LH_COL_MAX } lh_colop;
LH_NODISCARD lh_status lh_dmat_col_reduce(const lh_dmat *m, lh_colop op, double *out);

/* Largest matrix lh_dmat_gather accepts, in bytes (1 GiB). */
#define LH_GATHER_LIMIT_BYTES (INT64_C(1) << 30)

/* Copies the whole matrix into `buf` (N x D row-major, the matrix's dtype) on rank `root`;
 * `buf` is ignored elsewhere. Collective. For small results only: fails with LH_ERR_VALUE
 * when the matrix exceeds LH_GATHER_LIMIT_BYTES. */
LH_NODISCARD lh_status lh_dmat_gather(const lh_dmat *m, int root, void *buf);

/* Fills the matrix from `buf` (N x D row-major, the matrix's dtype) held on `root`.
 * Collective. Same size limit as lh_dmat_gather. */
LH_NODISCARD lh_status lh_dmat_scatter(lh_dmat *m, int root, const void *buf);

/* Copies `src` into `dst` (same N, D, communicator), converting the dtype. Collective. */
LH_NODISCARD lh_status lh_dmat_copy(const lh_dmat *src, lh_dmat *dst);

/* Moves local row i of `src` to global row pos[i] of `dst`; rows with pos[i] < 0 are dropped
 * and rows of `dst` that no source targets keep their contents. `dst` may have any number of
 * rows N', but the same columns, dtype and communicator as `src` (else LH_ERR_VALUE).
 * Collective: one Alltoallv of target indices and one of rows. Fails with LH_ERR_VALUE when
 * some pos[i] >= N' or two source rows target the same row; `dst` is unchanged on failure. */
LH_NODISCARD lh_status lh_dmat_scatter_rows(const lh_dmat *src, const int64_t *pos,
                                            lh_dmat *dst);

/* A float64 copy of m with the exact column means subtracted (xsum.h; NaN columns stay NaN).
 * Collective. */
LH_NODISCARD lh_status lh_dmat_centred(const lh_dmat *m, lh_dmat **out);

/* Copies the global rows rows[0..count) of m (any rows, held by any rank) into out
 * (count x D, m's dtype) on the calling rank; a negative index gives a row of NaN. Each rank
 * asks for its own list. Collective: two Alltoallv (indices there, rows back). Indices >= N
 * are an error (LH_ERR_VALUE). */
LH_NODISCARD lh_status lh_dmat_fetch_rows(const lh_dmat *m, int64_t count, const int64_t *rows,
                                          void *out);

#ifdef __cplusplus
}
#endif
#endif
