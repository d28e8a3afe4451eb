/* Probes on 1..4 ranks: SPEC TV-12 (MeanDifferenceClassifier) and TV-13 (low-rank bilinear
 * forward) exactly; against offline references (tests/golden/probe/probe.json from
 * tests/golden/make_golden_probe.py): lbfgs multinomial logistic regression = scikit-learn's
 * LogisticRegression(C = 1/(l2 N)), ridge = Ridge(alpha = l2 N), the mean difference = NumPy,
 * adam = a Python re-implementation of the seeded schedule, the metrics = scikit-learn's;
 * the mean difference and lbfgs bit-identical to the same fit of the whole data on one rank
 * (MPI_COMM_SELF), adam (data-parallel BLAS mini-batch sums, issue 7) within 1e-10 and ridge
 * within 1e-12 relative of it, also after tdhook's 100 epochs; the distributed ridge solver
 * (ScaLAPACK, forced at small D) against scikit-learn, the replicated LAPACK solver and one
 * rank; repeated fits (lh_probe_fit_warm) against the Python schedule fitted twice and the
 * optimum; scores by blocked DGEMM bit-identical to one rank over blocks cut by rank
 * boundaries; and the error paths, agreed on every rank. */
#include <stdlib.h>

#include <jansson.h>

#include "analysis/probe_internal.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/probe.h"
#include "latenthook/rng.h"
#include "mpi/mpitest.h"

/* Rank-count agreement of adam (BLAS sums of each mini-batch's members per rank): the
 * project's rule for floats. */
#define REL 1e-10

static double maxrel(const double *a, const double *b, int64_t n) {
  double d = 0, s = 0;
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs(a[i] - b[i]));
    s = fmax(s, fabs(b[i]));
  }
  return s > 0 ? d / s : d;
}

/* X (rows of the JSON) on comm, and the local labels. */
typedef struct data {
  lh_dmat *X;
  double *y; /* local labels */
  int64_t N, D;
} data;

static data load(MPI_Comm comm, json_t *rows, json_t *labels) {
  data d = {0};
  d.N = (int64_t)json_array_size(rows);
  d.D = (int64_t)json_array_size(json_array_get(rows, 0));
  MT_OK(lh_dmat_create(comm, LH_F64, d.N, d.D, &d.X));
  const int64_t n = lh_dmat_local_rows(d.X), r0 = lh_dmat_row_offset(d.X);
  double *x = lh_dmat_local(d.X);
  d.y = malloc((size_t)(n + 1) * sizeof(double));
  for (int64_t i = 0; i < n; i++) {
    json_t *row = json_array_get(rows, (size_t)(r0 + i));
    for (int64_t j = 0; j < d.D; j++)
      x[i * d.D + j] = json_number_value(json_array_get(row, (size_t)j));
    d.y[i] = json_number_value(json_array_get(labels, (size_t)(r0 + i)));
  }
  return d;
}

static void unload(data *d) {
  lh_dmat_destroy(&d->X);
  free(d->y);
}

static void flat(json_t *a, double *out) { /* a number, a list, or a list of lists */
  size_t k = 0, i;
  json_t *v;
  if (json_is_number(a)) {
    out[0] = json_number_value(a);
    return;
  }
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

static void check_model(const char *what, const lh_probe *p, json_t *coef, json_t *icpt,
                        double tol) {
  double c[256], b[16];
  flat(coef, c);
  flat(icpt, b);
  double rc = maxrel(p->coef, c, p->C * p->D), rb = maxrel(p->intercept, b, p->C);
  /* intercepts far smaller than the weights (logreg2: 0.015 vs ~1) are judged against the
   * scale of the whole parameter vector, as the optimiser's tolerance is */
  double scale = 0, db = 0;
  for (int64_t k = 0; k < p->C * p->D; k++) scale = fmax(scale, fabs(c[k]));
  for (int64_t k = 0; k < p->C; k++) {
    scale = fmax(scale, fabs(b[k]));
    db = fmax(db, fabs(p->intercept[k] - b[k]));
  }
  if (scale > 0) rb = fmin(rb, db / scale);
  MT_CHECK(rc <= tol && rb <= tol, "%s: coef rel diff %.3g, intercept %.3g (tol %g)", what, rc, rb,
           tol);
}

/* Fits on the world communicator and, on rank 0, on MPI_COMM_SELF with the whole data: the two
 * must be the same bits (tol 0) or agree within tol relative (BLAS sums per rank). */
static lh_probe *fit_both(const char *what, json_t *ref, const lh_probe_opts *o,
                          const bool *use_world, double tol) {
  data w = load(MPI_COMM_WORLD, json_object_get(ref, "X"), json_object_get(ref, "y"));
  lh_probe *p = NULL, *q = NULL;
  MT_OK(lh_probe_fit(w.X, w.y, use_world, o, &p));
  if (mt_rank() == 0 && p) {
    data s = load(MPI_COMM_SELF, json_object_get(ref, "X"), json_object_get(ref, "y"));
    bool *use = NULL;
    if (use_world) {
      use = malloc((size_t)s.N);
      lh_probe_split(o->seed, 0.3, 0, s.N, use);
      for (int64_t i = 0; i < s.N; i++) use[i] = !use[i];
    }
    MT_OK(lh_probe_fit(s.X, s.y, use, o, &q));
    if (q) {
      double rc = maxrel(p->coef, q->coef, p->C * p->D),
             rb = maxrel(p->intercept, q->intercept, p->C);
      if (tol == 0)
        MT_CHECK(memcmp(p->coef, q->coef, (size_t)(p->C * p->D) * 8) == 0 &&
                     memcmp(p->intercept, q->intercept, (size_t)p->C * 8) == 0 &&
                     mt_same(p->objective, q->objective) && p->iterations == q->iterations,
                 "%s: not bit-identical to one rank (coef %.3g, intercept %.3g)", what, rc, rb);
      else
        MT_CHECK(rc <= tol && rb <= tol, "%s: differs from one rank by %.3g / %.3g", what, rc, rb);
      if (tol > 0) printf("%s: rank-count difference coef %.3g intercept %.3g\n", what, rc, rb);
    }
    lh_probe_destroy(&q);
    free(use);
    unload(&s);
  }
  unload(&w);
  return p;
}

static void tv12(void) {
  const double X[4][2] = {{0, 0}, {2, 0}, {0, 3}, {4, 4}}, Y[4] = {0, 0, 1, 1};
  lh_dmat *M = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 4, 2, &M));
  const int64_t n = lh_dmat_local_rows(M), r0 = lh_dmat_row_offset(M);
  double *x = lh_dmat_local(M), y[4], dec[4], pred[4], proba[8];
  for (int64_t i = 0; i < n; i++) {
    x[2 * i] = X[r0 + i][0];
    x[2 * i + 1] = X[r0 + i][1];
    y[i] = Y[r0 + i];
  }
  static const double raw_dec[4] = {-7.625, -5.625, 2.875, 10.375};
  static const double raw_p1[4] = {4.8786e-4, 3.5936e-3, 0.9465966702, 0.9999687981};
  static const double nrm_dec[4] = {-2.0947486002, -1.5453063444, 0.7898232427, 2.8502317019};
  static const double nrm_p1[4] = {0.1096082782, 0.1757652120, 0.6877933761, 0.9453306585};
  for (int normalize = 0; normalize <= 1; normalize++) {
    lh_probe *p = NULL;
    MT_OK(lh_probe_fit_mean_difference(M, y, NULL, normalize, &p));
    if (!p) continue;
    if (normalize)
      MT_CHECK(fabs(p->coef[0] - 0.2747211279) < 1e-10 && fabs(p->coef[1] - 0.9615239476) < 1e-10 &&
                   fabs(p->intercept[0] + 2.0947486002) < 1e-10,
               "TV-12 normalized: coef [%.10f %.10f] intercept %.10f", p->coef[0], p->coef[1],
               p->intercept[0]);
    else
      MT_CHECK(p->coef[0] == 1 && p->coef[1] == 3.5 && p->intercept[0] == -7.625,
               "TV-12 raw: coef [%g %g] intercept %g", p->coef[0], p->coef[1], p->intercept[0]);
    MT_OK(lh_probe_decision(p, M, dec));
    MT_OK(lh_probe_predict(p, M, pred));
    MT_OK(lh_probe_predict_proba(p, M, proba));
    for (int64_t i = 0; i < n; i++) {
      const int64_t g = r0 + i;
      const double wd = normalize ? nrm_dec[g] : raw_dec[g], wp = normalize ? nrm_p1[g] : raw_p1[g];
      MT_CHECK(fabs(dec[i] - wd) < 1e-9, "TV-12 decision[%lld] %.10f want %.10f", (long long)g,
               dec[i], wd);
      MT_CHECK(pred[i] == (g >= 2), "TV-12 predict[%lld] = %g", (long long)g, pred[i]);
      MT_CHECK(fabs(proba[2 * i + 1] - wp) < (normalize ? 1e-10 : 1e-8) &&
                   fabs(proba[2 * i] + proba[2 * i + 1] - 1) < 1e-15,
               "TV-12 P(y=1)[%lld] %.10g want %.10g", (long long)g, proba[2 * i + 1], wp);
    }
    lh_probe_destroy(&p);
  }
  /* repository case and identical classes */
  static const double R[4][2] = {{1, 0}, {2, 0}, {-1, 0}, {-2, 0}}, RY[4] = {1, 1, 0, 0};
  for (int64_t i = 0; i < n; i++) {
    x[2 * i] = R[r0 + i][0];
    x[2 * i + 1] = R[r0 + i][1];
    y[i] = RY[r0 + i];
  }
  lh_probe *p = NULL;
  MT_OK(lh_probe_fit_mean_difference(M, y, NULL, true, &p));
  if (p)
    MT_CHECK(p->coef[0] == 1 && p->coef[1] == 0 && p->intercept[0] == 0,
             "repository case normalized");
  lh_probe_destroy(&p);
  MT_OK(lh_probe_fit_mean_difference(M, y, NULL, false, &p));
  if (p)
    MT_CHECK(p->coef[0] == 3 && p->coef[1] == 0 && p->intercept[0] == 0, "repository case raw");
  lh_probe_destroy(&p);
  for (int64_t i = 0; i < n; i++) {
    x[2 * i] = 1;
    x[2 * i + 1] = -1;
  }
  MT_OK(lh_probe_fit_mean_difference(M, y, NULL, true, &p));
  if (p) {
    MT_CHECK(p->coef[0] == 0 && p->coef[1] == 0 && p->intercept[0] == 0,
             "identical classes: zero direction");
    MT_OK(lh_probe_predict_proba(p, M, proba));
    for (int64_t i = 0; i < n; i++)
      MT_CHECK(proba[2 * i + 1] == 0.5, "identical classes: proba 0.5");
  }
  lh_probe_destroy(&p);
  for (int64_t i = 0; i < n; i++) y[i] = 1;
  MT_STATUS(lh_probe_fit_mean_difference(M, y, NULL, true, &p), LH_ERR_VALUE);
  MT_CHECK(
      !lh_error_is_reporter() || strstr(lh_error_message(), "Both classes must be present in y"),
      "all-ones message: %s", lh_error_message());
  lh_error_clear();
  lh_dmat_destroy(&M);
}

static void tv13(void) {
  const double U[2] = {1, 0}, u[1] = {0.5}, V[2] = {0, 2}, v[1] = {-1}, b[1] = {0.25};
  const double h1[2] = {2, 3}, h2[2] = {1, 4};
  double out = 0, out2 = 0;
  lh_probe_bilinear_forward(1, 2, 2, U, u, V, v, b, 1, h1, h2, &out);
  MT_CHECK(out == 17.75, "TV-13: %g, expected 17.75", out);
  lh_probe_bilinear_forward(1, 2, 2, U, u, V, v, NULL, 1, h1, h2, &out2);
  MT_CHECK(out2 == 17.5, "TV-13 without b: %g", out2);
}

static void goldens(json_t *doc) {
  lh_probe_opts o = lh_probe_defaults();
  /* mean difference vs NumPy */
  json_t *md = json_object_get(doc, "mdiff");
  o.kind = LH_PROBE_MEAN_DIFFERENCE;
  o.normalize = true;
  lh_probe *p = fit_both("mdiff", md, &o, NULL, 0);
  if (p)
    check_model("mdiff normalized", p, json_object_get(md, "coef"),
                json_object_get(md, "intercept"), 1e-13);
  lh_probe_destroy(&p);
  o.normalize = false;
  p = fit_both("mdiff raw", md, &o, NULL, 0);
  if (p)
    check_model("mdiff raw", p, json_object_get(md, "coef_raw"),
                json_object_get(md, "intercept_raw"), 1e-13);
  lh_probe_destroy(&p);

  /* lbfgs multinomial logistic regression vs scikit-learn */
  const char *lr[2] = {"logreg3", "logreg2"};
  for (int k = 0; k < 2; k++) {
    json_t *ref = json_object_get(doc, lr[k]);
    o = lh_probe_defaults();
    o.kind = LH_PROBE_CLASSIFIER;
    o.num_classes = (int64_t)json_integer_value(json_object_get(ref, "C"));
    o.solver = LH_PROBE_LBFGS;
    o.l2 = json_number_value(json_object_get(ref, "l2"));
    p = fit_both(lr[k], ref, &o, NULL, 0);
    if (p) {
      check_model(lr[k], p, json_object_get(ref, "coef"), json_object_get(ref, "intercept"), 1e-3);
      check_model(lr[k], p, json_object_get(ref, "coef_opt"), json_object_get(ref, "intercept_opt"),
                  1e-7);
      MT_CHECK(p->iterations > 3 && p->iterations < 1000, "%s: %lld iterations (%s)", lr[k],
               (long long)p->iterations, p->solver_message);
    }
    lh_probe_destroy(&p);
  }

  /* metrics of scikit-learn's logreg3 model vs scikit-learn's metrics */
  json_t *l3 = json_object_get(doc, "logreg3");
  data w = load(MPI_COMM_WORLD, json_object_get(l3, "X"), json_object_get(l3, "y"));
  MT_OK(probe_alloc(LH_PROBE_CLASSIFIER, 3, w.D, &p));
  lh_probe_metrics m = {0};
  if (p) {
    flat(json_object_get(l3, "coef"), p->coef);
    flat(json_object_get(l3, "intercept"), p->intercept);
    MT_OK(lh_probe_evaluate(p, w.X, w.y, NULL, &m));
    json_t *r = json_object_get(l3, "metrics");
    const char *names[4] = {"accuracy", "balanced_accuracy", "macro_f1", "cross_entropy"};
    const double got[4] = {m.accuracy, m.balanced_accuracy, m.macro_f1, m.cross_entropy};
    for (int k = 0; k < 4; k++) {
      double want = json_number_value(json_object_get(r, names[k]));
      MT_CHECK(fabs(got[k] - want) <= 1e-12 * fabs(want), "metric %s: %.17g want %.17g", names[k],
               got[k], want);
    }
    MT_CHECK(m.n == 90 && m.classification, "metrics n %lld", (long long)m.n);
  }
  lh_probe_destroy(&p);
  /* errors: labels beyond num_classes; non-finite data on the last rank only */
  lh_probe_opts bad = lh_probe_defaults();
  bad.kind = LH_PROBE_CLASSIFIER;
  bad.num_classes = 2;
  bad.solver = LH_PROBE_LBFGS;
  MT_STATUS(lh_probe_fit(w.X, w.y, NULL, &bad, &p), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "not a class id in [0, 2)"),
           "num_classes message: %s", lh_error_message());
  lh_error_clear();
  bad.solver = LH_PROBE_RIDGE;
  bad.num_classes = 3;
  MT_STATUS(lh_probe_fit(w.X, w.y, NULL, &bad, &p), LH_ERR_VALUE);
  lh_error_clear();
  bool *none = calloc((size_t)lh_dmat_local_rows(w.X) + 1, 1);
  bad.solver = LH_PROBE_ADAM;
  MT_STATUS(lh_probe_fit(w.X, w.y, none, &bad, &p), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "no sample"), "empty: %s",
           lh_error_message());
  lh_error_clear();
  free(none);
  int P;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  if (mt_rank() == P - 1 && lh_dmat_local_rows(w.X) > 0) ((double *)lh_dmat_local(w.X))[1] = NAN;
  MT_STATUS(lh_probe_fit(w.X, w.y, NULL, &bad, &p), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "non-finite value"), "NaN: %s",
           lh_error_message());
  lh_error_clear();
  unload(&w);

  /* ridge vs scikit-learn, metrics, lbfgs regression = ridge with l2 / 2 */
  json_t *rr = json_object_get(doc, "ridge");
  o = lh_probe_defaults();
  o.kind = LH_PROBE_REGRESSOR;
  o.solver = LH_PROBE_RIDGE;
  o.l2 = 0.1;
  p = fit_both("ridge", rr, &o, NULL, 1e-12);
  if (p)
    check_model("ridge", p, json_object_get(rr, "coef"), json_object_get(rr, "intercept"), 1e-10);
  w = load(MPI_COMM_WORLD, json_object_get(rr, "X"), json_object_get(rr, "y"));
  if (p) {
    flat(json_object_get(rr, "coef"), p->coef);
    flat(json_object_get(rr, "intercept"), p->intercept);
    MT_OK(lh_probe_evaluate(p, w.X, w.y, NULL, &m));
    double wm = json_number_value(json_object_get(json_object_get(rr, "metrics"), "mse"));
    double wr = json_number_value(json_object_get(json_object_get(rr, "metrics"), "r2"));
    MT_CHECK(fabs(m.mse - wm) <= 1e-12 * wm && fabs(m.r2 - wr) <= 1e-12,
             "mse %.17g/%.17g r2 %.17g/%.17g", m.mse, wm, m.r2, wr);
    double pr[2];
    MT_STATUS(lh_probe_predict_proba(p, w.X, pr), LH_ERR_VALUE);
    lh_error_clear();
  }
  lh_probe_destroy(&p);
  o.solver = LH_PROBE_LBFGS;
  o.l2 = 0.2;
  p = fit_both("lbfgs regression", rr, &o, NULL, 0);
  if (p)
    check_model("lbfgs regression = ridge(l2/2)", p, json_object_get(rr, "coef"),
                json_object_get(rr, "intercept"), 1e-7);
  lh_probe_destroy(&p);
  /* singular ridge: a duplicated feature with l2 = 0 */
  {
    double *x = lh_dmat_local(w.X);
    for (int64_t i = 0; i < lh_dmat_local_rows(w.X); i++) x[i * w.D + 1] = x[i * w.D];
    o.solver = LH_PROBE_RIDGE;
    o.l2 = 0;
    MT_STATUS(lh_probe_fit(w.X, w.y, NULL, &o, &p), LH_ERR_VALUE);
    MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "singular"), "singular: %s",
             lh_error_message());
    lh_error_clear();
  }
  unload(&w);

  /* adam vs the Python re-implementation of the schedule */
  json_t *ad = json_object_get(doc, "adam");
  const char *kinds[2] = {"classifier", "regressor"};
  for (int k = 0; k < 2; k++) {
    json_t *a = json_object_get(ad, kinds[k]);
    json_t *ref = json_object_get(doc, k == 0 ? "logreg3" : "ridge");
    o = lh_probe_defaults();
    o.kind = k == 0 ? LH_PROBE_CLASSIFIER : LH_PROBE_REGRESSOR;
    o.num_classes = 3;
    o.solver = LH_PROBE_ADAM;
    o.seed = (uint64_t)json_integer_value(json_object_get(a, "seed"));
    o.epochs = json_integer_value(json_object_get(a, "epochs"));
    o.batch_size = json_integer_value(json_object_get(a, "batch"));
    o.lr = json_number_value(json_object_get(a, "lr"));
    o.l2 = k == 1 ? json_number_value(json_object_get(a, "l2")) : 0;
    p = fit_both(kinds[k], ref, &o, NULL, REL);
    if (p)
      check_model(kinds[k], p, json_object_get(a, "coef"), json_object_get(a, "intercept"), 1e-12);
    lh_probe_destroy(&p);
    /* tdhook's 100 epochs (lr 1e-3) in batches of 16: rounding differences between rank counts
     * must not grow beyond the 1e-10 rule over 600 Adam steps */
    o.epochs = 100;
    o.batch_size = 16;
    o.lr = 1e-3;
    p = fit_both(k == 0 ? "adam 100 epochs classifier" : "adam 100 epochs regressor", ref, &o, NULL,
                 REL);
    lh_probe_destroy(&p);
  }

  /* a train/test split: fit on the train part, rank-count independent */
  o = lh_probe_defaults();
  o.kind = LH_PROBE_CLASSIFIER;
  o.num_classes = 3;
  o.solver = LH_PROBE_LBFGS;
  o.l2 = 0.01;
  o.seed = 5;
  w = load(MPI_COMM_WORLD, json_object_get(l3, "X"), json_object_get(l3, "y"));
  const int64_t n = lh_dmat_local_rows(w.X);
  bool *test = malloc((size_t)n + 1), *train = malloc((size_t)n + 1);
  lh_probe_split(5, 0.3, lh_dmat_row_offset(w.X), n, test);
  int64_t nt = 0;
  for (int64_t i = 0; i < n; i++) {
    train[i] = !test[i];
    nt += test[i];
  }
  MPI_Allreduce(MPI_IN_PLACE, &nt, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  MT_CHECK(nt > 15 && nt < 40, "split: %lld test samples of 90 at 0.3", (long long)nt);
  p = fit_both("split", l3, &o, train, 0);
  if (p) {
    lh_probe_metrics mt = {0}, mf = {0};
    MT_OK(lh_probe_evaluate(p, w.X, w.y, test, &mt));
    MT_OK(lh_probe_evaluate(p, w.X, w.y, train, &mf));
    MT_CHECK(mt.n == nt && mf.n == 90 - nt && mt.accuracy > 0.7 && mf.accuracy > 0.8,
             "split metrics: test %lld acc %g, train %lld acc %g", (long long)mt.n, mt.accuracy,
             (long long)mf.n, mf.accuracy);
    if (mt_rank() == 0)
      printf("split: test n=%lld accuracy %.6f ce %.17g\n", (long long)mt.n, mt.accuracy,
             mt.cross_entropy);
  }
  lh_probe_destroy(&p);
  free(test);
  free(train);
  unload(&w);
}

/* A fit with o1, then lh_probe_fit_warm with o2, on the world communicator and (rank 0) on
 * MPI_COMM_SELF with the whole data: bit-identical (tol 0) or within tol relative. */
static lh_probe *warm_both(const char *what, json_t *ref, const lh_probe_opts *o1,
                           const lh_probe_opts *o2, double tol) {
  lh_probe *p = NULL, *q = NULL;
  data w = load(MPI_COMM_WORLD, json_object_get(ref, "X"), json_object_get(ref, "y"));
  MT_OK(lh_probe_fit(w.X, w.y, NULL, o1, &p));
  if (p) MT_OK(lh_probe_fit_warm(p, w.X, w.y, NULL, o2));
  if (mt_rank() == 0 && p) {
    data s = load(MPI_COMM_SELF, json_object_get(ref, "X"), json_object_get(ref, "y"));
    MT_OK(lh_probe_fit(s.X, s.y, NULL, o1, &q));
    if (q) MT_OK(lh_probe_fit_warm(q, s.X, s.y, NULL, o2));
    if (q) {
      const double rc = maxrel(p->coef, q->coef, p->C * p->D);
      const double rb = maxrel(p->intercept, q->intercept, p->C);
      if (tol == 0)
        MT_CHECK(memcmp(p->coef, q->coef, (size_t)(p->C * p->D) * 8) == 0 &&
                     memcmp(p->intercept, q->intercept, (size_t)p->C * 8) == 0 &&
                     p->iterations == q->iterations,
                 "%s: not bit-identical to one rank (coef %.3g, intercept %.3g)", what, rc, rb);
      else
        MT_CHECK(rc <= tol && rb <= tol, "%s: differs from one rank by %.3g / %.3g", what, rc, rb);
    }
    lh_probe_destroy(&q);
    unload(&s);
  }
  unload(&w);
  return p;
}

/* Repeated fits (lh_probe_fit_warm, tdhook's fit on a fitted estimator): adam against the
 * Python schedule fitted twice (new Adam state, epochs numbered on); lbfgs from its own
 * optimum stops at once, and from an adam fit reaches the same optimum; the closed forms are
 * refitted; mismatched shapes and failed fits leave the probe unchanged. */
static void warm_starts(json_t *doc) {
  json_t *aw = json_object_get(doc, "adam_warm");
  const char *kinds[2] = {"classifier", "regressor"};
  for (int k = 0; k < 2; k++) {
    json_t *a = json_object_get(aw, kinds[k]);
    lh_probe_opts o = lh_probe_defaults();
    o.kind = k == 0 ? LH_PROBE_CLASSIFIER : LH_PROBE_REGRESSOR;
    o.num_classes = 3;
    o.seed = (uint64_t)json_integer_value(json_object_get(a, "seed"));
    o.batch_size = json_integer_value(json_object_get(a, "batch"));
    o.lr = json_number_value(json_object_get(a, "lr"));
    o.l2 = k == 1 ? json_number_value(json_object_get(a, "l2")) : 0;
    lh_probe_opts o2 = o;
    o.epochs = json_integer_value(json_object_get(a, "epochs1"));
    o2.epochs = json_integer_value(json_object_get(a, "epochs2"));
    json_t *ref = json_object_get(doc, k == 0 ? "logreg3" : "ridge");
    lh_probe *p =
        warm_both(k == 0 ? "adam warm classifier" : "adam warm regressor", ref, &o, &o2, REL);
    if (p) {
      check_model(k == 0 ? "adam warm classifier" : "adam warm regressor", p,
                  json_object_get(a, "coef"), json_object_get(a, "intercept"), 1e-12);
      const int64_t N = (int64_t)json_array_size(json_object_get(ref, "y"));
      const int64_t steps = o2.epochs * ((N + o.batch_size - 1) / o.batch_size);
      MT_CHECK(p->epochs == o.epochs + o2.epochs && p->iterations == steps,
               "adam warm: %lld epochs, %lld steps (want %lld, %lld)", (long long)p->epochs,
               (long long)p->iterations, (long long)(o.epochs + o2.epochs), (long long)steps);
    }
    lh_probe_destroy(&p);
  }

  /* lbfgs: from its optimum, at most 2 iterations (a fresh fit capped at 2 is far from it) */
  json_t *l3 = json_object_get(doc, "logreg3");
  lh_probe_opts o = lh_probe_defaults();
  o.kind = LH_PROBE_CLASSIFIER;
  o.num_classes = 3;
  o.solver = LH_PROBE_LBFGS;
  o.l2 = json_number_value(json_object_get(l3, "l2"));
  lh_probe_opts capped = o;
  capped.max_iter = 2;
  lh_probe *p = warm_both("lbfgs warm from the optimum", l3, &o, &capped, 0);
  if (p) {
    check_model("lbfgs warm from the optimum", p, json_object_get(l3, "coef_opt"),
                json_object_get(l3, "intercept_opt"), 1e-7);
    MT_CHECK(p->iterations <= 2 && p->converged,
             "lbfgs warm from the optimum: %lld iterations, "
             "converged %d (%s)",
             (long long)p->iterations, p->converged, p->solver_message);
    if (mt_rank() == 0)
      printf("lbfgs warm from the optimum: %s, %lld iterations, |g|/|x| %.3g\n", p->solver_message,
             (long long)p->iterations, p->grad_norm);
  }
  lh_probe_destroy(&p);
  data w = load(MPI_COMM_WORLD, json_object_get(l3, "X"), json_object_get(l3, "y"));
  MT_OK(lh_probe_fit(w.X, w.y, NULL, &capped, &p));
  if (p) {
    double c[12];
    flat(json_object_get(l3, "coef_opt"), c);
    MT_CHECK(maxrel(p->coef, c, 12) > 1e-2,
             "a fresh lbfgs fit of 2 iterations is already at the "
             "optimum (%.3g): the warm-start check above proves nothing",
             maxrel(p->coef, c, 12));
  }
  lh_probe_destroy(&p);

  /* lbfgs from 3 lbfgs iterations: the same optimum, the same bits on any rank count */
  capped.max_iter = 3;
  p = warm_both("lbfgs warm from 3 iterations", l3, &capped, &o, 0);
  if (p) {
    check_model("lbfgs warm from 3 iterations", p, json_object_get(l3, "coef_opt"),
                json_object_get(l3, "intercept_opt"), 1e-7);
    MT_CHECK(p->iterations > 2, "lbfgs warm from 3 iterations: %lld more",
             (long long)p->iterations);
  }
  lh_probe_destroy(&p);
  /* lbfgs from an adam fit (a start that is neither zero nor the optimum, with intercepts that
   * do not sum to zero: softmax scores are invariant to a common shift of the intercepts, which
   * the unpenalised intercepts keep from their start, so the reference's zero-sum intercepts
   * are compared with the centred ones). The adam start agrees across rank counts to rounding
   * only, and so does the optimum lbfgs stops at. */
  lh_probe_opts ad = o;
  ad.solver = LH_PROBE_ADAM;
  ad.epochs = 3;
  ad.batch_size = 16;
  ad.lr = 0.05;
  p = warm_both("lbfgs warm from adam", l3, &ad, &o, 1e-7);
  if (p) {
    const double shift = (p->intercept[0] + p->intercept[1] + p->intercept[2]) / 3;
    for (int c = 0; c < 3; c++) p->intercept[c] -= shift;
    check_model("lbfgs warm from adam", p, json_object_get(l3, "coef_opt"),
                json_object_get(l3, "intercept_opt"), 1e-7);
    MT_CHECK(p->epochs == 0 && strstr(p->solver_message, "warm"), "lbfgs warm: %lld epochs, %s",
             (long long)p->epochs, p->solver_message);
  }

  /* refused: other shapes or kinds; a failed fit; p unchanged by all of them */
  if (p) {
    double keep[15];
    memcpy(keep, p->coef, 12 * sizeof(double));
    memcpy(keep + 12, p->intercept, 3 * sizeof(double));
    lh_probe_opts bad = o;
    bad.num_classes = 4;
    MT_STATUS(lh_probe_fit_warm(p, w.X, w.y, NULL, &bad), LH_ERR_VALUE);
    MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "fit_warm"), "shape: %s",
             lh_error_message());
    lh_error_clear();
    bad = o;
    bad.kind = LH_PROBE_REGRESSOR;
    bad.solver = LH_PROBE_RIDGE;
    MT_STATUS(lh_probe_fit_warm(p, w.X, w.y, NULL, &bad), LH_ERR_VALUE);
    lh_error_clear();
    double *x = lh_dmat_local(w.X);
    int P;
    MPI_Comm_size(MPI_COMM_WORLD, &P);
    const double x0 = lh_dmat_local_rows(w.X) > 0 ? x[0] : 0;
    if (mt_rank() == P - 1 && lh_dmat_local_rows(w.X) > 0) x[0] = INFINITY;
    MT_STATUS(lh_probe_fit_warm(p, w.X, w.y, NULL, &o), LH_ERR_VALUE);
    lh_error_clear();
    if (lh_dmat_local_rows(w.X) > 0) x[0] = x0;
    MT_CHECK(memcmp(keep, p->coef, 12 * sizeof(double)) == 0 &&
                 memcmp(keep + 12, p->intercept, 3 * sizeof(double)) == 0,
             "a refused or failed warm fit changed the probe");
    MT_STATUS(lh_probe_fit_warm(NULL, w.X, w.y, NULL, &o), LH_ERR_VALUE);
    lh_error_clear();
  }
  lh_probe_destroy(&p);
  unload(&w);

  /* closed forms: fitted anew, the same as a fresh fit */
  json_t *rr = json_object_get(doc, "ridge");
  o = lh_probe_defaults();
  o.kind = LH_PROBE_REGRESSOR;
  o.solver = LH_PROBE_RIDGE;
  o.l2 = 0.1;
  lh_probe_opts ad2 = o;
  ad2.solver = LH_PROBE_ADAM;
  ad2.epochs = 2;
  p = warm_both("ridge warm from adam", rr, &ad2, &o, 1e-12);
  if (p)
    check_model("ridge warm from adam", p, json_object_get(rr, "coef"),
                json_object_get(rr, "intercept"), 1e-10);
  lh_probe_destroy(&p);
}

/* N x D rows on comm, a function of the global index only: features 3 + U(-1, 1) (a mean to
 * centre away), y = sum_j sin(j + 1) x_j + 0.5 + U(-0.1, 0.1). */
static data synth(MPI_Comm comm, int64_t N, int64_t D, uint64_t seed) {
  data d = {.N = N, .D = D};
  MT_OK(lh_dmat_create(comm, LH_F64, N, D, &d.X));
  const int64_t n = lh_dmat_local_rows(d.X), r0 = lh_dmat_row_offset(d.X);
  double *x = lh_dmat_local(d.X);
  d.y = malloc((size_t)(n + 1) * sizeof(double));
  for (int64_t i = 0; i < n; i++) {
    const uint64_t g = (uint64_t)(r0 + i);
    double t = 0.5 + 0.2 * (lh_rng_unit(seed + 1, g) - 0.5);
    for (int64_t j = 0; j < D; j++) {
      x[i * D + j] = 3.0 + 2.0 * lh_rng_unit(seed, g * (uint64_t)D + (uint64_t)j) - 1.0;
      t += sin((double)(j + 1)) * x[i * D + j];
    }
    d.y[i] = t;
  }
  return d;
}

/* The distributed ridge solver (block-cyclic Gram, ScaLAPACK pdposv; grids 1x1, 1x2, 1x3 and
 * 2x2 on 1..4 ranks), forced at small D with ridge_scalapack_min_d = 0: scikit-learn's
 * fixture, the replicated LAPACK solver, one rank; a wider problem with a train split, fed in
 * one panel and in panels of 7 rows per rank; the singular system. */
static void ridge_scalapack(json_t *doc) {
  json_t *rr = json_object_get(doc, "ridge");
  lh_probe_opts o = lh_probe_defaults();
  o.kind = LH_PROBE_REGRESSOR;
  o.solver = LH_PROBE_RIDGE;
  o.l2 = 0.1;
  o.ridge_scalapack_min_d = 0;
  lh_probe *p = fit_both("ridge scalapack", rr, &o, NULL, 1e-12), *q = NULL;
  if (p) {
    check_model("ridge scalapack", p, json_object_get(rr, "coef"), json_object_get(rr, "intercept"),
                1e-10);
    MT_CHECK(strstr(p->solver_message, "ScaLAPACK") != NULL, "solver: %s", p->solver_message);
  }
  o.ridge_scalapack_min_d = lh_probe_defaults().ridge_scalapack_min_d;
  data w = load(MPI_COMM_WORLD, json_object_get(rr, "X"), json_object_get(rr, "y"));
  MT_OK(lh_probe_fit(w.X, w.y, NULL, &o, &q));
  if (p && q) {
    MT_CHECK(strstr(q->solver_message, "LAPACK dpotrf") != NULL, "solver: %s", q->solver_message);
    const double rc = maxrel(p->coef, q->coef, p->D), rb = maxrel(p->intercept, q->intercept, 1);
    MT_CHECK(rc <= 1e-12 && rb <= 1e-12, "ridge: ScaLAPACK vs LAPACK %.3g / %.3g", rc, rb);
  }
  lh_probe_destroy(&p);
  lh_probe_destroy(&q);
  unload(&w);

  /* 400 x 61 with a 70 % train split: ScaLAPACK (one panel, then panels of 7 rows per rank)
   * against LAPACK on the same ranks, and against ScaLAPACK on one rank */
  const int64_t N = 400, D = 61;
  w = synth(MPI_COMM_WORLD, N, D, 99);
  const int64_t n = lh_dmat_local_rows(w.X);
  bool *train = malloc((size_t)n + 1);
  lh_probe_split(3, 0.3, lh_dmat_row_offset(w.X), n, train);
  for (int64_t i = 0; i < n; i++) train[i] = !train[i];
  o.l2 = 1e-3;
  MT_OK(lh_probe_fit(w.X, w.y, train, &o, &q));
  o.ridge_scalapack_min_d = 0;
  for (int k = 0; k < 2 && q; k++) {
    probe_ridge_panel_rows = k == 0 ? 0 : 7;
    MT_OK(lh_probe_fit(w.X, w.y, train, &o, &p));
    if (p) {
      const double rc = maxrel(p->coef, q->coef, D), rb = maxrel(p->intercept, q->intercept, 1);
      MT_CHECK(rc <= 1e-12 && rb <= 1e-12,
               "ridge %lld x %lld, panels of %lld: ScaLAPACK vs "
               "LAPACK %.3g / %.3g",
               (long long)N, (long long)D, (long long)probe_ridge_panel_rows, rc, rb);
      if (mt_rank() == 0) {
        data s = synth(MPI_COMM_SELF, N, D, 99);
        bool *use = malloc((size_t)N);
        lh_probe_split(3, 0.3, 0, N, use);
        for (int64_t i = 0; i < N; i++) use[i] = !use[i];
        lh_probe *r1 = NULL;
        MT_OK(lh_probe_fit(s.X, s.y, use, &o, &r1));
        if (r1) {
          const double sc = maxrel(p->coef, r1->coef, D);
          const double sb = maxrel(p->intercept, r1->intercept, 1);
          MT_CHECK(sc <= 1e-12 && sb <= 1e-12, "ridge ScaLAPACK vs one rank %.3g / %.3g", sc, sb);
          printf("ridge ScaLAPACK %lld x %lld (panels %lld): vs LAPACK %.3g, vs one rank %.3g\n",
                 (long long)N, (long long)D, (long long)probe_ridge_panel_rows, rc, sc);
        }
        lh_probe_destroy(&r1);
        free(use);
        unload(&s);
      }
    }
    lh_probe_destroy(&p);
  }
  probe_ridge_panel_rows = 0;
  /* a duplicated feature with l2 = 0: singular through ScaLAPACK too */
  double *x = lh_dmat_local(w.X);
  for (int64_t i = 0; i < n; i++) x[i * D + 5] = x[i * D + 2];
  o.l2 = 0;
  MT_STATUS(lh_probe_fit(w.X, w.y, train, &o, &p), LH_ERR_VALUE);
  MT_CHECK(!lh_error_is_reporter() || strstr(lh_error_message(), "singular"), "singular: %s",
           lh_error_message());
  lh_error_clear();
  lh_probe_destroy(&q);
  free(train);
  unload(&w);
}

/* Scores by DGEMM over fixed blocks of global rows: 1000 samples x 600 features (blocks of 256
 * rows, so rank boundaries fall inside blocks; D above OpenBLAS's K blocking), a 5-class
 * probe; on the world communicator the same bits as on one rank holding everything, within
 * 1e-12 of a plain loop; predictions the argmax; probabilities summing to 1; metrics the same
 * bits as on one rank; float32 activations likewise. */
static void scores_blas(void) {
  const int64_t N = 1000, D = 600, C = 5;
  for (int f32 = 0; f32 <= 1; f32++) {
    data w = synth(MPI_COMM_WORLD, N, D, 21), s = synth(MPI_COMM_SELF, N, D, 21);
    const int64_t n = lh_dmat_local_rows(w.X), r0 = lh_dmat_row_offset(w.X);
    if (f32) { /* the same values as float32 matrices */
      lh_dmat *a = NULL, *b = NULL;
      MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N, D, &a));
      MT_OK(lh_dmat_create(MPI_COMM_SELF, LH_F32, N, D, &b));
      MT_OK(lh_dmat_copy(w.X, a));
      MT_OK(lh_dmat_copy(s.X, b));
      lh_dmat_destroy(&w.X);
      lh_dmat_destroy(&s.X);
      w.X = a;
      s.X = b;
    }
    for (int64_t i = 0; i < n; i++) w.y[i] = (double)((r0 + i) % C);
    for (int64_t i = 0; i < N; i++) s.y[i] = (double)(i % C);
    lh_probe *p = NULL;
    MT_OK(probe_alloc(LH_PROBE_CLASSIFIER, C, D, &p));
    if (!p) goto next;
    for (int64_t k = 0; k < C * D; k++) p->coef[k] = 2.0 * lh_rng_unit(5, (uint64_t)k) - 1.0;
    for (int64_t c = 0; c < C; c++) p->intercept[c] = 0.1 * (double)c;
    double *dw = malloc((size_t)(n * C + 1) * 8), *ds = malloc((size_t)(N * C) * 8);
    double *pw = malloc((size_t)(n + 1) * 8), *qw = malloc((size_t)(n * C + 1) * 8);
    MT_OK(lh_probe_decision(p, w.X, dw));
    MT_OK(lh_probe_decision(p, s.X, ds));
    MT_OK(lh_probe_predict(p, w.X, pw));
    MT_OK(lh_probe_predict_proba(p, w.X, qw));
    MT_CHECK(memcmp(dw, ds + r0 * C, (size_t)(n * C) * 8) == 0,
             "%s scores on this rank count differ from one rank (maxrel %.3g)",
             f32 ? "float32" : "float64", maxrel(dw, ds + r0 * C, n * C));
    double worst = 0;
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
      double z = 0;
      int64_t best = 0;
      for (int64_t c = 0; c < C; c++) {
        double t = p->intercept[c];
        for (int64_t j = 0; j < D; j++)
          t += p->coef[c * D + j] *
               (f32 ? (double)((const float *)lh_dmat_local_const(w.X))[i * D + j]
                    : ((const double *)lh_dmat_local_const(w.X))[i * D + j]);
        worst = fmax(worst, fabs(dw[i * C + c] - t) / fmax(1, fabs(t)));
        if (dw[i * C + c] > dw[i * C + best]) best = c;
        z += qw[i * C + c];
      }
      bad += pw[i] != (double)best || fabs(z - 1) > 1e-14;
    }
    MT_CHECK(worst <= 1e-12, "scores vs a plain loop: %.3g", worst);
    MT_CHECK(bad == 0,
             "%d rows whose prediction is not the argmax or probabilities do not sum to 1", bad);
    lh_probe_metrics mw = {0}, ms = {0};
    MT_OK(lh_probe_evaluate(p, w.X, w.y, NULL, &mw));
    MT_OK(lh_probe_evaluate(p, s.X, s.y, NULL, &ms));
    MT_CHECK(mw.n == N && mt_same(mw.accuracy, ms.accuracy) &&
                 mt_same(mw.balanced_accuracy, ms.balanced_accuracy) &&
                 mt_same(mw.macro_f1, ms.macro_f1) && mt_same(mw.cross_entropy, ms.cross_entropy),
             "metrics differ from one rank: ce %.17g vs %.17g", mw.cross_entropy, ms.cross_entropy);
    free(dw);
    free(ds);
    free(pw);
    free(qw);
  next:
    lh_probe_destroy(&p);
    unload(&w);
    unload(&s);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  lh_log_setup(LH_LOG_WARN, mt_rank(), 1);
  json_error_t err;
  json_t *doc = json_load_file(LH_GOLDEN_DIR "/probe/probe.json", 0, &err);
  MT_CHECK(doc != NULL, "cannot read probe.json: %s", err.text);
  tv12();
  tv13();
  if (doc) goldens(doc);
  if (doc) ridge_scalapack(doc);
  if (doc) warm_starts(doc);
  scores_blas();
  json_decref(doc);
  return mt_finish("mpi_probe");
}
