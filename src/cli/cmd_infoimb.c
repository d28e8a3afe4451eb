/*
 * cmd_infoimb.c: `latenthook information-imbalance --a F:/x --b F:/y`: the information
 * imbalance in both directions (SPEC 5.2) for every matrix of two datasets.
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/infoimb.h"
#include "latenthook/mem.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook information-imbalance --a FILE.h5:/x --b FILE.h5:/y [options]\n\n"
    "Information imbalance (Glielmo et al. 2022) between two representations of the same N\n"
    "samples, both directions, as tdhook's InformationImbalanceEstimator: Delta(A->B) =\n"
    "(2/N) * mean rank in B of each sample's nearest neighbour in A. Neighbours are ordered by\n"
    "(distance, sample index), so ties go to the lower index. Prints\n"
    "  {\"information_imbalance_a_to_b\": v, \"information_imbalance_b_to_a\": w, ...}\n"
    "(nested lists for batched datasets (..., N, D); the two must share batch shape and N).\n\n"
    "Options:\n"
    "  --a FILE.h5:/x, --b FILE.h5:/y   the two representations (required)\n"
    "  --p P                     Minkowski exponent, >= 1 or inf (default 2)\n"
    "  --k K                     average over the K nearest neighbours in the source space\n"
    "                            (DADApy's k; identical spaces give (K+1)/N; default 1)\n"
    "  --subsample M             only M random query points (the same for any rank count),\n"
    "                            ranked against all N: reports the mean and its standard error\n"
    "  --seed S                  seed of the query subset (default 0)\n" CLI_COMMON_HELP;

enum { OPT_A = 1, OPT_B, OPT_P, OPT_K, OPT_SUB, OPT_SEED };

typedef struct args {
  const char *a, *b;
  double p;
  long long k, sub, seed;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_A: a->a = arg; return LH_OK;
    case OPT_B: a->b = arg; return LH_OK;
    case OPT_P:
      if (strcmp(arg, "inf") == 0 || strcmp(arg, "infinity") == 0) {
        a->p = INFINITY;
        return LH_OK;
      }
      return cli_parse_double("--p", arg, &a->p);
    case OPT_K: return cli_parse_int("--k", arg, &a->k);
    case OPT_SUB: return cli_parse_int("--subsample", arg, &a->sub);
    case OPT_SEED: return cli_parse_int("--seed", arg, &a->seed);
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

typedef struct run {
  lh_ii_opts o;
  double *ab, *ba, *se_ab, *se_ba;
} run;

static lh_status compute(cli_item *it, void *user) {
  run *u = user;
  lh_ii_result r;
  lh_status st = lh_ii_run(it->X, it->Y, &u->o, &r);
  if (st == LH_OK && it->leader) {
    u->ab[it->b] = r.a_to_b;
    u->ba[it->b] = r.b_to_a;
    u->se_ab[it->b] = r.se_a_to_b;
    u->se_ba[it->b] = r.se_b_to_a;
  }
  return st;
}

lh_status cmd_infoimb(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {{"a", required_argument, NULL, OPT_A},
                                       {"b", required_argument, NULL, OPT_B},
                                       {"p", required_argument, NULL, OPT_P},
                                       {"k", required_argument, NULL, OPT_K},
                                       {"subsample", required_argument, NULL, OPT_SUB},
                                       {"seed", required_argument, NULL, OPT_SEED},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.p = 2.0, .k = 1};
  lh_h5_dset *da = NULL, *db = NULL;
  run u = {.o = lh_ii_defaults()};
  int pos;
  LH_TRY(cli_parse("information-imbalance", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook information-imbalance --help')", argv[pos]);
  if (!a.a || !a.b) LH_FAIL(LH_ERR_USAGE, "--a FILE.h5:/x and --b FILE.h5:/y are required");
  if (!(a.p >= 1)) LH_FAIL(LH_ERR_USAGE, "--p must be >= 1 or inf, got %g", a.p);
  if (a.k < 1) LH_FAIL(LH_ERR_USAGE, "--k must be at least 1, got %lld", a.k);
  if (a.sub < 0) LH_FAIL(LH_ERR_USAGE, "--subsample must be positive, got %lld", a.sub);
  LH_TRY(lh_h5_open(comm, a.a, LH_ROWS_SECOND_LAST, &da));
  LH_TRY(lh_h5_open(comm, a.b, LH_ROWS_SECOND_LAST, &db));
  const lh_h5_info *ia = lh_h5_dset_info(da), *ib = lh_h5_dset_info(db);
  LH_TRY(lh_agree(comm, cli_check_pair(ia, ib)));
  if (ia->N < 2) LH_FAIL(LH_ERR_VALUE, "Expected at least 2 samples, got %lld", (long long)ia->N);
  if (a.k > ia->N - 1)
    LH_FAIL(LH_ERR_VALUE, "--k must be at most N - 1 = %lld, got %lld", (long long)(ia->N - 1), a.k);
  u.o.p = a.p;
  u.o.k = a.k;
  u.o.subsample = a.sub;
  u.o.seed = (uint64_t)a.seed;
  const int64_t B = ia->B;
  local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.ab);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.ba);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.se_ab);
  if (local == LH_OK) local = lh_alloc((size_t)B, sizeof(double), true, "results", &u.se_ba);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(cli_each_pair(comm, da, db, ia->natural, ib->natural, compute, NULL, &u));
  LH_TRY(cli_share_f64(comm, B, u.ab));
  LH_TRY(cli_share_f64(comm, B, u.ba));
  LH_TRY(cli_share_f64(comm, B, u.se_ab));
  LH_TRY(cli_share_f64(comm, B, u.se_ba));
  json_t *doc = json_object();
  json_object_set_new(doc, "information_imbalance_a_to_b", cli_batch_values(u.ab, ia));
  json_object_set_new(doc, "information_imbalance_b_to_a", cli_batch_values(u.ba, ia));
  if (a.sub > 0) {
    json_object_set_new(doc, "standard_error_a_to_b", cli_batch_values(u.se_ab, ia));
    json_object_set_new(doc, "standard_error_b_to_a", cli_batch_values(u.se_ba, ia));
    json_object_set_new(doc, "queries", json_integer(a.sub < ia->N ? a.sub : ia->N));
    json_object_set_new(doc, "seed", json_integer(a.seed));
  }
  json_object_set_new(doc, "floor", json_real((double)(a.k + 1) / (double)ia->N));
  json_object_set_new(doc, "k", json_integer(a.k));
  json_object_set_new(doc, "p", isinf(a.p) ? json_string("inf") : json_real(a.p));
  json_object_set_new(doc, "n_points", json_integer(ia->N));
  cli_emit_json(comm, doc);
done:
  lh_h5_close(&da);
  lh_h5_close(&db);
  lh_free(u.ab);
  lh_free(u.ba);
  lh_free(u.se_ab);
  lh_free(u.se_ba);
  return st;
}
