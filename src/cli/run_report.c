/*
 * run_report.c: the figures of a batch run (run.h): intrinsic dimension per layer, probe
 * accuracy per layer and a histogram of the local dimensions of each layer. The CKA and
 * information-imbalance heatmaps are drawn by their steps (`similarity --png`).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <hdf5.h>

#include "cli/run.h"
#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/plot.h"

/* results[kind][layer][key] (or [key][sub]) as a number, NaN if absent. */
static double value_at(json_t *results, const char *kind, const char *layer, const char *key,
                       const char *sub) {
  json_t *v = json_object_get(json_object_get(json_object_get(results, kind), layer), key);
  if (sub) v = json_object_get(v, sub);
  return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Reads DIR/results/local_knn/<layer>.h5:/dimension (N float32) into a new array. Local. */
static lh_status read_local_dims(const char *dir, const run_layer *l, double **out, int64_t *n) {
  lh_status st = LH_OK;
  char path[RUN_PATH + 600];
  float *buf = NULL;
  double *v = NULL;
  hid_t f = -1, d = -1, sp = -1;
  snprintf(path, sizeof path, "%s/results/local_knn/%s.h5", dir, l->file_name);
  H5E_BEGIN_TRY {
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f >= 0) d = H5Dopen2(f, "/dimension", H5P_DEFAULT);
  }
  H5E_END_TRY;
  if (d < 0)
    LH_FAIL(LH_ERR_IO, "cannot read '%s:/dimension' for the local-dimension histogram", path);
  sp = H5Dget_space(d);
  hssize_t count = H5Sget_simple_extent_npoints(sp);
  if (count < 0) LH_FAIL(LH_ERR_IO, "cannot read the shape of '%s:/dimension'", path);
  LH_TRY(lh_alloc((size_t)count, sizeof *buf, false, "local dimensions", &buf));
  LH_TRY(lh_alloc((size_t)count, sizeof *v, false, "local dimensions", &v));
  if (count > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    LH_FAIL(LH_ERR_IO, "cannot read '%s:/dimension'", path);
  for (hssize_t i = 0; i < count; i++) v[i] = buf[i];
  *out = v;
  *n = (int64_t)count;
  v = NULL;
done:
  lh_free(buf);
  lh_free(v);
  if (sp >= 0) H5Sclose(sp);
  if (d >= 0) H5Dclose(d);
  if (f >= 0) H5Fclose(f);
  return st;
}

lh_status run_report_plots(const run_report_in *in, json_t **plots) {
  lh_status st = LH_OK;
  json_t *figs = json_array();
  int64_t L = in->nlayers;
  double *x = NULL, *y[4] = {NULL, NULL, NULL, NULL}, *dims = NULL;
  const char **ticks = NULL;
  char path[RUN_PATH + 600];
  LH_TRY(lh_alloc((size_t)(L ? L : 1), sizeof *x, false, "report", &x));
  LH_TRY(lh_alloc((size_t)(L ? L : 1), sizeof *ticks, true, "report", &ticks));
  for (int k = 0; k < 4; k++)
    LH_TRY(lh_alloc((size_t)(L ? L : 1), sizeof *y[k], false, "report", &y[k]));
  snprintf(path, sizeof path, "%s/plots", in->dir);
  if (mkdir(path, 0777) != 0 && errno != EEXIST)
    LH_FAIL(LH_ERR_IO, "cannot create folder '%s': %s", path, strerror(errno));
  for (int64_t i = 0; i < L; i++) {
    x[i] = (double)i;
    ticks[i] = in->layers[i].name;
  }
  const job_analyses *an = in->jf->analyses;
  if (an && (an->twonn || an->local_knn)) {
    lh_plot_series s[3];
    int ns = 0;
    for (int64_t i = 0; i < L; i++) {
      const char *n = in->layers[i].name;
      y[0][i] = value_at(in->results, "twonn", n, "dimension", NULL);
      y[1][i] = value_at(in->results, "local_knn", n, "mean", NULL);
      y[2][i] = value_at(in->results, "local_knn", n, "median", NULL);
    }
    if (an->twonn) s[ns++] = (lh_plot_series){"TwoNN", L, x, y[0], NULL, ticks};
    if (an->local_knn) {
      s[ns++] = (lh_plot_series){"local kNN, mean", L, x, y[1], NULL, ticks};
      s[ns++] = (lh_plot_series){"local kNN, median", L, x, y[2], NULL, ticks};
    }
    snprintf(path, sizeof path, "%s/plots/intrinsic_dimension.png", in->dir);
    LH_TRY(lh_plot_lines(path, "intrinsic dimension per layer", "layer", "dimension", ns, s));
    json_array_append_new(figs, json_string(path));
  }
  if (an && an->probe) {
    bool cls = false;
    for (int64_t i = 0; i < L; i++) {
      const char *n = in->layers[i].name;
      json_t *pm =
          json_object_get(json_object_get(json_object_get(in->results, "probe"), n), "fit_metrics");
      cls |= json_object_get(pm, "accuracy") != NULL;
    }
    const char *metric = cls ? "accuracy" : "r2";
    for (int64_t i = 0; i < L; i++) {
      const char *n = in->layers[i].name;
      y[0][i] = value_at(in->results, "probe", n, "predict_metrics", metric);
      y[1][i] = value_at(in->results, "probe", n, "fit_metrics", metric);
    }
    lh_plot_series s[2] = {{"test", L, x, y[0], NULL, ticks}, {"train", L, x, y[1], NULL, ticks}};
    snprintf(path, sizeof path, "%s/plots/probe_%s.png", in->dir, metric);
    LH_TRY(lh_plot_lines(path,
                         cls ? "linear probe accuracy per layer" : "linear probe R^2 per layer",
                         "layer", cls ? "accuracy" : "R^2", 2, s));
    json_array_append_new(figs, json_string(path));
  }
  if (an && an->local_knn) {
    for (int64_t i = 0; i < L; i++) {
      const run_layer *l = &in->layers[i];
      if (l->ndims != 2) continue;
      int64_t n = 0;
      LH_TRY(read_local_dims(in->dir, l, &dims, &n));
      char title[600];
      snprintf(title, sizeof title, "local intrinsic dimension, %s", l->name);
      snprintf(path, sizeof path, "%s/plots/local_knn", in->dir);
      if (mkdir(path, 0777) != 0 && errno != EEXIST)
        LH_FAIL(LH_ERR_IO, "cannot create folder '%s': %s", path, strerror(errno));
      snprintf(path, sizeof path, "%s/plots/local_knn/%s.png", in->dir, l->file_name);
      LH_TRY(lh_plot_histogram(path, title, "local dimension", n, dims, 0));
      json_array_append_new(figs, json_string(path));
      lh_free(dims);
      dims = NULL;
    }
  }
  *plots = figs;
  figs = NULL;
done:
  json_decref(figs);
  lh_free(x);
  lh_free(ticks);
  lh_free(dims);
  for (int k = 0; k < 4; k++) lh_free(y[k]);
  return st;
}
