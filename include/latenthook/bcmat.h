/*
 * bcmat.h: ScaLAPACK 2-D block-cyclic matrices and their conversion from/to lh_dmat.
 *
 * The row-block lh_dmat suits sample-parallel work (distances, per-sample kernels). Wide
 * problems (a D x D Gram matrix with D = 16,384, an N x N kernel, a large normal-equation
 * solve) need ScaLAPACK, which wants a 2-D block-cyclic layout on a BLACS process grid.
 * An lh_bcmat is such a matrix: float64, column-major local storage, a standard descriptor
 * usable with any PBLAS/ScaLAPACK routine.
 *
 * lh_dmat rows are not a valid block-cyclic layout (the first N mod P ranks hold one more row),
 * so the conversion first shifts rows between neighbouring ranks into an even 1-D block layout
 * on a P x 1 grid (at most P rows move per rank), then lets pdgemr2d redistribute it.
 */
#ifndef LATENTHOOK_BCMAT_H
#define LATENTHOOK_BCMAT_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/dmat.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_blacs lh_blacs;
typedef struct lh_bcmat lh_bcmat;

/* Creates a BLACS process grid of nprow x npcol over all ranks of `comm` (row-major rank
 * order). nprow = npcol = 0 picks the most square grid with nprow <= npcol. Collective.
 * nprow * npcol must equal the size of comm (LH_ERR_VALUE). `comm` is borrowed. */
LH_NODISCARD lh_status lh_blacs_create(MPI_Comm comm, int nprow, int npcol, lh_blacs **out);

/* Releases the grid; accepts NULL. Collective. */
void lh_blacs_destroy(lh_blacs **g);

/* The communicator of the grid. Local. */
MPI_Comm lh_blacs_comm(const lh_blacs *g);

/* Grid shape and this rank's coordinates. Local. */
void lh_blacs_info(const lh_blacs *g, int *nprow, int *npcol, int *myrow, int *mycol);

/* Creates an M x N float64 block-cyclic matrix with mb x nb blocks, zeroed. Collective.
 * mb = nb = 0 picks 64 x 64. */
LH_NODISCARD lh_status lh_bcmat_create(lh_blacs *g, int64_t M, int64_t N, int mb, int nb,
                                       lh_bcmat **out);
void lh_bcmat_destroy(lh_bcmat **a);

/* The ScaLAPACK descriptor (int[9]) and the local column-major storage. Local. */
const int *lh_bcmat_desc(const lh_bcmat *a);
double *lh_bcmat_local(lh_bcmat *a);
int lh_bcmat_local_rows(const lh_bcmat *a); /* = LLD unless 0 rows */
int lh_bcmat_local_cols(const lh_bcmat *a);
int64_t lh_bcmat_rows(const lh_bcmat *a);
int64_t lh_bcmat_cols(const lh_bcmat *a);
lh_blacs *lh_bcmat_grid(const lh_bcmat *a);

/* Global (i, j) of local element (li, lj). Local. */
void lh_bcmat_global_index(const lh_bcmat *a, int li, int lj, int64_t *i, int64_t *j);

/* Copies the N x D lh_dmat `m` into a new block-cyclic matrix on grid `g` (same
 * communicator as m, by rank). float32 data is widened to float64. Collective. */
LH_NODISCARD lh_status lh_dmat_to_bcmat(const lh_dmat *m, lh_blacs *g, int mb, int nb,
                                        lh_bcmat **out);

/* Copies the block-cyclic matrix `a` into the lh_dmat `m`, which must have the same global
 * shape and communicator; narrows to float32 if m is float32. Collective. */
LH_NODISCARD lh_status lh_bcmat_to_dmat(const lh_bcmat *a, lh_dmat *m);

#ifdef __cplusplus
}
#endif
#endif
