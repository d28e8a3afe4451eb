/*
 * mpi_maxact.c: maximally activating samples (maxact.h) on 1..4 ranks against the PyTorch
 * reference of tests/golden/maxact (make_golden_maxact.py): the MLP (ReLU ties at 0, padding
 * with k > N, N = 3 below the rank count), the GPT-2 fixture (a broadcast embedding where every
 * sample ties, attention probabilities with (head, query) positions, |activation| ranking) and
 * the identity model (closed forms, a NaN sample never selected). Samples and positions must
 * equal the reference exactly, values within float32 rounding; every rank holds the same
 * result, bit-identical to a one-process run with the same batch size, for several batch
 * sizes. Also: the readable table (token context, vocabulary), and the errors.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/maxact.h"
#include "latenthook/model.h"
#include "latenthook/vocab.h"
#include "mpi/mpitest.h"

#define GOLD LH_GOLDEN_DIR "/maxact"
#define NN LH_GOLDEN_DIR "/nn"

typedef struct tcase {
  const char *name, *model, *inputs, *pattern;
  int64_t k;
  bool absolute;
  int64_t modules;
} tcase;

static const tcase CASES[] = {
    {"mlp_k3", NN "/mlp/model.yaml", NN "/mlp/data.h5:/inputs", "linear|activation", 3, false, 4},
    {"mlp_k3_abs", NN "/mlp/model.yaml", NN "/mlp/data.h5:/inputs", "linear|activation", 3, true,
     4},
    {"mlp_k10", NN "/mlp/model.yaml", NN "/mlp/data.h5:/inputs", "activation", 10, false, 1},
    {"mlp_small", NN "/mlp/model.yaml", GOLD "/inputs.h5:/mlp/small", "linear3", 2, false, 1},
    {"gpt2_k4", NN "/gpt2", GOLD "/inputs.h5:/gpt2/tokens",
     "transformer\\.(wpe|h\\.0$|h\\.0\\.attn\\.attn_dropout|h\\.1\\.mlp$)", 4, false, 4},
    {"gpt2_abs", NN "/gpt2", GOLD "/inputs.h5:/gpt2/tokens", "transformer\\.h\\.1$", 3, true, 1},
    {"identity_k6", LH_GOLDEN_DIR "/latent/identity/model.yaml", GOLD "/inputs.h5:/identity/inputs",
     "linear", 6, false, 1},
    {"identity_k6_abs", LH_GOLDEN_DIR "/latent/identity/model.yaml",
     GOLD "/inputs.h5:/identity/inputs", "linear", 6, true, 1},
};
#define NCASES ((int)(sizeof CASES / sizeof CASES[0]))

/* Reads a dataset of the reference as `type` (serial HDF5); NULL if absent. */
static void *h5_read(const char *file, const char *path, hid_t type, size_t esize, hsize_t *dims) {
  void *buf = NULL;
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return NULL;
  H5E_BEGIN_TRY {
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    if (d >= 0) {
      hid_t sp = H5Dget_space(d);
      int nd = H5Sget_simple_extent_dims(sp, dims, NULL);
      hsize_t n = 1;
      for (int i = 0; i < nd; i++) n *= dims[i];
      buf = malloc((n ? n : 1) * esize);
      if (H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        free(buf);
        buf = NULL;
      }
      H5Sclose(sp);
      H5Dclose(d);
    }
  }
  H5E_END_TRY;
  H5Fclose(f);
  return buf;
}

static lh_maxact *run(MPI_Comm comm, lh_model *m, const tcase *c, int64_t bs) {
  lh_maxact_opts o = lh_maxact_defaults();
  o.key_pattern = c->pattern;
  o.k = c->k;
  o.absolute = c->absolute;
  o.batch_size = bs;
  lh_maxact *r = NULL;
  MT_OK(lh_maxact_run(comm, m, c->inputs, &o, &r));
  return r;
}

/* Every module of r against expected.h5:/<case>/<module>. */
static void against_golden(const tcase *c, const lh_maxact *r, int64_t bs) {
  MT_CHECK(lh_maxact_count(r) == c->modules, "%s: %lld modules, expected %lld", c->name,
           (long long)lh_maxact_count(r), (long long)c->modules);
  for (int64_t i = 0; i < lh_maxact_count(r); i++) {
    char path[600];
    hsize_t dv[2] = {0, 0}, ds[2] = {0, 0}, dp[2] = {0, 0};
    const char *key = lh_maxact_key(r, i);
    snprintf(path, sizeof path, "/%s/%s/values", c->name, key);
    float *v = h5_read(GOLD "/expected.h5", path, H5T_NATIVE_FLOAT, sizeof(float), dv);
    snprintf(path, sizeof path, "/%s/%s/samples", c->name, key);
    int64_t *s = h5_read(GOLD "/expected.h5", path, H5T_NATIVE_INT64, sizeof(int64_t), ds);
    snprintf(path, sizeof path, "/%s/%s/positions", c->name, key);
    int64_t *p = h5_read(GOLD "/expected.h5", path, H5T_NATIVE_INT64, sizeof(int64_t), dp);
    const int64_t U = lh_maxact_units(r, i), K = lh_maxact_k(r);
    MT_CHECK(v && s && p, "%s/%s: no reference", c->name, key);
    MT_CHECK((int64_t)dv[0] == U && (int64_t)dv[1] == K,
             "%s/%s: (%lld, %lld), reference (%llu, %llu)", c->name, key, (long long)U,
             (long long)K, (unsigned long long)dv[0], (unsigned long long)dv[1]);
    if (v && s && p && (int64_t)dv[0] == U && (int64_t)dv[1] == K) {
      const float *gv = lh_maxact_values(r, i);
      const int64_t *gs = lh_maxact_sample_ids(r, i), *gp = lh_maxact_positions(r, i);
      int64_t bad_s = 0, bad_p = 0, first = -1;
      double md = 0;
      for (int64_t q = 0; q < U * K; q++) {
        if (gs[q] != s[q]) bad_s++;
        if (gp[q] != p[q]) bad_p++;
        if ((gs[q] != s[q] || gp[q] != p[q]) && first < 0) first = q;
        if (isnan(v[q]) != isnan(gv[q]))
          md = INFINITY;
        else if (!isnan(v[q]))
          md = fmax(md, fabs((double)gv[q] - v[q]) / fmax(1.0, fabs(v[q])));
      }
      MT_CHECK(bad_s == 0 && bad_p == 0,
               "%s/%s (batch %lld): %lld samples and %lld positions differ; first at unit %lld "
               "rank %lld: (%lld, %lld), reference (%lld, %lld)",
               c->name, key, (long long)bs, (long long)bad_s, (long long)bad_p,
               (long long)(first / K), (long long)(first % K),
               (long long)(first < 0 ? 0 : gs[first]), (long long)(first < 0 ? 0 : gp[first]),
               (long long)(first < 0 ? 0 : s[first]), (long long)(first < 0 ? 0 : p[first]));
      MT_CHECK(md <= 2e-6, "%s/%s (batch %lld): values differ by %.3g (relative)", c->name, key,
               (long long)bs, md);
    }
    free(v);
    free(s);
    free(p);
  }
}

/* The distributed result equals a one-process run bit for bit. */
static void same_as_serial(lh_model *m, const tcase *c, int64_t bs, const lh_maxact *r) {
  lh_maxact *one = run(MPI_COMM_SELF, m, c, bs);
  if (!one) return;
  MT_CHECK(lh_maxact_count(one) == lh_maxact_count(r), "%s: module count", c->name);
  for (int64_t i = 0; i < lh_maxact_count(r) && i < lh_maxact_count(one); i++) {
    const int64_t UK = lh_maxact_units(r, i) * lh_maxact_k(r);
    MT_CHECK(strcmp(lh_maxact_key(one, i), lh_maxact_key(r, i)) == 0, "%s: keys", c->name);
    MT_CHECK(lh_maxact_units(one, i) == lh_maxact_units(r, i), "%s: units", c->name);
    if (lh_maxact_units(one, i) != lh_maxact_units(r, i)) continue;
    int64_t diff = 0;
    for (int64_t q = 0; q < UK; q++)
      diff += !mt_same(lh_maxact_values(one, i)[q], lh_maxact_values(r, i)[q]) ||
              lh_maxact_sample_ids(one, i)[q] != lh_maxact_sample_ids(r, i)[q] ||
              lh_maxact_positions(one, i)[q] != lh_maxact_positions(r, i)[q];
    MT_CHECK(diff == 0, "%s/%s (batch %lld): %lld entries differ from one process", c->name,
             lh_maxact_key(r, i), (long long)bs, (long long)diff);
  }
  lh_maxact_destroy(&one);
}

static void golden(void) {
  const int64_t batches[] = {1, 3, 32};
  for (int ci = 0; ci < NCASES; ci++) {
    const tcase *c = &CASES[ci];
    lh_model *m = NULL;
    MT_OK(lh_model_load(c->model, &m));
    if (!m) continue;
    for (int b = 0; b < 3; b++) {
      lh_maxact *r = run(MPI_COMM_WORLD, m, c, batches[b]);
      if (!r) continue;
      against_golden(c, r, batches[b]);
      if (batches[b] == 3) same_as_serial(m, c, batches[b], r); /* one size: keeps it short */
      lh_maxact_destroy(&r);
    }
    lh_model_destroy(&m);
  }
}

/* The table of the GPT-2 case: its lines against the HDF5 result and the token ids read here. */
static void table(void) {
  const tcase *c = &CASES[4];
  int rank;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  lh_model *m = NULL;
  MT_OK(lh_model_load(c->model, &m));
  lh_maxact *r = m ? run(MPI_COMM_WORLD, m, c, 4) : NULL;
  if (!r) {
    lh_model_destroy(&m);
    return;
  }
  int P;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  char vocab_path[64], tab[64], bad[64]; /* per rank count: the np tests may run at once */
  snprintf(vocab_path, sizeof vocab_path, "mpi_maxact_vocab_np%d.txt", P);
  snprintf(tab, sizeof tab, "mpi_maxact_table_np%d.txt", P);
  snprintf(bad, sizeof bad, "mpi_maxact_bad_np%d.txt", P);
  if (rank == 0) {
    FILE *f = fopen(vocab_path, "w");
    for (int i = 0; i < 64; i++) fprintf(f, "t%d\n", i);
    fclose(f);
  }
  MPI_Barrier(MPI_COMM_WORLD);
  lh_vocab *v = NULL;
  MT_OK(lh_vocab_load(vocab_path, &v));
  hsize_t dims[2];
  int64_t *tok = h5_read(GOLD "/inputs.h5", "/gpt2/tokens", H5T_NATIVE_INT64, 8, dims);
  MT_CHECK(tok && dims[0] == 11 && dims[1] == 16, "tokens");
  for (int with_vocab = 0; with_vocab < 2 && tok; with_vocab++) {
    MT_OK(lh_maxact_write_table(MPI_COMM_WORLD, r, c->inputs, with_vocab ? v : NULL, 2, tab));
    if (rank != 0) continue;
    FILE *f = fopen(tab, "r");
    MT_CHECK(f != NULL, "table not written");
    if (!f) continue;
    char line[4096];
    int64_t lines = 0, checked = 0;
    MT_CHECK(fgets(line, sizeof line, f) && line[0] == '#', "first line: a comment");
    MT_CHECK(fgets(line, sizeof line, f) && strstr(line, "module") && strstr(line, "context"),
             "second line: the header");
    /* every entry of the result, in order: module, unit, rank, value, sample, position and
     * the tokens at position - 2 .. position + 2 */
    for (int64_t i = 0; i < lh_maxact_count(r); i++) {
      int64_t shape[8];
      const int k = lh_maxact_shape(r, i, shape);
      for (int64_t q = 0; q < lh_maxact_units(r, i) * lh_maxact_k(r); q++) {
        const int64_t s = lh_maxact_sample_ids(r, i)[q], p = lh_maxact_positions(r, i)[q];
        if (s < 0) continue;
        if (!fgets(line, sizeof line, f)) break;
        lines++;
        char key[512];
        long long u, j, ss, pp;
        double val;
        int used = 0;
        int got =
            sscanf(line, "%511s %lld %lld %lf %lld %lld%n", key, &u, &j, &val, &ss, &pp, &used);
        bool ok = got == 6 && strcmp(key, lh_maxact_key(r, i)) == 0 && u == q / lh_maxact_k(r) &&
                  j == q % lh_maxact_k(r) && ss == s && pp == p &&
                  fabs(val - lh_maxact_values(r, i)[q]) <= 1e-5 * fmax(1, fabs(val));
        char want[512] = "";
        if (k == 2 && shape[0] == 16) {
          size_t n = 0;
          const int64_t lo = p - 2 < 0 ? 0 : p - 2, hi = p + 2 > 15 ? 15 : p + 2;
          n += (size_t)snprintf(want + n, sizeof want - n, "%s", lo > 0 ? "  ..." : " ");
          for (int64_t t = lo; t <= hi; t++)
            n += (size_t)snprintf(want + n, sizeof want - n, t == p ? " [%s%lld]" : " %s%lld",
                                  with_vocab ? "t" : "", (long long)tok[s * 16 + t]);
          if (hi < 15) snprintf(want + n, sizeof want - n, " ...");
          line[strcspn(line, "\n")] = '\0';
          ok = ok && strcmp(line + used, want) == 0;
          checked++;
        }
        if (!ok) {
          MT_CHECK(ok, "table line %lld: '%s' (expected context '%s')", (long long)lines, line,
                   want);
          i = lh_maxact_count(r);
          break;
        }
      }
    }
    MT_CHECK(!fgets(line, sizeof line, f), "table: extra lines");
    MT_CHECK(checked > 0 && checked < lines, "table: %lld lines with context of %lld",
             (long long)checked, (long long)lines);
    fclose(f);
  }
  /* errors: collective, nothing left behind */
  MT_STATUS(lh_maxact_write_table(MPI_COMM_WORLD, r, c->inputs, NULL, -1, tab), LH_ERR_USAGE);
  MT_STATUS(lh_maxact_write_table(MPI_COMM_WORLD, r, c->inputs, NULL, 2, "/nonexistent/dir/t.txt"),
            LH_ERR_IO);
  MT_STATUS(lh_maxact_write_table(MPI_COMM_WORLD, r, GOLD "/inputs.h5:/nothing", NULL, 2, bad),
            LH_ERR_IO);
  lh_error_clear();
  MT_CHECK(access(bad, F_OK) != 0, "a failed table was left behind");
  MPI_Barrier(MPI_COMM_WORLD);
  if (rank == 0) {
    unlink(tab);
    unlink(vocab_path);
  }
  free(tok);
  lh_vocab_free(v);
  lh_maxact_destroy(&r);
  lh_model_destroy(&m);
}

static void errors(void) {
  lh_model *m = NULL;
  MT_OK(lh_model_load(NN "/mlp/model.yaml", &m));
  if (!m) return;
  lh_maxact *r = NULL;
  lh_maxact_opts o = lh_maxact_defaults();
  o.key_pattern = "linear1";
  o.k = 0;
  MT_STATUS(lh_maxact_run(MPI_COMM_WORLD, m, NN "/mlp/data.h5:/inputs", &o, &r), LH_ERR_USAGE);
  MT_CHECK(r == NULL, "output written on failure");
  lh_error_clear();
  o.k = 2;
  o.key_pattern = "nothing";
  MT_STATUS(lh_maxact_run(MPI_COMM_WORLD, m, NN "/mlp/data.h5:/inputs", &o, &r), LH_ERR_VALUE);
  if (lh_error_is_reporter())
    MT_CHECK(strstr(lh_error_message(), "matches no module") &&
                 strstr(lh_error_message(), "linear1, linear2"),
             "message: %s", lh_error_message());
  lh_error_clear();
  o.key_pattern = "linear1";
  MT_STATUS(lh_maxact_run(MPI_COMM_WORLD, m, GOLD "/inputs.h5:/gpt2/tokens", &o, &r),
            LH_ERR_VALUE); /* 16 columns, the MLP takes 10 features */
  lh_error_clear();
  /* the model still works after failed runs (hooks removed) */
  r = run(MPI_COMM_WORLD, m, &CASES[0], 2);
  if (r) against_golden(&CASES[0], r, 2);
  lh_maxact_destroy(&r);
  lh_model_destroy(&m);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int rank, P;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  lh_log_setup(LH_LOG_WARN, rank, P);
  golden();
  table();
  errors();
  return mt_finish("mpi_maxact");
}
