/*
 * kmat.h: a distributed N x N kernel matrix over the samples of a representation, held as a
 * ScaLAPACK block-cyclic matrix (bcmat.h): every rank computes its local blocks from the rows
 * those blocks need, so no rank holds the whole matrix or all the rows. Used by kernel CKA
 * (cka.h) when the kernels fit the ranks' memory, and writable to HDF5 to inspect or reuse.
 */
#ifndef LATENTHOOK_KMAT_H
#define LATENTHOOK_KMAT_H

#include "latenthook/bcmat.h"
#include "latenthook/cka.h"
#include "latenthook/dmat.h"
#include "latenthook/h5.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_kmat lh_kmat;

/* The kernel of X's rows on grid g (same communicator as X): linear (column-centred dot
 * products) or RBF with bandwidth factor `threshold` (cka.h; the median of all N^2 squared
 * distances by distributed selection). A zero RBF median leaves the squared distances
 * unscaled and lh_kmat_median() returns 0. Collective. */
LH_NODISCARD lh_status lh_kmat_create(const lh_dmat *X, lh_kernel_kind kind, double threshold,
                                      lh_blacs *g, lh_kmat **out);

void lh_kmat_destroy(lh_kmat **K);

/* The block-cyclic matrix (owned by K) and, for RBF, the median used (NaN for linear). Local. */
lh_bcmat *lh_kmat_bcmat(const lh_kmat *K);
double lh_kmat_median(const lh_kmat *K);

/* Writes the kernel as the N x N float64 dataset `path` of an output file (rows split over
 * the ranks as an lh_dmat). Collective over the output's communicator (K's). */
LH_NODISCARD lh_status lh_kmat_write(const lh_kmat *K, lh_h5_out *o, const char *path);

#ifdef __cplusplus
}
#endif
#endif
