/*
 * cmd_localknn.c: `latenthook local-knn`: per-point local intrinsic dimension (SPEC 4.1),
 * written collectively to HDF5 (never gathered), with a summary on stdout.
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/localknn.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook local-knn --data FILE.h5:/dset --out OUT.h5 [options]\n\n"
    "Local intrinsic dimension of every point, as tdhook's LocalKnnDimensionEstimator:\n"
    "d_i = ln 2 / ln(R_2k / R_k) from the k-th and 2k-th nearest neighbours farther than eps\n"
    "(NaN where undefined). Writes OUT.h5:/dimension, shape (..., N), float32, and prints\n"
    "  {\"k\": k, \"mean\": m, \"median\": md, \"nan_count\": c}\n"
    "(mean and median over the finite values; nested lists for batched datasets).\n\n"
    "Options:\n"
    "  --data FILE.h5:/dset      input point cloud(s) (N, D) or (..., N, D) (required)\n"
    "  --out OUT.h5              output file (required)\n"
    "  --k auto|K                neighbours, K > 1 (default auto: max(2, min(floor(sqrt N),\n"
    "                            floor((N-1)/2))))\n"
    "  --eps E                   neighbours at distance <= E are ignored (default 1e-5)\n" CLI_COMMON_HELP;

enum { OPT_DATA = 1, OPT_OUT, OPT_K, OPT_EPS };

typedef struct args {
  const char *data, *out;
  long long k; /* 0 = auto */
  double eps;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_DATA: a->data = arg; return LH_OK;
    case OPT_OUT: a->out = arg; return LH_OK;
    case OPT_EPS: return cli_parse_double("--eps", arg, &a->eps);
    case OPT_K:
      if (strcmp(arg, "auto") == 0) {
        a->k = 0;
        return LH_OK;
      }
      if (cli_parse_int("--k", arg, &a->k) != LH_OK) {
        lh_error_clear();
        return LH_ERROR(LH_ERR_USAGE, "--k: k must be an int or 'auto', got '%s'", arg);
      }
      if (a->k <= 1) return LH_ERROR(LH_ERR_USAGE, "--k: k must be greater than 1, got %s", arg);
      return LH_OK;
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

/* State shared by the per-item callbacks. */
typedef struct run {
  int64_t k;
  double eps;
  lh_h5_dset *out;  /* OUT:/dimension */
  lh_dmat *dim;     /* this round's result */
  double *mean, *median;
  int64_t *nan_count;
} run;

static lh_status compute(cli_item *it, void *user) {
  run *u = user;
  lh_status st = LH_OK;
  double mn, md;
  int64_t nc;
  LH_TRY(lh_dmat_create(it->group, LH_F64, lh_dmat_rows(it->X), 1, &u->dim));
  LH_TRY(lh_localknn_run(it->X, u->k, u->eps, u->dim));
  LH_TRY(lh_localknn_summary(u->dim, &mn, &md, &nc));
  if (it->leader) {
    u->mean[it->b] = mn;
    u->median[it->b] = md;
    u->nan_count[it->b] = nc;
  }
done:
  return st;
}

static lh_status write(cli_item *it, void *user) {
  run *u = user;
  lh_status st = lh_h5_write_dmat(u->out, it->b, u->dim);
  lh_dmat_destroy(&u->dim);
  return st;
}

lh_status cmd_localknn(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {{"data", required_argument, NULL, OPT_DATA},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"k", required_argument, NULL, OPT_K},
                                       {"eps", required_argument, NULL, OPT_EPS},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.eps = 1e-5, .k = 0};
  lh_h5_dset *d = NULL;
  lh_h5_out *o = NULL;
  run u = {0};
  int pos;

  LH_TRY(cli_parse("local-knn", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook local-knn --help')", argv[pos]);
  if (!a.data) LH_FAIL(LH_ERR_USAGE, "--data FILE.h5:/dataset is required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required (the result has one value per point)");
  if (!(a.eps >= 0)) LH_FAIL(LH_ERR_USAGE, "--eps must be >= 0, got %g", a.eps);

  LH_TRY(lh_h5_open(comm, a.data, LH_ROWS_SECOND_LAST, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  const int64_t B = in->B, N = in->N;
  u.k = a.k ? a.k : lh_localknn_auto_k(N);
  u.eps = a.eps;
  if (N < 2 * u.k + 1) /* fail before any work (every item has the same N) */
    LH_FAIL(LH_ERR_VALUE, "At least 2k+1 points required for local KNN (k=%lld), got %lld",
            (long long)u.k, (long long)N);
  LH_TRY(lh_h5_out_create(comm, a.out, &o));
  LH_TRY(lh_h5_out_dataset(o, "/dimension", LH_F32, in->row_axis + 1, in->dims, LH_ROWS_LAST, &u.out));
  local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.mean);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.median);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(int64_t), true, "results", &u.nan_count);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(cli_each_item(comm, d, in->natural, compute, write, &u));
  LH_TRY(cli_share_f64(comm, B, u.mean));
  LH_TRY(cli_share_f64(comm, B, u.median));
  LH_TRY(cli_share_i64(comm, B, u.nan_count));
  lh_h5_close(&u.out);
  LH_TRY(lh_h5_out_commit(&o));
  json_t *doc = json_object();
  json_object_set_new(doc, "k", json_integer(u.k));
  json_object_set_new(doc, "mean", cli_batch_values(u.mean, in));
  json_object_set_new(doc, "median", cli_batch_values(u.median, in));
  json_object_set_new(doc, "nan_count", cli_batch_counts(u.nan_count, in));
  json_object_set_new(doc, "n_points", json_integer(N));
  json_object_set_new(doc, "eps", json_real(a.eps));
  json_object_set_new(doc, "out", json_string(a.out));
  cli_emit_json(comm, doc);
done:
  lh_dmat_destroy(&u.dim);
  lh_h5_close(&u.out);
  lh_h5_out_discard(&o);
  lh_h5_close(&d);
  lh_free(u.mean);
  lh_free(u.median);
  lh_free(u.nan_count);
  return st;
}
