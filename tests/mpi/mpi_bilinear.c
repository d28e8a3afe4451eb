/* LowRankBilinearEstimator training (SPEC 3.6, 3.8) on 1..4 ranks against a PyTorch run of the
 * same seeded schedule (tests/golden/bilinear/bilinear.json from make_golden_bilinear.py):
 * the parameters within 1e-6 relative, the fit on the world communicator within 1e-10 of the
 * same fit of the whole data on one rank (MPI_COMM_SELF), the predictions and the final loss;
 * the error paths, agreed on every rank. */
#include <stdlib.h>

#include <jansson.h>

#include "latenthook/bilinear.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "mpi/mpitest.h"

#define TORCH_TOL 1e-6
#define RANK_TOL 1e-10

static double maxrel(const double *a, const double *b, int64_t n) {
  double d = 0, s = 0;
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs(a[i] - b[i]));
    s = fmax(s, fabs(b[i]));
  }
  return s > 0 ? d / s : d;
}

static void flat(json_t *a, double *out) { /* a list or a list of lists */
  size_t k = 0, i;
  json_t *v;
  json_array_foreach(a, i, v) {
    if (json_is_array(v)) {
      size_t j;
      json_t *w;
      json_array_foreach(v, j, w) out[k++] = json_number_value(w);
    } else {
      out[k++] = json_number_value(v);
    }
  }
}

typedef struct data {
  lh_dmat *H1, *H2;
  double *y;
  int64_t N;
} data;

static lh_dmat *rows_of(MPI_Comm comm, lh_dtype dt, json_t *rows) {
  const int64_t N = (int64_t)json_array_size(rows), D = (int64_t)json_array_size(json_array_get(rows, 0));
  lh_dmat *X = NULL;
  MT_OK(lh_dmat_create(comm, dt, N, D, &X));
  const int64_t n = lh_dmat_local_rows(X), r0 = lh_dmat_row_offset(X);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++) {
      double v = json_number_value(json_array_get(json_array_get(rows, (size_t)(r0 + i)), (size_t)j));
      if (dt == LH_F64)
        ((double *)lh_dmat_local(X))[i * D + j] = v;
      else
        ((float *)lh_dmat_local(X))[i * D + j] = (float)v;
    }
  return X;
}

static data load(MPI_Comm comm, lh_dtype dt, json_t *ref) {
  data d = {0};
  d.H1 = rows_of(comm, dt, json_object_get(ref, "H1"));
  d.H2 = rows_of(comm, dt, json_object_get(ref, "H2"));
  d.N = lh_dmat_rows(d.H1);
  const int64_t n = lh_dmat_local_rows(d.H1), r0 = lh_dmat_row_offset(d.H1);
  d.y = malloc((size_t)(n + 1) * sizeof(double));
  for (int64_t i = 0; i < n; i++) d.y[i] = json_number_value(json_array_get(json_object_get(ref, "y"), (size_t)(r0 + i)));
  return d;
}

static void unload(data *d) {
  lh_dmat_destroy(&d->H1);
  lh_dmat_destroy(&d->H2);
  free(d->y);
}

static lh_bilinear_opts opts_of(json_t *ref) {
  lh_bilinear_opts o = lh_bilinear_defaults();
  o.num_classes = json_integer_value(json_object_get(ref, "num_classes"));
  o.bias = json_is_true(json_object_get(ref, "bias"));
  o.seed = (uint64_t)json_integer_value(json_object_get(ref, "seed"));
  o.epochs = json_integer_value(json_object_get(ref, "epochs"));
  o.batch_size = json_integer_value(json_object_get(ref, "batch"));
  o.lr = json_number_value(json_object_get(ref, "lr"));
  return o;
}

/* Largest relative difference of the parameters of m and the reference (or of another fit). */
static double param_diff(const lh_bilinear *m, json_t *ref, const lh_bilinear *other) {
  const int64_t C = m->C, d1 = m->d1, d2 = m->d2;
  double want[512];
  double r = 0;
  const double *mine[5] = {m->U, m->u, m->V, m->v, m->b};
  const double *theirs[5] = {other ? other->U : NULL, other ? other->u : NULL,
                             other ? other->V : NULL, other ? other->v : NULL,
                             other ? other->b : NULL};
  const char *names[5] = {"U", "u", "V", "v", "b"};
  const int64_t sizes[5] = {C * d1, C, C * d2, C, C};
  for (int k = 0; k < 5; k++) {
    if (!mine[k]) continue;
    const double *w = theirs[k];
    if (!other) {
      flat(json_object_get(ref, names[k]), want);
      w = want;
    }
    r = fmax(r, maxrel(mine[k], w, sizes[k]));
  }
  return r;
}

static void golden(json_t *ref, const char *what, lh_dtype dt) {
  lh_bilinear_opts o = opts_of(ref);
  data w = load(MPI_COMM_WORLD, dt, ref);
  lh_bilinear *m = NULL, *q = NULL;
  MT_OK(lh_bilinear_fit(w.H1, w.H2, w.y, NULL, &o, &m));
  if (m) {
    double d = param_diff(m, ref, NULL);
    MT_CHECK(d <= TORCH_TOL, "%s: parameters differ from PyTorch by %.3g relative", what, d);
    MT_CHECK(m->iterations == json_integer_value(json_object_get(ref, "steps")), "%s: %lld steps", what,
             (long long)m->iterations);
    double wl = json_number_value(json_object_get(ref, "loss"));
    MT_CHECK(fabs(m->objective - wl) <= TORCH_TOL * fabs(wl), "%s: loss %.17g, PyTorch %.17g", what,
             m->objective, wl);
    MT_CHECK((m->b != NULL) == o.bias, "%s: bias presence", what);
    /* predictions of the local rows */
    const int64_t n = lh_dmat_local_rows(w.H1), r0 = lh_dmat_row_offset(w.H1);
    double *pred = malloc((size_t)(n + 1) * sizeof(double));
    lh_bilinear_predict(m, w.H1, w.H2, pred);
    json_t *jp = json_object_get(ref, "pred");
    for (int64_t i = 0; i < n; i++) {
      double want = json_number_value(json_array_get(jp, (size_t)(r0 + i)));
      MT_CHECK(o.num_classes ? pred[i] == want : fabs(pred[i] - want) <= 1e-6 * fmax(1, fabs(want)),
               "%s: prediction %lld = %g, PyTorch %g", what, (long long)(r0 + i), pred[i], want);
    }
    free(pred);
    lh_probe_metrics met = {0};
    MT_OK(lh_bilinear_evaluate(m, w.H1, w.H2, w.y, NULL, &met));
    if (o.num_classes)
      MT_CHECK(fabs(met.cross_entropy - wl) <= TORCH_TOL * wl && met.n == w.N,
               "%s: evaluate cross-entropy %.17g vs loss %.17g", what, met.cross_entropy, wl);
    else
      MT_CHECK(fabs(met.mse - wl) <= TORCH_TOL * wl, "%s: evaluate mse %.17g vs %.17g", what, met.mse, wl);
  }
  if (mt_rank() == 0 && m) {
    data s = load(MPI_COMM_SELF, dt, ref);
    MT_OK(lh_bilinear_fit(s.H1, s.H2, s.y, NULL, &o, &q));
    if (q) {
      double d = param_diff(m, NULL, q);
      MT_CHECK(d <= RANK_TOL, "%s: differs from the one-rank fit by %.3g relative", what, d);
      if (mt_rank() == 0) printf("%s: rank-count difference %.3g\n", what, d);
    }
    lh_bilinear_destroy(&q);
    unload(&s);
  }
  lh_bilinear_destroy(&m);
  unload(&w);
}

static void errors(json_t *ref) {
  lh_bilinear_opts o = opts_of(ref);
  data w = load(MPI_COMM_WORLD, LH_F64, ref);
  lh_bilinear *m = NULL;
  /* labels beyond num_classes */
  o.num_classes = 2;
  MT_STATUS(lh_bilinear_fit(w.H1, w.H2, w.y, NULL, &o, &m), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "not a class id in [0, 2)"),
           "class id message: %s", lh_error_message());
  lh_error_clear();
  o.num_classes = 1;
  MT_STATUS(lh_bilinear_fit(w.H1, w.H2, w.y, NULL, &o, &m), LH_ERR_VALUE);
  lh_error_clear();
  o = opts_of(ref);
  o.batch_size = 0;
  MT_STATUS(lh_bilinear_fit(w.H1, w.H2, w.y, NULL, &o, &m), LH_ERR_VALUE);
  lh_error_clear();
  /* different sample counts */
  o = opts_of(ref);
  lh_dmat *short2 = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, w.N - 1, lh_dmat_cols(w.H2), &short2));
  MT_STATUS(lh_bilinear_fit(w.H1, short2, w.y, NULL, &o, &m), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "samples"), "N message: %s",
           lh_error_message());
  lh_error_clear();
  lh_dmat_destroy(&short2);
  /* nothing selected */
  bool *none = calloc((size_t)lh_dmat_local_rows(w.H1) + 1, 1);
  MT_STATUS(lh_bilinear_fit(w.H1, w.H2, w.y, none, &o, &m), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "no sample"), "empty: %s", lh_error_message());
  lh_error_clear();
  free(none);
  /* a NaN in the second set, on the last rank only */
  int P;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  if (mt_rank() == P - 1 && lh_dmat_local_rows(w.H2) > 0) ((double *)lh_dmat_local(w.H2))[0] = NAN;
  MT_STATUS(lh_bilinear_fit(w.H1, w.H2, w.y, NULL, &o, &m), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "non-finite"), "NaN: %s", lh_error_message());
  lh_error_clear();
  MT_CHECK(m == NULL, "no estimator after errors");
  unload(&w);
}

/* SPEC 3.8 test: (4, 5, num_classes=3) on (7,4),(7,5) -> (7, 3); bias None iff bias=False. */
static void shapes(void) {
  lh_dmat *A = NULL, *B = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 7, 4, &A));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 7, 5, &B));
  const int64_t n = lh_dmat_local_rows(A), r0 = lh_dmat_row_offset(A);
  double y[8];
  for (int64_t i = 0; i < n; i++) {
    for (int j = 0; j < 4; j++) ((double *)lh_dmat_local(A))[i * 4 + j] = sin((double)(r0 + i) + j);
    for (int j = 0; j < 5; j++) ((double *)lh_dmat_local(B))[i * 5 + j] = cos((double)(r0 + i) * j);
    y[i] = (double)((r0 + i) % 3);
  }
  for (int bias = 0; bias < 2; bias++) {
    lh_bilinear_opts o = lh_bilinear_defaults();
    o.num_classes = 3;
    o.bias = bias;
    o.epochs = 2;
    lh_bilinear *m = NULL;
    MT_OK(lh_bilinear_fit(A, B, y, NULL, &o, &m));
    if (m) {
      MT_CHECK(m->C == 3 && m->d1 == 4 && m->d2 == 5 && (m->b != NULL) == (bias == 1), "shapes, bias %d", bias);
      double out[8 * 3];
      lh_bilinear_decision(m, A, B, out);
      for (int64_t i = 0; i < n * 3; i++) MT_CHECK(isfinite(out[i]), "finite output");
    }
    lh_bilinear_destroy(&m);
  }
  lh_dmat_destroy(&A);
  lh_dmat_destroy(&B);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  lh_log_setup(LH_LOG_WARN, mt_rank(), 1);
  json_error_t err;
  json_t *doc = json_load_file(LH_GOLDEN_DIR "/bilinear/bilinear.json", 0, &err);
  MT_CHECK(doc != NULL, "cannot read bilinear.json: %s", err.text);
  shapes();
  if (doc) {
    golden(json_object_get(doc, "classifier"), "classifier f64", LH_F64);
    golden(json_object_get(doc, "classifier"), "classifier f32", LH_F32);
    golden(json_object_get(doc, "regressor"), "regressor", LH_F64);
    errors(json_object_get(doc, "classifier"));
  }
  json_decref(doc);
  return mt_finish("mpi_bilinear");
}
