/*
 * mpi_cache.c: ActivationCaching over the data-parallel forward pass (cache.h), on 1..4 ranks,
 * against the PyTorch fixtures of tests/golden/nn (make_golden_nn.py): every cached module
 * output and input within 1e-5 relative of PyTorch's, reductions against the same reductions
 * taken in float64 from PyTorch's tensors, and the distributed result bit-identical to one
 * process with the same batch size (so the answer does not depend on the rank count).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "latenthook/cache.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/model.h"
#include "mpi/mpitest.h"

#define NN LH_GOLDEN_DIR "/nn"

/* Reads a float32 dataset of a fixture (serial HDF5 on every rank); NULL if absent. */
static float *h5_read(const char *file, const char *path, int *ndim, hsize_t *dims) {
  float *buf = NULL;
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return NULL;
  H5E_BEGIN_TRY {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d >= 0) {
      hid_t sp = H5Dget_space(d);
      *ndim = H5Sget_simple_extent_dims(sp, dims, NULL);
      hsize_t n = 1;
      for (int i = 0; i < *ndim; i++) n *= dims[i];
      buf = malloc((n ? n : 1) * sizeof *buf);
      H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
      H5Sclose(sp);
      H5Dclose(d);
    }
  }
  H5E_END_TRY;
  H5Fclose(f);
  return buf;
}

/* max |got - want| <= tol * max |want| over the local rows of m against rows of `want`
 * (N x E; a single row broadcasts). */
static void compare(const char *what, lh_dmat *m, const float *want, int64_t want_rows,
                    double tol) {
  const int64_t n = lh_dmat_local_rows(m), E = lh_dmat_cols(m), off = lh_dmat_row_offset(m);
  double md = 0, mx = 0;
  for (int64_t r = 0; r < want_rows * E; r++) mx = fmax(mx, fabs(want[r]));
  const float *g = lh_dmat_local(m);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < E; j++) {
      double w = want[(want_rows == 1 ? 0 : off + i) * E + j];
      md = fmax(md, fabs((double)g[i * E + j] - w));
      if (isnan(g[i * E + j])) md = INFINITY;
    }
  MT_CHECK(md <= tol * mx, "%s: max |diff| %.3g > %.1g x max |ref| %.3g", what, md, tol, mx);
}

static lh_model *load(const char *path) {
  lh_model *m = NULL;
  MT_OK(lh_model_load(path, &m));
  return m;
}

/* Every cached entry of c against expected.h5:/<group>/<name>. */
static void against_golden(const char *model_dir, lh_cache *c, bool nested) {
  char file[512], path[600];
  snprintf(file, sizeof file, "%s/expected.h5", model_dir);
  for (int64_t i = 0; i < lh_cache_count(c); i++) {
    const char *key = lh_cache_key(c, i);
    if (nested)
      snprintf(path, sizeof path, "/%s", key);
    else
      snprintf(path, sizeof path, "/fwd/%s", key);
    int nd;
    hsize_t dims[8];
    float *want = h5_read(file, path, &nd, dims);
    MT_CHECK(want != NULL, "%s: %s missing from the fixture", model_dir, path);
    if (!want) continue;
    hsize_t rows = dims[0], E = 1;
    for (int j = 1; j < nd; j++) E *= dims[j];
    MT_CHECK((int64_t)E == lh_dmat_cols(lh_cache_matrix(c, i)), "%s: %llu features, cached %lld",
             key, (unsigned long long)E, (long long)lh_dmat_cols(lh_cache_matrix(c, i)));
    if ((int64_t)E == lh_dmat_cols(lh_cache_matrix(c, i)))
      compare(key, lh_cache_matrix(c, i), want, (int64_t)rows, 1e-5);
    free(want);
  }
  int k;
  int64_t shape[8];
  lh_dmat *out = lh_cache_output(c, shape, &k);
  if (out) {
    int nd;
    hsize_t dims[8];
    float *want = h5_read(file, "/output", &nd, dims);
    MT_CHECK(want != NULL, "no /output in %s", file);
    if (want) compare("output", out, want, (int64_t)dims[0], 1e-5);
    free(want);
  }
}

static bool has_key(lh_cache *c, const char *key) {
  for (int64_t i = 0; i < lh_cache_count(c); i++)
    if (strcmp(lh_cache_key(c, i), key) == 0) return true;
  return false;
}

/* The serial reference: the same model and batch size on this rank alone (MPI_COMM_SELF). */
static void same_as_serial(const char *model_dir, const char *inputs, const lh_cache_opts *o0,
                           lh_cache *dist) {
  lh_model *m = load(model_dir);
  lh_cache_opts o = *o0;
  lh_cache *ref = NULL;
  if (m) MT_OK(lh_cache_run(MPI_COMM_SELF, m, inputs, &o, &ref));
  if (ref) {
    MT_CHECK(lh_cache_count(ref) == lh_cache_count(dist), "entry counts %lld / %lld",
             (long long)lh_cache_count(ref), (long long)lh_cache_count(dist));
    for (int64_t i = 0; i < lh_cache_count(ref) && i < lh_cache_count(dist); i++) {
      lh_dmat *a = lh_cache_matrix(dist, i), *b = lh_cache_matrix(ref, i);
      const int64_t E = lh_dmat_cols(a), off = lh_dmat_row_offset(a);
      const float *x = lh_dmat_local(a), *y = (const float *)lh_dmat_local(b) + off * E;
      MT_CHECK(memcmp(x, y, (size_t)(lh_dmat_local_rows(a) * E) * sizeof *x) == 0,
               "%s: %s differs from the one-process run", model_dir, lh_cache_key(dist, i));
    }
  }
  lh_cache_destroy(&ref);
  lh_model_destroy(&m);
}

static void mlp(void) {
  const char *dir = NN "/mlp/model.yaml", *in = NN "/mlp/data.h5:/inputs";
  lh_model *m = load(dir);
  if (!m) return;
  lh_cache_opts o = lh_cache_defaults();
  o.key_pattern = "";
  o.batch_size = 2;
  lh_cache *c = NULL;
  MT_OK(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c));
  if (c) {
    const char *want[] = {"linear1", "linear2", "linear3", "activation"};
    MT_CHECK(lh_cache_count(c) == 4, "empty pattern: %lld keys, expected 4",
             (long long)lh_cache_count(c));
    for (int i = 0; i < 4 && i < lh_cache_count(c); i++)
      MT_CHECK(strcmp(lh_cache_key(c, i), want[i]) == 0, "key %d '%s', expected '%s'", i,
               lh_cache_key(c, i), want[i]);
    against_golden(NN "/mlp", c, false);
    same_as_serial(dir, in, &o, c);
  }
  lh_cache_destroy(&c);

  /* both directions: nested keys, fwd_pre caches the module input */
  o.key_pattern = "linear2$|activation";
  o.dirs[0] = LH_HOOK_FWD;
  o.dirs[1] = LH_HOOK_FWD_PRE;
  o.ndirs = 2;
  MT_OK(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c));
  if (c) {
    MT_CHECK(lh_cache_count(c) == 4 && has_key(c, "fwd/linear2") && has_key(c, "fwd_pre/linear2") &&
                 has_key(c, "fwd_pre/activation"),
             "nested keys: %lld entries", (long long)lh_cache_count(c));
    against_golden(NN "/mlp", c, true);
  }
  lh_cache_destroy(&c);

  /* absolute names (SPEC 2.1 test (a)) */
  o = lh_cache_defaults();
  o.key_pattern = "td_module\\.module\\.linear2";
  o.relative = false;
  MT_OK(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c));
  if (c)
    MT_CHECK(lh_cache_count(c) == 1 && has_key(c, "td_module.module.linear2"),
             "absolute: %lld keys, first '%s'", (long long)lh_cache_count(c),
             lh_cache_count(c) ? lh_cache_key(c, 0) : "");
  lh_cache_destroy(&c);

  /* a pattern that matches nothing is an error naming the modules */
  o = lh_cache_defaults();
  o.key_pattern = "inear";
  MT_STATUS(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c), LH_ERR_VALUE);
  MT_CHECK(strstr(lh_error_message(), "matches no module") && strstr(lh_error_message(), "linear1"),
           "no-match message: %s", lh_error_message());
  lh_error_clear();
  /* a reduction over positions on per-sample vectors */
  o.key_pattern = "linear";
  o.reduce.kind = LH_REDUCE_MEAN;
  MT_STATUS(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c), LH_ERR_VALUE);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "no position axis") != NULL, "reduce message: %s",
             lh_error_message());
  lh_error_clear();
  lh_model_destroy(&m);
}

static void gpt2(void) {
  const char *dir = NN "/gpt2", *in = NN "/gpt2/data.h5:/tokens";
  lh_model *m = load(dir);
  if (!m) return;
  lh_cache_opts o = lh_cache_defaults();
  o.key_pattern =
      "transformer\\.h\\.\\d+\\.attn\\.attn_dropout|transformer\\.h\\.\\d+$|"
      "transformer\\.wpe|transformer\\.h\\.1\\.mlp\\.act";
  o.batch_size = 2;
  lh_cache *c = NULL;
  MT_OK(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c));
  if (c) {
    MT_CHECK(lh_cache_count(c) == 6, "gpt2: %lld keys, expected 6", (long long)lh_cache_count(c));
    against_golden(dir, c, false);
    same_as_serial(dir, in, &o, c);
  }
  lh_cache_destroy(&c);

  /* reductions: taken here in float64 from PyTorch's block outputs */
  const char *reds[] = {"mean", "last", "position:3", "position:-2", "flatten"};
  int nd;
  hsize_t dims[8];
  float *h1 = h5_read(NN "/gpt2/expected.h5", "/fwd/transformer.h.1", &nd, dims);
  MT_CHECK(h1 && nd == 3, "fixture block output");
  for (int r = 0; h1 && r < 5; r++) {
    o = lh_cache_defaults();
    o.key_pattern = "transformer\\.h\\.1$";
    o.batch_size = 3;
    o.keep_output = false;
    MT_OK(lh_reduce_parse(reds[r], &o.reduce));
    MT_OK(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c));
    if (!c) continue;
    const int64_t N = (int64_t)dims[0], T = (int64_t)dims[1], C = (int64_t)dims[2];
    const int64_t E = o.reduce.kind == LH_REDUCE_FLATTEN ? T * C : C;
    float *want = malloc((size_t)(N * E) * sizeof *want);
    for (int64_t s = 0; s < N; s++)
      for (int64_t j = 0; j < E; j++) {
        const float *x = h1 + s * T * C;
        double v = 0;
        switch (o.reduce.kind) {
          case LH_REDUCE_MEAN:
            for (int64_t t = 0; t < T; t++) v += x[t * C + j];
            v /= (double)T;
            break;
          case LH_REDUCE_LAST:
            v = x[(T - 1) * C + j];
            break;
          case LH_REDUCE_POSITION:
            v = x[(o.reduce.position + (o.reduce.position < 0 ? T : 0)) * C + j];
            break;
          default:
            v = x[j];
            break;
        }
        want[s * E + j] = (float)v;
      }
    MT_CHECK(lh_cache_output(c, NULL, NULL) == NULL, "--no-output kept an output");
    MT_CHECK(lh_dmat_cols(lh_cache_matrix(c, 0)) == E, "%s: %lld features, expected %lld", reds[r],
             (long long)lh_dmat_cols(lh_cache_matrix(c, 0)), (long long)E);
    if (lh_dmat_cols(lh_cache_matrix(c, 0)) == E)
      compare(reds[r], lh_cache_matrix(c, 0), want, N, 1e-5);
    free(want);
    lh_cache_destroy(&c);
  }
  free(h1);

  /* the attention probabilities reduced by query position: (H, Tk) rows */
  o = lh_cache_defaults();
  o.key_pattern = "transformer\\.h\\.0\\.attn\\.attn_dropout";
  o.output_reduce.kind = LH_REDUCE_LAST;
  o.reduce.kind = LH_REDUCE_LAST;
  MT_OK(lh_cache_run(MPI_COMM_WORLD, m, in, &o, &c));
  if (c) {
    int64_t shape[8];
    int k = lh_cache_shape(c, 0, shape);
    MT_CHECK(k == 2 && shape[0] == 4 && shape[1] == 16, "attention reduced shape k=%d (%lld, %lld)",
             k, (long long)shape[0], (long long)shape[1]);
    /* the last query attends to every key: each head's row sums to 1 */
    lh_dmat *a = lh_cache_matrix(c, 0);
    const float *x = lh_dmat_local(a);
    for (int64_t i = 0; i < lh_dmat_local_rows(a); i++)
      for (int h = 0; h < 4; h++) {
        double s = 0;
        for (int t = 0; t < 16; t++) s += x[i * 64 + h * 16 + t];
        MT_CHECK(fabs(s - 1) < 1e-5, "attention row sums to %.9g", s);
      }
    k = 0;
    lh_cache_output(c, shape, &k);
    MT_CHECK(k == 1 && shape[0] == 64, "next-token logits: k=%d, %lld", k, (long long)shape[0]);
  }
  lh_cache_destroy(&c);
  lh_model_destroy(&m);
}

int main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  MPI_Init(&argc, &argv);
  int rank, P;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  lh_log_setup(LH_LOG_WARN, rank, P);
  mlp();
  gpt2();
  return mt_finish("mpi_cache");
}
