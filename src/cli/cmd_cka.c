/*
 * cmd_cka.c: `latenthook cka --a F:/x --b F:/y`: CKA between two representations (SPEC 5.1)
 * for every matrix of two datasets.
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/cka.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook cka --a FILE.h5:/x --b FILE.h5:/y [options]\n\n"
    "Centred kernel alignment (Kornblith et al. 2019) between two representations of the same\n"
    "N samples, as tdhook's CkaEstimator: ||X~^T Y~||_F^2 / sqrt(||X~^T X~||_F^2 ||Y~^T Y~||_F^2)\n"
    "with column-centred X~, Y~, accumulated in float64; NaN when the denominator <= eps. Prints\n"
    "  {\"cka\": v}\n"
    "(nested lists for batched datasets (..., N, D); the two must share batch shape and N).\n\n"
    "Options:\n"
    "  --a FILE.h5:/x, --b FILE.h5:/y   the two representations (required)\n"
    "  --kernel linear|rbf       linear (default), or the RBF kernel exp(-d^2 / (2 t^2 m)) with m\n"
    "                            the median of all N^2 squared distances (Kornblith et al.)\n"
    "  --threshold T             RBF bandwidth factor t (default 1.0)\n"
    "  --debiased                unbiased HSIC (Song et al. 2012), needs N >= 4\n"
    "  --kmat auto|held|stream   RBF: hold the N x N kernels block-cyclically over the ranks\n"
    "                            (when they fit in 512 MiB per rank) or stream them in passes\n"
    "  --eps E                   NaN when the denominator is <= E (default 1e-12)\n"
    "  --path auto|gram|scalapack  force a distributed path (default: Gram matrices when they\n"
    "                            fit in 1 GiB per rank, else ScaLAPACK on a block-cyclic grid)\n" CLI_COMMON_HELP;

enum { OPT_A = 1, OPT_B, OPT_KERNEL, OPT_DEBIASED, OPT_EPS, OPT_PATH, OPT_THRESHOLD, OPT_KMAT };

typedef struct args {
  const char *a, *b, *kernel, *path, *kmat;
  bool debiased;
  double eps, threshold;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_A: a->a = arg; return LH_OK;
    case OPT_B: a->b = arg; return LH_OK;
    case OPT_KERNEL: a->kernel = arg; return LH_OK;
    case OPT_PATH: a->path = arg; return LH_OK;
    case OPT_DEBIASED: a->debiased = true; return LH_OK;
    case OPT_EPS: return cli_parse_double("--eps", arg, &a->eps);
    case OPT_THRESHOLD: return cli_parse_double("--threshold", arg, &a->threshold);
    case OPT_KMAT: a->kmat = arg; return LH_OK;
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

typedef struct run {
  bool rbf;
  lh_cka_opts o;
  lh_kcka_opts ko;
  double *v;
} run;

static lh_status compute(cli_item *it, void *user) {
  run *u = user;
  double c;
  lh_status st = u->rbf ? lh_cka_kernel(it->X, it->Y, &u->ko, &c, NULL, NULL)
                        : lh_cka_linear(it->X, it->Y, &u->o, &c);
  if (st == LH_OK && it->leader) u->v[it->b] = c;
  return st;
}

lh_status cmd_cka(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {{"a", required_argument, NULL, OPT_A},
                                       {"b", required_argument, NULL, OPT_B},
                                       {"kernel", required_argument, NULL, OPT_KERNEL},
                                       {"debiased", no_argument, NULL, OPT_DEBIASED},
                                       {"eps", required_argument, NULL, OPT_EPS},
                                       {"path", required_argument, NULL, OPT_PATH},
                                       {"threshold", required_argument, NULL, OPT_THRESHOLD},
                                       {"kmat", required_argument, NULL, OPT_KMAT},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.kernel = "linear", .path = "auto", .kmat = "auto", .eps = 1e-12, .threshold = 1.0};
  lh_h5_dset *da = NULL, *db = NULL;
  run u = {.o = lh_cka_defaults(), .ko = lh_kcka_defaults()};
  int pos;
  LH_TRY(cli_parse("cka", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook cka --help')", argv[pos]);
  if (!a.a || !a.b) LH_FAIL(LH_ERR_USAGE, "--a FILE.h5:/x and --b FILE.h5:/y are required");
  if (strcmp(a.kernel, "linear") != 0 && strcmp(a.kernel, "rbf") != 0)
    LH_FAIL(LH_ERR_USAGE, "Unsupported kernel '%s': expected linear or rbf", a.kernel);
  u.rbf = strcmp(a.kernel, "rbf") == 0;
  if (!(a.threshold > 0)) LH_FAIL(LH_ERR_USAGE, "--threshold must be > 0, got %g", a.threshold);
  u.ko.threshold = a.threshold;
  u.ko.debiased = a.debiased;
  u.ko.eps = a.eps;
  if (strcmp(a.kmat, "auto") == 0)
    u.ko.mode = LH_KMAT_AUTO;
  else if (strcmp(a.kmat, "held") == 0)
    u.ko.mode = LH_KMAT_HELD;
  else if (strcmp(a.kmat, "stream") == 0)
    u.ko.mode = LH_KMAT_STREAM;
  else
    LH_FAIL(LH_ERR_USAGE, "--kmat must be auto, held or stream, got '%s'", a.kmat);
  if (!(a.eps >= 0)) LH_FAIL(LH_ERR_USAGE, "--eps must be >= 0, got %g", a.eps);
  if (strcmp(a.path, "auto") == 0)
    u.o.path = LH_CKA_AUTO;
  else if (strcmp(a.path, "gram") == 0)
    u.o.path = LH_CKA_GRAM;
  else if (strcmp(a.path, "scalapack") == 0)
    u.o.path = LH_CKA_SCALAPACK;
  else
    LH_FAIL(LH_ERR_USAGE, "--path must be auto, gram or scalapack, got '%s'", a.path);
  u.o.debiased = a.debiased;
  u.o.eps = a.eps;
  LH_TRY(lh_h5_open(comm, a.a, LH_ROWS_SECOND_LAST, &da));
  LH_TRY(lh_h5_open(comm, a.b, LH_ROWS_SECOND_LAST, &db));
  const lh_h5_info *ia = lh_h5_dset_info(da), *ib = lh_h5_dset_info(db);
  LH_TRY(lh_agree(comm, cli_check_pair(ia, ib)));
  if (a.debiased && ia->N < 4)
    LH_FAIL(LH_ERR_VALUE, "debiased CKA needs at least 4 samples, got %lld", (long long)ia->N);
  LH_TRY(lh_agree(comm, lh_alloc((size_t)ia->B, sizeof(double), true, "results", &u.v)));
  LH_TRY(cli_each_pair(comm, da, db, ia->natural, ib->natural, compute, NULL, &u));
  LH_TRY(cli_share_f64(comm, ia->B, u.v));
  json_t *doc = json_object();
  json_object_set_new(doc, "cka", cli_batch_values(u.v, ia));
  json_object_set_new(doc, "kernel", json_string(a.kernel));
  if (u.rbf) json_object_set_new(doc, "threshold", json_real(a.threshold));
  json_object_set_new(doc, "debiased", json_boolean(a.debiased));
  json_object_set_new(doc, "n_points", json_integer(ia->N));
  cli_emit_json(comm, doc);
done:
  lh_h5_close(&da);
  lh_h5_close(&db);
  lh_free(u.v);
  return st;
}
