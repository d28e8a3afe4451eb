/*
 * cmd_twonn.c: `latenthook twonn`: TwoNN intrinsic dimension of every matrix of a dataset
 * (SPEC 4.2), optionally with Facco et al.'s discarded fraction, the fitted x/y, and the
 * block analysis over random disjoint subsets (--scales).
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
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

/* Block analysis of one matrix: TwoNN on 2^s random disjoint subsets for s = 1, 2, ...
 * Writes per scale (subset size, subsets, mean, std) into row[4 * s]; returns the count. */
#define MAX_SCALES 62
#define SCALE_FIELDS 4

static lh_status run_scales(const lh_dmat *X, const lh_twonn_opts *base, uint64_t seed,
                            double *row, int *nscales) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(X);
  int64_t N = lh_dmat_rows(X), n = lh_dmat_local_rows(X), row0 = lh_dmat_row_offset(X);
  uint64_t *keys = NULL;
  int64_t *ids = NULL, *pos = NULL;
  lh_dmat *Xp = NULL;
  lh_twonn_result *res = NULL;
  *nscales = 0;
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
  for (int s = 1; s <= MAX_SCALES && (N >> s) >= 16; s++) {
    lh_twonn_opts o = *base;
    o.return_xy = false;
    o.segments = INT64_C(1) << s;
    lh_status rs = lh_twonn_run(Xp, &o, &res);
    if (rs == LH_ERR_VALUE) { /* subsets too small or too degenerate: the analysis ends here */
      lh_error_clear();
      break;
    }
    LH_TRY(rs);
    /* mean and sample standard deviation over the subsets with a finite estimate */
    double sum = 0, sq = 0;
    int64_t used = 0;
    for (int64_t j = 0; j < res->S; j++)
      if (isfinite(res->dimension[j])) {
        sum += res->dimension[j];
        used++;
      }
    double mean = used ? sum / (double)used : NAN;
    for (int64_t j = 0; j < res->S; j++)
      if (isfinite(res->dimension[j])) sq += (res->dimension[j] - mean) * (res->dimension[j] - mean);
    double *r = row + SCALE_FIELDS * (*nscales)++;
    r[0] = (double)(N >> s);
    r[1] = (double)res->S;
    r[2] = mean;
    r[3] = used > 1 ? sqrt(sq / (double)(used - 1)) : NAN;
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

typedef struct run {
  lh_twonn_opts to;
  bool scales;
  uint64_t seed;
  lh_h5_dset *dx, *dy;     /* x/y outputs with --return-xy */
  lh_twonn_result *res;    /* this round's result */
  double *dim, *mle, *sc;  /* per item; sc: MAX_SCALES x SCALE_FIELDS per item */
  int64_t *nvalid;
  int64_t *nscales;        /* per item: scales computed (the analysis may stop early) */
} run;

static lh_status compute(cli_item *it, void *user) {
  run *u = user;
  lh_status st = LH_OK;
  LH_TRY(lh_twonn_run(it->X, &u->to, &u->res));
  int ns = 0;
  if (u->scales)
    LH_TRY(run_scales(it->X, &u->to, u->seed, u->sc + it->b * MAX_SCALES * SCALE_FIELDS, &ns));
  if (it->leader) {
    u->dim[it->b] = u->res->dimension[0];
    u->mle[it->b] = u->res->mle[0];
    u->nvalid[it->b] = u->res->n_valid[0];
    u->nscales[it->b] = ns;
  } else if (u->scales) { /* only the leader's copy is shared */
    for (int k = 0; k < MAX_SCALES * SCALE_FIELDS; k++) u->sc[it->b * MAX_SCALES * SCALE_FIELDS + k] = 0;
  }
done:
  return st;
}

static lh_status write(cli_item *it, void *user) {
  run *u = user;
  lh_status st = LH_OK;
  if (u->to.return_xy) {
    LH_TRY(lh_h5_write_dmat(u->dx, it->b, u->res ? u->res->x : NULL));
    LH_TRY(lh_h5_write_dmat(u->dy, it->b, u->res ? u->res->y : NULL));
  }
done:
  lh_twonn_result_destroy(&u->res);
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
  lh_h5_dset *d = NULL;
  lh_h5_out *o = NULL;
  run u = {.to = lh_twonn_defaults()};
  int pos;

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
  const int64_t B = in->B, N = in->N;
  u.to.eps = a.eps;
  u.to.discard_fraction = a.discard;
  u.to.return_xy = a.xy;
  u.scales = a.scales;
  u.seed = (uint64_t)a.seed;
  if (a.out) {
    LH_TRY(lh_h5_out_create(comm, a.out, &o));
    if (a.xy) {
      int64_t dims[LH_H5_MAX_DIMS];
      for (int k = 0; k < in->row_axis; k++) dims[k] = in->dims[k];
      dims[in->row_axis] = N > 0 ? N - 1 : 0;
      LH_TRY(lh_h5_out_dataset(o, "/dimension_x", in->natural, in->row_axis + 1, dims, LH_ROWS_LAST, &u.dx));
      LH_TRY(lh_h5_out_dataset(o, "/dimension_y", in->natural, in->row_axis + 1, dims, LH_ROWS_LAST, &u.dy));
    }
  }
  int64_t nsc = a.scales ? B * MAX_SCALES * SCALE_FIELDS : 0;
  local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.dim);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.mle);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(int64_t), true, "results", &u.nvalid);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(int64_t), true, "results", &u.nscales);
  if (local == LH_OK) local = lh_alloc((size_t)nsc, sizeof(double), true, "scales", &u.sc);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(cli_each_item(comm, d, in->natural, compute, write, &u));
  LH_TRY(cli_share_f64(comm, B, u.dim));
  LH_TRY(cli_share_f64(comm, B, u.mle));
  LH_TRY(cli_share_i64(comm, B, u.nvalid));
  LH_TRY(cli_share_f64(comm, nsc, u.sc));
  LH_TRY(cli_share_i64(comm, B, u.nscales));
  lh_h5_close(&u.dx);
  lh_h5_close(&u.dy);
  if (o) {
    LH_TRY(lh_h5_out_write_small(o, "/dimension", LH_F32, in->row_axis, in->dims, u.dim));
    LH_TRY(lh_h5_out_write_small(o, "/dimension_mle", LH_F32, in->row_axis, in->dims, u.mle));
    LH_TRY(lh_h5_out_commit(&o));
  }
  json_t *doc = json_object();
  json_object_set_new(doc, "dimension", cli_batch_values(u.dim, in));
  json_object_set_new(doc, "dimension_mle", cli_batch_values(u.mle, in));
  json_object_set_new(doc, "n_valid", cli_batch_counts(u.nvalid, in));
  json_object_set_new(doc, "n_points", json_integer(N));
  json_object_set_new(doc, "discard_fraction", json_real(a.discard));
  json_object_set_new(doc, "eps", json_real(a.eps));
  if (a.scales) {
    json_t *all = json_array();
    for (int64_t b = 0; b < B; b++) {
      json_t *items = json_array();
      for (int64_t s = 0; s < u.nscales[b]; s++) {
        const double *r = u.sc + (b * MAX_SCALES + s) * SCALE_FIELDS;
        json_t *e = json_object();
        json_object_set_new(e, "subset_size", json_integer((json_int_t)r[0]));
        json_object_set_new(e, "subsets", json_integer((json_int_t)r[1]));
        json_object_set_new(e, "mean", cli_real(r[2]));
        json_object_set_new(e, "std", cli_real(r[3]));
        json_array_append_new(items, e);
      }
      json_array_append_new(all, items);
    }
    /* one list of scales per item; unbatched data gets the list itself */
    if (in->row_axis == 0) {
      json_t *only = json_incref(json_array_get(all, 0));
      json_decref(all);
      all = only ? only : json_array();
    }
    json_object_set_new(doc, "scales", all);
    json_object_set_new(doc, "seed", json_integer(a.seed));
  }
  cli_emit_json(comm, doc);
done:
  lh_twonn_result_destroy(&u.res);
  lh_h5_close(&u.dx);
  lh_h5_close(&u.dy);
  lh_h5_out_discard(&o);
  lh_h5_close(&d);
  lh_free(u.dim);
  lh_free(u.mle);
  lh_free(u.nvalid);
  lh_free(u.nscales);
  lh_free(u.sc);
  return st;
}
