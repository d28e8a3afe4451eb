/*
 * mpi_patch.c: ActivationPatching and the patching sweep (patch.h) on 1..4 ranks, against the
 * PyTorch fixtures of tests/golden/latent (make_golden_latent.py): clean and patched outputs
 * of tdhook's test MLP and the small GPT-2 within 1e-5 relative, the sweep's per-sample
 * metrics too; SPEC TV-15 exactly; each result bit-identical to one process with the same
 * batch size; closed forms (patching with the clean inputs changes nothing); every patch
 * function call gets its own module key (tdhook's late-binding bug); errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/model.h"
#include "latenthook/patch.h"
#include "mpi/mpitest.h"

#define NN LH_GOLDEN_DIR "/nn"
#define LAT LH_GOLDEN_DIR "/latent"
#define EXPECTED LAT "/expected.h5"
#define MLP_MODEL NN "/mlp/model.yaml"
#define MLP_CLEAN NN "/mlp/data.h5:/inputs"
#define MLP_PATCHED LAT "/inputs.h5:/mlp/patched"
#define GPT2_MODEL NN "/gpt2"
#define GPT2_CLEAN NN "/gpt2/data.h5:/tokens"
#define GPT2_PATCHED LAT "/inputs.h5:/gpt2/patched_tokens"

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

/* max |got - want| <= tol * max |want| over the local rows of m (float32 or float64) against
 * `want`, whose element (row i, column j) is want[i * rs + j * cs]. */
static void compare_strided(const char *what, const lh_dmat *m, const float *want, int64_t count,
                            int64_t rs, int64_t cs, double tol) {
  const int64_t n = lh_dmat_local_rows(m), E = lh_dmat_cols(m), off = lh_dmat_row_offset(m);
  double md = 0, mx = 0;
  for (int64_t r = 0; r < count; r++) mx = fmax(mx, fabs(want[r]));
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < E; j++) {
      double g = lh_dmat_dtype(m) == LH_F32 ? ((const float *)lh_dmat_local_const(m))[i * E + j]
                                            : ((const double *)lh_dmat_local_const(m))[i * E + j];
      double w = want[(off + i) * rs + j * cs];
      md = isnan(g) ? INFINITY : fmax(md, fabs(g - w));
    }
  MT_CHECK(md <= tol * mx, "%s: max |diff| %.3g > %.1g x max |ref| %.3g", what, md, tol, mx);
}

/* A dataset of the fixture against the rows of m (N x E, same layout). */
static void against(const char *what, const lh_dmat *m, const char *path) {
  int nd;
  hsize_t dims[8];
  float *want = h5_read(EXPECTED, path, &nd, dims);
  MT_CHECK(want != NULL, "%s missing from %s", path, EXPECTED);
  if (!want) return;
  hsize_t count = 1;
  for (int i = 0; i < nd; i++) count *= dims[i];
  MT_CHECK(
      (int64_t)dims[0] == lh_dmat_rows(m) && (int64_t)count == lh_dmat_rows(m) * lh_dmat_cols(m),
      "%s: fixture %s has another shape", what, path);
  if ((int64_t)count == lh_dmat_rows(m) * lh_dmat_cols(m))
    compare_strided(what, m, want, (int64_t)count, lh_dmat_cols(m), 1, 1e-5);
  free(want);
}

/* Bitwise equality of this rank's rows of a and the same rows of the one-process matrix b. */
static void same_rows(const char *what, const lh_dmat *a, const lh_dmat *b) {
  const int64_t E = lh_dmat_cols(a), off = lh_dmat_row_offset(a);
  const size_t es = lh_dmat_dtype(a) == LH_F32 ? 4 : 8;
  MT_CHECK(lh_dmat_rows(a) == lh_dmat_rows(b) && E == lh_dmat_cols(b) &&
               lh_dmat_dtype(a) == lh_dmat_dtype(b),
           "%s: shapes differ from the one-process run", what);
  if (lh_dmat_rows(a) != lh_dmat_rows(b) || E != lh_dmat_cols(b)) return;
  const char *x = lh_dmat_local_const(a), *y = (const char *)lh_dmat_local_const(b) + off * E * es;
  MT_CHECK(memcmp(x, y, (size_t)(lh_dmat_local_rows(a) * E) * es) == 0,
           "%s differs from the one-process run", what);
}

/* Bitwise equality of two matrices with the same distribution (local rows against local rows). */
static void same_local(const char *what, const lh_dmat *a, const lh_dmat *b) {
  const int64_t E = lh_dmat_cols(a);
  MT_CHECK(lh_dmat_rows(a) == lh_dmat_rows(b) && E == lh_dmat_cols(b) &&
               lh_dmat_dtype(a) == LH_F32 && lh_dmat_dtype(b) == LH_F32,
           "%s: shapes differ", what);
  if (lh_dmat_rows(a) == lh_dmat_rows(b) && E == lh_dmat_cols(b))
    MT_CHECK(memcmp(lh_dmat_local_const(a), lh_dmat_local_const(b),
                    (size_t)(lh_dmat_local_rows(a) * E) * sizeof(float)) == 0,
             "%s: values differ", what);
}

static lh_model *load(const char *path) {
  lh_model *m = NULL;
  MT_OK(lh_model_load(path, &m));
  return m;
}

typedef struct pcase {
  const char *group; /* expected.h5 group */
  const char *modules[3];
  int nmod;
  lh_patch_fn fn;
  void *user;
} pcase;

/* Clean and patched runs on `comm`; outputs into *clean / *patched (caller frees). */
static void run_case(MPI_Comm comm, const char *model, const char *clean_in, const char *patched_in,
                     const pcase *c, int64_t bs, lh_cache **clean, lh_cache **patched) {
  lh_model *m = load(model);
  lh_patch *p = NULL;
  *clean = *patched = NULL;
  if (m) MT_OK(lh_patch_create(comm, m, c->modules, c->nmod, &p));
  if (p) MT_OK(lh_patch_record(p, clean_in, bs, false, clean));
  if (*clean) MT_OK(lh_patch_run(p, patched_in, NULL, c->fn, c->user, NULL, patched));
  lh_patch_destroy(&p);
  lh_model_destroy(&m);
}

static void golden_case(const char *model, const char *clean_in, const char *patched_in,
                        const pcase *c, int64_t bs) {
  lh_cache *clean, *patched, *rc, *rp;
  char path[256];
  run_case(MPI_COMM_WORLD, model, clean_in, patched_in, c, bs, &clean, &patched);
  if (!patched) goto done;
  snprintf(path, sizeof path, "%s/clean_output", c->group);
  against(path, lh_cache_output(clean, NULL, NULL), path);
  snprintf(path, sizeof path, "%s/patched_output", c->group);
  against(path, lh_cache_output(patched, NULL, NULL), path);
  run_case(MPI_COMM_SELF, model, clean_in, patched_in, c, bs, &rc, &rp);
  if (rp) {
    same_rows(c->group, lh_cache_output(clean, NULL, NULL), lh_cache_output(rc, NULL, NULL));
    same_rows(c->group, lh_cache_output(patched, NULL, NULL), lh_cache_output(rp, NULL, NULL));
  }
  lh_cache_destroy(&rc);
  lh_cache_destroy(&rp);
done:
  lh_cache_destroy(&clean);
  lh_cache_destroy(&patched);
}

/* A patch function that checks it gets its own module's key (tdhook's reference version
 * passed the last key to every module) and replaces fully. */
static int key_checks, key_errors;
static lh_status check_key(const char *key, lh_tensor *out, const lh_tensor *clean, void *user) {
  (void)user;
  const int64_t E = lh_tensor_row_len(out);
  key_checks++;
  if (!((strcmp(key, "linear2") == 0 && E == 20) || (strcmp(key, "linear3") == 0 && E == 5)))
    key_errors++;
  return lh_patch_replace(key, out, clean, NULL);
}

static void mlp(void) {
  const int64_t u03[] = {0, 3}, u1213[] = {12, 13};
  lh_patch_units a = {2, u03}, b = {2, u1213};
  const pcase cases[] = {
      {"/mlp/patch/linear2", {"linear2"}, 1, NULL, NULL},
      {"/mlp/patch/linear2+linear3", {"linear2", "linear3"}, 2, NULL, NULL},
      {"/mlp/patch/linear2@units=0,3", {"linear2"}, 1, lh_patch_replace_units, &a},
      {"/mlp/patch/linear2@units=12,13", {"linear2"}, 1, lh_patch_replace_units, &b},
  };
  for (int i = 0; i < 4; i++) golden_case(MLP_MODEL, MLP_CLEAN, MLP_PATCHED, &cases[i], 2);

  /* each module's key: linear2 and linear3 patched together, a key check per call */
  lh_cache *clean, *patched;
  pcase kc = {"", {"linear2", "linear3"}, 2, check_key, NULL};
  key_checks = key_errors = 0;
  run_case(MPI_COMM_WORLD, MLP_MODEL, MLP_CLEAN, MLP_PATCHED, &kc, 3, &clean, &patched);
  MT_CHECK(key_checks >= 2 && key_errors == 0, "patch_fn keys: %d calls, %d with a wrong key",
           key_checks, key_errors);
  if (patched)
    against("key check", lh_cache_output(patched, NULL, NULL),
            "/mlp/patch/linear2+linear3/patched_output");
  lh_cache_destroy(&clean);
  lh_cache_destroy(&patched);

  /* closed form: the clean inputs as patched inputs change nothing, whatever is patched
   * (activation is called twice: every call gets the last clean call, here its own value for
   * the second call only: so only modules called once) */
  const int64_t u[] = {0, 4, -1};
  lh_patch_units uu = {3, u};
  pcase same = {"", {"linear1", "linear3"}, 2, lh_patch_replace_units, &uu};
  run_case(MPI_COMM_WORLD, MLP_MODEL, MLP_CLEAN, MLP_CLEAN, &same, 4, &clean, &patched);
  if (patched)
    same_local("same inputs", lh_cache_output(patched, NULL, NULL),
               lh_cache_output(clean, NULL, NULL));
  lh_cache_destroy(&clean);
  lh_cache_destroy(&patched);
}

static void gpt2(void) {
  lh_patch_positions p37 = {3, 7};
  const int64_t u05[] = {0, 1, 2, 3, 4};
  lh_patch_units u = {5, u05};
  const pcase cases[] = {
      {"/gpt2/patch/transformer.h.1.attn", {"transformer.h.1.attn"}, 1, NULL, NULL},
      {"/gpt2/patch/transformer.h.0@positions=3:7",
       {"transformer.h.0"},
       1,
       lh_patch_replace_positions,
       &p37},
      {"/gpt2/patch/transformer.h.0.mlp@units=0:5",
       {"transformer.h.0.mlp"},
       1,
       lh_patch_replace_units,
       &u},
  };
  for (int i = 0; i < 3; i++) golden_case(GPT2_MODEL, GPT2_CLEAN, GPT2_PATCHED, &cases[i], 2);

  /* a tdhook path for the same module gives the same as its name */
  lh_cache *clean, *patched, *c2, *p2;
  pcase byname = {"", {"transformer.h.1"}, 1, NULL, NULL};
  pcase bypath = {"", {"transformer.h[-1]"}, 1, NULL, NULL};
  run_case(MPI_COMM_WORLD, GPT2_MODEL, GPT2_CLEAN, GPT2_PATCHED, &byname, 3, &clean, &patched);
  run_case(MPI_COMM_WORLD, GPT2_MODEL, GPT2_CLEAN, GPT2_PATCHED, &bypath, 3, &c2, &p2);
  if (patched && p2) {
    same_local("h[-1]", lh_cache_output(p2, NULL, NULL), lh_cache_output(patched, NULL, NULL));
    /* the last block's full replacement restores the clean logits exactly */
    same_local("h.1 full", lh_cache_output(patched, NULL, NULL),
               lh_cache_output(clean, NULL, NULL));
  }
  lh_cache_destroy(&clean);
  lh_cache_destroy(&patched);
  lh_cache_destroy(&c2);
  lh_cache_destroy(&p2);
}

static void sweep_run(MPI_Comm comm, int64_t bs, lh_patch_sweep *s) {
  const char *mods[] = {"transformer.h.0", "transformer.h.1", "transformer.h.0.attn",
                        "transformer.h.1.mlp"};
  lh_model *m = load(GPT2_MODEL);
  lh_patch *p = NULL;
  lh_cache *clean = NULL;
  if (m) MT_OK(lh_patch_create(comm, m, mods, 4, &p));
  if (p) MT_OK(lh_patch_record(p, GPT2_CLEAN, bs, false, &clean));
  if (clean) MT_OK(lh_patch_sweep_run(p, clean, GPT2_PATCHED, true, 1, 2, false, s));
  lh_cache_destroy(&clean);
  lh_patch_destroy(&p);
  lh_model_destroy(&m);
}

static void sweep(void) {
  lh_patch_sweep s = {0}, r = {0};
  sweep_run(MPI_COMM_WORLD, 2, &s);
  if (!s.metric) return;
  MT_CHECK(s.M == 4 && s.T == 16 && s.N == 5, "sweep sizes M=%lld T=%lld N=%lld", (long long)s.M,
           (long long)s.T, (long long)s.N);
  against("clean_metric", s.clean, "/gpt2/sweep/clean_metric");
  against("corrupted_metric", s.corrupted, "/gpt2/sweep/corrupted_metric");
  int nd;
  hsize_t dims[8];
  float *w = h5_read(EXPECTED, "/gpt2/sweep/metric", &nd, dims); /* (M, N): [m, i] */
  MT_CHECK(w && nd == 2 && dims[0] == 4 && dims[1] == 5, "fixture /gpt2/sweep/metric");
  if (w) compare_strided("metric", s.metric, w, 20, 1, 5, 1e-5);
  free(w);
  w = h5_read(EXPECTED, "/gpt2/sweep/metric_positions", &nd, dims); /* (M, T, N) */
  MT_CHECK(w && nd == 3 && dims[1] == 16, "fixture /gpt2/sweep/metric_positions");
  if (w) compare_strided("metric_positions", s.metric_pos, w, 4 * 16 * 5, 1, 5, 1e-5);
  free(w);
  /* whole blocks restore the clean run exactly: normalised effect 1 */
  MT_CHECK(s.mean[0] == s.clean_mean && s.mean[1] == s.clean_mean && s.normalised[0] == 1.0 &&
               s.normalised[1] == 1.0,
           "block effects %.17g %.17g, clean %.17g", s.mean[0], s.mean[1], s.clean_mean);
  for (int m = 0; m < 4; m++) {
    const double want = (s.mean[m] - s.corrupted_mean) / (s.clean_mean - s.corrupted_mean);
    MT_CHECK(mt_same(s.normalised[m], want), "normalised[%d] %.17g != %.17g", m, s.normalised[m],
             want);
  }
  /* bit-identical to one process: per-sample metrics and (exact) means */
  sweep_run(MPI_COMM_SELF, 2, &r);
  if (r.metric) {
    same_rows("clean metric", s.clean, r.clean);
    same_rows("corrupted metric", s.corrupted, r.corrupted);
    same_rows("sweep metric", s.metric, r.metric);
    same_rows("sweep metric per position", s.metric_pos, r.metric_pos);
    bool same = mt_same(s.clean_mean, r.clean_mean) && mt_same(s.corrupted_mean, r.corrupted_mean);
    for (int m = 0; m < 4; m++) same = same && mt_same(s.mean[m], r.mean[m]);
    for (int j = 0; j < 64; j++) same = same && mt_same(s.mean_pos[j], r.mean_pos[j]);
    MT_CHECK(same, "sweep means differ from the one-process run");
  }
  lh_patch_sweep_free(&r);
  lh_patch_sweep_free(&s);
}

/* SPEC TV-15: identity Linear(3, 3), path "" (the root) and "linear". */
static void tv15(void) {
  const char *in = EXPECTED ":/identity/patch/input",
             *pin = EXPECTED ":/identity/patch/patched_input";
  const int64_t col0[] = {0};
  lh_patch_units u = {1, col0};
  const float want_full[3] = {1, 2, 3}, want_col0[3] = {1, 20, 30};
  for (int path = 0; path < 2; path++)
    for (int k = 0; k < 2; k++) {
      pcase c = {"", {path ? "linear" : ""}, 1, k ? lh_patch_replace_units : NULL, k ? &u : NULL};
      lh_cache *clean, *patched;
      run_case(MPI_COMM_WORLD, LAT "/identity/model.yaml", in, pin, &c, 1, &clean, &patched);
      if (patched) {
        const lh_dmat *o = lh_cache_output(patched, NULL, NULL),
                      *co = lh_cache_output(clean, NULL, NULL);
        if (lh_dmat_local_rows(o) == 1) {
          const float *x = lh_dmat_local_const(o), *y = lh_dmat_local_const(co);
          const float *w = k ? want_col0 : want_full;
          MT_CHECK(
              x[0] == w[0] && x[1] == w[1] && x[2] == w[2] && y[0] == 1 && y[1] == 2 && y[2] == 3,
              "TV-15 path '%s' %s: patched [%g %g %g], clean [%g %g %g]", c.modules[0],
              k ? "column 0" : "full", x[0], x[1], x[2], y[0], y[1], y[2]);
        }
      }
      lh_cache_destroy(&clean);
      lh_cache_destroy(&patched);
    }
}

static void errors(void) {
  lh_model *m = load(MLP_MODEL), *g = load(GPT2_MODEL);
  lh_patch *p = NULL;
  lh_cache *c = NULL, *pc = NULL;
  if (!m || !g) goto done;
  const char *bad[] = {"linear22"};
  MT_STATUS(lh_patch_create(MPI_COMM_WORLD, m, bad, 1, &p), LH_ERR_KEY);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "closest") && strstr(lh_error_message(), "'linear2'"),
             "unknown module message: %s", lh_error_message());
  lh_error_clear();
  const char *twice[] = {"linear2", "linear2"};
  MT_STATUS(lh_patch_create(MPI_COMM_WORLD, m, twice, 2, &p), LH_ERR_VALUE);
  lh_error_clear();
  /* a container is never called */
  const char *cont[] = {"transformer.h"};
  MT_OK(lh_patch_create(MPI_COMM_WORLD, g, cont, 1, &p));
  if (p) {
    MT_STATUS(lh_patch_record(p, GPT2_CLEAN, 4, false, &c), LH_ERR_VALUE);
    if (lh_error_is_reporter())
      MT_CHECK(strstr(lh_error_message(), "never called") != NULL, "container: %s",
               lh_error_message());
    lh_error_clear();
  }
  lh_patch_destroy(&p);
  /* clean and patched inputs of different N (identity model: (2, 3) and (1, 3)) */
  lh_model *id = load(LAT "/identity/model.yaml");
  const char *lin[] = {"linear"};
  const char *two = EXPECTED ":/identity/addition/positive",
             *one = EXPECTED ":/identity/patch/input";
  MT_STATUS(lh_patch_check_inputs(MPI_COMM_WORLD, two, one), LH_ERR_VALUE);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "(2, 3), got (1, 3)") != NULL, "N mismatch: %s",
             lh_error_message());
  lh_error_clear();
  if (id) MT_OK(lh_patch_create(MPI_COMM_WORLD, id, lin, 1, &p));
  if (p) MT_OK(lh_patch_record(p, two, 1, false, &c));
  if (c) {
    MT_STATUS(lh_patch_run(p, one, NULL, NULL, NULL, NULL, &pc), LH_ERR_VALUE);
    lh_error_clear();
    /* positions on per-sample vectors, units out of range: errors on every rank */
    lh_patch_positions r = {0, 1};
    MT_STATUS(lh_patch_run(p, two, NULL, lh_patch_replace_positions, &r, NULL, &pc), LH_ERR_VALUE);
    lh_error_clear();
    const int64_t u3[] = {3};
    lh_patch_units u = {1, u3};
    MT_STATUS(lh_patch_run(p, two, NULL, lh_patch_replace_units, &u, NULL, &pc), LH_ERR_VALUE);
    if (lh_error_is_reporter())
      MT_CHECK(strstr(lh_error_message(), "unit 3 outside the 3 units") != NULL, "units: %s",
               lh_error_message());
    lh_error_clear();
  }
  lh_cache_destroy(&c);
  lh_patch_destroy(&p);
  lh_model_destroy(&id);
  /* clean and patched token inputs of different T: (5, 16) vs MLP features */
  MT_STATUS(lh_patch_check_inputs(MPI_COMM_WORLD, GPT2_CLEAN, MLP_CLEAN), LH_ERR_VALUE);
  lh_error_clear();
done:
  lh_cache_destroy(&pc);
  lh_model_destroy(&m);
  lh_model_destroy(&g);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, P;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  lh_log_setup(LH_LOG_WARN, rank, P);
  mlp();
  gpt2();
  sweep();
  tv15();
  errors();
  return mt_finish("mpi_patch");
}
