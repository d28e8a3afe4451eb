/*
 * cmd_synth.c: `latenthook synth` writes synthetic point clouds of known intrinsic dimension,
 * generated in parallel (each rank its rows, from a counter-based generator, so the file is
 * the same for any rank count). For trying the analyses, for benchmarks, and for the large
 * runs (10^6 points and more) whose data nobody wants to ship.
 *
 *   gauss:  x = A z with z ~ N(0, I_K) and a fixed random D x K matrix A: a K-dimensional
 *           linear subspace of R^D (K = D: a full Gaussian cloud)
 *   sphere: z ~ N(0, I_{K+1}) normalised, then embedded by A: a K-sphere
 *   cube:   z ~ U[0, 1]^K, embedded by A: a K-cube
 */
#include <math.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/mem.h"
#include "latenthook/rng.h"

static const char HELP[] =
    "usage: mpiexec -n P latenthook synth --out FILE.h5:/dset --n N --d D [options]\n\n"
    "Writes an N x D float32 point cloud of intrinsic dimension K, the same for any rank\n"
    "count, generated in parallel:\n"
    "  gauss   a K-dimensional Gaussian in a random K-dimensional subspace of R^D\n"
    "  sphere  a K-sphere (normalised Gaussian in R^(K+1)), randomly embedded in R^D\n"
    "  cube    a uniform K-cube, randomly embedded in R^D\n"
    "Prints {\"out\": ..., \"n\": N, \"d\": D, \"intrinsic\": K, ...}.\n\n"
    "Options:\n"
    "  --out FILE.h5:/dset       where to write (the file is created or replaced)\n"
    "  --n N, --d D              shape (required)\n"
    "  --cloud gauss|sphere|cube (default gauss)\n"
    "  --intrinsic K             intrinsic dimension (default D for gauss, else 2)\n"
    "  --dtype float32|float64   (default float32)\n"
    "  --seed S                  (default 0)\n" CLI_COMMON_HELP;

enum { OPT_OUT = 1, OPT_N, OPT_D, OPT_CLOUD, OPT_K, OPT_SEED, OPT_DTYPE };

typedef struct args {
  const char *out, *cloud, *dtype;
  long long n, d, k, seed;
} args;

static lh_status on_option(int code, const char *arg, void *user) {
  args *a = user;
  switch (code) {
    case OPT_OUT: a->out = arg; return LH_OK;
    case OPT_CLOUD: a->cloud = arg; return LH_OK;
    case OPT_DTYPE: a->dtype = arg; return LH_OK;
    case OPT_N: return cli_parse_int("--n", arg, &a->n);
    case OPT_D: return cli_parse_int("--d", arg, &a->d);
    case OPT_K: return cli_parse_int("--intrinsic", arg, &a->k);
    case OPT_SEED: return cli_parse_int("--seed", arg, &a->seed);
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unhandled option %d", code);
}

static double normal(uint64_t seed, uint64_t k) {
  double u1 = lh_rng_unit(seed, 2 * k), u2 = lh_rng_unit(seed, 2 * k + 1);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

lh_status cmd_synth(MPI_Comm comm, int argc, char **argv, cli_common *cc) {
  lh_status st = LH_OK;
  static const struct option opts[] = {{"out", required_argument, NULL, OPT_OUT},
                                       {"n", required_argument, NULL, OPT_N},
                                       {"d", required_argument, NULL, OPT_D},
                                       {"cloud", required_argument, NULL, OPT_CLOUD},
                                       {"intrinsic", required_argument, NULL, OPT_K},
                                       {"seed", required_argument, NULL, OPT_SEED},
                                       {"dtype", required_argument, NULL, OPT_DTYPE},
                                       CLI_COMMON_OPTIONS,
                                       {0, 0, 0, 0}};
  args a = {.cloud = "gauss", .dtype = "float32", .n = -1, .d = -1, .k = -1};
  lh_h5_addr addr;
  lh_h5_out *o = NULL;
  lh_h5_dset *ds = NULL;
  lh_dmat *X = NULL;
  double *A = NULL, *z = NULL;
  int pos;
  LH_TRY(cli_parse("synth", argc, argv, opts, NULL, cc, on_option, &a, &pos));
  if (cc->help) {
    cli_print_help(comm, HELP);
    goto done;
  }
  if (pos < argc) LH_FAIL(LH_ERR_USAGE, "unexpected argument '%s'", argv[pos]);
  if (!a.out) LH_FAIL(LH_ERR_USAGE, "--out FILE.h5:/dataset is required");
  LH_TRY(lh_h5_addr_parse(a.out, &addr));
  if (a.n < 0 || a.d < 1) LH_FAIL(LH_ERR_USAGE, "--n N >= 0 and --d D >= 1 are required");
  int kind = strcmp(a.cloud, "gauss") == 0 ? 0 : strcmp(a.cloud, "sphere") == 0 ? 1
             : strcmp(a.cloud, "cube") == 0 ? 2 : -1;
  if (kind < 0) LH_FAIL(LH_ERR_USAGE, "--cloud must be gauss, sphere or cube, got '%s'", a.cloud);
  lh_dtype dt = strcmp(a.dtype, "float64") == 0 ? LH_F64 : LH_F32;
  if (strcmp(a.dtype, "float64") && strcmp(a.dtype, "float32"))
    LH_FAIL(LH_ERR_USAGE, "--dtype must be float32 or float64, got '%s'", a.dtype);
  int64_t K = a.k >= 0 ? a.k : (kind == 0 ? a.d : 2);
  int64_t Z = kind == 1 ? K + 1 : K; /* coordinates before embedding */
  if (K < 1 || Z > a.d)
    LH_FAIL(LH_ERR_USAGE, "--intrinsic must be between 1 and %lld for this cloud, got %lld",
            (long long)(kind == 1 ? a.d - 1 : a.d), (long long)K);
  uint64_t seed = (uint64_t)a.seed;
  LH_TRY(lh_dmat_create(comm, dt, a.n, a.d, &X));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)(a.d * Z), sizeof *A, false, "embedding", &A)));
  LH_TRY(lh_agree(comm, lh_alloc((size_t)Z, sizeof *z, false, "coordinates", &z)));
  /* The embedding: Gaussian entries scaled by 1/sqrt(Z), from its own stream. */
  for (int64_t k = 0; k < a.d * Z; k++) A[k] = normal(seed ^ UINT64_C(0xA5A5A5A5), (uint64_t)k) / sqrt((double)Z);
  if (Z == a.d && kind == 0) /* a full Gaussian: no embedding needed */
    for (int64_t k = 0; k < a.d * Z; k++) A[k] = (k / Z == k % Z) ? 1.0 : 0.0;
  int64_t n = lh_dmat_local_rows(X), row0 = lh_dmat_row_offset(X), D = a.d;
  for (int64_t i = 0; i < n; i++) {
    uint64_t base = (uint64_t)(row0 + i) * (uint64_t)Z;
    double nrm = 0;
    for (int64_t t = 0; t < Z; t++) {
      z[t] = kind == 2 ? lh_rng_unit(seed, base + (uint64_t)t) : normal(seed, base + (uint64_t)t);
      nrm += z[t] * z[t];
    }
    if (kind == 1)
      for (int64_t t = 0; t < Z; t++) z[t] /= sqrt(nrm);
    for (int64_t j = 0; j < D; j++) {
      double v = 0;
      for (int64_t t = 0; t < Z; t++) v += A[j * Z + t] * z[t];
      if (dt == LH_F64)
        ((double *)lh_dmat_local(X))[i * D + j] = v;
      else
        ((float *)lh_dmat_local(X))[i * D + j] = (float)v;
    }
  }
  LH_TRY(lh_h5_out_create(comm, addr.file, &o));
  int64_t dims[2] = {a.n, a.d};
  LH_TRY(lh_h5_out_dataset(o, addr.path, dt, 2, dims, LH_ROWS_SECOND_LAST, &ds));
  LH_TRY(lh_h5_write_dmat(ds, 0, X));
  lh_h5_close(&ds);
  LH_TRY(lh_h5_out_commit(&o));
  json_t *doc = json_object();
  json_object_set_new(doc, "out", json_string(a.out));
  json_object_set_new(doc, "n", json_integer(a.n));
  json_object_set_new(doc, "d", json_integer(a.d));
  json_object_set_new(doc, "cloud", json_string(a.cloud));
  json_object_set_new(doc, "intrinsic", json_integer(K));
  json_object_set_new(doc, "seed", json_integer(a.seed));
  cli_emit_json(comm, doc);
done:
  lh_h5_close(&ds);
  lh_h5_out_discard(&o);
  lh_dmat_destroy(&X);
  lh_free(A);
  lh_free(z);
  return st;
}
