/*
 * cli_items.c: the loop every analysis command runs over the matrices of a batched dataset
 * (see cli.h and batch.h): one place for the read / compute / agree / write sequence that
 * keeps all ranks in the same collectives.
 */
#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/batch.h"
#include "latenthook/comm.h"

lh_status cli_each_item(MPI_Comm comm, lh_h5_dset *d, lh_dtype dtype, cli_item_fn compute,
                        cli_item_fn write, void *user) {
  lh_status st = LH_OK, local = LH_OK;
  const lh_h5_info *in = lh_h5_dset_info(d);
  lh_batch_plan plan = {.group_comm = MPI_COMM_NULL};
  cli_item it = {.b = -1, .X = NULL};
  LH_TRY(lh_batch_plan_create(comm, in->B, &plan));
  int grank;
  MPI_Comm_rank(plan.group_comm, &grank);
  it.group = plan.group_comm;
  it.leader = grank == 0;
  for (int64_t round = 0; round < plan.rounds; round++) {
    it.b = lh_batch_plan_item(&plan, round);
    local = it.b >= 0 ? lh_dmat_create(plan.group_comm, dtype, in->N, in->E, &it.X) : LH_OK;
    LH_TRY(lh_agree(comm, local));
    LH_TRY(lh_h5_read_dmat(d, it.b, it.X));
    local = it.b >= 0 ? compute(&it, user) : LH_OK;
    LH_TRY(lh_agree(comm, local));
    if (write) LH_TRY(write(&it, user));
    lh_dmat_destroy(&it.X);
  }
done:
  lh_dmat_destroy(&it.X);
  lh_batch_plan_destroy(&plan);
  return st;
}

lh_status cli_share_f64(MPI_Comm comm, int64_t count, double *v) {
  int c;
  lh_status st = lh_int_cast(count, "per-item results", &c);
  if (st == LH_OK) MPI_Allreduce(MPI_IN_PLACE, v, c, MPI_DOUBLE, MPI_SUM, comm);
  return st;
}

lh_status cli_share_i64(MPI_Comm comm, int64_t count, int64_t *v) {
  int c;
  lh_status st = lh_int_cast(count, "per-item results", &c);
  if (st == LH_OK) MPI_Allreduce(MPI_IN_PLACE, v, c, MPI_INT64_T, MPI_SUM, comm);
  return st;
}
