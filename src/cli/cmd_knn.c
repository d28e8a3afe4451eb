/*
 * cmd_knn.c: `latenthook knn`: exact k nearest neighbours of every point, written
 * collectively to HDF5.
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/batch.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/knn.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook knn --data FILE.h5:/dset --k K --out OUT.h5 [--eps E]\n\n"
    "Exact Euclidean k nearest neighbours of every point of each (N, D) matrix. A point is\n"
    "never its own neighbour; points at distance <= eps and points with NaN/inf values are not\n"
    "neighbours; ties go to the lower index; missing neighbours are (inf, -1). Writes\n"
    "OUT.h5:/distances (..., N, K) float64 and OUT.h5:/indices (..., N, K) int64 and prints\n"
    "  {\"k\": K, \"absent\": count of missing neighbours, ...}\n\n"
    "Options:\n"
    "  --data FILE.h5:/dset      input point cloud(s) (required)\n"
    "  --k K                     neighbours per point, K >= 1 (required)\n"
    "  --out OUT.h5              output file (required)\n"
    "  --eps E                   neighbours at distance <= E are ignored (default 1e-5)\n" CLI_COMMON_HELP;

enum { OPT_DATA = 1, OPT_OUT, OPT_K, OPT_EPS };

typedef struct args {
  const char *data, *out;
  long long k;
  double eps;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_DATA: a->data = arg; return LH_OK;
    case OPT_OUT: a->out = arg; return LH_OK;
    case OPT_EPS: return cli_parse_double("--eps", arg, &a->eps);
    case OPT_K:
      if (cli_parse_int("--k", arg, &a->k) != LH_OK) return LH_ERR_USAGE;
      if (a->k < 1) return LH_ERROR(LH_ERR_USAGE, "--k must be at least 1, got %s", arg);
      return LH_OK;
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

lh_status cmd_knn(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {{"data", required_argument, NULL, OPT_DATA},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"k", required_argument, NULL, OPT_K},
                                       {"eps", required_argument, NULL, OPT_EPS},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.eps = 1e-5, .k = 0};
  lh_h5_dset *d = NULL, *dd = NULL, *di = NULL;
  lh_h5_out *o = NULL;
  lh_batch_plan plan = {.group_comm = MPI_COMM_NULL};
  lh_dmat *X = NULL;
  lh_knn_result *res = NULL;
  int64_t *absent = NULL;
  int pos;

  LH_TRY(cli_parse("knn", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook knn --help')", argv[pos]);
  if (!a.data) LH_FAIL(LH_ERR_USAGE, "--data FILE.h5:/dataset is required");
  if (a.k < 1) LH_FAIL(LH_ERR_USAGE, "--k K is required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");
  if (!(a.eps >= 0)) LH_FAIL(LH_ERR_USAGE, "--eps must be >= 0, got %g", a.eps);

  LH_TRY(lh_h5_open(comm, a.data, LH_ROWS_SECOND_LAST, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  const int64_t B = in->B, N = in->N, D = in->E, K = a.k;
  int64_t dims[LH_H5_MAX_DIMS];
  for (int q = 0; q <= in->row_axis; q++) dims[q] = in->dims[q];
  dims[in->row_axis + 1] = K;
  LH_TRY(lh_h5_out_create(comm, a.out, &o));
  LH_TRY(lh_h5_out_dataset(o, "/distances", LH_F64, in->row_axis + 2, dims, LH_ROWS_SECOND_LAST, &dd));
  LH_TRY(lh_h5_out_dataset_i64(o, "/indices", in->row_axis + 2, dims, LH_ROWS_SECOND_LAST, &di));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)B, sizeof *absent, true, "results", &absent)));
  LH_TRY(lh_batch_plan_create(comm, B, &plan));
  int grank;
  MPI_Comm_rank(plan.group_comm, &grank);
  lh_knn_opts ko = lh_knn_defaults();
  ko.k = K;
  ko.eps = a.eps;
  for (int64_t round = 0; round < plan.rounds; round++) {
    int64_t b = lh_batch_plan_item(&plan, round);
    local = b >= 0 ? lh_dmat_create(plan.group_comm, in->natural, N, D, &X) : LH_OK;
    LH_TRY(lh_agree(comm, local));
    LH_TRY(lh_h5_read_dmat(d, b, X));
    local = b >= 0 ? lh_knn_run(X, &ko, &res) : LH_OK;
    LH_TRY(lh_agree(comm, local));
    int64_t r0 = res ? res->row0 : 0, n = res ? res->n : 0;
    LH_TRY(lh_h5_write_rows(dd, b >= 0 ? b : 0, r0, n, LH_F64, res ? res->dist : NULL));
    LH_TRY(lh_h5_write_rows_i64(di, b >= 0 ? b : 0, r0, n, res ? res->index : NULL));
    if (res) {
      int64_t cnt = 0;
      for (int64_t t = 0; t < n * K; t++) cnt += res->index[t] < 0;
      MPI_Allreduce(MPI_IN_PLACE, &cnt, 1, MPI_INT64_T, MPI_SUM, plan.group_comm);
      if (grank == 0) absent[b] = cnt;
    }
    lh_knn_result_destroy(&res);
    lh_dmat_destroy(&X);
  }
  int b32;
  LH_TRY(lh_int_cast(B, "batch items", &b32));
  MPI_Allreduce(MPI_IN_PLACE, absent, b32, MPI_INT64_T, MPI_SUM, comm);
  lh_h5_close(&dd);
  lh_h5_close(&di);
  LH_TRY(lh_h5_out_commit(&o));
  json_t *doc = json_object();
  json_object_set_new(doc, "k", json_integer(K));
  json_object_set_new(doc, "n_points", json_integer(N));
  json_object_set_new(doc, "absent", cli_batch_counts(absent, in));
  json_object_set_new(doc, "eps", json_real(a.eps));
  json_object_set_new(doc, "distances", json_string("/distances"));
  json_object_set_new(doc, "indices", json_string("/indices"));
  json_object_set_new(doc, "out", json_string(a.out));
  cli_emit_json(comm, doc);
done:
  lh_knn_result_destroy(&res);
  lh_dmat_destroy(&X);
  lh_h5_close(&dd);
  lh_h5_close(&di);
  lh_h5_out_discard(&o);
  lh_batch_plan_destroy(&plan);
  lh_h5_close(&d);
  lh_free(absent);
  return st;
}
