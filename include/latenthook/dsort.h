/*
 * dsort.h: global sort positions of distributed keys.
 *
 * Rank statistics (Spearman correlations, rank-based kernels, the neighbour ranks of
 * information imbalance) need to know where every local element falls in the global sorted
 * order, without any rank holding all N keys. lh_dsort_positions() answers that with a
 * sample sort (Shi & Schaeffer, "Parallel sorting by regular sampling", 1992): each rank sorts
 * its elements, rank 0 chooses P - 1 splitters from P regular samples per rank, one
 * Alltoallv moves every element to the rank that owns its splitter interval, each rank merges
 * the sorted runs it received, an exclusive scan of bucket sizes gives global offsets, and a
 * second Alltoallv returns each position to the rank that owns the element.
 *
 * The order is total: ascending by key, ties broken by the lower id (the grouped variant
 * sorts by group first). Because ids are unique the positions are a permutation of 0 .. N-1
 * that depends only on the (key, id) pairs, never on the number of ranks or on how the
 * elements are spread over them.
 *
 * Cost per rank, with n local elements and N in total: O(n + (N/P) log P) time (a radix sort
 * of 8 to 18 passes and a P-way merge), two Alltoallv of 24 and 8 bytes per element, about
 * 80 n + 32 N/P bytes of memory (a bucket holds about N/P elements when the splitters are
 * regular samples); rank 0 also sorts the P^2 samples.
 */
#ifndef LATENTHOOK_DSORT_H
#define LATENTHOOK_DSORT_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes into pos[i] (0 <= pos[i] < N) the 0-based position of local element i in the global
 * order of all ranks' elements sorted ascending by (keys[i], ids[i]). Collective.
 * n >= 0 may differ between ranks (keys, ids, pos may be NULL when n == 0); ids must be
 * unique over all ranks (callers pass global row indices). Keys compare numerically, with
 * -0.0 equal to +0.0 and every NaN (any sign or payload) after +infinity; equal keys, NaN
 * included, are ordered by id. Fails with LH_ERR_VALUE for n < 0 or two elements with the
 * same key and id, LH_ERR_NOMEM, or LH_ERR_VALUE when a count exceeds an MPI int; the same
 * status on every rank, pos unchanged on failure. */
LH_NODISCARD lh_status lh_dsort_positions(MPI_Comm comm, int64_t n, const double *keys,
                                          const int64_t *ids, int64_t *pos);

/* The same for unsigned 64-bit keys (hashes, packed integers), compared as unsigned. */
LH_NODISCARD lh_status lh_dsort_positions_u64(MPI_Comm comm, int64_t n, const uint64_t *keys,
                                              const int64_t *ids, int64_t *pos);

/* The same sorted by (groups[i], keys[i], ids[i]): the groups (any int64, ascending) occupy
 * consecutive position ranges, so the position within group g is pos[i] minus the number of
 * elements in lower groups. groups == NULL puts every element in one group, which is
 * lh_dsort_positions. Ids must be unique within a group. */
LH_NODISCARD lh_status lh_dsort_positions_grouped(MPI_Comm comm, int64_t n,
                                                  const int64_t *groups, const double *keys,
                                                  const int64_t *ids, int64_t *pos);

/* The value at 0-based position k (0 <= k < total) of all ranks' values sorted ascending
 * (NaN last), on every rank. Collective (a sample sort; no rank gathers the values). */
LH_NODISCARD lh_status lh_dsort_select(MPI_Comm comm, int64_t n, const double *values,
                                       int64_t k, double *out);

#ifdef __cplusplus
}
#endif
#endif
