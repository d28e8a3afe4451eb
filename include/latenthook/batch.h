/*
 * batch.h: spreading the B independent matrices of a batched dataset (..., N, D) over ranks.
 *
 * With B >= P every rank takes whole matrices on its own (B / P rounds, no communication
 * inside an item); with B < P all ranks work on each matrix in turn, rows split. Either way
 * the ranks form groups (sub-communicators) and proceed in rounds; in each round a group works
 * on one item or on none (the last round when P does not divide B), and every rank takes part
 * in the same collective HDF5 transfers of the round (a rank without an item transfers nothing).
 */
#ifndef LATENTHOOK_BATCH_H
#define LATENTHOOK_BATCH_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_batch_plan {
  int64_t B;          /* items */
  int ngroups, group; /* number of groups, this rank's group */
  MPI_Comm group_comm; /* this rank's group (owned) */
  int64_t rounds;     /* ceil(B / ngroups) */
} lh_batch_plan;

/* Plans B items over the ranks of comm. Collective. */
LH_NODISCARD lh_status lh_batch_plan_create(MPI_Comm comm, int64_t B, lh_batch_plan *plan);

/* The item this rank's group handles in `round`, or -1. Pure. */
static inline int64_t lh_batch_plan_item(const lh_batch_plan *p, int64_t round) {
  int64_t b = round * p->ngroups + p->group;
  return b < p->B ? b : -1;
}

/* Frees the group communicator. Collective. */
void lh_batch_plan_destroy(lh_batch_plan *plan);

#ifdef __cplusplus
}
#endif
#endif
