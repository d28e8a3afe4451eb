/*
 * mpi_steer.c: SteeringVectors and ActivationAddition (steer.h, addition.h) on 1..4 ranks.
 *
 * Against the PyTorch fixtures of tests/golden/latent (make_golden_latent.py): the steered
 * outputs of the test MLP and the small GPT-2 (add, project, scale) and the steering vectors
 * (no reduction, mean, last) within 1e-5 of the largest reference value; SPEC TV-14 and TV-15
 * exactly; closed forms (scale 1 and add 0 change nothing, add alpha v on the last module moves
 * the output by exactly alpha v); every hook learns its own module key (the reference
 * version's late-binding bug, fixed); results bit-identical to one process with the same batch
 * size; errors: unknown modules (closest names), v of the wrong shape, positive / negative
 * sample counts and activation shapes that differ, the root and containers for addition.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "latenthook/addition.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/steer.h"
#include "mpi/mpitest.h"

#define NN LH_GOLDEN_DIR "/nn"
#define LAT LH_GOLDEN_DIR "/latent"
#define EXPECTED LAT "/expected.h5"
#define MLP NN "/mlp/model.yaml"
#define MLP_IN NN "/mlp/data.h5:/inputs"
#define GPT2 NN "/gpt2"
#define GPT2_IN NN "/gpt2/data.h5:/tokens"
#define IDENTITY LAT "/identity/model.yaml"

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

static lh_model *load(const char *path) {
  lh_model *m = NULL;
  MT_OK(lh_model_load(path, &m));
  return m;
}

/* max |got - want| <= 1e-5 max |want| over the local rows of Y (want: N x E, the fixture). */
static void compare_rows(const char *what, lh_dmat *Y, const char *path) {
  int nd = 0;
  hsize_t dims[8];
  float *want = h5_read(EXPECTED, path, &nd, dims);
  MT_CHECK(want != NULL, "%s missing from the fixture", path);
  if (!want) return;
  hsize_t total = 1;
  for (int i = 0; i < nd; i++) total *= dims[i];
  const int64_t n = lh_dmat_local_rows(Y), E = lh_dmat_cols(Y), off = lh_dmat_row_offset(Y);
  MT_CHECK((int64_t)dims[0] == lh_dmat_rows(Y) && (int64_t)(total / dims[0]) == E,
           "%s: %lld x %lld, fixture %llu rows of %llu", what, (long long)lh_dmat_rows(Y),
           (long long)E, (unsigned long long)dims[0], (unsigned long long)(total / dims[0]));
  if ((int64_t)total == lh_dmat_rows(Y) * E) {
    double md = 0, mx = 0;
    for (hsize_t r = 0; r < total; r++) mx = fmax(mx, fabs(want[r]));
    const float *g = lh_dmat_local(Y);
    for (int64_t i = 0; i < n * E; i++) {
      md = fmax(md, fabs((double)g[i] - want[off * E + i]));
      if (isnan(g[i])) md = INFINITY;
    }
    MT_CHECK(md <= 1e-5 * mx, "%s: max |diff| %.3g > 1e-5 x max |ref| %.3g", what, md, mx);
  }
  free(want);
}

/* The same vector within 1e-5 of the largest reference value. */
static void compare_vec(const char *what, const double *v, int64_t E, const char *path) {
  int nd = 0;
  hsize_t dims[8];
  float *want = h5_read(EXPECTED, path, &nd, dims);
  MT_CHECK(want != NULL, "%s missing from the fixture", path);
  if (!want) return;
  hsize_t total = 1;
  for (int i = 0; i < nd; i++) total *= dims[i];
  MT_CHECK((int64_t)total == E, "%s: %lld values, fixture %llu", what, (long long)E,
           (unsigned long long)total);
  if ((int64_t)total == E) {
    double md = 0, mx = 0;
    for (int64_t i = 0; i < E; i++) {
      mx = fmax(mx, fabs(want[i]));
      md = fmax(md, fabs(v[i] - want[i]));
      if (isnan(v[i])) md = INFINITY;
    }
    MT_CHECK(md <= 1e-5 * mx, "%s: max |diff| %.3g > 1e-5 x max |ref| %.3g", what, md, mx);
  }
  free(want);
}

/* Reads v from the fixture inputs into a built-in steer. */
static bool read_v(const char *spec, lh_steer_builtin *b, float **v) {
  lh_status st = lh_steer_read_vector(MPI_COMM_WORLD, spec, v, &b->vk, b->vshape);
  MT_OK(st);
  b->v = *v;
  return st == LH_OK;
}

/* Steers `modules` of the model at `model_path` with b and runs the forward on comm. */
static lh_dmat *steered(MPI_Comm comm, const char *model_path, const char *inputs,
                        const char *const *modules, int64_t count, lh_steer_builtin *b,
                        int64_t bs) {
  lh_model *m = load(model_path);
  lh_steer *s = NULL;
  lh_dmat *Y = NULL;
  int k;
  int64_t shape[8];
  if (m) MT_OK(lh_steer_attach(m, modules, count, lh_steer_builtin_apply, b, &s));
  if (s) MT_OK(lh_steer_forward(comm, m, inputs, bs, &Y, &k, shape));
  lh_steer_detach(&s);
  lh_model_destroy(&m);
  return Y;
}

/* Y (distributed) against the same run on this rank alone, bit for bit. */
static void same_as_serial(const char *what, lh_dmat *Y, const char *model_path, const char *inputs,
                           const char *const *modules, int64_t count, lh_steer_builtin *b,
                           int64_t bs) {
  lh_dmat *R = steered(MPI_COMM_SELF, model_path, inputs, modules, count, b, bs);
  if (R && Y) {
    const int64_t E = lh_dmat_cols(Y), off = lh_dmat_row_offset(Y);
    const float *x = lh_dmat_local(Y), *y = (const float *)lh_dmat_local(R) + off * E;
    MT_CHECK(memcmp(x, y, (size_t)(lh_dmat_local_rows(Y) * E) * sizeof *x) == 0,
             "%s differs from the one-process run", what);
  }
  lh_dmat_destroy(&R);
}

static void steer_golden(void) {
  float *v = NULL;
  const char *l2[] = {"linear2"};
  lh_steer_builtin b = {.op = LH_STEER_ADD, .alpha = 2.0};
  if (read_v(LAT "/inputs.h5:/mlp/v", &b, &v)) {
    MT_CHECK(b.vk == 1 && b.vshape[0] == 20, "mlp v shape");
    const struct {
      lh_steer_op op;
      double alpha;
      const char *path;
    } cases[] = {{LH_STEER_ADD, 2.0, "/mlp/steer/add/output"},
                 {LH_STEER_PROJECT, 0, "/mlp/steer/project/output"},
                 {LH_STEER_SCALE, 0.5, "/mlp/steer/scale/output"}};
    for (int c = 0; c < 3; c++) {
      b.op = cases[c].op;
      b.alpha = cases[c].alpha;
      lh_dmat *Y = steered(MPI_COMM_WORLD, MLP, MLP_IN, l2, 1, &b, 3);
      if (Y) compare_rows(cases[c].path, Y, cases[c].path);
      same_as_serial(cases[c].path, Y, MLP, MLP_IN, l2, 1, &b, 3);
      lh_dmat_destroy(&Y);
    }
  }
  lh_free(v);
  v = NULL;

  lh_steer_builtin g = {.op = LH_STEER_ADD, .alpha = 4.0};
  if (read_v(LAT "/inputs.h5:/gpt2/v", &g, &v)) {
    const char *h0[] = {"transformer.h.0"}, *mlp1[] = {"transformer.h.1.mlp"};
    lh_dmat *Y = steered(MPI_COMM_WORLD, GPT2, GPT2_IN, h0, 1, &g, 2);
    if (Y) compare_rows("gpt2 add", Y, "/gpt2/steer/add/output");
    same_as_serial("gpt2 add", Y, GPT2, GPT2_IN, h0, 1, &g, 2);
    lh_dmat_destroy(&Y);
    g.op = LH_STEER_PROJECT;
    Y = steered(MPI_COMM_WORLD, GPT2, GPT2_IN, mlp1, 1, &g, 2);
    if (Y) compare_rows("gpt2 project", Y, "/gpt2/steer/project/output");
    same_as_serial("gpt2 project", Y, GPT2, GPT2_IN, mlp1, 1, &g, 2);
    lh_dmat_destroy(&Y);
  }
  lh_free(v);
}

/* Scale 1 and add 0 change nothing; add alpha v on the last module (its output is the model
 * output) moves the output by exactly alpha v (float32 y + (float)(alpha v)); TV-15. */
static void steer_closed_forms(void) {
  lh_model *m = load(MLP);
  lh_dmat *Y0 = NULL;
  int k;
  int64_t shape[8];
  if (m) MT_OK(lh_steer_forward(MPI_COMM_WORLD, m, MLP_IN, 4, &Y0, &k, shape));
  lh_model_destroy(&m);
  if (!Y0) return;
  const int64_t n = lh_dmat_local_rows(Y0);
  const float *y0 = lh_dmat_local(Y0);
  const char *all[] = {"linear1", "linear2", "linear3"};
  float zeros[20] = {0}, v5[5] = {0.5f, -1.25f, 3.0f, 1e-3f, -7.0f};
  lh_steer_builtin scale1 = {.op = LH_STEER_SCALE, .alpha = 1.0};
  lh_steer_builtin add0 = {.op = LH_STEER_ADD, .alpha = 3.0, .v = zeros, .vk = 1, .vshape = {20}};
  lh_dmat *Y = steered(MPI_COMM_WORLD, MLP, MLP_IN, all, 3, &scale1, 4);
  if (Y) MT_CHECK(memcmp(lh_dmat_local(Y), y0, (size_t)(n * 5) * sizeof *y0) == 0, "scale 1");
  lh_dmat_destroy(&Y);
  Y = steered(MPI_COMM_WORLD, MLP, MLP_IN, all, 2, &add0, 4);
  if (Y) MT_CHECK(memcmp(lh_dmat_local(Y), y0, (size_t)(n * 5) * sizeof *y0) == 0, "add 0");
  lh_dmat_destroy(&Y);
  const char *l3[] = {"linear3"};
  lh_steer_builtin add = {.op = LH_STEER_ADD, .alpha = -0.75, .v = v5, .vk = 1, .vshape = {5}};
  Y = steered(MPI_COMM_WORLD, MLP, MLP_IN, l3, 1, &add, 4);
  if (Y) {
    const float *y = lh_dmat_local(Y);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
      for (int j = 0; j < 5; j++) bad += y[i * 5 + j] != y0[i * 5 + j] + (float)-0.75 * v5[j];
    MT_CHECK(bad == 0, "add alpha v on linear3: %d outputs not moved by exactly alpha v", bad);
  }
  lh_dmat_destroy(&Y);
  lh_dmat_destroy(&Y0);

  /* TV-15: SteeringVectors([""], output + [1, 0, 0]) on [[1, 2, 3]] -> [[2, 2, 3]] */
  float e1[3] = {1, 0, 0};
  lh_steer_builtin tv = {.op = LH_STEER_ADD, .alpha = 1.0, .v = e1, .vk = 1, .vshape = {3}};
  const char *paths[] = {"", "linear"};
  for (int p = 0; p < 2; p++) {
    Y = steered(MPI_COMM_WORLD, IDENTITY, EXPECTED ":/identity/steer/input", &paths[p], 1, &tv, 32);
    if (Y && lh_dmat_local_rows(Y) == 1) {
      const float *y = lh_dmat_local(Y);
      MT_CHECK(y[0] == 2 && y[1] == 2 && y[2] == 3, "TV-15 path '%s': [%g, %g, %g]", paths[p], y[0],
               y[1], y[2]);
    }
    lh_dmat_destroy(&Y);
  }
}

/* Records the keys the steer callback receives. */
typedef struct seen {
  char keys[8][32];
  int n;
} seen;

static lh_status record(const char *module_key, lh_tensor *output, void *user) {
  (void)output;
  seen *s = user;
  if (s->n < 8) snprintf(s->keys[s->n++], sizeof s->keys[0], "%s", module_key);
  return LH_OK;
}

static void own_keys(void) {
  lh_model *m = load(MLP);
  if (!m) return;
  const char *mods[] = {"linear3", "linear1", "linear2"};
  lh_steer *s = NULL;
  seen rec = {.n = 0};
  MT_OK(lh_steer_attach(m, mods, 3, record, &rec, &s));
  float x[10] = {0};
  lh_tensor in = {.data = x, .ndim = 2, .shape = {1, 10}}, out;
  MT_OK(lh_model_forward(m, &in, &out));
  /* in call order, each its own key (the reference version gave 'linear2' to every hook) */
  MT_CHECK(rec.n == 3 && strcmp(rec.keys[0], "linear1") == 0 &&
               strcmp(rec.keys[1], "linear2") == 0 && strcmp(rec.keys[2], "linear3") == 0,
           "keys seen: %d: %s %s %s", rec.n, rec.keys[0], rec.keys[1], rec.keys[2]);
  lh_steer_detach(&s);
  /* an unknown module: closest names, and nothing stays registered */
  const char *bad[] = {"linear1", "linaer2"};
  rec.n = 0;
  MT_STATUS(lh_steer_attach(m, bad, 2, record, &rec, &s), LH_ERR_KEY);
  MT_CHECK(strstr(lh_error_message(), "linaer2") && strstr(lh_error_message(), "closest") &&
               strstr(lh_error_message(), "'linear2'"),
           "unknown module message: %s", lh_error_message());
  lh_error_clear();
  MT_CHECK(s == NULL, "failed attach returned a handle");
  MT_OK(lh_model_forward(m, &in, &out));
  MT_CHECK(rec.n == 0, "a failed attach left %d hooks", rec.n);
  lh_model_destroy(&m);
}

static void steer_errors(void) {
  lh_model *m = load(GPT2);
  if (!m) return;
  float v20[20] = {1};
  lh_steer_builtin b = {
      .op = LH_STEER_ADD, .alpha = 1, .v = v20, .vk = 1, .vshape = {20}, .what = "--add v"};
  const char *h0[] = {"transformer.h.0"};
  lh_steer *s = NULL;
  lh_dmat *Y = NULL;
  int k;
  int64_t shape[8];
  MT_OK(lh_steer_attach(m, h0, 1, lh_steer_builtin_apply, &b, &s));
  MT_STATUS(lh_steer_forward(MPI_COMM_WORLD, m, GPT2_IN, 2, &Y, &k, shape), LH_ERR_VALUE);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "(20,)") && strstr(lh_error_message(), "(16, 48)") &&
                 strstr(lh_error_message(), "(48,)"),
             "wrong v message: %s", lh_error_message());
  lh_error_clear();
  MT_CHECK(Y == NULL, "output after an error");
  lh_steer_detach(&s);
  /* projecting out a zero vector */
  float z[48] = {0};
  lh_steer_builtin p = {.op = LH_STEER_PROJECT, .v = z, .vk = 1, .vshape = {48}};
  MT_OK(lh_steer_attach(m, h0, 1, lh_steer_builtin_apply, &p, &s));
  MT_STATUS(lh_steer_forward(MPI_COMM_WORLD, m, GPT2_IN, 2, &Y, &k, shape), LH_ERR_VALUE);
  lh_error_clear();
  lh_steer_detach(&s);
  lh_model_destroy(&m);
}

/* One addition run on comm; NULL on failure. */
static lh_addition *addition(MPI_Comm comm, const char *model_path, const char *pos,
                             const char *neg, const char *const *mods, int64_t count,
                             const char *reduce, int64_t bs) {
  lh_model *m = load(model_path);
  lh_reduce r;
  lh_addition *a = NULL;
  MT_OK(lh_reduce_parse(reduce, &r));
  if (m) MT_OK(lh_addition_run(comm, m, pos, neg, mods, count, &r, bs, &a));
  lh_model_destroy(&m);
  return a;
}

static void addition_golden(void) {
  const struct {
    const char *model, *pos, *neg, *reduce;
    const char *mods[2];
    int count;
    int64_t bs;
    const char *group;
  } cases[] = {
      {MLP,
       LAT "/inputs.h5:/mlp/positive",
       LAT "/inputs.h5:/mlp/negative",
       "none",
       {"linear1", "linear2"},
       2,
       3,
       "/mlp/addition/"},
      {GPT2,
       LAT "/inputs.h5:/gpt2/positive_tokens",
       LAT "/inputs.h5:/gpt2/negative_tokens",
       "none",
       {"transformer.h.1", NULL},
       1,
       2,
       "/gpt2/addition/"},
      {GPT2,
       LAT "/inputs.h5:/gpt2/positive_tokens",
       LAT "/inputs.h5:/gpt2/negative_tokens",
       "mean",
       {"transformer.h.1", NULL},
       1,
       2,
       "/gpt2/addition_mean/"},
      {GPT2,
       LAT "/inputs.h5:/gpt2/positive_tokens",
       LAT "/inputs.h5:/gpt2/negative_tokens",
       "last",
       {"transformer.h.0.mlp", NULL},
       1,
       2,
       "/gpt2/addition_last/"},
  };
  for (int c = 0; c < 4; c++) {
    lh_addition *a = addition(MPI_COMM_WORLD, cases[c].model, cases[c].pos, cases[c].neg,
                              cases[c].mods, cases[c].count, cases[c].reduce, cases[c].bs);
    lh_addition *r = addition(MPI_COMM_SELF, cases[c].model, cases[c].pos, cases[c].neg,
                              cases[c].mods, cases[c].count, cases[c].reduce, cases[c].bs);
    if (!a || !r) goto next;
    MT_CHECK(lh_addition_count(a) == cases[c].count, "%s: %lld vectors", cases[c].group,
             (long long)lh_addition_count(a));
    for (int i = 0; i < cases[c].count && i < lh_addition_count(a); i++) {
      char path[256];
      int k;
      int64_t shape[8], E = 1;
      MT_CHECK(strcmp(lh_addition_key(a, i), cases[c].mods[i]) == 0, "key %s",
               lh_addition_key(a, i));
      const double *v = lh_addition_vector(a, i, &k, shape), *w = lh_addition_vector(r, i, 0, 0);
      for (int j = 0; j < k; j++) E *= shape[j];
      snprintf(path, sizeof path, "%s%s", cases[c].group, cases[c].mods[i]);
      compare_vec(path, v, E, path);
      MT_CHECK(memcmp(v, w, (size_t)E * sizeof *v) == 0, "%s differs from the one-process run",
               path);
    }
  next:
    lh_addition_destroy(&a);
    lh_addition_destroy(&r);
  }
  /* TV-14, batch 2 and batch 1: exact */
  const char *lin[] = {"linear"};
  const struct {
    const char *grp;
    double want[3];
  } tv[] = {{"addition", {-1, -1, 1}}, {"addition_b1", {0, 0, 4}}};
  for (int t = 0; t < 2; t++) {
    char pos[256], neg[256];
    snprintf(pos, sizeof pos, EXPECTED ":/identity/%s/positive", tv[t].grp);
    snprintf(neg, sizeof neg, EXPECTED ":/identity/%s/negative", tv[t].grp);
    lh_addition *a = addition(MPI_COMM_WORLD, IDENTITY, pos, neg, lin, 1, "none", 32);
    if (a) {
      int k;
      int64_t shape[8];
      const double *v = lh_addition_vector(a, 0, &k, shape);
      MT_CHECK(k == 1 && shape[0] == 3 && v[0] == tv[t].want[0] && v[1] == tv[t].want[1] &&
                   v[2] == tv[t].want[2],
               "TV-14 %s: [%g, %g, %g]", tv[t].grp, v[0], v[1], v[2]);
    }
    lh_addition_destroy(&a);
  }
}

/* Writes (5, 8) int64 tokens (all 1) to a scratch file; its address in spec. */
static void write_short_tokens(char *file, size_t cap) {
  int pid = (int)getpid();
  MPI_Bcast(&pid, 1, MPI_INT, 0, MPI_COMM_WORLD);
  snprintf(file, cap, "/tmp/lh_mpi_steer_%d.h5", pid);
  if (mt_rank() == 0) {
    long long tok[5 * 8];
    for (int i = 0; i < 40; i++) tok[i] = 1;
    hsize_t dims[2] = {5, 8};
    hid_t f = H5Fcreate(file, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/tokens", H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, tok);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
}

static void addition_errors(void) {
  lh_model *m = load(GPT2);
  if (!m) return;
  lh_reduce none = {LH_REDUCE_NONE, 0};
  lh_addition *a = NULL;
  const char *pos = LAT "/inputs.h5:/gpt2/positive_tokens";
  const char *h1[] = {"transformer.h.1"}, *typo[] = {"transformer.h.1.mpl"};
  const char *root[] = {""}, *container[] = {"transformer.h"};
  MT_STATUS(lh_addition_run(MPI_COMM_WORLD, m, pos, pos, typo, 1, &none, 2, &a), LH_ERR_KEY);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "closest") &&
                 strstr(lh_error_message(), "'transformer.h.1.mlp'"),
             "unknown module message: %s", lh_error_message());
  lh_error_clear();
  MT_STATUS(lh_addition_run(MPI_COMM_WORLD, m, pos, pos, root, 1, &none, 2, &a), LH_ERR_VALUE);
  lh_error_clear();
  MT_STATUS(lh_addition_run(MPI_COMM_WORLD, m, pos, pos, container, 1, &none, 2, &a), LH_ERR_VALUE);
  lh_error_clear();
  /* different sample counts: 5 token rows against the first 4 rows of the sweep metric */
  MT_STATUS(
      lh_addition_run(MPI_COMM_WORLD, m, pos, EXPECTED ":/gpt2/sweep/metric", h1, 1, &none, 2, &a),
      LH_ERR_VALUE);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "5 samples") && strstr(lh_error_message(), "has 4"),
             "sample count message: %s", lh_error_message());
  lh_error_clear();
  /* 16 positions against 8: the block's activations differ in shape */
  char file[128], neg[160];
  write_short_tokens(file, sizeof file);
  snprintf(neg, sizeof neg, "%s:/tokens", file);
  MT_STATUS(lh_addition_run(MPI_COMM_WORLD, m, pos, neg, h1, 1, &none, 2, &a), LH_ERR_VALUE);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "(16, 48)") && strstr(lh_error_message(), "(8, 48)"),
             "shape message: %s", lh_error_message());
  lh_error_clear();
  MT_CHECK(a == NULL, "result after errors");
  MPI_Barrier(MPI_COMM_WORLD);
  if (mt_rank() == 0) remove(file);
  lh_model_destroy(&m);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, P;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  lh_log_setup(LH_LOG_WARN, rank, P);
  steer_golden();
  steer_closed_forms();
  own_keys();
  steer_errors();
  addition_golden();
  addition_errors();
  return mt_finish("mpi_steer");
}
