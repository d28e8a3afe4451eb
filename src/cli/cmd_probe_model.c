/*
 * cmd_probe_model.c: `latenthook probe --model PATH --inputs F:/x --labels F:/y
 * --key-pattern REGEX ...`: tdhook's Probing context with a ProbeManager (SPEC 2.5, 3.1,
 * 3.2) over the data-parallel hooked forward pass, plus control tasks and selectivity
 * (Hewitt & Liang 2019) and a per-layer curve.
 *
 * One caching pass (lh_cache_run) keeps, for every module Probing selects (probing.h) and
 * every direction, the reduced activations of all samples as a distributed matrix; then each
 * "<module>_<direction>" gets its estimator from a ProbeManager (probe_manager.h): a fit step
 * on the train rows and a predict step on the test rows of the split by global sample index
 * (lh_probe_split), exactly as `latenthook probe --data` fits one matrix, so each probe
 * equals that command run on the activations `latenthook cache` writes. Memory per rank: the
 * local rows of every selected module's reduced activations (what --reduce leaves).
 *
 * With --estimator low-rank-bilinear --pair H1,H2 the manager is a BilinearProbeManager and
 * the probes are pair probes "<h1>_<h2>_<direction>" (cmd_probe_pairs.c); the pass, labels and
 * split are the same.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd_probe_pairs.h"
#include "core/check.h"
#include "latenthook/bilinear.h"
#include "latenthook/bilinear_manager.h"
#include "latenthook/cache.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/model.h"
#include "latenthook/plot.h"
#include "latenthook/probe.h"
#include "latenthook/probe_manager.h"
#include "latenthook/probing.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook probe --model PATH --inputs FILE.h5:/x --labels FILE.h5:/y\n"
    "                 --key-pattern REGEX --estimator linear|mean-difference --out OUT.h5\n"
    "                 [options]\n"
    "       mpiexec -n P latenthook probe --model PATH --inputs FILE.h5:/x --labels FILE.h5:/y\n"
    "                 --estimator low-rank-bilinear --pair H1,H2 [--pair ...] --out OUT.h5\n"
    "                 [options]\n\n"
    "Probing (tdhook's Probing context with a ProbeManager) over the hooked forward pass: the\n"
    "model runs over every row of the inputs (rows split over the ranks), and for every module\n"
    "whose name re.match()es REGEX (anchored at the start only; containers ModuleList and\n"
    "Sequential are skipped, as Probing's default classes_to_skip) and every direction, a probe\n"
    "\"<module>_<direction>\" is fitted on the module's activations (reduced by --reduce, then\n"
    "flattened per sample) on a train part chosen by a hash of (seed, sample index) and scored\n"
    "on the train part (fit_metrics) and the test part (predict_metrics). Each probe equals\n"
    "`latenthook probe --data` run on what `latenthook cache` writes for that module. Writes\n"
    "OUT.h5:/<key>/coef (C x D) and /<key>/intercept (C), prints one JSON document\n"
    "{\"fit_metrics\": {key: ...}, \"predict_metrics\": {key: ...}, ...} and a table on stderr.\n"
    "The result is the same on any number of ranks.\n\n"
    "Pairs (tdhook's BilinearProbeManager): with --estimator low-rank-bilinear, each --pair\n"
    "H1,H2 (module names as Probing sees them; H1 = H2 allowed) gets one LowRankBilinearEstimator\n"
    "\"<H1>_<H2>_<direction>\" fitted on the two modules' activations, which equals `latenthook\n"
    "probe --data F:/H1 --data2 F:/H2 --estimator low-rank-bilinear` on what `latenthook cache`\n"
    "writes for them. The modules hooked are the manager's key_pattern (each member escaped,\n"
    "anchored with '$', joined by '|'), or --key-pattern when given (Probing's own argument).\n"
    "tdhook's errors: a pair whose other member never arrives (not hooked, a container, never\n"
    "called) -> \"Bilinear probes still waiting on keys: [...]\"; two pairs with the same key\n"
    "string -> \"Probe <key> already exists\"; a pair listed twice is fed twice (a self pair\n"
    "then -> \"Metrics for <key> already exist\"). Writes OUT.h5:/<key>/U, /u, /V, /v, /b.\n\n"
    "Options (the estimator options are those of `latenthook probe --data`):\n"
    "  --model PATH            a model YAML file or a Hugging Face GPT-2 folder (required)\n"
    "  --inputs FILE.h5:/x     (N, F) float features or (N, T) token ids (required)\n"
    "  --labels FILE.h5:/y     one label per sample, (N,) or (N, 1) (required)\n"
    "  --key-pattern REGEX     modules to probe (required, except with --pair)\n"
    "  --pair H1,H2            a pair of modules for --estimator low-rank-bilinear (repeat for\n"
    "                          several pairs, at most 64)\n"
    "  --absolute              names as seen from tdhook's HookedModule (td_module.module.<name>)\n"
    "  --direction D           fwd (module output, default) or fwd_pre (module input); twice\n"
    "                          (or fwd,fwd_pre) for both\n"
    "  --reduce R              none (default: the whole activation, flattened), mean, last,\n"
    "                          position:I, flatten (see `latenthook cache --help`)\n"
    "  --forward-batch-size B  samples per forward on each rank (default 32)\n"
    "  --estimator E           linear, mean-difference or low-rank-bilinear (required)\n"
    "  --num-classes C, --solver S, --l2 L, --test-fraction F, --seed S, --epochs E,\n"
    "  --batch-size B, --lr R, --max-iter M, --tol T, --no-normalize, --no-bias, --rank 1\n"
    "                          as with --data (--data2 for low-rank-bilinear)\n"
    "  --control-task          also fit, per key, a probe on control labels (Hewitt & Liang\n"
    "                          2019) and report selectivity = task - control test accuracy\n"
    "                          (R^2 for regression). Token inputs: the control label is a\n"
    "                          seeded random class in [0, C) of the token id at the probed\n"
    "                          position (the --reduce position; the last position for none,\n"
    "                          mean and flatten), so it depends only on the word type\n"
    "                          (classifiers only). Float inputs: the task labels permuted over\n"
    "                          the samples by a seeded permutation of the sample indices.\n"
    "                          Needs --test-fraction > 0.\n"
    "  --png FILE.png          a curve of the test accuracy (R^2 for regression) per key, in\n"
    "                          model order, with the control accuracy when given; needs\n"
    "                          --test-fraction > 0\n"
    "  --out OUT.h5            output file (required)\n" CLI_COMMON_HELP;

enum {
  OPT_MODEL = 1,
  OPT_INPUTS,
  OPT_LABELS,
  OPT_PATTERN,
  OPT_ABSOLUTE,
  OPT_DIRECTION,
  OPT_REDUCE,
  OPT_FBATCH,
  OPT_ESTIMATOR,
  OPT_CLASSES,
  OPT_SOLVER,
  OPT_L2,
  OPT_TEST,
  OPT_SEED,
  OPT_EPOCHS,
  OPT_BATCH,
  OPT_LR,
  OPT_MAXITER,
  OPT_TOL,
  OPT_NONORM,
  OPT_CONTROL,
  OPT_PNG,
  OPT_OUT,
  OPT_PAIR,
  OPT_NOBIAS,
  OPT_RANK
};

#define MAX_PAIRS 64

typedef struct args {
  const char *model, *inputs, *labels, *estimator, *solver, *out, *png;
  lh_cache_opts co;
  bool dir_given, control, nonorm;
  long long classes, seed, epochs, batch, maxiter, fbatch;
  double l2, test, lr, tol;
  const char *pairs[MAX_PAIRS][2]; /* low-rank-bilinear: into pairbuf */
  char *pairbuf[MAX_PAIRS];
  int64_t npairs;
  bool nobias;
  long long rank;
} args;

static lh_status add_dir(args *a, const char *s) {
  lh_hook_dir d;
  if (lh_hook_dir_parse(s, &d) != LH_OK) {
    lh_error_clear();
    return LH_ERROR(LH_ERR_USAGE, "--direction: Invalid direction: '%s' (expected fwd or fwd_pre)",
                    s);
  }
  if (!a->dir_given) a->co.ndirs = 0;
  a->dir_given = true;
  for (int i = 0; i < a->co.ndirs; i++)
    if (a->co.dirs[i] == d) return LH_ERROR(LH_ERR_USAGE, "--direction %s given twice", s);
  if (a->co.ndirs == LH_CACHE_MAX_DIRS)
    return LH_ERROR(LH_ERR_USAGE, "--direction: at most fwd and fwd_pre");
  a->co.dirs[a->co.ndirs++] = d;
  return LH_OK;
}

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_MODEL: a->model = arg; return LH_OK;
    case OPT_INPUTS: a->inputs = arg; return LH_OK;
    case OPT_LABELS: a->labels = arg; return LH_OK;
    case OPT_PATTERN: a->co.key_pattern = arg; return LH_OK;
    case OPT_ABSOLUTE: a->co.relative = false; return LH_OK;
    case OPT_ESTIMATOR: a->estimator = arg; return LH_OK;
    case OPT_SOLVER: a->solver = arg; return LH_OK;
    case OPT_OUT: a->out = arg; return LH_OK;
    case OPT_PNG: a->png = arg; return LH_OK;
    case OPT_NONORM: a->nonorm = true; return LH_OK;
    case OPT_CONTROL: a->control = true; return LH_OK;
    case OPT_NOBIAS:
      a->nobias = true;
      return LH_OK;
    case OPT_RANK:
      return cli_parse_int("--rank", arg, &a->rank);
    case OPT_PAIR: {
      if (a->npairs == MAX_PAIRS)
        return LH_ERROR(LH_ERR_USAGE, "--pair: at most %d pairs", MAX_PAIRS);
      const int64_t k = a->npairs;
      lh_status st = probe_pairs_parse(arg, &a->pairbuf[k], &a->pairs[k][0], &a->pairs[k][1]);
      if (st == LH_OK) a->npairs++;
      return st;
    }
    case OPT_REDUCE: return lh_reduce_parse(arg, &a->co.reduce);
    case OPT_DIRECTION: {
      char buf[64];
      snprintf(buf, sizeof buf, "%s", arg);
      char *comma = strchr(buf, ',');
      if (comma) *comma = '\0';
      lh_status st = add_dir(a, buf);
      if (st == LH_OK && comma) st = add_dir(a, comma + 1);
      return st;
    }
    case OPT_FBATCH: return cli_parse_int("--forward-batch-size", arg, &a->fbatch);
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

/* The options of low-rank-bilinear pair probes, checked as `probe --data --data2` checks
 * them. */
static lh_status bilinear_opts(const args *a, lh_bilinear_opts *bo) {
  lh_status st = LH_OK;
  if (a->npairs < 1)
    LH_FAIL(LH_ERR_USAGE,
            "--estimator low-rank-bilinear with --model needs --pair H1,H2 (the "
            "two modules of each bilinear probe)");
  if (a->rank != 1)
    LH_FAIL(LH_ERR_USAGE,
            "--rank: tdhook's LowRankBilinearEstimator is rank 1 per output "
            "unit (SPEC 3.8); only --rank 1 is supported, got %lld",
            a->rank);
  if (a->solver && strcmp(a->solver, "adam") != 0)
    LH_FAIL(LH_ERR_USAGE, "--estimator low-rank-bilinear trains with adam only, got --solver %s",
            a->solver);
  if (a->l2 != 0) LH_FAIL(LH_ERR_USAGE, "--l2 does not apply to --estimator low-rank-bilinear");
  if (a->nonorm)
    LH_FAIL(LH_ERR_USAGE, "--no-normalize applies to --estimator mean-difference only");
  if (a->control || a->png)
    LH_FAIL(LH_ERR_USAGE,
            "--control-task and --png apply to the per-module probes (--estimator "
            "linear or mean-difference), not to --pair");
  if (a->classes != -1 && a->classes < 2)
    LH_FAIL(LH_ERR_USAGE, "--num-classes must be >= 2, got %lld", a->classes);
  bo->num_classes = a->classes == -1 ? 0 : a->classes;
  bo->bias = !a->nobias;
  bo->seed = (uint64_t)a->seed;
  bo->epochs = a->epochs;
  bo->batch_size = a->batch;
  bo->lr = a->lr;
done:
  return st;
}

/* The estimator options, checked as `probe --data` checks them. */
static lh_status estimator_opts(const args *a, lh_probe_opts *po, lh_bilinear_opts *bo) {
  lh_status st = LH_OK;
  if (!a->estimator)
    LH_FAIL(LH_ERR_USAGE, "--estimator linear|mean-difference|low-rank-bilinear is required");
  const bool mdiff = strcmp(a->estimator, "mean-difference") == 0;
  const bool bil = strcmp(a->estimator, "low-rank-bilinear") == 0;
  if (!mdiff && !bil && strcmp(a->estimator, "linear") != 0)
    LH_FAIL(LH_ERR_USAGE,
            "--estimator must be linear, mean-difference or low-rank-bilinear "
            "with --model, got '%s'",
            a->estimator);
  if (!bil && (a->npairs || a->nobias))
    LH_FAIL(LH_ERR_USAGE, "--pair and --no-bias apply to --estimator low-rank-bilinear only");
  if (!bil && a->rank != 1)
    LH_FAIL(LH_ERR_USAGE, "--rank applies to --estimator low-rank-bilinear only");
  if (bil) {
    LH_TRY(bilinear_opts(a, bo));
  } else if (mdiff) {
    if (a->classes != -1 && a->classes != 2)
      LH_FAIL(LH_ERR_USAGE, "--estimator mean-difference is binary: --num-classes must be 2 "
              "(or absent), got %lld", a->classes);
    if (a->solver) LH_FAIL(LH_ERR_USAGE, "--solver applies to --estimator linear only");
    po->kind = LH_PROBE_MEAN_DIFFERENCE;
    po->normalize = !a->nonorm;
    po->num_classes = 2;
  } else {
    if (a->classes != -1 && a->classes < 2)
      LH_FAIL(LH_ERR_USAGE, "--num-classes must be >= 2, got %lld", a->classes);
    po->kind = a->classes == -1 ? LH_PROBE_REGRESSOR : LH_PROBE_CLASSIFIER;
    po->num_classes = a->classes == -1 ? 1 : a->classes;
    const char *s = a->solver ? a->solver : "adam";
    if (strcmp(s, "adam") == 0)
      po->solver = LH_PROBE_ADAM;
    else if (strcmp(s, "lbfgs") == 0)
      po->solver = LH_PROBE_LBFGS;
    else if (strcmp(s, "ridge") == 0)
      po->solver = LH_PROBE_RIDGE;
    else
      LH_FAIL(LH_ERR_USAGE, "--solver must be adam, lbfgs or ridge, got '%s'", s);
    if (po->solver == LH_PROBE_RIDGE && po->kind == LH_PROBE_CLASSIFIER)
      LH_FAIL(LH_ERR_USAGE, "--solver ridge fits regression only (no --num-classes); use lbfgs "
              "or adam for a classifier");
  }
  if (!(a->test >= 0 && a->test < 1))
    LH_FAIL(LH_ERR_USAGE, "--test-fraction must be in [0, 1), got %g", a->test);
  if (!(a->l2 >= 0) || !isfinite(a->l2)) LH_FAIL(LH_ERR_USAGE, "--l2 must be >= 0, got %g", a->l2);
  if (a->epochs < 0) LH_FAIL(LH_ERR_USAGE, "--epochs must be >= 0, got %lld", a->epochs);
  if (a->batch < 1) LH_FAIL(LH_ERR_USAGE, "--batch-size must be >= 1, got %lld", a->batch);
  if (a->fbatch < 1)
    LH_FAIL(LH_ERR_USAGE, "--forward-batch-size must be >= 1, got %lld", a->fbatch);
  if (a->maxiter < 1) LH_FAIL(LH_ERR_USAGE, "--max-iter must be >= 1, got %lld", a->maxiter);
  if (!(a->lr > 0)) LH_FAIL(LH_ERR_USAGE, "--lr must be > 0, got %g", a->lr);
  if (!(a->tol > 0)) LH_FAIL(LH_ERR_USAGE, "--tol must be > 0, got %g", a->tol);
  if ((a->control || a->png) && !(a->test > 0))
    LH_FAIL(LH_ERR_USAGE, "--control-task and --png score the test part: --test-fraction must "
            "be > 0");
  po->l2 = a->l2;
  po->seed = (uint64_t)a->seed;
  po->epochs = a->epochs;
  po->batch_size = a->batch;
  po->lr = a->lr;
  po->max_iter = a->maxiter;
  po->tol = a->tol;
done:
  return st;
}

json_t *probe_metrics_json(const lh_probe_metrics *m) {
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

/* The score the curve and the selectivity use. */
static double score(const lh_probe_metrics *m) {
  return m ? (m->classification ? m->accuracy : m->r2) : NAN;
}

/* Fit and predict steps of every cache entry with one manager. */
static lh_status run_manager(lh_probe_manager *mgr, const lh_cache *c, const double *y,
                             const bool *train, const bool *test) {
  lh_status st = LH_OK;
  for (int64_t i = 0; i < lh_cache_count(c); i++) {
    char name[1024];
    snprintf(name, sizeof name, "%s", lh_cache_key(c, i)); /* nested: "<dir>/<module>" */
    char *slash = strchr(name, '/');
    if (!slash) LH_FAIL(LH_ERR_INTERNAL, "cache key '%s' has no direction", name);
    *slash = '\0';
    int64_t k;
    LH_TRY(lh_probe_manager_factory(mgr, slash + 1, name, &k));
    LH_TRY(lh_probe_manager_fit(mgr, k, lh_cache_matrix(c, i), y, train));
    if (test) LH_TRY(lh_probe_manager_predict(mgr, k, lh_cache_matrix(c, i), y, test));
  }
done:
  return st;
}

static lh_status write_probes(lh_h5_out *o, const lh_probe_manager *mgr, const char *sub) {
  lh_status st = LH_OK;
  for (int64_t i = 0; i < lh_probe_manager_count(mgr); i++) {
    const lh_probe *p = lh_probe_manager_probe(mgr, i);
    char path[1200];
    int64_t cd[2] = {p->C, p->D};
    snprintf(path, sizeof path, "/%s%s/coef", lh_probe_manager_key(mgr, i), sub);
    LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 2, cd, p->coef));
    snprintf(path, sizeof path, "/%s%s/intercept", lh_probe_manager_key(mgr, i), sub);
    LH_TRY(lh_h5_out_write_small(o, path, LH_F64, 1, &p->C, p->intercept));
  }
done:
  return st;
}

static json_t *metrics_dict(const lh_probe_manager *mgr, bool predict) {
  json_t *d = json_object();
  for (int64_t i = 0; i < lh_probe_manager_count(mgr); i++) {
    const char *k = lh_probe_manager_key(mgr, i);
    const lh_probe_metrics *m =
        predict ? lh_probe_manager_predict_metrics(mgr, k) : lh_probe_manager_fit_metrics(mgr, k);
    if (m) json_object_set_new(d, k, probe_metrics_json(m));
  }
  return d;
}

/* The per-key curve (rank 0). */
static lh_status draw(const args *a, const lh_probe_manager *mgr, const lh_probe_manager *ctl,
                      bool classification) {
  lh_status st = LH_OK;
  const int64_t K = lh_probe_manager_count(mgr);
  double *x = NULL, *y = NULL, *yc = NULL;
  const char **ticks = NULL;
  LH_TRY(lh_alloc((size_t)K, sizeof *x, false, "curve", &x));
  LH_TRY(lh_alloc((size_t)K, sizeof *y, false, "curve", &y));
  LH_TRY(lh_alloc((size_t)K, sizeof *yc, false, "curve", &yc));
  LH_TRY(lh_alloc((size_t)K, sizeof *ticks, false, "curve", &ticks));
  for (int64_t i = 0; i < K; i++) {
    const char *k = lh_probe_manager_key(mgr, i);
    x[i] = (double)i;
    ticks[i] = k;
    y[i] = score(lh_probe_manager_predict_metrics(mgr, k));
    yc[i] = ctl ? score(lh_probe_manager_predict_metrics(ctl, k)) : NAN;
  }
  lh_plot_series s[2] = {
      {.name = "task", .n = K, .x = x, .y = y, .yerr = NULL, .xticks = ticks},
      {.name = "control task", .n = K, .x = x, .y = yc, .yerr = NULL, .xticks = ticks}};
  char title[256];
  snprintf(title, sizeof title, "%s probe (%s) per module", a->estimator,
           a->co.key_pattern);
  LH_TRY(lh_plot_lines(a->png, title, "module_direction",
                       classification ? "test accuracy" : "test R^2", ctl ? 2 : 1, s));
done:
  lh_free(x);
  lh_free(y);
  lh_free(yc);
  lh_free(ticks);
  return st;
}

lh_status cmd_probe_model(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {{"model", required_argument, NULL, OPT_MODEL},
                                       {"inputs", required_argument, NULL, OPT_INPUTS},
                                       {"labels", required_argument, NULL, OPT_LABELS},
                                       {"key-pattern", required_argument, NULL, OPT_PATTERN},
                                       {"absolute", no_argument, NULL, OPT_ABSOLUTE},
                                       {"direction", required_argument, NULL, OPT_DIRECTION},
                                       {"reduce", required_argument, NULL, OPT_REDUCE},
                                       {"forward-batch-size", required_argument, NULL, OPT_FBATCH},
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
                                       {"control-task", no_argument, NULL, OPT_CONTROL},
                                       {"png", required_argument, NULL, OPT_PNG},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"pair", required_argument, NULL, OPT_PAIR},
                                       {"no-bias", no_argument, NULL, OPT_NOBIAS},
                                       {"rank", required_argument, NULL, OPT_RANK},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  lh_probe_opts po = lh_probe_defaults();
  args a = {.co = lh_cache_defaults(),
            .classes = -1,
            .seed = 0,
            .epochs = po.epochs,
            .batch = po.batch_size,
            .maxiter = po.max_iter,
            .fbatch = 32,
            .l2 = 0,
            .test = 0.2,
            .lr = po.lr,
            .tol = po.tol,
            .rank = 1};
  lh_bilinear_opts bo = lh_bilinear_defaults();
  lh_bilinear_manager *bm = NULL;
  const char *const(*pairs)[2] = (const char *const(*)[2])a.pairs;
  lh_model *m = NULL;
  lh_cache *c = NULL;
  lh_h5_out *o = NULL;
  lh_h5_dset *dl = NULL, *di = NULL;
  lh_probe_manager *mgr = NULL, *ctl = NULL;
  char **names = NULL, *exact = NULL;
  int64_t nnames = 0;
  double *y = NULL, *yc = NULL, *yall = NULL, *tok = NULL;
  int64_t *types = NULL;
  bool *test = NULL, *train = NULL, png_written = false;
  int rank, pos;
  MPI_Comm_rank(comm, &rank);

  LH_TRY(cli_parse("probe", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc)
    LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook probe --help')", argv[pos]);
  if (!a.model) LH_FAIL(LH_ERR_USAGE, "--model PATH is required (a YAML file or a GPT-2 folder)");
  if (!a.inputs) LH_FAIL(LH_ERR_USAGE, "--inputs FILE.h5:/dataset is required with --model");
  if (!a.labels) LH_FAIL(LH_ERR_USAGE, "--labels FILE.h5:/y is required");
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out OUT.h5 is required");
  LH_TRY(estimator_opts(&a, &po, &bo));
  if (!a.co.key_pattern && !a.npairs)
    LH_FAIL(LH_ERR_USAGE, "--key-pattern REGEX is required with --model (the modules to probe)");
  if (a.npairs) { /* BilinearProbeManager(pairs, ...), Probing(manager.key_pattern, ...) */
    LH_TRY(lh_bilinear_manager_create(a.npairs, pairs, &bo, false, &bm));
    if (!a.co.key_pattern) a.co.key_pattern = lh_bilinear_manager_key_pattern(bm);
  }
  if (rank == 0 && a.png) { /* the figure's folder must be writable before the pass */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", a.png);
    char *sl = strrchr(dir, '/');
    if (sl) *sl = '\0';
    if (access(sl ? (dir[0] ? dir : "/") : ".", W_OK | X_OK) != 0)
      local = LH_ERROR(LH_ERR_IO, "--png '%s': the folder is missing or not writable", a.png);
  }
  LH_TRY(lh_agree(comm, local));

  local = lh_model_load(a.model, &m);
  if (local != LH_OK) lh_error_prefix("--model: ");
  LH_TRY(lh_agree(comm, local));
  const bool tokens = lh_model_input_kind(m) == LH_INPUT_TOKENS;
  if (a.control && tokens && po.kind == LH_PROBE_REGRESSOR)
    LH_FAIL(LH_ERR_USAGE, "--control-task with token inputs draws control classes: it needs a "
            "classifier (--num-classes C or --estimator mean-difference)");
  LH_TRY(lh_agree(comm, lh_probing_select(m, a.co.key_pattern, a.co.relative, &names, &nnames,
                                          &exact)));
  if (bm) { /* the pair members among the hooked modules; Probing's enter */
    local = probe_pairs_select(a.npairs, pairs, a.co.key_pattern, names, &nnames, &exact);
    if (local == LH_OK) local = probe_pairs_enter(bm, &a.co, names, nnames);
    LH_TRY(lh_agree(comm, local));
  }
  LH_TRY(lh_h5_open(comm, a.inputs, 0, &di));
  LH_TRY(lh_h5_open(comm, a.labels, 0, &dl));
  const lh_h5_info *ii = lh_h5_dset_info(di), *il = lh_h5_dset_info(dl);
  if (il->E != 1)
    LH_FAIL(LH_ERR_VALUE, "--labels: expected one label per sample, shape (N,) or (N, 1), got "
            "%lld values per sample", (long long)il->E);
  if (il->N != ii->N)
    LH_FAIL(LH_ERR_VALUE, "--labels has %lld samples but --inputs has %lld", (long long)il->N,
            (long long)ii->N);
  const int64_t N = ii->N, T = ii->E;
  LH_TRY(lh_h5_out_create(comm, a.out, &o)); /* fails early on an unwritable folder */

  lh_cache_opts co = a.co;
  co.key_pattern = exact;
  co.nested_keys = true; /* keys "<dir>/<module>" */
  co.keep_output = false;
  co.batch_size = a.fbatch;
  co.progress = cc->progress;
  double t0 = MPI_Wtime();
  LH_TRY(lh_cache_run(comm, m, a.inputs, &co, &c));
  const double t_forward = MPI_Wtime() - t0;
  if (lh_cache_count(c) < 1)
    LH_FAIL(LH_ERR_VALUE, "--key-pattern '%s': no selected module was called in the forward",
            a.co.key_pattern);
  const lh_dmat *X0 = lh_cache_matrix(c, 0);
  const int64_t n = lh_dmat_local_rows(X0), row0 = lh_dmat_row_offset(X0);

  local = lh_alloc((size_t)n, sizeof *y, false, "labels", &y);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *yc, false, "control labels", &yc);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *test, false, "split", &test);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *train, false, "split", &train);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_h5_read_rows(dl, 0, row0, n, LH_F64, y));
  if (po.kind == LH_PROBE_MEAN_DIFFERENCE) {
    for (int64_t i = 0; i < n && local == LH_OK; i++)
      if (y[i] != 0 && y[i] != 1)
        local = LH_ERROR(LH_ERR_VALUE, "--estimator mean-difference needs labels 0 or 1, got "
                         "%g at sample %lld", y[i], (long long)(row0 + i));
    LH_TRY(lh_agree(comm, local));
  }
  int64_t ctl_pos = -1;
  if (a.control && tokens) { /* the word type at the probed position */
    ctl_pos = a.co.reduce.kind == LH_REDUCE_POSITION
                  ? (a.co.reduce.position < 0 ? T + a.co.reduce.position : a.co.reduce.position)
                  : T - 1;
    local = lh_alloc((size_t)(n * T), sizeof *tok, false, "token ids", &tok);
    if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *types, false, "token ids", &types);
    LH_TRY(lh_agree(comm, local));
    LH_TRY(lh_h5_read_rows(di, 0, row0, n, LH_F64, tok));
    for (int64_t i = 0; i < n; i++) types[i] = (int64_t)tok[i * T + ctl_pos];
    lh_probe_control_tokens((uint64_t)a.seed, po.num_classes, n, types, yc);
  } else if (a.control) { /* float inputs: the labels permuted over the samples */
    local = lh_alloc((size_t)N, sizeof *yall, false, "all labels", &yall);
    LH_TRY(lh_agree(comm, local));
    LH_TRY(lh_h5_read_rows(dl, 0, 0, N, LH_F64, yall));
    LH_TRY(lh_agree(comm, lh_probe_control_permuted((uint64_t)a.seed, N, yall, row0, n, yc)));
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

  char rbuf[32];
  t0 = MPI_Wtime();
  if (bm) { /* the pair probes: fit, write, report */
    LH_TRY(probe_pairs_run(bm, &co, names, nnames, c, y, train, a.test > 0 ? test : NULL, a.npairs,
                           pairs));
    const double t_pairs = MPI_Wtime() - t0;
    LH_TRY(probe_pairs_write(o, bm));
    LH_TRY(lh_h5_out_attr_string(o, "/", "estimator", a.estimator));
    LH_TRY(lh_h5_out_attr_string(o, "/", "solver", "adam"));
    LH_TRY(lh_h5_out_attr_string(o, "/", "key_pattern", a.co.key_pattern));
    LH_TRY(lh_h5_out_commit(&o));
    json_t *doc = json_object();
    json_object_set_new(doc, "estimator", json_string(a.estimator));
    json_object_set_new(doc, "task", json_string(bo.num_classes ? "classification" : "regression"));
    json_object_set_new(doc, "solver", json_string("adam"));
    if (bo.num_classes) json_object_set_new(doc, "num_classes", json_integer(bo.num_classes));
    json_object_set_new(doc, "bias", json_boolean(bo.bias));
    json_object_set_new(doc, "key_pattern", json_string(a.co.key_pattern));
    json_object_set_new(doc, "reduce",
                        json_string(lh_reduce_name(&a.co.reduce, rbuf, sizeof rbuf)));
    json_object_set_new(doc, "n_samples", json_integer(N));
    json_object_set_new(doc, "n_train", json_integer(counts[0]));
    json_object_set_new(doc, "n_test", json_integer(counts[1]));
    probe_pairs_report(bm, a.test > 0, doc);
    json_object_set_new(doc, "seconds_forward", json_real(t_forward));
    json_object_set_new(doc, "seconds_fit", json_real(t_pairs));
    json_object_set_new(doc, "out", json_string(a.out));
    cli_emit_json(comm, doc);
    goto done;
  }
  LH_TRY(lh_probe_manager_create(&po, false, &mgr));
  LH_TRY(run_manager(mgr, c, y, train, a.test > 0 ? test : NULL));
  if (a.control) {
    LH_TRY(lh_probe_manager_create(&po, false, &ctl));
    LH_TRY(run_manager(ctl, c, yc, train, test));
  }
  const double t_fit = MPI_Wtime() - t0;
  LH_TRY(write_probes(o, mgr, ""));
  if (ctl) LH_TRY(write_probes(o, ctl, "/control"));
  const bool mdiff = po.kind == LH_PROBE_MEAN_DIFFERENCE;
  const char *solver = mdiff ? "closed form" : po.solver == LH_PROBE_ADAM ? "adam"
                                            : po.solver == LH_PROBE_LBFGS ? "lbfgs" : "ridge";
  LH_TRY(lh_h5_out_attr_string(o, "/", "estimator", a.estimator));
  LH_TRY(lh_h5_out_attr_string(o, "/", "solver", solver));
  LH_TRY(lh_h5_out_attr_string(o, "/", "key_pattern", a.co.key_pattern));
  if (a.png) {
    local = rank == 0 ? draw(&a, mgr, ctl, po.kind != LH_PROBE_REGRESSOR) : LH_OK;
    LH_TRY(lh_agree(comm, local));
    png_written = true;
  }
  LH_TRY(lh_h5_out_commit(&o));
  png_written = false; /* it goes with the file from now on */

  const bool cls = po.kind != LH_PROBE_REGRESSOR;
  json_t *doc = json_object(), *keys = json_array(), *dims = json_object(), *fits = json_object();
  json_object_set_new(doc, "estimator", json_string(a.estimator));
  json_object_set_new(doc, "task", json_string(cls ? "classification" : "regression"));
  json_object_set_new(doc, "solver", json_string(solver));
  if (po.kind == LH_PROBE_CLASSIFIER) json_object_set_new(doc, "num_classes", json_integer(po.num_classes));
  json_object_set_new(doc, "key_pattern", json_string(a.co.key_pattern));
  json_object_set_new(doc, "reduce", json_string(lh_reduce_name(&a.co.reduce, rbuf, sizeof rbuf)));
  json_object_set_new(doc, "n_samples", json_integer(N));
  json_object_set_new(doc, "n_train", json_integer(counts[0]));
  json_object_set_new(doc, "n_test", json_integer(counts[1]));
  for (int64_t i = 0; i < lh_probe_manager_count(mgr); i++) {
    const char *k = lh_probe_manager_key(mgr, i);
    const lh_probe *p = lh_probe_manager_probe(mgr, i);
    json_t *f = json_object();
    json_array_append_new(keys, json_string(k));
    json_object_set_new(dims, k, json_integer(p->D));
    json_object_set_new(f, "iterations", json_integer(p->iterations));
    json_object_set_new(f, "objective", cli_real(p->objective));
    json_object_set_new(f, "converged", json_boolean(p->converged));
    json_object_set_new(f, "message", json_string(p->solver_message));
    json_object_set_new(fits, k, f);
  }
  json_object_set_new(doc, "keys", keys);
  json_object_set_new(doc, "n_features", dims);
  json_object_set_new(doc, "fit", fits);
  json_object_set_new(doc, "fit_metrics", metrics_dict(mgr, false));
  json_object_set_new(doc, "predict_metrics", a.test > 0 ? metrics_dict(mgr, true) : json_null());
  if (ctl) {
    json_t *cj = json_object(), *sel = json_object();
    char what[96];
    if (tokens)
      snprintf(what, sizeof what, "word type at position %lld", (long long)ctl_pos);
    else
      snprintf(what, sizeof what, "labels permuted over the samples");
    json_object_set_new(cj, "labels", json_string(what));
    json_object_set_new(cj, "fit_metrics", metrics_dict(ctl, false));
    json_object_set_new(cj, "predict_metrics", metrics_dict(ctl, true));
    json_object_set_new(doc, "control", cj);
    for (int64_t i = 0; i < lh_probe_manager_count(mgr); i++) {
      const char *k = lh_probe_manager_key(mgr, i);
      json_object_set_new(sel, k, cli_real(score(lh_probe_manager_predict_metrics(mgr, k)) -
                                           score(lh_probe_manager_predict_metrics(ctl, k))));
    }
    json_object_set_new(doc, "selectivity", sel);
  }
  json_object_set_new(doc, "seconds_forward", json_real(t_forward));
  json_object_set_new(doc, "seconds_fit", json_real(t_fit));
  if (a.png) json_object_set_new(doc, "png", json_string(a.png));
  json_object_set_new(doc, "out", json_string(a.out));

  /* the table (stderr, rank 0) */
  const char *sc = cls ? "acc" : "R2";
  lh_log_info("%-40s %6s  train %-4s  test %-4s%s", "probe", "D", sc, sc,
              ctl ? "  control  selectivity" : "");
  for (int64_t i = 0; i < lh_probe_manager_count(mgr); i++) {
    const char *k = lh_probe_manager_key(mgr, i);
    double tr = score(lh_probe_manager_fit_metrics(mgr, k));
    double te = score(lh_probe_manager_predict_metrics(mgr, k));
    if (ctl) {
      double cte = score(lh_probe_manager_predict_metrics(ctl, k));
      lh_log_info("%-40s %6lld  %9.4f  %8.4f  %7.4f  %11.4f", k,
                  (long long)lh_probe_manager_probe(mgr, i)->D, tr, te, cte, te - cte);
    } else {
      lh_log_info("%-40s %6lld  %9.4f  %8.4f", k, (long long)lh_probe_manager_probe(mgr, i)->D,
                  tr, te);
    }
  }
  cli_emit_json(comm, doc);
done:
  if (png_written && rank == 0) unlink(a.png); /* no figure without its file */
  lh_h5_out_discard(&o);
  lh_h5_close(&di);
  lh_h5_close(&dl);
  lh_cache_destroy(&c);
  lh_model_destroy(&m);
  lh_probe_manager_destroy(&mgr);
  lh_probe_manager_destroy(&ctl);
  lh_bilinear_manager_destroy(&bm);
  for (int64_t k = 0; k < a.npairs; k++) lh_free(a.pairbuf[k]);
  lh_probing_select_free(names, nnames, exact);
  lh_free(y);
  lh_free(yc);
  lh_free(yall);
  lh_free(tok);
  lh_free(types);
  lh_free(test);
  lh_free(train);
  return st;
}
