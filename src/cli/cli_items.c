/*
 * cli_items.c: the loop every analysis command runs over the matrices of a batched dataset
 * (see cli.h and batch.h): one place for the read / compute / agree / write sequence that
 * keeps all ranks in the same collectives.
 */
#include <stdio.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/batch.h"
#include "latenthook/comm.h"

lh_status cli_each_item(MPI_Comm comm, lh_h5_dset *d, lh_dtype dtype, cli_item_fn compute,
                        cli_item_fn write, void *user) {
  return cli_each_pair(comm, d, NULL, dtype, dtype, compute, write, user);
}

lh_status cli_each_pair(MPI_Comm comm, lh_h5_dset *d, lh_h5_dset *e, lh_dtype dtype_d,
                        lh_dtype dtype_e, cli_item_fn compute, cli_item_fn write, void *user) {
  lh_status st = LH_OK, local = LH_OK;
  const lh_h5_info *in = lh_h5_dset_info(d), *ie = e ? lh_h5_dset_info(e) : NULL;
  lh_batch_plan plan = {.group_comm = MPI_COMM_NULL};
  cli_item it = {.b = -1, .X = NULL, .Y = NULL};
  LH_TRY(lh_batch_plan_create(comm, in->B, &plan));
  int grank;
  MPI_Comm_rank(plan.group_comm, &grank);
  it.group = plan.group_comm;
  it.leader = grank == 0;
  for (int64_t round = 0; round < plan.rounds; round++) {
    it.b = lh_batch_plan_item(&plan, round);
    local = it.b >= 0 ? lh_dmat_create(plan.group_comm, dtype_d, in->N, in->E, &it.X) : LH_OK;
    if (local == LH_OK && e && it.b >= 0)
      local = lh_dmat_create(plan.group_comm, dtype_e, ie->N, ie->E, &it.Y);
    LH_TRY(lh_agree(comm, local));
    LH_TRY(lh_h5_read_dmat(d, it.b, it.X));
    if (e) LH_TRY(lh_h5_read_dmat(e, it.b, it.Y));
    local = it.b >= 0 ? compute(&it, user) : LH_OK;
    LH_TRY(lh_agree(comm, local));
    if (write) LH_TRY(write(&it, user));
    lh_dmat_destroy(&it.X);
    lh_dmat_destroy(&it.Y);
  }
done:
  lh_dmat_destroy(&it.X);
  lh_dmat_destroy(&it.Y);
  lh_batch_plan_destroy(&plan);
  return st;
}

lh_status cli_check_pair(const lh_h5_info *a, const lh_h5_info *b) {
  bool same = a->row_axis == b->row_axis;
  for (int k = 0; same && k < a->row_axis; k++) same = a->dims[k] == b->dims[k];
  if (!same) {
    char sa[256], sb[256];
    size_t la = 0, lb = 0;
    la += (size_t)snprintf(sa, sizeof sa, "(");
    for (int k = 0; k < a->row_axis && la < sizeof sa; k++)
      la += (size_t)snprintf(sa + la, sizeof sa - la, "%s%lld", k ? ", " : "", (long long)a->dims[k]);
    if (la < sizeof sa) snprintf(sa + la, sizeof sa - la, ")");
    lb += (size_t)snprintf(sb, sizeof sb, "(");
    for (int k = 0; k < b->row_axis && lb < sizeof sb; k++)
      lb += (size_t)snprintf(sb + lb, sizeof sb - lb, "%s%lld", k ? ", " : "", (long long)b->dims[k]);
    if (lb < sizeof sb) snprintf(sb + lb, sizeof sb - lb, ")");
    return LH_ERROR(LH_ERR_VALUE, "Expected matching batch shapes, got %s and %s ('%s' and '%s')",
                    sa, sb, a->addr.path, b->addr.path);
  }
  if (a->N != b->N)
    return LH_ERROR(LH_ERR_VALUE, "Expected matching sample counts, got %lld and %lld ('%s' and '%s')",
                    (long long)a->N, (long long)b->N, a->addr.path, b->addr.path);
  return LH_OK;
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
