/*
 * cmd_similarity.c: `latenthook similarity`: the L x L matrix of CKA or information imbalance
 * over every (N, D) dataset of a group (e.g. the cached activations of every layer), written
 * to HDF5 and drawn as a heatmap.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/cka.h"
#include "latenthook/comm.h"
#include "latenthook/infoimb.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/plot.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook similarity --metric cka|information-imbalance\n"
    "                         --data FILE.h5:/group [--out OUT.h5] [--png FIG.png] [options]\n"
    "       mpiexec -n P latenthook similarity --metric ... --data F1.h5:/a --data F2.h5:/b ...\n\n"
    "Compares every pair of the (N, D) datasets in a group, e.g. the activations of every layer\n"
    "on the same N samples, with linear CKA (symmetric) or information imbalance (row a, column\n"
    "b: Delta(a -> b)). Each layer's statistics or neighbour lists are computed once. Prints\n"
    "  {\"metric\": ..., \"layers\": [...], \"matrix\": [[...], ...]}\n"
    "and with --out writes OUT.h5:/matrix (L x L) and a heatmap (FIG.png, or OUT.png).\n"
    "Datasets of the group that are not 2-D are skipped with a warning.\n\n"
    "Options:\n"
    "  --metric cka|information-imbalance   (required)\n"
    "  --data FILE.h5:/group     the group of datasets, in natural name order (required); or\n"
    "                            --data given twice or more: these datasets, in this order\n"
    "  --names A,B,...           the layers' names (default: the datasets' names)\n"
    "  --out OUT.h5              write the matrix; the heatmap goes beside it\n"
    "  --png FIG.png             where to draw the heatmap\n"
    "  --debiased                CKA: unbiased HSIC (needs N >= 4)\n"
    "  --p P, --k K              information imbalance: Minkowski p (default 2), neighbours k (1)\n" CLI_COMMON_HELP;

enum { OPT_METRIC = 1, OPT_DATA, OPT_OUT, OPT_PNG, OPT_DEBIASED, OPT_P, OPT_K, OPT_NAMES };

#define MAX_DATA 1024

typedef struct args {
  const char *metric, *out, *png;
  const char *data[MAX_DATA];
  int64_t ndata, nnames;
  char *names[MAX_DATA];
  bool debiased;
  double p;
  long long k;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_METRIC: a->metric = arg; return LH_OK;
    case OPT_DATA:
      if (a->ndata == MAX_DATA) return LH_ERROR(LH_ERR_USAGE, "--data: at most %d datasets", MAX_DATA);
      a->data[a->ndata++] = arg;
      return LH_OK;
    case OPT_NAMES: return cli_add_names("--names", arg, a->names, &a->nnames, MAX_DATA);
    case OPT_OUT: a->out = arg; return LH_OK;
    case OPT_PNG: a->png = arg; return LH_OK;
    case OPT_DEBIASED: a->debiased = true; return LH_OK;
    case OPT_P:
      if (strcmp(arg, "inf") == 0) {
        a->p = INFINITY;
        return LH_OK;
      }
      return cli_parse_double("--p", arg, &a->p);
    case OPT_K: return cli_parse_int("--k", arg, &a->k);
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

/* The last path component of a dataset address: the layer's name. */
static const char *leaf(const char *addr) {
  const char *s = strrchr(addr, '/');
  return s ? s + 1 : addr;
}

lh_status cmd_similarity(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK, local = LH_OK;
  static const struct option opts[] = {{"metric", required_argument, NULL, OPT_METRIC},
                                       {"data", required_argument, NULL, OPT_DATA},
                                       {"out", required_argument, NULL, OPT_OUT},
                                       {"png", required_argument, NULL, OPT_PNG},
                                       {"debiased", no_argument, NULL, OPT_DEBIASED},
                                       {"p", required_argument, NULL, OPT_P},
                                       {"k", required_argument, NULL, OPT_K},
                                       {"names", required_argument, NULL, OPT_NAMES},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.p = 2.0, .k = 1};
  char **names = NULL, png[4200] = "";
  int64_t count = 0, L = 0;
  lh_dmat **layers = NULL;
  const char **labels = NULL;
  double *M = NULL;
  lh_h5_out *o = NULL;
  int pos, rank;
  MPI_Comm_rank(comm, &rank);
  LH_TRY(cli_parse("similarity", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s' (see 'latenthook similarity --help')", argv[pos]);
  if (!a.metric || a.ndata == 0) LH_FAIL(LH_ERR_USAGE, "--metric and --data FILE.h5:/group are required");
  bool cka = strcmp(a.metric, "cka") == 0;
  if (!cka && strcmp(a.metric, "information-imbalance") != 0)
    LH_FAIL(LH_ERR_USAGE, "--metric must be cka or information-imbalance, got '%s'", a.metric);
  if (!(a.p >= 1)) LH_FAIL(LH_ERR_USAGE, "--p must be >= 1 or inf, got %g", a.p);
  if (a.k < 1) LH_FAIL(LH_ERR_USAGE, "--k must be at least 1, got %lld", a.k);
  if (a.png)
    snprintf(png, sizeof png, "%s", a.png);
  else if (a.out) { /* beside the output: OUT.h5 -> OUT.png */
    snprintf(png, sizeof png, "%s", a.out);
    char *dot = strrchr(png, '.'), *slash = strrchr(png, '/');
    if (dot && (!slash || dot > slash)) *dot = '\0';
    strncat(png, ".png", sizeof png - strlen(png) - 1);
  }

  if (a.ndata == 1) {
    LH_TRY(lh_h5_list(comm, a.data[0], &names, &count));
  } else { /* the datasets given, in order */
    LH_TRY(lh_agree(comm, lh_alloc((size_t)a.ndata, sizeof *names, true, "names", &names)));
    for (int64_t t = 0; t < a.ndata; t++) {
      size_t len = strlen(a.data[t]) + 1;
      local = lh_alloc(len, 1, false, "name", &names[count]);
      if (local != LH_OK) break;
      memcpy(names[count++], a.data[t], len);
    }
    LH_TRY(lh_agree(comm, local));
  }
  if (a.nnames > 0 && a.nnames != count)
    LH_FAIL(LH_ERR_USAGE, "--names gives %lld names for %lld datasets", (long long)a.nnames,
            (long long)count);
  local = lh_alloc((size_t)(count ? count : 1), sizeof *layers, true, "layers", &layers);
  if (local == LH_OK) local = lh_alloc((size_t)(count ? count : 1), sizeof *labels, true, "layers", &labels);
  LH_TRY(lh_agree(comm, local));
  int64_t N = -1;
  for (int64_t t = 0; t < count; t++) {
    lh_h5_dset *d = NULL;
    LH_TRY(lh_h5_open(comm, names[t], 0, &d));
    const lh_h5_info *in = lh_h5_dset_info(d);
    if (in->ndims != 2) {
      if (rank == 0) /* every rank sees the same datasets: say it once */
        lh_log_warn("similarity: skipping '%s' (shape with %d dimensions, expected (N, D))",
                  names[t], in->ndims);
      lh_h5_close(&d);
      continue;
    }
    if (N >= 0 && in->N != N) {
      int64_t n_here = in->N; /* read before the handle (which owns `in`) is closed */
      lh_h5_close(&d);
      LH_FAIL(LH_ERR_VALUE, "Expected matching sample counts, got %lld ('%s') and %lld ('%s')",
              (long long)N, labels[0], (long long)n_here, leaf(names[t]));
    }
    N = in->N;
    lh_status rs = lh_dmat_create(comm, in->natural, in->N, in->E, &layers[L]);
    if (rs == LH_OK) rs = lh_h5_read_dmat(d, 0, layers[L]);
    lh_h5_close(&d);
    LH_TRY(rs);
    labels[L++] = a.nnames > 0 ? a.names[t] : leaf(names[t]);
  }
  if (L < 2)
    LH_FAIL(LH_ERR_VALUE, "'%s' holds %lld (N, D) dataset%s; at least 2 are needed to compare",
            a.data[0], (long long)L, L == 1 ? "" : "s");
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(L * L), sizeof *M, false, "similarity matrix", &M)));
  if (cka) {
    lh_cka_opts co = lh_cka_defaults();
    co.debiased = a.debiased;
    LH_TRY(lh_cka_linear_matrix((const lh_dmat *const *)layers, L, &co, M));
  } else {
    lh_ii_opts io = lh_ii_defaults();
    io.p = a.p;
    io.k = a.k;
    LH_TRY(lh_ii_matrix((const lh_dmat *const *)layers, L, &io, M));
  }
  if (a.out) {
    int64_t dims[2] = {L, L};
    LH_TRY(lh_h5_out_create(comm, a.out, &o));
    LH_TRY(lh_h5_out_write_small(o, "/matrix", LH_F64, 2, dims, M));
    json_t *jl = json_array();
    for (int64_t t = 0; t < L; t++) json_array_append_new(jl, json_string(labels[t]));
    char *txt = json_dumps(jl, JSON_COMPACT);
    json_decref(jl);
    local = lh_h5_out_attr_string(o, "/matrix", "layers", txt ? txt : "[]");
    free(txt);
    LH_TRY(local);
    LH_TRY(lh_h5_out_attr_string(o, "/matrix", "metric", a.metric));
  }
  if (png[0]) { /* rank 0 draws; the others learn whether it worked */
    /* CKA on [0, 1]; information imbalance (small with few neighbours) up to its largest */
    double vmax = cka ? 1.0 : 0.0;
    for (int64_t t = 0; t < L * L; t++)
      if (isfinite(M[t]) && M[t] > vmax) vmax = M[t];
    if (!(vmax > 0)) vmax = 1.0;
    local = rank == 0 ? lh_plot_heatmap(png, L, L, M, labels, labels,
                                        cka ? (a.debiased ? "debiased linear CKA" : "linear CKA")
                                            : "information imbalance (row -> column)",
                                        cka ? "CKA" : "Delta", 0.0, vmax)
                      : LH_OK;
    LH_TRY(lh_agree(comm, local));
  }
  /* the matrix file is committed last: a failed heatmap leaves no output behind */
  if (o) LH_TRY(lh_h5_out_commit(&o));
  json_t *doc = json_object();
  json_object_set_new(doc, "metric", json_string(a.metric));
  json_t *jl = json_array(), *jm = json_array();
  for (int64_t r = 0; r < L; r++) {
    json_array_append_new(jl, json_string(labels[r]));
    json_t *row = json_array();
    for (int64_t c = 0; c < L; c++) json_array_append_new(row, cli_real(M[r * L + c]));
    json_array_append_new(jm, row);
  }
  json_object_set_new(doc, "layers", jl);
  json_object_set_new(doc, "matrix", jm);
  json_object_set_new(doc, "n_points", json_integer(N));
  if (png[0]) json_object_set_new(doc, "png", json_string(png));
  cli_emit_json(comm, doc);
done:
  lh_h5_out_discard(&o);
  for (int64_t t = 0; layers && t < L; t++) lh_dmat_destroy(&layers[t]);
  lh_free(layers);
  lh_free(labels);
  lh_free(M);
  lh_h5_list_free(names, count);
  for (int64_t t = 0; t < a.nnames; t++) lh_free(a.names[t]);
  return st;
}
