/* CKA and information imbalance on 1..4 ranks against references computed offline with NumPy
 * (tests/golden/sim.json, from tests/golden/make_golden_sim.py): SPEC TV-9, TV-10, TV-11,
 * random, tie-heavy and integer pairs, identical views, orthogonal and isotropic invariance,
 * both linear-CKA paths (Gram and ScaLAPACK), every Minkowski p and k in the references, and
 * the error paths. */
#include <stdlib.h>

#include <jansson.h>

#include "latenthook/cka.h"
#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/infoimb.h"
#include "latenthook/kmat.h"
#include "latenthook/h5.h"
#include "latenthook/log.h"
#include "mpi/mpitest.h"

static double hexd(json_t *v) {
  const char *s = json_string_value(v);
  if (!s) return json_number_value(v);
  if (strcmp(s, "nan") == 0) return NAN;
  if (strcmp(s, "inf") == 0) return INFINITY;
  return strtod(s, NULL);
}

static int close_rel(double a, double b, double tol) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
  return fabs(a - b) <= tol * fmax(fabs(a), fabs(b)) + 1e-300;
}

/* A matrix stored row by row in the JSON, as a distributed float64 matrix. */
static lh_dmat *load(json_t *rows) {
  int64_t N = (int64_t)json_array_size(rows);
  int64_t D = N ? (int64_t)json_array_size(json_array_get(rows, 0)) : 0;
  lh_dmat *m = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &m));
  double *x = lh_dmat_local(m);
  for (int64_t i = 0; i < lh_dmat_local_rows(m); i++)
    for (int64_t j = 0; j < D; j++)
      x[i * D + j] = hexd(
          json_array_get(json_array_get(rows, (size_t)(lh_dmat_row_offset(m) + i)), (size_t)j));
  return m;
}

static void check_cka(const char *name, lh_dmat *X, lh_dmat *Y, json_t *ref) {
  lh_cka_path paths[2] = {LH_CKA_GRAM, LH_CKA_SCALAPACK};
  for (int t = 0; t < 2; t++) {
    lh_cka_opts o = lh_cka_defaults();
    o.path = paths[t];
    double c = -1;
    MT_OK(lh_cka_linear(X, Y, &o, &c));
    double want = hexd(json_object_get(ref, "linear"));
    MT_CHECK(close_rel(c, want, 1e-10), "%s: linear CKA (%s path) %.17g, reference %.17g", name,
             t ? "ScaLAPACK" : "Gram", c, want);
    if (lh_dmat_rows(X) >= 4) {
      o.debiased = true;
      MT_OK(lh_cka_linear(X, Y, &o, &c));
      double wd = hexd(json_object_get(ref, "debiased"));
      MT_CHECK(close_rel(c, wd, 1e-9), "%s: debiased CKA (%s path) %.17g, reference %.17g", name,
               t ? "ScaLAPACK" : "Gram", c, wd);
    }
  }
}

/* Kernel CKA, held and streamed: RBF against the references, linear kernel against the
 * feature-space value. */
static void check_kernel_cka(const char *name, lh_dmat *X, lh_dmat *Y, json_t *ref) {
  lh_kmat_mode modes[2] = {LH_KMAT_HELD, LH_KMAT_STREAM};
  int64_t N = lh_dmat_rows(X);
  for (int m = 0; m < 2; m++) {
    json_t *r;
    size_t idx;
    json_array_foreach(json_object_get(ref, "rbf"), idx, r) {
      for (int deb = 0; deb < 2; deb++) {
        if (deb && N < 4) continue;
        lh_kcka_opts o = lh_kcka_defaults();
        o.mode = modes[m];
        o.threshold = hexd(json_object_get(r, "t"));
        o.debiased = deb;
        double c = -1, mx = -1, my = -1;
        MT_OK(lh_cka_kernel(X, Y, &o, &c, &mx, &my));
        double want = hexd(json_object_get(r, deb ? "debiased" : "biased"));
        MT_CHECK(close_rel(c, want, 1e-9), "%s: RBF CKA t=%g %s (%s) %.17g, reference %.17g", name,
                 o.threshold, deb ? "debiased" : "biased", m ? "streamed" : "held", c, want);
        if (N > 1)
          MT_CHECK(close_rel(mx, hexd(json_object_get(r, "median_x")), 1e-14) &&
                       close_rel(my, hexd(json_object_get(r, "median_y")), 1e-14),
                   "%s: RBF medians %.17g %.17g (%s)", name, mx, my, m ? "streamed" : "held");
      }
    }
    lh_kcka_opts o = lh_kcka_defaults();
    o.mode = modes[m];
    o.kernel = LH_KERNEL_LINEAR;
    double c = -1;
    MT_OK(lh_cka_kernel(X, Y, &o, &c, NULL, NULL));
    double want = hexd(json_object_get(ref, "linear"));
    MT_CHECK(close_rel(c, want, 1e-9), "%s: linear kernel CKA (%s) %.17g, feature-space %.17g",
             name, m ? "streamed" : "held", c, want);
  }
}

static void check_ii(const char *name, lh_dmat *A, lh_dmat *B, json_t *list) {
  json_t *e;
  size_t idx;
  json_array_foreach(list, idx, e) {
    json_t *pj = json_object_get(e, "p");
    lh_ii_opts o = lh_ii_defaults();
    o.p = json_is_string(pj) ? INFINITY : json_number_value(pj);
    o.k = json_integer_value(json_object_get(e, "k"));
    lh_ii_result r;
    MT_OK(lh_ii_run(A, B, &o, &r));
    double ab = hexd(json_object_get(e, "a_to_b")), ba = hexd(json_object_get(e, "b_to_a"));
    MT_CHECK(close_rel(r.a_to_b, ab, 1e-12) && close_rel(r.b_to_a, ba, 1e-12),
             "%s p=%g k=%lld: II %.17g / %.17g, reference %.17g / %.17g", name, o.p, (long long)o.k,
             r.a_to_b, r.b_to_a, ab, ba);
  }
}

static void golden(json_t *doc) {
  json_t *c;
  size_t idx;
  json_array_foreach(json_object_get(doc, "cka_cases"), idx, c) {
    lh_dmat *X = load(json_object_get(c, "X")), *Y = load(json_object_get(c, "Y"));
    check_cka(json_string_value(json_object_get(c, "name")), X, Y, json_object_get(c, "cka"));
    check_kernel_cka(json_string_value(json_object_get(c, "name")), X, Y,
                     json_object_get(c, "cka"));
    lh_dmat_destroy(&X);
    lh_dmat_destroy(&Y);
  }
  json_array_foreach(json_object_get(doc, "ii_cases"), idx, c) {
    lh_dmat *A = load(json_object_get(c, "A")), *B = load(json_object_get(c, "B"));
    check_ii(json_string_value(json_object_get(c, "name")), A, B,
             json_object_get(json_object_get(c, "II"), "ii"));
    lh_dmat_destroy(&A);
    lh_dmat_destroy(&B);
  }
  json_array_foreach(json_object_get(doc, "pairs"), idx, c) {
    const char *name = json_string_value(json_object_get(c, "name"));
    lh_dmat *A = load(json_object_get(c, "A")), *B = load(json_object_get(c, "B"));
    check_cka(name, A, B, json_object_get(c, "cka"));
    check_kernel_cka(name, A, B, json_object_get(c, "cka"));
    check_ii(name, A, B, json_object_get(json_object_get(c, "II"), "ii"));
    json_t *sub = json_object_get(json_object_get(c, "II"), "sub");
    if (sub) { /* query subsampling: mean and standard error over the chosen queries */
      lh_ii_opts o = lh_ii_defaults();
      o.subsample = json_integer_value(json_object_get(sub, "M"));
      o.seed = (uint64_t)json_integer_value(json_object_get(sub, "seed"));
      lh_ii_result r;
      MT_OK(lh_ii_run(A, B, &o, &r));
      json_t *ab = json_object_get(sub, "a_to_b"), *ba = json_object_get(sub, "b_to_a");
      MT_CHECK(close_rel(r.a_to_b, hexd(json_object_get(ab, "mean")), 1e-12) &&
                   close_rel(r.se_a_to_b, hexd(json_object_get(ab, "se")), 1e-10) &&
                   close_rel(r.b_to_a, hexd(json_object_get(ba, "mean")), 1e-12) &&
                   close_rel(r.se_b_to_a, hexd(json_object_get(ba, "se")), 1e-10),
               "%s: subsampled II %.17g +- %.3g / %.17g +- %.3g", name, r.a_to_b, r.se_a_to_b,
               r.b_to_a, r.se_b_to_a);
    }
    if (strcmp(name, "identical") == 0) {
      lh_ii_result r;
      lh_ii_opts o = lh_ii_defaults();
      MT_OK(lh_ii_run(A, B, &o, &r));
      MT_CHECK(r.a_to_b == 2.0 / (double)lh_dmat_rows(A) && r.b_to_a == r.a_to_b,
               "identical views: II %.17g, expected 2/N", r.a_to_b);
    }
    lh_dmat_destroy(&A);
    lh_dmat_destroy(&B);
  }
  /* invariance: CKA(X, XQ) = CKA(X, 7.5 X) = 1 */
  json_t *orth = json_object_get(doc, "orth");
  lh_dmat *X = load(json_object_get(orth, "X")), *Y = load(json_object_get(orth, "Y"));
  lh_dmat *S = NULL;
  MT_OK(lh_dmat_create_like(X, &S));
  for (int64_t k = 0; k < lh_dmat_local_rows(X) * lh_dmat_cols(X); k++)
    ((double *)lh_dmat_local(S))[k] = 7.5 * ((const double *)lh_dmat_local(X))[k];
  lh_cka_opts o = lh_cka_defaults();
  double c1 = 0, c2 = 0;
  MT_OK(lh_cka_linear(X, Y, &o, &c1));
  MT_OK(lh_cka_linear(X, S, &o, &c2));
  MT_CHECK(fabs(c1 - 1) < 1e-12 && fabs(c2 - 1) < 1e-12,
           "invariance: CKA(X, XQ) = %.17g, CKA(X, 7.5X) = %.17g", c1, c2);
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  lh_dmat_destroy(&S);
}

/* Streaming selection through its sample, bracket and histogram passes (tiny sample and
 * collection sizes force every stage) must give the held mode's exact medians and CKA. */
static void stream_selection_stages(void) {
  int64_t N = 301;
  lh_dmat *X = NULL, *Y = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, 3, &X));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, 2, &Y));
  for (int64_t i = 0; i < lh_dmat_local_rows(X); i++) {
    int64_t g = lh_dmat_row_offset(X) + i;
    double *x = (double *)lh_dmat_local(X) + i * 3, *y = (double *)lh_dmat_local(Y) + i * 2;
    x[0] = sin(0.1 * (double)g);
    x[1] = cos(0.37 * (double)g);
    x[2] = (double)(g % 7); /* many equal distances */
    y[0] = x[0] * x[1];
    y[1] = floor(4 * x[2]) / 3;
  }
  lh_kcka_opts o = lh_kcka_defaults();
  double ch, mxh, myh;
  o.mode = LH_KMAT_HELD;
  MT_OK(lh_cka_kernel(X, Y, &o, &ch, &mxh, &myh));
  o.mode = LH_KMAT_STREAM;
  o.select_sample = 500;
  o.select_cap = 40;
  lh_log_setup(LH_LOG_DEBUG, -1, -1);
  for (int deb = 0; deb < 2; deb++) {
    double cs, mxs, mys;
    o.debiased = deb;
    MT_OK(lh_cka_kernel(X, Y, &o, &cs, &mxs, &mys));
    MT_CHECK(mt_same(mxs, mxh) && mt_same(mys, myh),
             "streamed medians %.17g %.17g, held %.17g %.17g", mxs, mys, mxh, myh);
    if (!deb) MT_CHECK(close_rel(cs, ch, 1e-10), "streamed CKA %.17g, held %.17g", cs, ch);
  }
  lh_log_setup(LH_LOG_INFO, -1, -1);
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
}

/* The layer matrices equal the pairwise computations they replace. */
static void matrices_match_pairs(void) {
  enum { L = 4 };
  int64_t N = 97, dims[L] = {5, 3, 8, 2};
  lh_dmat *layers[L];
  for (int a = 0; a < L; a++) {
    MT_OK(lh_dmat_create(MPI_COMM_WORLD, a % 2 ? LH_F32 : LH_F64, N, dims[a], &layers[a]));
    for (int64_t i = 0; i < lh_dmat_local_rows(layers[a]); i++)
      for (int64_t j = 0; j < dims[a]; j++) {
        int64_t g = lh_dmat_row_offset(layers[a]) + i;
        double v = sin(0.3 * (double)(g * (a + 1)) + (double)j) + 0.1 * (double)((g * 7 + j) % 5);
        if (a % 2)
          ((float *)lh_dmat_local(layers[a]))[i * dims[a] + j] = (float)v;
        else
          ((double *)lh_dmat_local(layers[a]))[i * dims[a] + j] = v;
      }
  }
  double M[L * L];
  lh_cka_opts co = lh_cka_defaults();
  for (int deb = 0; deb < 2; deb++) {
    co.debiased = deb;
    MT_OK(lh_cka_linear_matrix((const lh_dmat *const *)layers, L, &co, M));
    for (int a = 0; a < L; a++)
      for (int b = 0; b < L; b++) {
        double c = 0;
        MT_OK(lh_cka_linear(layers[a], layers[b], &co, &c));
        MT_CHECK(close_rel(M[a * L + b], c, 1e-12), "CKA matrix [%d][%d] %.17g, pairwise %.17g", a,
                 b, M[a * L + b], c);
      }
  }
  lh_ii_opts io = lh_ii_defaults();
  for (int k = 1; k <= 2; k++) {
    io.k = k;
    MT_OK(lh_ii_matrix((const lh_dmat *const *)layers, L, &io, M));
    for (int a = 0; a < L; a++)
      for (int b = 0; b < L; b++) {
        if (a == b) {
          MT_CHECK(M[a * L + b] == (double)(k + 1) / (double)N, "II diagonal");
          continue;
        }
        lh_ii_result r;
        MT_OK(lh_ii_run(layers[a], layers[b], &io, &r));
        MT_CHECK(M[a * L + b] == r.a_to_b && M[b * L + a] == r.b_to_a,
                 "II matrix [%d][%d] %.17g, pairwise %.17g (k=%d)", a, b, M[a * L + b], r.a_to_b,
                 k);
      }
  }
  for (int a = 0; a < L; a++) lh_dmat_destroy(&layers[a]);
}

/* More rows than the Gram path centres at a time (2048), so that several chunks accumulate
 * on one rank: the Gram path agrees with the ScaLAPACK path (which holds whole centred
 * copies), and an orthogonal map plus isotropic scaling of X gives CKA 1 (a closed form). */
static void gram_chunks(void) {
  const int64_t N = 5003, D = 3;
  lh_dmat *X = NULL, *Y = NULL, *Z = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &X));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N, D, &Y));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &Z));
  double *x = lh_dmat_local(X), *z = lh_dmat_local(Z);
  float *y = lh_dmat_local(Y);
  for (int64_t i = 0; i < lh_dmat_local_rows(X); i++) {
    int64_t g = lh_dmat_row_offset(X) + i;
    for (int64_t j = 0; j < D; j++) {
      x[i * D + j] = 100.0 + sin(0.001 * (double)g * (double)(j + 1)) + 0.01 * (double)(g % 7);
      y[i * D + j] = (float)cos(0.002 * (double)g + (double)j);
    }
    /* z = 3 R x with R a rotation by 0.6 rad in the (0, 1) plane */
    double c = cos(0.6), s = sin(0.6);
    z[i * D + 0] = 3 * (c * x[i * D + 0] - s * x[i * D + 1]);
    z[i * D + 1] = 3 * (s * x[i * D + 0] + c * x[i * D + 1]);
    z[i * D + 2] = 3 * x[i * D + 2];
  }
  for (int deb = 0; deb < 2; deb++) {
    lh_cka_opts o = lh_cka_defaults();
    o.debiased = deb;
    double g = -1, s = -2, one = -1;
    o.path = LH_CKA_GRAM;
    MT_OK(lh_cka_linear(X, Y, &o, &g));
    MT_OK(lh_cka_linear(X, Z, &o, &one));
    o.path = LH_CKA_SCALAPACK;
    MT_OK(lh_cka_linear(X, Y, &o, &s));
    MT_CHECK(g > 0.01 && g < 0.99 && close_rel(g, s, 1e-10),
             "chunked Gram path %.17g, ScaLAPACK path %.17g (debiased %d)", g, s, deb);
    MT_CHECK(close_rel(one, 1.0, 1e-12), "CKA of X and 3 R X over chunks %.17g (debiased %d)", one,
             deb);
  }
  lh_dmat_destroy(&X);
  lh_dmat_destroy(&Y);
  lh_dmat_destroy(&Z);
}

/* The float32 screen (vectorised bounds) against the float64 one on the same values: exact
 * distances are computed from the values, so the ranks and the imbalance must be identical. */
static void ii_f32_matches_f64(void) {
  const int64_t N = 3001, D = 24;
  lh_dmat *A = NULL, *B = NULL, *A64 = NULL, *B64 = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N, D, &A));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N, D, &B));
  float *a = lh_dmat_local(A), *b = lh_dmat_local(B);
  for (int64_t i = 0; i < lh_dmat_local_rows(A); i++) {
    int64_t g = lh_dmat_row_offset(A) + i;
    for (int64_t j = 0; j < D; j++) {
      a[i * D + j] = (float)sin(0.37 * (double)g * (double)(j % 5 + 1) + (double)j);
      b[i * D + j] = (float)(cos(0.11 * (double)g + (double)(j % 3)) + 0.1 * a[i * D + j]);
    }
  }
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &A64));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &B64));
  MT_OK(lh_dmat_copy(A, A64));
  MT_OK(lh_dmat_copy(B, B64));
  for (int k = 1; k <= 3; k += 2) {
    lh_ii_opts o = lh_ii_defaults();
    o.k = k;
    lh_ii_result r32, r64;
    MT_OK(lh_ii_run(A, B, &o, &r32));
    MT_OK(lh_ii_run(A64, B64, &o, &r64));
    MT_CHECK(r32.a_to_b == r64.a_to_b && r32.b_to_a == r64.b_to_a && r32.a_to_b > 0.05,
             "II k=%d float32 %.17g / %.17g, float64 %.17g / %.17g", k, r32.a_to_b, r32.b_to_a,
             r64.a_to_b, r64.b_to_a);
  }
  lh_dmat_destroy(&A);
  lh_dmat_destroy(&B);
  lh_dmat_destroy(&A64);
  lh_dmat_destroy(&B64);
}

/* A kernel matrix written to HDF5 holds the centred Gram matrix X~ X~^T. */
static void kmat_round_trip(void) {
  int P;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  int64_t N = 7, D = 3;
  lh_dmat *X = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &X));
  double x[7][3], mean[3] = {0, 0, 0};
  for (int i = 0; i < N; i++)
    for (int j = 0; j < D; j++) {
      x[i][j] = (double)((i * 5 + j * 3) % 7) - 0.5 * j;
      mean[j] += x[i][j] / (double)N;
    }
  for (int64_t i = 0; i < lh_dmat_local_rows(X); i++)
    for (int j = 0; j < D; j++)
      ((double *)lh_dmat_local(X))[i * D + j] = x[lh_dmat_row_offset(X) + i][j];
  lh_blacs *g = NULL;
  lh_kmat *K = NULL;
  lh_h5_out *o = NULL;
  char path[64];
  snprintf(path, sizeof path, "kmat_np%d.h5", P);
  MT_OK(lh_blacs_create(MPI_COMM_WORLD, 0, 0, &g));
  MT_OK(lh_kmat_create(X, LH_KERNEL_LINEAR, 1.0, g, &K));
  MT_OK(lh_h5_out_create(MPI_COMM_WORLD, path, &o));
  MT_OK(lh_kmat_write(K, o, "/kernel"));
  MT_OK(lh_h5_out_commit(&o));
  char spec[96];
  snprintf(spec, sizeof spec, "%s:/kernel", path);
  lh_h5_dset *d = NULL;
  lh_dmat *R = NULL;
  MT_OK(lh_h5_open(MPI_COMM_WORLD, spec, LH_ROWS_SECOND_LAST, &d));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, N, &R));
  MT_OK(lh_h5_read_dmat(d, 0, R));
  int bad = 0;
  for (int64_t i = 0; i < lh_dmat_local_rows(R); i++)
    for (int64_t j = 0; j < N; j++) {
      int64_t gi = lh_dmat_row_offset(R) + i;
      double want = 0;
      for (int c = 0; c < D; c++) want += (x[gi][c] - mean[c]) * (x[j][c] - mean[c]);
      if (fabs(((double *)lh_dmat_local(R))[i * N + j] - want) > 1e-12) bad++;
    }
  MT_CHECK(bad == 0, "written kernel: %d wrong entries", bad);
  lh_h5_close(&d);
  lh_dmat_destroy(&R);
  lh_kmat_destroy(&K);
  lh_blacs_destroy(&g);
  lh_dmat_destroy(&X);
  if (mt_rank() == 0) remove(path);
}

static void expect_err(lh_status st, lh_status want, const char *needle) {
  MT_CHECK(st == want, "got %s, expected %s (%s)", lh_status_name(st), lh_status_name(want),
           lh_error_message());
  int pend = lh_error_pending();
  if (pend)
    MT_CHECK(strstr(lh_error_message(), needle) != NULL, "message '%s' lacks '%s'",
             lh_error_message(), needle);
  MPI_Allreduce(MPI_IN_PLACE, &pend, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MT_CHECK(pend == 1, "%d ranks hold the message", pend);
  lh_error_clear();
}

static void errors(void) {
  lh_dmat *a = NULL, *b = NULL, *one = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 5, 2, &a));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 6, 2, &b));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 1, 2, &one));
  double c;
  lh_cka_opts o = lh_cka_defaults();
  expect_err(lh_cka_linear(a, b, &o, &c), LH_ERR_VALUE,
             "Expected matching sample counts, got 5 and 6");
  lh_ii_opts io = lh_ii_defaults();
  lh_ii_result r;
  expect_err(lh_ii_run(a, b, &io, &r), LH_ERR_VALUE,
             "Expected matching sample counts, got 5 and 6");
  expect_err(lh_ii_run(one, one, &io, &r), LH_ERR_VALUE, "Expected at least 2 samples, got 1");
  io.k = 5;
  expect_err(lh_ii_run(a, a, &io, &r), LH_ERR_VALUE, "k must be between 1 and N - 1 = 4");
  io = lh_ii_defaults();
  io.p = 0.5;
  expect_err(lh_ii_run(a, a, &io, &r), LH_ERR_VALUE, "Minkowski exponent");
  lh_dmat *small = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 3, 2, &small));
  o.debiased = true;
  expect_err(lh_cka_linear(small, small, &o, &c), LH_ERR_VALUE,
             "debiased CKA needs at least 4 samples");
  lh_dmat_destroy(&a);
  lh_dmat_destroy(&b);
  lh_dmat_destroy(&one);
  lh_dmat_destroy(&small);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  json_error_t err;
  json_t *doc = json_load_file(LH_GOLDEN_DIR "/sim.json", 0, &err);
  MT_CHECK(doc != NULL, "cannot read sim.json: %s", err.text);
  if (doc) {
    golden(doc);
    json_decref(doc);
  }
  stream_selection_stages();
  matrices_match_pairs();
  gram_chunks();
  ii_f32_matches_f64();
  kmat_round_trip();
  errors();
  return mt_finish("mpi_sim");
}
