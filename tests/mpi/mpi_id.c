/* Exact kNN, TwoNN and local kNN on 1..4 ranks against references computed offline with
 * NumPy (tests/golden/id.json, from tests/golden/make_golden_id.py): neighbour indices equal,
 * distances and estimates within 1e-12 relative, SPEC test vectors TV-1..TV-8, duplicates,
 * NaN rows, float32 input against a brute-force search, row-permutation invariance, segments,
 * manifolds of known dimension, and the error paths. */
#include <stdlib.h>

#include <jansson.h>

#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/knn.h"
#include "latenthook/localknn.h"
#include "latenthook/twonn.h"
#include "mpi/mpitest.h"
#include "testgen.h"

static double hexd(json_t *v) {
  const char *s = json_string_value(v);
  if (!s) return json_number_value(v);
  if (strcmp(s, "nan") == 0) return NAN;
  if (strcmp(s, "inf") == 0) return INFINITY;
  return strtod(s, NULL);
}

static int close_rel(double a, double b, double tol) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  if (isinf(a) || isinf(b)) return a == b;
  return fabs(a - b) <= tol * fmax(fabs(a), fabs(b)) + 1e-300;
}

/* The cloud of a golden entry as a distributed float64 matrix. */
static lh_dmat *build_cloud(json_t *c) {
  const char *kind = json_string_value(json_object_get(c, "cloud"));
  tg_cloud tc = strcmp(kind, "plane10") == 0   ? TG_PLANE10
                : strcmp(kind, "sphere3") == 0 ? TG_SPHERE3
                : strcmp(kind, "cube5") == 0   ? TG_CUBE5
                                               : TG_GAUSS;
  uint64_t seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
  int64_t N = json_integer_value(json_object_get(c, "N"));
  int D = (int)json_integer_value(json_object_get(c, "D"));
  lh_dmat *m = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &m));
  double *x = lh_dmat_local(m);
  int64_t o = lh_dmat_row_offset(m);
  json_t *copies = json_object_get(c, "copy_rows"), *nans = json_object_get(c, "nan_at");
  for (int64_t i = 0; i < lh_dmat_local_rows(m); i++) {
    int64_t g = o + i, src = g;
    for (size_t q = 0; q < json_array_size(copies); q++)
      if (json_integer_value(json_array_get(json_array_get(copies, q), 0)) == g)
        src = json_integer_value(json_array_get(json_array_get(copies, q), 1));
    tg_cloud_row(tc, seed, src, D, x + i * D);
    for (size_t q = 0; q < json_array_size(nans); q++) {
      json_t *p = json_array_get(nans, q);
      if (json_integer_value(json_array_get(p, 0)) == g)
        x[i * D + json_integer_value(json_array_get(p, 1))] = NAN;
    }
  }
  json_t *first = json_object_get(c, "first_row");
  if (o == 0 && lh_dmat_local_rows(m) > 0)
    for (int j = 0; j < D; j++)
      MT_CHECK(mt_same(x[j], hexd(json_array_get(first, (size_t)j))),
               "%s: generator differs from the golden script at column %d", kind, j);
  return m;
}

static void check_knn(lh_dmat *X, json_t *kn, double eps, const char *name) {
  int64_t k = json_integer_value(json_object_get(kn, "k"));
  json_t *gi = json_object_get(kn, "index"), *gd = json_object_get(kn, "dist");
  lh_knn_opts o = lh_knn_defaults();
  o.k = k;
  o.eps = eps;
  lh_knn_result *r = NULL;
  MT_OK(lh_knn_run(X, &o, &r));
  if (!r) return;
  int bad_i = 0, bad_d = 0;
  for (int64_t i = 0; i < r->n; i++)
    for (int64_t t = 0; t < k; t++) {
      json_t *row = json_array_get(gi, (size_t)(r->row0 + i));
      if (r->index[i * k + t] != json_integer_value(json_array_get(row, (size_t)t))) bad_i++;
      double want = hexd(json_array_get(json_array_get(gd, (size_t)(r->row0 + i)), (size_t)t));
      if (!close_rel(r->dist[i * k + t], want, 1e-14)) bad_d++;
    }
  MT_CHECK(bad_i == 0 && bad_d == 0, "%s k=%lld: %d wrong indices, %d wrong distances", name,
           (long long)k, bad_i, bad_d);
  lh_knn_result_destroy(&r);
}

/* k above the symmetric limit takes the one-sided path: its first 5 neighbours must be the
 * golden k = 5 lists. */
static void check_prefix_large_k(lh_dmat *X, json_t *kn, double eps) {
  json_t *gi = json_object_get(kn, "index");
  lh_knn_opts o = lh_knn_defaults();
  o.k = 70;
  o.eps = eps;
  lh_knn_result *r = NULL;
  MT_OK(lh_knn_run(X, &o, &r));
  int bad = 0;
  for (int64_t i = 0; r && i < r->n; i++) {
    for (int64_t t = 0; t < 5; t++)
      if (r->index[i * 70 + t] != json_integer_value(json_array_get(json_array_get(gi, (size_t)(r->row0 + i)), (size_t)t))) bad++;
    for (int64_t t = 1; t < 70; t++)
      if (r->dist[i * 70 + t] < r->dist[i * 70 + t - 1]) bad++;
  }
  MT_CHECK(bad == 0, "k=70: %d entries differ from the golden k=5 prefix or are unsorted", bad);
  lh_knn_result_destroy(&r);
}

static void check_twonn(lh_dmat *X, json_t *tw, double eps, const char *name) {
  lh_twonn_opts o = lh_twonn_defaults();
  o.eps = eps;
  lh_twonn_result *r = NULL;
  MT_OK(lh_twonn_run(X, &o, &r));
  if (r) {
    double want = hexd(json_object_get(json_object_get(tw, "spec"), "d"));
    MT_CHECK(close_rel(r->dimension[0], want, 1e-12), "%s: TwoNN %.17g, golden %.17g", name,
             r->dimension[0], want);
    double mle = hexd(json_object_get(json_object_get(tw, "mle"), "d"));
    MT_CHECK(close_rel(r->mle[0], mle, 1e-12), "%s: MLE %.17g, golden %.17g", name, r->mle[0], mle);
    MT_CHECK(r->n_valid[0] == json_integer_value(json_object_get(tw, "Nv")), "%s: Nv", name);
  }
  lh_twonn_result_destroy(&r);
  o.discard_fraction = 0.1;
  MT_OK(lh_twonn_run(X, &o, &r));
  if (r) {
    json_t *dc = json_object_get(tw, "discard");
    MT_CHECK(r->n_fit[0] == json_integer_value(json_object_get(dc, "n_fit")), "%s: n_fit %lld",
             name, (long long)r->n_fit[0]);
    MT_CHECK(close_rel(r->dimension[0], hexd(json_object_get(dc, "d")), 1e-12),
             "%s: TwoNN with F=0.1 %.17g", name, r->dimension[0]);
  }
  lh_twonn_result_destroy(&r);
}

static void check_localknn(lh_dmat *X, json_t *lk, double eps, const char *name) {
  int64_t k = json_integer_value(json_object_get(lk, "k"));
  bool autok = json_is_string(json_object_get(lk, "k_arg"));
  lh_dmat *dim = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, lh_dmat_rows(X), 1, &dim));
  MT_OK(lh_localknn_run(X, autok ? 0 : k, eps, dim));
  json_t *gd = json_object_get(lk, "d");
  int bad = 0;
  const double *d = lh_dmat_local(dim);
  for (int64_t i = 0; i < lh_dmat_local_rows(dim); i++)
    if (!close_rel(d[i], hexd(json_array_get(gd, (size_t)(lh_dmat_row_offset(dim) + i))), 1e-12)) bad++;
  MT_CHECK(bad == 0, "%s: local kNN (k=%lld%s): %d wrong values", name, (long long)k,
           autok ? ", auto" : "", bad);
  double mean, median;
  int64_t nanc;
  MT_OK(lh_localknn_summary(dim, &mean, &median, &nanc));
  MT_CHECK(close_rel(mean, hexd(json_object_get(lk, "mean_finite")), 1e-12), "%s: mean", name);
  MT_CHECK(lh_dmat_rows(X) - nanc == json_integer_value(json_object_get(lk, "n_finite")),
           "%s: finite count", name);
  lh_dmat_destroy(&dim);
}

static void golden_clouds(json_t *doc) {
  double eps = hexd(json_object_get(doc, "eps"));
  json_t *c;
  size_t idx;
  json_array_foreach(json_object_get(doc, "clouds"), idx, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    lh_dmat *X = build_cloud(c);
    json_t *kn;
    size_t q;
    json_array_foreach(json_object_get(c, "knn"), q, kn) check_knn(X, kn, eps, name);
    if (idx == 0) check_prefix_large_k(X, json_array_get(json_object_get(c, "knn"), 0), eps);
    check_twonn(X, json_object_get(c, "twonn"), eps, name);
    json_array_foreach(json_object_get(c, "localknn"), q, kn) check_localknn(X, kn, eps, name);
    lh_dmat_destroy(&X);
  }
}

/* SPEC TV-1 .. TV-8. */
static void spec_vectors(json_t *doc) {
  json_t *p;
  size_t idx;
  json_array_foreach(json_object_get(doc, "auto_k"), idx, p) {
    int64_t N = json_integer_value(json_array_get(p, 0)), k = json_integer_value(json_array_get(p, 1));
    MT_CHECK(lh_localknn_auto_k(N) == k, "TV-1: auto k for N=%lld", (long long)N);
  }
  json_t *tv;
  json_array_foreach(json_object_get(doc, "tv"), idx, tv) {
    const char *name = json_string_value(json_object_get(tv, "name"));
    int64_t N = json_integer_value(json_object_get(tv, "N")), D = json_integer_value(json_object_get(tv, "D"));
    double eps = hexd(json_object_get(tv, "eps"));
    lh_dmat *X = NULL;
    MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &X));
    double *x = lh_dmat_local(X);
    for (int64_t i = 0; i < lh_dmat_local_rows(X); i++)
      for (int64_t j = 0; j < D; j++)
        x[i * D + j] = hexd(json_array_get(json_array_get(json_object_get(tv, "X"), (size_t)(lh_dmat_row_offset(X) + i)), (size_t)j));
    if (strcmp(json_string_value(json_object_get(tv, "estimator")), "twonn") == 0) {
      lh_twonn_opts o = lh_twonn_defaults();
      o.eps = eps;
      o.return_xy = true;
      lh_twonn_result *r = NULL;
      MT_OK(lh_twonn_run(X, &o, &r));
      if (r) {
        MT_CHECK(close_rel(r->dimension[0], hexd(json_object_get(tv, "d")), 1e-12), "%s: d = %.12g",
                 name, r->dimension[0]);
        const double *xv = lh_dmat_local(r->x), *yv = lh_dmat_local(r->y);
        int bad = 0;
        for (int64_t i = 0; i < lh_dmat_local_rows(r->x); i++) {
          int64_t g = lh_dmat_row_offset(r->x) + i;
          if (!close_rel(xv[i], hexd(json_array_get(json_object_get(tv, "x"), (size_t)g)), 1e-12)) bad++;
          if (!close_rel(yv[i], hexd(json_array_get(json_object_get(tv, "y"), (size_t)g)), 1e-12)) bad++;
        }
        MT_CHECK(bad == 0, "%s: %d wrong x/y values", name, bad);
        MT_CHECK(lh_dmat_rows(r->x) == N - 1, "%s: x has N-1 rows", name);
      }
      lh_twonn_result_destroy(&r);
    } else {
      lh_dmat *dim = NULL;
      MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, 1, &dim));
      MT_OK(lh_localknn_run(X, json_integer_value(json_object_get(tv, "k")), eps, dim));
      int bad = 0;
      for (int64_t i = 0; i < lh_dmat_local_rows(dim); i++)
        if (!close_rel(((double *)lh_dmat_local(dim))[i],
                       hexd(json_array_get(json_object_get(tv, "d"), (size_t)(lh_dmat_row_offset(dim) + i))), 1e-12))
          bad++;
      MT_CHECK(bad == 0, "%s: %d wrong local dimensions", name, bad);
      lh_dmat_destroy(&dim);
    }
    lh_dmat_destroy(&X);
  }
}

/* float32 input: the neighbours of the float32 values, against a brute-force search. */
static void float32_brute_force(void) {
  int64_t N = 257, D = 7, K = 4;
  lh_dmat *X = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N, D, &X));
  float *x = lh_dmat_local(X);
  for (int64_t i = 0; i < lh_dmat_local_rows(X); i++)
    for (int64_t j = 0; j < D; j++)
      x[i * D + j] = (float)(100.0 + tg_unit(21, (uint64_t)((lh_dmat_row_offset(X) + i) * D + j)));
  /* far from the origin on purpose: the GEMM formula cancels there */
  float *all = malloc((size_t)(N * D) * sizeof *all);
  MT_OK(lh_dmat_gather(X, 0, all));
  MPI_Bcast(all, (int)(N * D), MPI_FLOAT, 0, MPI_COMM_WORLD);
  lh_knn_opts o = lh_knn_defaults();
  o.k = K;
  lh_knn_result *r = NULL;
  MT_OK(lh_knn_run(X, &o, &r));
  int bad = 0;
  for (int64_t i = 0; r && i < r->n; i++) {
    int64_t gi = r->row0 + i;
    double bd[4] = {INFINITY, INFINITY, INFINITY, INFINITY};
    int64_t bi[4] = {-1, -1, -1, -1};
    for (int64_t j = 0; j < N; j++) {
      if (j == gi) continue;
      double s = 0;
      for (int64_t c = 0; c < D; c++) {
        double t = (double)all[gi * D + c] - (double)all[j * D + c];
        s += t * t;
      }
      double dd = sqrt(s);
      if (!(dd > 1e-5)) continue;
      for (int t = 0; t < K; t++)
        if (dd < bd[t] || (dd == bd[t] && j < bi[t])) {
          for (int u = (int)K - 1; u > t; u--) {
            bd[u] = bd[u - 1];
            bi[u] = bi[u - 1];
          }
          bd[t] = dd;
          bi[t] = j;
          break;
        }
    }
    for (int t = 0; t < K; t++)
      if (r->index[i * K + t] != bi[t] || r->dist[i * K + t] != bd[t]) bad++;
  }
  MT_CHECK(bad == 0, "float32 kNN differs from brute force in %d entries", bad);
  lh_knn_result_destroy(&r);
  free(all);
  lh_dmat_destroy(&X);
}

/* Reversing the row order maps every neighbour list through the same permutation. */
static void permutation_invariance(void) {
  int64_t N = 150, D = 4, K = 3;
  lh_dmat *A = NULL, *Bm = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &A));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &Bm));
  for (int t = 0; t < 2; t++) {
    lh_dmat *m = t ? Bm : A;
    double *x = lh_dmat_local(m);
    for (int64_t i = 0; i < lh_dmat_local_rows(m); i++) {
      int64_t g = lh_dmat_row_offset(m) + i, src = t ? N - 1 - g : g;
      tg_cloud_row(TG_GAUSS, 31, src, (int)D, x + i * D);
    }
  }
  lh_knn_opts o = lh_knn_defaults();
  o.k = K;
  lh_knn_result *ra = NULL, *rb = NULL;
  MT_OK(lh_knn_run(A, &o, &ra));
  MT_OK(lh_knn_run(Bm, &o, &rb));
  /* gather both index tables on every rank (small) and compare through the permutation */
  int64_t *ia = calloc((size_t)(N * K), sizeof *ia), *ib = calloc((size_t)(N * K), sizeof *ib);
  for (int64_t i = 0; ra && i < ra->n; i++)
    for (int64_t t = 0; t < K; t++) {
      ia[(ra->row0 + i) * K + t] = ra->index[i * K + t];
      ib[(rb->row0 + i) * K + t] = rb->index[i * K + t];
    }
  MPI_Allreduce(MPI_IN_PLACE, ia, (int)(N * K), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, ib, (int)(N * K), MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  int bad = 0;
  for (int64_t g = 0; g < N; g++)
    for (int64_t t = 0; t < K; t++)
      if (ib[(N - 1 - g) * K + t] != N - 1 - ia[g * K + t]) bad++;
  MT_CHECK(bad == 0, "kNN not invariant under row permutation (%d entries)", bad);
  free(ia);
  free(ib);
  lh_knn_result_destroy(&ra);
  lh_knn_result_destroy(&rb);
  lh_dmat_destroy(&A);
  lh_dmat_destroy(&Bm);
}

/* TwoNN with S segments equals TwoNN of each segment run alone. */
static void segments_match_separate_runs(void) {
  int64_t N = 203, S = 3;
  lh_dmat *X = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, 5, &X));
  double *x = lh_dmat_local(X);
  for (int64_t i = 0; i < lh_dmat_local_rows(X); i++)
    tg_cloud_row(TG_CUBE5, 41, lh_dmat_row_offset(X) + i, 5, x + i * 5);
  lh_twonn_opts o = lh_twonn_defaults();
  o.segments = S;
  lh_twonn_result *all = NULL;
  MT_OK(lh_twonn_run(X, &o, &all));
  for (int64_t s = 0; all && s < S; s++) {
    int64_t a = lh_knn_segment_start(N, S, s), b = lh_knn_segment_start(N, S, s + 1);
    lh_dmat *Y = NULL;
    MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, b - a, 5, &Y));
    double *y = lh_dmat_local(Y);
    for (int64_t i = 0; i < lh_dmat_local_rows(Y); i++)
      tg_cloud_row(TG_CUBE5, 41, a + lh_dmat_row_offset(Y) + i, 5, y + i * 5);
    lh_twonn_result *one = NULL;
    lh_twonn_opts o1 = lh_twonn_defaults();
    MT_OK(lh_twonn_run(Y, &o1, &one));
    if (one)
      MT_CHECK(mt_same(one->dimension[0], all->dimension[s]) && one->n_valid[0] == all->n_valid[s],
               "segment %lld: %.17g alone, %.17g in segments", (long long)s, one->dimension[0],
               all->dimension[s]);
    lh_twonn_result_destroy(&one);
    lh_dmat_destroy(&Y);
  }
  lh_twonn_result_destroy(&all);
  lh_dmat_destroy(&X);
}

/* Manifolds of known dimension, N = 2000: TwoNN within the stated tolerances. */
static void manifolds(void) {
  struct { tg_cloud c; double want, tol; const char *name; } m[] = {
      {TG_PLANE10, 2.0, 0.15, "plane in R^10"},
      {TG_SPHERE3, 3.0, 0.25, "3-sphere in R^4"},
      {TG_CUBE5, 5.0, 0.6, "5-cube"},
  };
  for (int t = 0; t < 3; t++) {
    int D = tg_cloud_dim(m[t].c, 0);
    lh_dmat *X = NULL;
    MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 2000, D, &X));
    double *x = lh_dmat_local(X);
    for (int64_t i = 0; i < lh_dmat_local_rows(X); i++)
      tg_cloud_row(m[t].c, 51 + (uint64_t)t, lh_dmat_row_offset(X) + i, D, x + i * D);
    lh_twonn_result *r = NULL;
    lh_twonn_opts o = lh_twonn_defaults();
    MT_OK(lh_twonn_run(X, &o, &r));
    if (r)
      MT_CHECK(fabs(r->dimension[0] - m[t].want) < m[t].tol, "%s: TwoNN %.4f, expected %.1f +- %.2f",
               m[t].name, r->dimension[0], m[t].want, m[t].tol);
    lh_twonn_result_destroy(&r);
    lh_dmat_destroy(&X);
  }
}

static void expect_err(lh_status st, lh_status want, const char *needle) {
  MT_CHECK(st == want, "got %s, expected %s", lh_status_name(st), lh_status_name(want));
  int pend = lh_error_pending();
  if (pend) MT_CHECK(strstr(lh_error_message(), needle) != NULL, "message '%s' lacks '%s'", lh_error_message(), needle);
  MPI_Allreduce(MPI_IN_PLACE, &pend, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MT_CHECK(pend == 1, "%d ranks hold the message", pend);
  lh_error_clear();
}

static void errors(void) {
  lh_dmat *X = NULL, *dim = NULL;
  lh_twonn_result *r = NULL;
  lh_twonn_opts o = lh_twonn_defaults();
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 2, 5, &X));
  expect_err(lh_twonn_run(X, &o, &r), LH_ERR_VALUE, "At least 3 points required for Two NN");
  lh_dmat_destroy(&X);
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 5, 3, &X)); /* ones(5, 3): all duplicates */
  for (int64_t i = 0; i < lh_dmat_local_rows(X) * 3; i++) ((double *)lh_dmat_local(X))[i] = 1.0;
  expect_err(lh_twonn_run(X, &o, &r), LH_ERR_VALUE, "At least 3 valid points required for Two NN");
  o.discard_fraction = 1.0;
  expect_err(lh_twonn_run(X, &o, &r), LH_ERR_VALUE, "discard fraction");
  lh_dmat_destroy(&X);
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 4, 5, &X)); /* randn(4, 5), k = 2 */
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 4, 1, &dim));
  expect_err(lh_localknn_run(X, 2, 1e-5, dim), LH_ERR_VALUE, "At least 2k+1 points required for local KNN (k=2), got 4");
  expect_err(lh_localknn_run(X, 1, 1e-5, dim), LH_ERR_VALUE, "k must be greater than 1");
  lh_knn_opts ko = lh_knn_defaults();
  ko.k = 0;
  lh_knn_result *kr = NULL;
  expect_err(lh_knn_run(X, &ko, &kr), LH_ERR_VALUE, "k must be at least 1");
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&dim);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  json_error_t err;
  json_t *doc = json_load_file(LH_GOLDEN_DIR "/id.json", 0, &err);
  MT_CHECK(doc != NULL, "cannot read id.json: %s", err.text);
  if (doc) {
    golden_clouds(doc);
    spec_vectors(doc);
    json_decref(doc);
  }
  float32_brute_force();
  permutation_invariance();
  segments_match_separate_runs();
  manifolds();
  errors();
  return mt_finish("mpi_id");
}
