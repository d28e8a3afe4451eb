/*
 * cmd_twonn.c: `latenthook twonn`: TwoNN intrinsic dimension of every matrix of a dataset
 * (SPEC 4.2), optionally with Facco et al.'s discarded fraction, the fitted x/y, and the
 * block analysis over random disjoint subsets (--scales).
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/batch.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/dsort.h"
#include "latenthook/rng.h"
#include "latenthook/twonn.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook twonn --data FILE.h5:/dset [options]\n\n"
    "TwoNN intrinsic dimension (Facco et al. 2017) of each (N, D) matrix of the dataset\n"
    "(shape (N, D) or (..., N, D)), as tdhook's TwoNnDimensionEstimator: mu = r2 / r1 over the\n"
    "points with two neighbours farther than eps, sorted; the slope through the origin of\n"
    "-ln(1 - i/Nv) against ln mu(i). Prints one JSON document:\n"
    "  {\"dimension\": d, \"dimension_mle\": m, \"n_valid\": Nv, ...}\n"
    "with nested lists in the batch shape for batched datasets (null for NaN).\n\n"
    "Options:\n"
    "  --data FILE.h5:/dset      input point cloud(s), rows are points (required)\n"
    "  --eps E                   neighbours at distance <= E are ignored (default 1e-5)\n"
    "  --discard-fraction F      fit only the smallest 1-F of mu (Facco et al. and DADApy use\n"
    "                            0.1; default 0 = tdhook: only the largest is dropped)\n"
    "  --return-xy               write the fitted x = ln mu and y = -ln(1 - i/Nv) to --out as\n"
    "                            dimension_x, dimension_y (..., N-1), NaN-padded\n"
    "  --scales                  block analysis: the estimate on random disjoint subsets of\n"
    "                            N/2, N/4, ... points (down to 16), mean and std per scale\n"
    "  --seed S                  seed of the random subsets (default 0)\n"
    "  --out OUT.h5              also write dimension, dimension_mle (and x/y) to OUT.h5\n" CLI_COMMON_HELP;

enum { OPT_DATA = 1, OPT_EPS, OPT_DISCARD, OPT_XY, OPT_SCALES, OPT_SEED, OPT_OUT };

typedef struct args {
  const char *data, *out;
  double eps, discard;
  bool xy, scales;
  long long seed;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_DATA: a->data = arg; return LH_OK;
    case OPT_OUT: a->out = arg; return LH_OK;
    case OPT_EPS: return cli_parse_double("--eps", arg, &a->eps);
    case OPT_DISCARD: return cli_parse_double("--discard-fraction", arg, &a->discard);
    case OPT_XY: a->xy = true; return LH_OK;
    case OPT_SCALES: a->scales = true; return LH_OK;
    case OPT_SEED: return cli_parse_int("--seed", arg, &a->seed);
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

/* Block analysis of one matrix: TwoNN on 2^s random disjoint subsets for s = 1, 2, ... */
typedef struct scale_row {
  int64_t size, count, used;
  double mean, std;
} scale_row;

static lh_status run_scales(const lh_dmat *X, const lh_twonn_opts *base, uint64_t seed,
                            scale_row *rows, int *nrows) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int64_t N = lh_dmat_rows(X), n = lh_dmat_local_rows(X), row0 = lh_dmat_row_offset(X);
  uint64_t *keys = NULL;
  int64_t *ids = NULL, *pos = NULL;
  lh_dmat *Xp = NULL;
  lh_twonn_result *res = NULL;
  *nrows = 0;
  /* A random permutation by sorting hashed row indices: subsets of the permuted rows that are
   * contiguous ranges are random, disjoint, and the same for any rank count. */
  local = lh_alloc((size_t)n, sizeof *keys, false, "keys", &keys);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *ids, false, "ids", &ids);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *pos, false, "positions", &pos);
  LH_TRY(lh_agree(comm, local));
  for (int64_t i = 0; i < n; i++) {
    ids[i] = row0 + i;
    keys[i] = lh_rng_u64(seed, (uint64_t)(row0 + i));
  }
  LH_TRY(lh_dsort_positions_u64(comm, n, keys, ids, pos));
  LH_TRY(lh_dmat_create_like(X, &Xp));
  LH_TRY(lh_dmat_scatter_rows(X, pos, Xp));
  for (int s = 1; s < 62 && (N >> s) >= 16; s++) {
    lh_twonn_opts o = *base;
    o.return_xy = false;
    o.segments = INT64_C(1) << s;
    lh_status rs = lh_twonn_run(Xp, &o, &res);
    if (rs == LH_ERR_VALUE) { /* subsets too small or too degenerate: the analysis ends here */
      lh_error_clear();
      break;
    }
    LH_TRY(rs);
    scale_row *r = &rows[(*nrows)++];
    r->size = N >> s;
    r->count = res->S;
    double sum = 0, sq = 0;
    int64_t used = 0;
    for (int64_t j = 0; j < res->S; j++)
      if (isfinite(res->dimension[j])) {
        sum += res->dimension[j];
        used++;
      }
    r->used = used;
    r->mean = used ? sum / (double)used : NAN;
    for (int64_t j = 0; j < res->S; j++)
      if (isfinite(res->dimension[j])) sq += (res->dimension[j] - r->mean) * (res->dimension[j] - r->mean);
    r->std = used > 1 ? sqrt(sq / (double)(used - 1)) : NAN;
    lh_twonn_result_destroy(&res);
  }
done:
  lh_twonn_result_destroy(&res);
  lh_dmat_destroy(&Xp);
  lh_free(keys);
  lh_free(ids);
  lh_free(pos);
  return st;
}

lh_status cmd_twonn(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {
      {"data", required_argument, NULL, OPT_DATA},
      {"eps", required_argument, NULL, OPT_EPS},
      {"discard-fraction", required_argument, NULL, OPT_DISCARD},
      {"return-xy", no_argument, NULL, OPT_XY},
      {"scales", no_argument, NULL, OPT_SCALES},
      {"seed", required_argument, NULL, OPT_SEED},
      {"out", required_argument, NULL, OPT_OUT},
      CLI_COMMON_OPTIONS,
      {0, 0, 0, 0}};
  args a = {.eps = 1e-5};
  lh_h5_dset *d = NULL, *dx = NULL, *dy = NULL;
  lh_h5_out *o = NULL;
  lh_batch_plan plan = {.group_comm = MPI_COMM_NULL};
  lh_dmat *X = NULL;
  lh_twonn_result *res = NULL;
  double *dim = NULL, *mle = NULL;
  int64_t *nvalid = NULL;
  scale_row *scales = NULL;
  int nscales_max = 64, nscales = 0;
  int pos, rank;
  MPI_Comm_rank(comm, &rank);

  LH_TRY(cli_parse("twonn", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook twonn --help')", argv[pos]);
  if (!a.data) LH_FAIL(LH_ERR_USAGE, "--data FILE.h5:/dataset is required");
  if (!(a.eps >= 0)) LH_FAIL(LH_ERR_USAGE, "--eps must be >= 0, got %g", a.eps);
  if (!(a.discard >= 0 && a.discard < 1))
    LH_FAIL(LH_ERR_USAGE, "--discard-fraction must be in [0, 1), got %g", a.discard);
  if (a.xy && !a.out) LH_FAIL(LH_ERR_USAGE, "--return-xy writes to --out OUT.h5, which is missing");
  if (a.scales && a.xy) LH_FAIL(LH_ERR_USAGE, "--scales and --return-xy cannot be combined");

  LH_TRY(lh_h5_open(comm, a.data, LH_ROWS_SECOND_LAST, &d));
  const lh_h5_info *in = lh_h5_dset_info(d);
  int64_t B = in->B, N = in->N, D = in->E;
  if (a.out) {
    LH_TRY(lh_h5_out_create(comm, a.out, &o));
    if (a.xy) {
      int64_t dims[LH_H5_MAX_DIMS];
      for (int k = 0; k < in->row_axis; k++) dims[k] = in->dims[k];
      dims[in->row_axis] = N > 0 ? N - 1 : 0;
      LH_TRY(lh_h5_out_dataset(o, "/dimension_x", in->natural, in->row_axis + 1, dims, LH_ROWS_LAST, &dx));
      LH_TRY(lh_h5_out_dataset(o, "/dimension_y", in->natural, in->row_axis + 1, dims, LH_ROWS_LAST, &dy));
    }
  }
  local = lh_alloc((size_t)B, sizeof *dim, true, "results", &dim);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof *mle, true, "results", &mle);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof *nvalid, true, "results", &nvalid);
  if (local == LH_OK && a.scales)
    local = lh_alloc((size_t)(B * nscales_max), sizeof *scales, true, "scales", &scales);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_batch_plan_create(comm, B, &plan));
  int grank;
  MPI_Comm_rank(plan.group_comm, &grank);

  lh_twonn_opts to = lh_twonn_defaults();
  to.eps = a.eps;
  to.discard_fraction = a.discard;
  to.return_xy = a.xy;
  for (int64_t round = 0; round < plan.rounds; round++) {
    int64_t b = lh_batch_plan_item(&plan, round);
    local = b >= 0 ? lh_dmat_create(plan.group_comm, in->natural, N, D, &X) : LH_OK;
    LH_TRY(lh_agree(comm, local));
    LH_TRY(lh_h5_read_dmat(d, b, X));
    local = b >= 0 ? lh_twonn_run(X, &to, &res) : LH_OK;
    if (local == LH_OK && b >= 0 && a.scales) {
      int ns = 0;
      local = run_scales(X, &to, (uint64_t)a.seed, scales + b * nscales_max, &ns);
      nscales = ns; /* the same N for every item: the same number of scales */
    }
    LH_TRY(lh_agree(comm, local));
    if (a.xy) {
      LH_TRY(lh_h5_write_dmat(dx, b, res ? res->x : NULL));
      LH_TRY(lh_h5_write_dmat(dy, b, res ? res->y : NULL));
    }
    if (b >= 0 && grank == 0) {
      dim[b] = res->dimension[0];
      mle[b] = res->mle[0];
      nvalid[b] = res->n_valid[0];
    }
    lh_twonn_result_destroy(&res);
    lh_dmat_destroy(&X);
  }
  /* Each item's values were set by one rank; a sum gathers them everywhere. */
  int b32;
  LH_TRY(lh_int_cast(B, "batch items", &b32));
  MPI_Allreduce(MPI_IN_PLACE, dim, b32, MPI_DOUBLE, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, mle, b32, MPI_DOUBLE, MPI_SUM, comm);
  MPI_Allreduce(MPI_IN_PLACE, nvalid, b32, MPI_INT64_T, MPI_SUM, comm);
  if (a.scales) {
    MPI_Allreduce(MPI_IN_PLACE, &nscales, 1, MPI_INT, MPI_MAX, comm);
    /* every scale_row field is a number set by one rank (zero elsewhere): one sum */
    double *v = NULL;
    LH_TRY(lh_agree(comm, lh_alloc((size_t)(B * nscales_max * 5), sizeof *v, true, "scales", &v)));
    for (int64_t b = 0; b < B; b++) {
      bool mine = lh_batch_plan_item(&plan, b / plan.ngroups) == b && grank == 0;
      for (int s = 0; s < nscales_max && mine; s++) {
        scale_row *r = &scales[b * nscales_max + s];
        double *q = v + (b * nscales_max + s) * 5;
        q[0] = (double)r->size;
        q[1] = (double)r->count;
        q[2] = (double)r->used;
        q[3] = r->mean;
        q[4] = r->std;
      }
    }
    MPI_Allreduce(MPI_IN_PLACE, v, (int)(B * nscales_max * 5), MPI_DOUBLE, MPI_SUM, comm);
    for (int64_t k = 0; k < B * nscales_max; k++) {
      scales[k].size = (int64_t)v[5 * k];
      scales[k].count = (int64_t)v[5 * k + 1];
      scales[k].used = (int64_t)v[5 * k + 2];
      scales[k].mean = v[5 * k + 3];
      scales[k].std = v[5 * k + 4];
    }
    lh_free(v);
  }
  lh_h5_close(&dx);
  lh_h5_close(&dy);
  if (o) {
    LH_TRY(lh_h5_out_write_small(o, "/dimension", LH_F32, in->row_axis, in->dims, dim));
    LH_TRY(lh_h5_out_write_small(o, "/dimension_mle", LH_F32, in->row_axis, in->dims, mle));
    LH_TRY(lh_h5_out_commit(&o));
  }
  json_t *doc = json_object();
  json_object_set_new(doc, "dimension", cli_batch_values(dim, in));
  json_object_set_new(doc, "dimension_mle", cli_batch_values(mle, in));
  json_object_set_new(doc, "n_valid", cli_batch_counts(nvalid, in));
  json_object_set_new(doc, "n_points", json_integer(N));
  json_object_set_new(doc, "discard_fraction", json_real(a.discard));
  json_object_set_new(doc, "eps", json_real(a.eps));
  if (a.scales) {
    json_t *sc = json_array();
    for (int64_t b = 0; b < B; b++) {
      json_t *items = json_array();
      for (int s = 0; s < nscales; s++) {
        scale_row *r = &scales[b * nscales_max + s];
        json_t *e = json_object();
        json_object_set_new(e, "subset_size", json_integer(r->size));
        json_object_set_new(e, "subsets", json_integer(r->count));
        json_object_set_new(e, "mean", cli_real(r->mean));
        json_object_set_new(e, "std", cli_real(r->std));
        json_array_append_new(items, e);
      }
      json_array_append_new(sc, items);
    }
    /* one list of scales per item; unbatched data gets the list itself */
    if (in->row_axis == 0) {
      json_t *only = json_incref(json_array_get(sc, 0));
      json_decref(sc);
      sc = only ? only : json_array();
    }
    json_object_set_new(doc, "scales", sc);
    json_object_set_new(doc, "seed", json_integer(a.seed));
  }
  cli_emit_json(comm, doc);
done:
  lh_twonn_result_destroy(&res);
  lh_dmat_destroy(&X);
  lh_h5_close(&dx);
  lh_h5_close(&dy);
  lh_h5_out_discard(&o);
  lh_batch_plan_destroy(&plan);
  lh_h5_close(&d);
  lh_free(dim);
  lh_free(mle);
  lh_free(nvalid);
  lh_free(scales);
  return st;
}
