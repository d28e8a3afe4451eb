/*
 * cmd_knn.c: `latenthook knn`: exact k nearest neighbours of every point, written
 * collectively to HDF5.
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
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

typedef struct run {
  lh_knn_opts ko;
  lh_h5_dset *dist, *index; /* outputs */
  lh_knn_result *res;       /* this round's neighbours */
  int64_t *absent;
} run;

static lh_status compute(cli_item *it, void *user) {
  run *u = user;
  lh_status st = lh_knn_run(it->X, &u->ko, &u->res);
  if (st != LH_OK) return st;
  int64_t cnt = 0;
  for (int64_t t = 0; t < u->res->n * u->res->k; t++) cnt += u->res->index[t] < 0;
  MPI_Allreduce(MPI_IN_PLACE, &cnt, 1, MPI_INT64_T, MPI_SUM, it->group);
  if (it->leader) u->absent[it->b] = cnt;
  return LH_OK;
}

static lh_status write(cli_item *it, void *user) {
  run *u = user;
  lh_status st = LH_OK;
  const lh_knn_result *r = u->res;
  int64_t b = it->b >= 0 ? it->b : 0, r0 = r ? r->row0 : 0, n = r ? r->n : 0;
  LH_TRY(lh_h5_write_rows(u->dist, b, r0, n, LH_F64, r ? r->dist : NULL));
  LH_TRY(lh_h5_write_rows_i64(u->index, b, r0, n, r ? r->index : NULL));
done:
  lh_knn_result_destroy(&u->res);
  return st;
}

lh_status cmd_knn(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {{"data", required_argument, NULL, OPT_DATA},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"k", required_argument, NULL, OPT_K},
                                       {"eps", required_argument, NULL, OPT_EPS},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.eps = 1e-5, .k = 0};
  lh_h5_dset *d = NULL;
  lh_h5_out *o = NULL;
  run u = {.ko = lh_knn_defaults()};
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
  const int64_t B = in->B, N = in->N, K = a.k;
  int64_t dims[LH_H5_MAX_DIMS];
  for (int q = 0; q <= in->row_axis; q++) dims[q] = in->dims[q];
  dims[in->row_axis + 1] = K;
  u.ko.k = K;
  u.ko.eps = a.eps;
  LH_TRY(lh_h5_out_create(comm, a.out, &o));
  LH_TRY(lh_h5_out_dataset(o, "/distances", LH_F64, in->row_axis + 2, dims, LH_ROWS_SECOND_LAST, &u.dist));
  LH_TRY(lh_h5_out_dataset_i64(o, "/indices", in->row_axis + 2, dims, LH_ROWS_SECOND_LAST, &u.index));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)B, sizeof(int64_t), true, "results", &u.absent)));
  LH_TRY(cli_each_item(comm, d, in->natural, compute, write, &u));
  LH_TRY(cli_share_i64(comm, B, u.absent));
  lh_h5_close(&u.dist);
  lh_h5_close(&u.index);
  LH_TRY(lh_h5_out_commit(&o));
  json_t *doc = json_object();
  json_object_set_new(doc, "k", json_integer(K));
  json_object_set_new(doc, "n_points", json_integer(N));
  json_object_set_new(doc, "absent", cli_batch_counts(u.absent, in));
  json_object_set_new(doc, "eps", json_real(a.eps));
  json_object_set_new(doc, "distances", json_string("/distances"));
  json_object_set_new(doc, "indices", json_string("/indices"));
  json_object_set_new(doc, "out", json_string(a.out));
  cli_emit_json(comm, doc);
done:
  lh_knn_result_destroy(&u.res);
  lh_h5_close(&u.dist);
  lh_h5_close(&u.index);
  lh_h5_out_discard(&o);
  lh_h5_close(&d);
  lh_free(u.absent);
  return st;
}
