/*
 * cmd_probe.c: `latenthook probe --data F:/acts --labels F:/y --estimator ... --out OUT.h5`:
 * a linear probe or mean-difference direction fitted on activations already in HDF5
 * (SPEC 3.5-3.7), with a train/test split by global sample index, metrics on both parts,
 * and the fitted coefficients written to OUT.h5.
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_probe_bilinear.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/probe.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook probe --data FILE.h5:/acts --labels FILE.h5:/y\n"
    "                 --estimator linear|mean-difference --out OUT.h5 [options]\n"
    "       mpiexec -n P latenthook probe --data F.h5:/h1 --data2 F.h5:/h2 --labels F.h5:/y\n"
    "                 --estimator low-rank-bilinear --out OUT.h5 [options]\n\n"
    "Fits a probe on activations (N, ...) (flattened to N x D as tdhook's Probe does) with one\n"
    "label per sample (N,) or (N, 1), on a train part chosen by a hash of (seed, sample index),\n"
    "and scores it on the train part (fit_metrics) and the test part (predict_metrics). Writes\n"
    "OUT.h5:/coef (C x D) and OUT.h5:/intercept (C) and prints one JSON document with the\n"
    "metrics. The result is the same on any number of ranks.\n\n"
    "Estimators:\n"
    "  mean-difference   w = mu1 - mu0, b = -(|mu1|^2 - |mu0|^2)/2, divided by |w| (labels 0/1)\n"
    "  linear            W x + b: a softmax classifier with --num-classes C (labels 0..C-1),\n"
    "                    else a regressor (MSE)\n\n"
    "Options:\n"
    "  --num-classes C     classes of a linear classifier (>= 2)\n"
    "  --solver S          adam (default; tdhook's loop: seeded mini-batches, Adam),\n"
    "                      lbfgs (full batch: mean loss + (l2/2)|W|^2, intercepts free; as\n"
    "                      scikit-learn's LogisticRegression(C = 1/(l2 N), multinomial)),\n"
    "                      ridge (regression, closed form: (1/N)|Xw + b - y|^2 + l2 |w|^2)\n"
    "  --l2 L              penalty (default 0)\n"
    "  --test-fraction F   fraction of samples held out for predict_metrics (default 0.2; 0:\n"
    "                      no test part, predict_metrics is null)\n"
    "  --seed S            split, initialisation and shuffling seed (default 0)\n"
    "  --epochs E, --batch-size B, --lr R   adam (defaults 100, 128, 1e-3)\n"
    "  --max-iter M, --tol T   lbfgs (defaults 1000, 1e-10 on |grad| / max(1, |params|))\n"
    "  --no-normalize      mean-difference: keep the raw difference of means\n"
    "\nlow-rank-bilinear (SPEC 3.8): --data F:/h1 --data2 F:/h2 (the same samples):\n"
    "  y = (U h1 + u) * (V h2 + v) + b over C = --num-classes outputs (or 1: regression),\n"
    "  trained by adam (--epochs, --batch-size, --lr, --seed); writes OUT.h5:/U, /u, /V, /v, /b\n"
    "  --rank 1            rank per output unit (tdhook's estimator: 1, the only value)\n"
    "  --no-bias           no additive b (u and v are always there)\n" CLI_COMMON_HELP;

enum {
  OPT_DATA = 1, OPT_LABELS, OPT_ESTIMATOR, OPT_CLASSES, OPT_SOLVER, OPT_L2, OPT_TEST, OPT_SEED,
  OPT_EPOCHS, OPT_BATCH, OPT_LR, OPT_MAXITER, OPT_TOL, OPT_NONORM, OPT_OUT,
  OPT_DATA2, OPT_RANK, OPT_NOBIAS
};

typedef struct args {
  const char *data, *labels, *estimator, *solver, *out;
  long long classes, seed, epochs, batch, maxiter;
  double l2, test, lr, tol;
  bool nonorm;
  const char *data2; /* low-rank-bilinear */
  long long rank;
  bool nobias;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_DATA: a->data = arg; return LH_OK;
    case OPT_LABELS: a->labels = arg; return LH_OK;
    case OPT_ESTIMATOR: a->estimator = arg; return LH_OK;
    case OPT_SOLVER: a->solver = arg; return LH_OK;
    case OPT_OUT: a->out = arg; return LH_OK;
    case OPT_NONORM: a->nonorm = true; return LH_OK;
    case OPT_DATA2: a->data2 = arg; return LH_OK;
    case OPT_NOBIAS: a->nobias = true; return LH_OK;
    case OPT_RANK: return cli_parse_int("--rank", arg, &a->rank);
    case OPT_CLASSES: return cli_parse_int("--num-classes", arg, &a->classes);
    case OPT_SEED: return cli_parse_int("--seed", arg, &a->seed);
    case OPT_EPOCHS: return cli_parse_int("--epochs", arg, &a->epochs);
    case OPT_BATCH: return cli_parse_int("--batch-size", arg, &a->batch);
    case OPT_MAXITER: return cli_parse_int("--max-iter", arg, &a->maxiter);
    case OPT_L2: return cli_parse_double("--l2", arg, &a->l2);
    case OPT_TEST: return cli_parse_double("--test-fraction", arg, &a->test);
    case OPT_LR: return cli_parse_double("--lr", arg, &a->lr);
    case OPT_TOL: return cli_parse_double("--tol", arg, &a->tol);
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

static json_t *metrics_json(const lh_probe_metrics *m) {
  json_t *j = json_object();
  json_object_set_new(j, "n", json_integer(m->n));
  if (m->classification) {
    json_object_set_new(j, "accuracy", cli_real(m->accuracy));
    json_object_set_new(j, "balanced_accuracy", cli_real(m->balanced_accuracy));
    json_object_set_new(j, "cross_entropy", cli_real(m->cross_entropy));
    json_object_set_new(j, "macro_f1", cli_real(m->macro_f1));
  } else {
    json_object_set_new(j, "mse", cli_real(m->mse));
    json_object_set_new(j, "r2", cli_real(m->r2));
  }
  return j;
}

lh_status cmd_probe(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {{"data", required_argument, NULL, OPT_DATA},
                                       {"labels", required_argument, NULL, OPT_LABELS},
                                       {"estimator", required_argument, NULL, OPT_ESTIMATOR},
                                       {"num-classes", required_argument, NULL, OPT_CLASSES},
                                       {"solver", required_argument, NULL, OPT_SOLVER},
                                       {"l2", required_argument, NULL, OPT_L2},
                                       {"test-fraction", required_argument, NULL, OPT_TEST},
                                       {"seed", required_argument, NULL, OPT_SEED},
                                       {"epochs", required_argument, NULL, OPT_EPOCHS},
                                       {"batch-size", required_argument, NULL, OPT_BATCH},
                                       {"lr", required_argument, NULL, OPT_LR},
                                       {"max-iter", required_argument, NULL, OPT_MAXITER},
                                       {"tol", required_argument, NULL, OPT_TOL},
                                       {"no-normalize", no_argument, NULL, OPT_NONORM},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"data2", required_argument, NULL, OPT_DATA2},
                                       {"rank", required_argument, NULL, OPT_RANK},
                                       {"no-bias", no_argument, NULL, OPT_NOBIAS},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  lh_probe_opts po = lh_probe_defaults();
  args a = {.classes = -1, .seed = 0, .epochs = po.epochs, .batch = po.batch_size,
            .maxiter = po.max_iter, .l2 = 0, .test = 0.2, .lr = po.lr, .tol = po.tol,
            .rank = 1};
  lh_h5_dset *dd = NULL, *dl = NULL;
  lh_h5_out *o = NULL;
  lh_dmat *X = NULL;
  lh_probe *p = NULL;
  double *y = NULL;
  bool *test = NULL, *train = NULL;
  int pos;
  for (int i = 1; i < argc; i++) /* probes inside the forward pass: cmd_probe_model.c */
    if (strcmp(argv[i], "--model") == 0 || strncmp(argv[i], "--model=", 8) == 0)
      return cmd_probe_model(comm, argc, argv, cc);
  LH_TRY(cli_parse("probe", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook probe --help')", argv[pos]);
  if (!a.data || !a.labels) LH_FAIL(LH_ERR_USAGE, "--data FILE.h5:/acts and --labels FILE.h5:/y are required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");
  if (!a.estimator)
    LH_FAIL(LH_ERR_USAGE, "--estimator linear|mean-difference|low-rank-bilinear is required");
  const bool mdiff = strcmp(a.estimator, "mean-difference") == 0;
  if (strcmp(a.estimator, "low-rank-bilinear") == 0) {
    /* SPEC 3.8: one rank-1 form (U_c h1 + u_c)(V_c h2 + v_c) per output unit */
    if (a.rank != 1)
      LH_FAIL(LH_ERR_USAGE, "--rank: tdhook's LowRankBilinearEstimator is rank 1 per output "
              "unit (SPEC 3.8); only --rank 1 is supported, got %lld", a.rank);
    if (a.solver && strcmp(a.solver, "adam") != 0)
      LH_FAIL(LH_ERR_USAGE, "--estimator low-rank-bilinear trains with adam only, got --solver %s",
              a.solver);
    if (a.l2 != 0) LH_FAIL(LH_ERR_USAGE, "--l2 does not apply to --estimator low-rank-bilinear");
    if (a.nonorm) LH_FAIL(LH_ERR_USAGE, "--no-normalize applies to --estimator mean-difference only");
    if (!(a.test >= 0 && a.test < 1)) LH_FAIL(LH_ERR_USAGE, "--test-fraction must be in [0, 1), got %g", a.test);
    if (a.epochs < 0) LH_FAIL(LH_ERR_USAGE, "--epochs must be >= 0, got %lld", a.epochs);
    if (a.batch < 1) LH_FAIL(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", a.batch);
    if (!(a.lr > 0)) LH_FAIL(LH_ERR_USAGE, "--lr must be > 0, got %g", a.lr);
    const cli_bilinear_args b = {.data = a.data, .data2 = a.data2, .labels = a.labels,
                                 .out = a.out, .classes = a.classes, .seed = a.seed,
                                 .epochs = a.epochs, .batch = a.batch, .test = a.test,
                                 .lr = a.lr, .no_bias = a.nobias};
    LH_TRY(cmd_probe_bilinear(comm, &b));
    goto done;
  }
  if (a.data2 || a.nobias)
    LH_FAIL(LH_ERR_USAGE, "--data2 and --no-bias apply to --estimator low-rank-bilinear only");
  if (!mdiff && strcmp(a.estimator, "linear") != 0)
    LH_FAIL(LH_ERR_USAGE, "--estimator must be linear, mean-difference or low-rank-bilinear, "
            "got '%s'", a.estimator);
  if (mdiff) {
    if (a.classes != -1 && a.classes != 2)
      LH_FAIL(LH_ERR_USAGE, "--estimator mean-difference is binary: --num-classes must be 2 "
              "(or absent), got %lld", a.classes);
    if (a.solver) LH_FAIL(LH_ERR_USAGE, "--solver applies to --estimator linear only");
    po.kind = LH_PROBE_MEAN_DIFFERENCE;
    po.normalize = !a.nonorm;
  } else {
    if (a.classes != -1 && a.classes < 2)
      LH_FAIL(LH_ERR_USAGE, "--num-classes must be >= 2, got %lld", a.classes);
    po.kind = a.classes == -1 ? LH_PROBE_REGRESSOR : LH_PROBE_CLASSIFIER;
    po.num_classes = a.classes == -1 ? 1 : a.classes;
    const char *s = a.solver ? a.solver : "adam";
    if (strcmp(s, "adam") == 0)
      po.solver = LH_PROBE_ADAM;
    else if (strcmp(s, "lbfgs") == 0)
      po.solver = LH_PROBE_LBFGS;
    else if (strcmp(s, "ridge") == 0)
      po.solver = LH_PROBE_RIDGE;
    else
      LH_FAIL(LH_ERR_USAGE, "--solver must be adam, lbfgs or ridge, got '%s'", s);
    if (po.solver == LH_PROBE_RIDGE && po.kind == LH_PROBE_CLASSIFIER)
      LH_FAIL(LH_ERR_USAGE, "--solver ridge fits regression only (no --num-classes); use lbfgs "
              "or adam for a classifier");
  }
  if (!(a.test >= 0 && a.test < 1)) LH_FAIL(LH_ERR_USAGE, "--test-fraction must be in [0, 1), got %g", a.test);
  if (!(a.l2 >= 0) || !isfinite(a.l2)) LH_FAIL(LH_ERR_USAGE, "--l2 must be >= 0, got %g", a.l2);
  if (a.epochs < 0) LH_FAIL(LH_ERR_USAGE, "--epochs must be >= 0, got %lld", a.epochs);
  if (a.batch < 1) LH_FAIL(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", a.batch);
  if (a.maxiter < 1) LH_FAIL(LH_ERR_USAGE, "--max-iter must be >= 1, got %lld", a.maxiter);
  if (!(a.lr > 0)) LH_FAIL(LH_ERR_USAGE, "--lr must be > 0, got %g", a.lr);
  if (!(a.tol > 0)) LH_FAIL(LH_ERR_USAGE, "--tol must be > 0, got %g", a.tol);
  po.l2 = a.l2;
  po.seed = (uint64_t)a.seed;
  po.epochs = a.epochs;
  po.batch_size = a.batch;
  po.lr = a.lr;
  po.max_iter = a.maxiter;
  po.tol = a.tol;

  LH_TRY(lh_h5_open(comm, a.data, 0, &dd));
  LH_TRY(lh_h5_open(comm, a.labels, 0, &dl));
  const lh_h5_info *id = lh_h5_dset_info(dd), *il = lh_h5_dset_info(dl);
  if (il->E != 1)
    LH_FAIL(LH_ERR_VALUE, "--labels: expected one label per sample, shape (N,) or (N, 1), got "
            "%lld values per sample", (long long)il->E);
  if (il->N != id->N)
    LH_FAIL(LH_ERR_VALUE, "--labels has %lld samples but --data has %lld", (long long)il->N,
            (long long)id->N);
  if (id->E < 1) LH_FAIL(LH_ERR_VALUE, "--data: samples have no features");
  LH_TRY(lh_h5_out_create(comm, a.out, &o)); /* fails early on an unwritable folder */
  LH_TRY(lh_dmat_create(comm, id->natural, id->N, id->E, &X));
  LH_TRY(lh_h5_read_dmat(dd, 0, X));
  const int64_t n = lh_dmat_local_rows(X), row0 = lh_dmat_row_offset(X), D = id->E, N = id->N;
  local = lh_alloc((size_t)n, sizeof *y, false, "labels", &y);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *test, false, "split", &test);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *train, false, "split", &train);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_h5_read_rows(dl, 0, row0, n, LH_F64, y));
  if (mdiff) { /* labels are weights in SPEC 3.5; the metrics need classes */
    for (int64_t i = 0; i < n && local == LH_OK; i++)
      if (y[i] != 0 && y[i] != 1)
        local = LH_ERROR(LH_ERR_VALUE, "--estimator mean-difference needs labels 0 or 1, got "
                         "%g at sample %lld", y[i], (long long)(row0 + i));
    LH_TRY(lh_agree(comm, local));
  }
  lh_probe_split(po.seed, a.test, row0, n, test);
  int64_t counts[2] = {0, 0}; /* train, test */
  for (int64_t i = 0; i < n; i++) {
    train[i] = !test[i];
    counts[test[i] ? 1 : 0]++;
  }
  if (MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "MPI_Allreduce of the split sizes failed");
  if (counts[0] < 1 || (a.test > 0 && counts[1] < 1))
    LH_FAIL(LH_ERR_VALUE, "--test-fraction %g with --seed %lld leaves %lld training and %lld test "
            "samples out of N = %lld: each part needs at least one", a.test, a.seed,
            (long long)counts[0], (long long)counts[1], (long long)N);

  double t0 = MPI_Wtime();
  LH_TRY(lh_probe_fit(X, y, train, &po, &p));
  double t_fit = MPI_Wtime() - t0;
  lh_probe_metrics fm, tm;
  LH_TRY(lh_probe_evaluate(p, X, y, train, &fm));
  if (a.test > 0) LH_TRY(lh_probe_evaluate(p, X, y, test, &tm));

  int64_t cd[2] = {p->C, p->D};
  LH_TRY(lh_h5_out_write_small(o, "/coef", LH_F64, 2, cd, p->coef));
  LH_TRY(lh_h5_out_write_small(o, "/intercept", LH_F64, 1, &p->C, p->intercept));
  const char *solver = mdiff ? "closed form" : po.solver == LH_PROBE_ADAM ? "adam"
                                            : po.solver == LH_PROBE_LBFGS ? "lbfgs" : "ridge";
  LH_TRY(lh_h5_out_attr_string(o, "/", "estimator", a.estimator));
  LH_TRY(lh_h5_out_attr_string(o, "/", "solver", solver));
  LH_TRY(lh_h5_out_commit(&o));

  json_t *doc = json_object(), *fit = json_object();
  json_object_set_new(doc, "estimator", json_string(a.estimator));
  json_object_set_new(doc, "task", json_string(po.kind == LH_PROBE_REGRESSOR ? "regression" : "classification"));
  json_object_set_new(doc, "solver", json_string(solver));
  if (po.kind == LH_PROBE_CLASSIFIER) json_object_set_new(doc, "num_classes", json_integer(p->C));
  json_object_set_new(doc, "n_samples", json_integer(N));
  json_object_set_new(doc, "n_features", json_integer(D));
  json_object_set_new(doc, "n_train", json_integer(counts[0]));
  json_object_set_new(doc, "n_test", json_integer(counts[1]));
  json_object_set_new(fit, "iterations", json_integer(p->iterations));
  json_object_set_new(fit, "objective", cli_real(p->objective));
  json_object_set_new(fit, "converged", json_boolean(p->converged));
  if (!mdiff && po.solver == LH_PROBE_LBFGS)
    json_object_set_new(fit, "relative_gradient", cli_real(p->grad_norm));
  json_object_set_new(fit, "message", json_string(p->solver_message));
  json_object_set_new(fit, "seconds", json_real(t_fit));
  json_object_set_new(doc, "fit", fit);
  json_object_set_new(doc, "fit_metrics", metrics_json(&fm));
  json_object_set_new(doc, "predict_metrics", a.test > 0 ? metrics_json(&tm) : json_null());
  json_object_set_new(doc, "out", json_string(a.out));
  cli_emit_json(comm, doc);
done:
  lh_h5_out_discard(&o);
  lh_h5_close(&dd);
  lh_h5_close(&dl);
  lh_dmat_destroy(&X);
  lh_probe_destroy(&p);
  lh_free(y);
  lh_free(test);
  lh_free(train);
  return st;
}
