/*
 * cmd_probe_bilinear.c: `latenthook probe --data F:/h1 --data2 F:/h2 --labels F:/y
 * --estimator low-rank-bilinear --out OUT.h5`: tdhook's LowRankBilinearEstimator (SPEC 3.8,
 * bilinear.h) trained by data-parallel Adam on two activation sets with the same samples, the
 * train/test split of the linear probes (lh_probe_split), metrics on both parts, and the
 * parameters written to OUT.h5:/U (C x d1), /u (C), /V (C x d2), /v (C) and /b (C, unless
 * --no-bias).
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_probe_bilinear.h"
#include "core/check.h"
#include "latenthook/bilinear.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"

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

lh_status cmd_probe_bilinear(MPI_Comm comm, const cli_bilinear_args *a) {
  lh_status st = LH_OK, local = LH_OK;
  lh_h5_dset *d1 = NULL, *d2 = NULL, *dl = NULL;
  lh_h5_out *o = NULL;
  lh_dmat *H1 = NULL, *H2 = NULL;
  lh_bilinear *m = NULL;
  double *y = NULL;
  bool *test = NULL, *train = NULL;
  lh_bilinear_opts bo = lh_bilinear_defaults();
  if (!a->data2) LH_FAIL(LH_ERR_USAGE, "--estimator low-rank-bilinear needs --data2 FILE.h5:/acts2");
  if (a->classes != -1 && a->classes < 2)
    LH_FAIL(LH_ERR_USAGE, "--num-classes must be >= 2, got %lld", a->classes);
  bo.num_classes = a->classes == -1 ? 0 : a->classes;
  bo.bias = !a->no_bias;
  bo.seed = (uint64_t)a->seed;
  bo.epochs = a->epochs;
  bo.batch_size = a->batch;
  bo.lr = a->lr;

  LH_TRY(lh_h5_open(comm, a->data, 0, &d1));
  LH_TRY(lh_h5_open(comm, a->data2, 0, &d2));
  LH_TRY(lh_h5_open(comm, a->labels, 0, &dl));
  const lh_h5_info *i1 = lh_h5_dset_info(d1), *i2 = lh_h5_dset_info(d2), *il = lh_h5_dset_info(dl);
  if (il->E != 1)
    LH_FAIL(LH_ERR_VALUE, "--labels: expected one label per sample, shape (N,) or (N, 1), got "
            "%lld values per sample", (long long)il->E);
  if (i2->N != i1->N)
    LH_FAIL(LH_ERR_VALUE, "--data2 has %lld samples but --data has %lld", (long long)i2->N,
            (long long)i1->N);
  if (il->N != i1->N)
    LH_FAIL(LH_ERR_VALUE, "--labels has %lld samples but --data has %lld", (long long)il->N,
            (long long)i1->N);
  if (i1->E < 1 || i2->E < 1) LH_FAIL(LH_ERR_VALUE, "--data/--data2: samples have no features");
  LH_TRY(lh_h5_out_create(comm, a->out, &o));
  LH_TRY(lh_dmat_create(comm, i1->natural, i1->N, i1->E, &H1));
  LH_TRY(lh_dmat_create(comm, i2->natural, i2->N, i2->E, &H2));
  LH_TRY(lh_h5_read_dmat(d1, 0, H1));
  LH_TRY(lh_h5_read_dmat(d2, 0, H2));
  const int64_t n = lh_dmat_local_rows(H1), row0 = lh_dmat_row_offset(H1), N = i1->N;
  local = lh_alloc((size_t)n, sizeof *y, false, "labels", &y);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *test, false, "split", &test);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *train, false, "split", &train);
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_h5_read_rows(dl, 0, row0, n, LH_F64, y));
  lh_probe_split(bo.seed, a->test, row0, n, test);
  int64_t counts[2] = {0, 0}; /* train, test */
  for (int64_t i = 0; i < n; i++) {
    train[i] = !test[i];
    counts[test[i] ? 1 : 0]++;
  }
  if (MPI_Allreduce(MPI_IN_PLACE, counts, 2, MPI_INT64_T, MPI_SUM, comm) != MPI_SUCCESS)
    LH_FAIL(LH_ERR_MPI, "MPI_Allreduce of the split sizes failed");
  if (counts[0] < 1 || (a->test > 0 && counts[1] < 1))
    LH_FAIL(LH_ERR_VALUE, "--test-fraction %g with --seed %lld leaves %lld training and %lld test "
            "samples out of N = %lld: each part needs at least one", a->test, a->seed,
            (long long)counts[0], (long long)counts[1], (long long)N);

  double t0 = MPI_Wtime();
  LH_TRY(lh_bilinear_fit(H1, H2, y, train, &bo, &m));
  double t_fit = MPI_Wtime() - t0;
  lh_probe_metrics fm, tm;
  LH_TRY(lh_bilinear_evaluate(m, H1, H2, y, train, &fm));
  if (a->test > 0) LH_TRY(lh_bilinear_evaluate(m, H1, H2, y, test, &tm));

  int64_t s1[2] = {m->C, m->d1}, s2[2] = {m->C, m->d2};
  LH_TRY(lh_h5_out_write_small(o, "/U", LH_F64, 2, s1, m->U));
  LH_TRY(lh_h5_out_write_small(o, "/u", LH_F64, 1, &m->C, m->u));
  LH_TRY(lh_h5_out_write_small(o, "/V", LH_F64, 2, s2, m->V));
  LH_TRY(lh_h5_out_write_small(o, "/v", LH_F64, 1, &m->C, m->v));
  if (m->b) LH_TRY(lh_h5_out_write_small(o, "/b", LH_F64, 1, &m->C, m->b));
  LH_TRY(lh_h5_out_attr_string(o, "/", "estimator", "low-rank-bilinear"));
  LH_TRY(lh_h5_out_attr_string(o, "/", "solver", "adam"));
  LH_TRY(lh_h5_out_commit(&o));

  json_t *doc = json_object(), *fit = json_object();
  json_object_set_new(doc, "estimator", json_string("low-rank-bilinear"));
  json_object_set_new(doc, "task", json_string(m->classification ? "classification" : "regression"));
  json_object_set_new(doc, "solver", json_string("adam"));
  if (m->classification) json_object_set_new(doc, "num_classes", json_integer(m->C));
  json_object_set_new(doc, "bias", json_boolean(m->b != NULL));
  json_object_set_new(doc, "n_samples", json_integer(N));
  json_object_set_new(doc, "n_features", json_integer(m->d1));
  json_object_set_new(doc, "n_features2", json_integer(m->d2));
  json_object_set_new(doc, "n_train", json_integer(counts[0]));
  json_object_set_new(doc, "n_test", json_integer(counts[1]));
  json_object_set_new(fit, "iterations", json_integer(m->iterations));
  json_object_set_new(fit, "objective", cli_real(m->objective));
  json_object_set_new(fit, "seconds", json_real(t_fit));
  json_object_set_new(doc, "fit", fit);
  json_object_set_new(doc, "fit_metrics", metrics_json(&fm));
  json_object_set_new(doc, "predict_metrics", a->test > 0 ? metrics_json(&tm) : json_null());
  json_object_set_new(doc, "out", json_string(a->out));
  cli_emit_json(comm, doc);
done:
  lh_h5_out_discard(&o);
  lh_h5_close(&d1);
  lh_h5_close(&d2);
  lh_h5_close(&dl);
  lh_dmat_destroy(&H1);
  lh_dmat_destroy(&H2);
  lh_bilinear_destroy(&m);
  lh_free(y);
  lh_free(test);
  lh_free(train);
  return st;
}
