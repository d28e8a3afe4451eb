/*
 * batch.c: groups of ranks for batched datasets (see batch.h).
 */
#include "latenthook/batch.h"

lh_status lh_batch_plan_create(MPI_Comm comm, int64_t B, lh_batch_plan *plan) {
  int P, r;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &r);
  plan->B = B;
  plan->ngroups = B >= P ? P : 1;
  plan->group = B >= P ? r : 0;
  plan->rounds = B > 0 ? (B + plan->ngroups - 1) / plan->ngroups : 0;
  MPI_Comm_split(comm, plan->group, r, &plan->group_comm);
  return LH_OK;
}

void lh_batch_plan_destroy(lh_batch_plan *plan) {
  if (plan->group_comm != MPI_COMM_NULL) MPI_Comm_free(&plan->group_comm);
  plan->group_comm = MPI_COMM_NULL;
}
