/*
 * mpi_attention.c: attention rollout over the data-parallel forward (attention.h) on 1..4
 * ranks, against the PyTorch reference of tests/golden/rollout (make_golden_rollout.py): the
 * rollout of all 5 samples (batch size 2: N not divisible by the batch or by P), a head subset
 * with another alpha, the head means, the raw probabilities of the chosen samples, sequences of
 * 7 tokens on 2 samples (N < P on 3 and 4 ranks); the written /rollout and the chosen samples'
 * maps bit-identical to one process (MPI_COMM_SELF) with the same batch size; errors agreed on
 * every rank with one reporter.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "latenthook/attention.h"
#include "latenthook/comm.h"
#include "latenthook/h5.h"
#include "latenthook/model.h"
#include "mpi/mpitest.h"

#define NN LH_GOLDEN_DIR "/nn"
#define RO LH_GOLDEN_DIR "/rollout"
#define TOKENS NN "/gpt2/data.h5:/tokens"
#define SHORT RO "/inputs.h5:/short"
#define TOL 1e-6 /* float32 forward against PyTorch's: observed 2e-7 */

static double *h5_read(const char *file, const char *path, hsize_t *n_out) {
  double *buf = NULL;
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return NULL;
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  if (d >= 0) {
    hid_t sp = H5Dget_space(d);
    hsize_t dims[8], n = 1;
    int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
    for (int i = 0; i < nd; i++) n *= dims[i];
    buf = malloc(n * sizeof *buf);
    H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    *n_out = n;
    H5Sclose(sp);
    H5Dclose(d);
  }
  H5Fclose(f);
  return buf;
}

static double max_diff(const double *a, const double *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = isnan(a[i]) ? INFINITY : fmax(m, fabs(a[i] - b[i]));
  return m;
}

static lh_model *load(void) {
  lh_model *m = NULL;
  MT_OK(lh_model_load(NN "/gpt2", &m));
  return m;
}

/* Runs on comm and writes `file` when given. */
static lh_status run(MPI_Comm comm, lh_model *m, const char *inputs, const lh_attention_opts *o,
                     const char *file, lh_attention_result *r) {
  lh_h5_out *out = NULL;
  lh_status st = LH_OK;
  if (file) st = lh_h5_out_create(comm, file, &out);
  if (st == LH_OK) st = lh_attention_run(comm, m, inputs, o, out, r);
  if (st == LH_OK && out) st = lh_h5_out_commit(&out);
  lh_h5_out_discard(&out);
  return st;
}

static void golden_all_heads(lh_model *m, int P, int rank) {
  const int64_t samples[6] = {4, 0, 1, 2, 3, 4}; /* every sample, one twice */
  lh_attention_opts o = lh_attention_defaults();
  o.samples = samples;
  o.nsamples = 6;
  o.batch_size = 2;
  char file[64], ref_file[64];
  snprintf(file, sizeof file, "mpi_attention_np%d.h5", P);
  snprintf(ref_file, sizeof ref_file, "mpi_attention_np%d_self.h5", P);
  lh_attention_result r = {0}, s = {0};
  MT_OK(run(MPI_COMM_WORLD, m, TOKENS, &o, file, &r));
  MT_CHECK(r.N == 5 && r.T == 16 && r.L == 2 && r.H == 4, "N %lld T %lld L %lld H %lld",
           (long long)r.N, (long long)r.T, (long long)r.L, (long long)r.H);
  MT_CHECK(r.layer_names && strcmp(r.layer_names[1], "transformer.h.1.attn.attn_dropout") == 0,
           "layer names");
  MT_CHECK(r.nshow_layers == 2 && r.nshow_heads == 4, "shown %lld x %lld",
           (long long)r.nshow_layers, (long long)r.nshow_heads);
  if (rank != 0) {
    MT_CHECK(r.rollout == NULL && r.attention == NULL, "matrices only on rank 0");
    lh_attention_result_free(&r);
    return;
  }
  hsize_t n = 0, na = 0;
  double *gr = h5_read(RO "/expected.h5", "/rollout", &n);
  double *ga = h5_read(RO "/expected.h5", "/attention", &na);
  double *fr = h5_read(file, "/rollout", &n);
  MT_CHECK(gr && ga && fr && n == 5 * 256 && na == 5 * 2 * 4 * 256, "fixtures / output");
  if (!gr || !ga || !fr) return;
  /* the file holds every sample; the result the chosen ones in the order given */
  double d = max_diff(fr, gr, 5 * 256);
  MT_CHECK(d <= TOL, "/rollout against PyTorch: max diff %.3g", d);
  for (int64_t i = 0; i < 6; i++) {
    const int64_t smp = samples[i];
    d = max_diff(r.rollout + i * 256, gr + smp * 256, 256);
    MT_CHECK(d <= TOL, "rollout of sample %lld: max diff %.3g", (long long)smp, d);
    d = max_diff(r.attention + i * 2048, ga + smp * 2048, 2048);
    MT_CHECK(d <= TOL, "attention of sample %lld: max diff %.3g", (long long)smp, d);
    MT_CHECK(memcmp(r.rollout + i * 256, fr + smp * 256, 256 * sizeof(double)) == 0,
             "the result's rollout of sample %lld is the file's", (long long)smp);
    hsize_t ns = 0;
    char path[64];
    snprintf(path, sizeof path, "/attention/sample_%lld", (long long)smp);
    double *fa = h5_read(file, path, &ns);
    MT_CHECK(fa && ns == 2048 && memcmp(fa, r.attention + i * 2048, 2048 * sizeof(double)) == 0,
             "%s written as kept", path);
    free(fa);
    /* the token ids travel with the sample */
    MT_CHECK(r.inputs != NULL, "token ids of the chosen samples");
  }
  /* one process, the same batch size: bit for bit */
  MT_OK(run(MPI_COMM_SELF, m, TOKENS, &o, ref_file, &s));
  double *sr = h5_read(ref_file, "/rollout", &n);
  MT_CHECK(sr && memcmp(sr, fr, 5 * 256 * sizeof(double)) == 0,
           "/rollout on %d ranks bit-identical to one process", P);
  MT_CHECK(s.rollout && memcmp(s.rollout, r.rollout, 6 * 256 * sizeof(double)) == 0 &&
               memcmp(s.attention, r.attention, 6 * 2048 * sizeof(double)) == 0 &&
               memcmp(s.inputs, r.inputs, 6 * 16 * sizeof(double)) == 0,
           "chosen samples bit-identical to one process");
  remove(ref_file);
  free(sr);
  free(gr);
  free(ga);
  free(fr);
  lh_attention_result_free(&s);
  lh_attention_result_free(&r);
}

static void golden_subset_and_means(lh_model *m, int rank) {
  const int64_t samples[2] = {3, 1}, rheads[2] = {1, 3}, layers[1] = {1};
  lh_attention_opts o = lh_attention_defaults();
  o.samples = samples;
  o.nsamples = 2;
  o.rollout.heads = rheads;
  o.rollout.nheads = 2;
  o.rollout.alpha = 0.3;
  o.layers = layers;
  o.nlayers = 1;
  o.head_mean = true;
  o.batch_size = 3;
  lh_attention_result r = {0};
  MT_OK(run(MPI_COMM_WORLD, m, TOKENS, &o, NULL, &r));
  MT_CHECK(r.nshow_layers == 1 && r.nshow_heads == 1 && r.show_heads && r.show_heads[0] == -1,
           "one layer, the head mean");
  if (rank == 0 && r.rollout) {
    hsize_t n;
    double *g = h5_read(RO "/expected.h5", "/rollout_h13_a03", &n);
    double *hm = h5_read(RO "/expected.h5", "/head_mean", &n);
    for (int i = 0; i < 2; i++) {
      double d = max_diff(r.rollout + i * 256, g + samples[i] * 256, 256);
      MT_CHECK(d <= TOL, "heads 1,3 alpha 0.3, sample %lld: %.3g", (long long)samples[i], d);
      d = max_diff(r.attention + i * 256, hm + (samples[i] * 2 + 1) * 256, 256);
      MT_CHECK(d <= TOL, "head mean of layer 1, sample %lld: %.3g", (long long)samples[i], d);
    }
    free(g);
    free(hm);
  }
  lh_attention_result_free(&r);
}

/* 2 samples of 7 tokens: N < P on 3 and 4 ranks; shown heads 2, 0 of layer 0. */
static void short_sequences(lh_model *m, int rank) {
  const int64_t samples[2] = {1, 0}, heads[2] = {2, 0}, layers[1] = {0};
  lh_attention_opts o = lh_attention_defaults();
  o.samples = samples;
  o.nsamples = 2;
  o.heads = heads;
  o.nheads = 2;
  o.layers = layers;
  o.nlayers = 1;
  lh_attention_result r = {0};
  MT_OK(run(MPI_COMM_WORLD, m, SHORT, &o, NULL, &r));
  MT_CHECK(r.N == 2 && r.T == 7, "N %lld T %lld", (long long)r.N, (long long)r.T);
  if (rank == 0 && r.rollout) {
    hsize_t n;
    double *g = h5_read(RO "/expected.h5", "/rollout_short", &n);
    double *ga = h5_read(RO "/expected.h5", "/attention_short", &n); /* (2, 2, 4, 7, 7) */
    for (int i = 0; i < 2; i++) {
      const int64_t s = samples[i];
      MT_CHECK(max_diff(r.rollout + i * 49, g + s * 49, 49) <= TOL, "short rollout %lld",
               (long long)s);
      for (int h = 0; h < 2; h++)
        MT_CHECK(max_diff(r.attention + (i * 2 + h) * 49, ga + (s * 8 + heads[h]) * 49, 49) <= TOL,
                 "short attention sample %lld head %lld", (long long)s, (long long)heads[h]);
    }
    free(g);
    free(ga);
  }
  lh_attention_result_free(&r);
}

/* The error is the same on every rank and exactly one rank reports it. */
static void expect_error(lh_model *m, const lh_attention_opts *o, const char *inputs,
                         lh_status want, const char *needle) {
  lh_attention_result r = {0};
  lh_status st = run(MPI_COMM_WORLD, m, inputs, o, NULL, &r);
  MT_CHECK(st == want, "expected %s, got %s (%s)", lh_status_name(want), lh_status_name(st),
           lh_error_message());
  int rep = lh_error_is_reporter() ? 1 : 0, reps = 0;
  MPI_Allreduce(&rep, &reps, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MT_CHECK(reps == 1, "%d ranks report the error", reps);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), needle) != NULL, "message '%s' lacks '%s'",
             lh_error_message(), needle);
  MT_CHECK(r.rollout == NULL && r.layer_names == NULL, "result untouched");
  lh_error_clear();
}

static void errors(lh_model *m) {
  lh_attention_opts o = lh_attention_defaults();
  const int64_t five[1] = {5}, two[1] = {2}, four[1] = {4}, dup[2] = {1, 1};
  o.samples = five;
  o.nsamples = 1;
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "sample 5 out of range");
  o = lh_attention_defaults();
  o.key_pattern = "nothing\\.here";
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "matches no module");
  o.key_pattern = "transformer\\.h$";
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "never called");
  o.key_pattern = "transformer\\.h\\.0\\.mlp$";
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "(H, T, T)");
  o = lh_attention_defaults();
  o.layers = two;
  o.nlayers = 1;
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "layer 2 out of range");
  o = lh_attention_defaults();
  o.heads = four;
  o.nheads = 1;
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "heads shown: head 4 out of range");
  o = lh_attention_defaults();
  o.rollout.heads = dup;
  o.rollout.nheads = 2;
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "heads of the rollout: head 1 given twice");
  o = lh_attention_defaults();
  o.rollout.alpha = 1.5;
  expect_error(m, &o, TOKENS, LH_ERR_VALUE, "[0, 1]");
  o = lh_attention_defaults();
  expect_error(m, &o, NN "/gpt2/data.h5:/nope", LH_ERR_KEY, "nope");
  /* the model still runs normally after the errors (hooks and early stop removed) */
  lh_attention_result r = {0};
  MT_OK(run(MPI_COMM_WORLD, m, SHORT, &o, NULL, &r));
  lh_attention_result_free(&r);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int P, rank;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  lh_model *m = load();
  if (m) {
    golden_all_heads(m, P, rank);
    golden_subset_and_means(m, rank);
    short_sequences(m, rank);
    errors(m);
  }
  lh_model_destroy(&m);
  char file[64];
  snprintf(file, sizeof file, "mpi_attention_np%d.h5", P);
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) remove(file);
  return mt_finish("mpi_attention");
}
