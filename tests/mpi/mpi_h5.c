/* Parallel HDF5 I/O on any rank count: every element read from the fixtures (float16/32/64,
 * integers, chunked + compressed, batch dimensions, N < P, N = 0), batch items spread over
 * ranks on sub-communicators, byte-identical HDF5 -> lh_dmat -> HDF5 round trips, the
 * temporary-name/commit protocol, provenance attributes, and agreed errors with one message. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>

#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/h5.h"
#include "mpi/mpitest.h"

#define FX LH_FIXTURE_DIR "/good.h5"

static int P, rank;

static double read_elem(lh_dmat *m, int64_t i, int64_t j) {
  int64_t D = lh_dmat_cols(m);
  return lh_dmat_dtype(m) == LH_F64 ? ((double *)lh_dmat_local(m))[i * D + j]
                                    : ((float *)lh_dmat_local(m))[i * D + j];
}

typedef double (*elem_fn)(int64_t b, int64_t i, int64_t j);
static double f_a(int64_t b, int64_t i, int64_t j) { return 1000.0 * b + i + j / 8.0; }
static double f_f16(int64_t b, int64_t i, int64_t j) { return (double)(i * 4 + j); }
static double f_i32(int64_t b, int64_t i, int64_t j) { return -(double)(i * 3 + j); }
static double f_u8(int64_t b, int64_t i, int64_t j) { return 200.0 + i * 2 + j; }
static double f_i64(int64_t b, int64_t i, int64_t j) { return 1099511627776.0 + i * 2 + j; }
static double f_z(int64_t b, int64_t i, int64_t j) { return i + 0.25 * j; }
static double f_deep(int64_t b, int64_t i, int64_t j) { return (double)((b * 4 + i) * 5 + j); }
static double f_tiny(int64_t b, int64_t i, int64_t j) { return (double)(i * 3 + j); }

/* Reads every batch item of `spec` as `dt` and checks every local element against f. */
static void check_dataset(const char *spec, lh_dtype want_natural, int64_t B, int64_t N,
                          int64_t D, elem_fn f) {
  lh_h5_dset *d = NULL;
  MT_OK(lh_h5_open(MPI_COMM_WORLD, spec, LH_ROWS_SECOND_LAST, &d));
  if (!d) return;
  const lh_h5_info *in = lh_h5_dset_info(d);
  MT_CHECK(in->B == B && in->N == N && in->E == D, "%s: shape B=%lld N=%lld D=%lld", spec,
           (long long)in->B, (long long)in->N, (long long)in->E);
  MT_CHECK(in->natural == want_natural, "%s: natural dtype %s", spec, lh_dtype_name(in->natural));
  for (int t = 0; t < 2; t++) {
    lh_dtype dt = t ? LH_F64 : LH_F32;
    for (int64_t b = 0; b < in->B; b++) {
      lh_dmat *m = NULL;
      MT_OK(lh_dmat_create(MPI_COMM_WORLD, dt, in->N, in->E, &m));
      MT_OK(lh_h5_read_dmat(d, b, m));
      int bad = 0;
      for (int64_t i = 0; i < lh_dmat_local_rows(m); i++)
        for (int64_t j = 0; j < D; j++) {
          double want = f(b, lh_dmat_row_offset(m) + i, j);
          if (dt == LH_F32) want = (float)want;
          if (read_elem(m, i, j) != want) bad++;
        }
      MT_CHECK(bad == 0, "%s item %lld as %s: %d wrong elements", spec, (long long)b,
               lh_dtype_name(dt), bad);
      lh_dmat_destroy(&m);
    }
  }
  lh_h5_close(&d);
}

/* Each rank reads a different batch item into a matrix on its own sub-communicator. */
static void check_spread_batches(void) {
  lh_h5_dset *d = NULL;
  MT_OK(lh_h5_open(MPI_COMM_WORLD, FX ":/grp/sub/deep", LH_ROWS_SECOND_LAST, &d));
  if (!d) return;
  MPI_Comm sub;
  MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &sub); /* two groups when P > 1 */
  int64_t b = (rank % 2) * 3 + 1;                        /* items 1 and 4 */
  lh_dmat *m = NULL;
  MT_OK(lh_dmat_create(sub, LH_F64, 4, 5, &m));
  MT_OK(lh_h5_read_dmat(d, b, m));
  int bad = 0;
  for (int64_t i = 0; i < lh_dmat_local_rows(m); i++)
    for (int64_t j = 0; j < 5; j++)
      if (read_elem(m, i, j) != f_deep(b, lh_dmat_row_offset(m) + i, j)) bad++;
  MT_CHECK(bad == 0, "spread item %lld: %d wrong", (long long)b, bad);
  lh_dmat_destroy(&m);
  MPI_Comm_free(&sub);
  lh_h5_close(&d);
}

/* Raw stored bytes of a dataset, read serially on rank 0. */
static unsigned char *raw_bytes(const char *file, const char *path, size_t *len) {
  hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  hid_t t = H5Dget_type(d), s = H5Dget_space(d);
  *len = H5Tget_size(t) * (size_t)H5Sget_simple_extent_npoints(s);
  unsigned char *buf = malloc(*len ? *len : 1);
  H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  H5Sclose(s);
  H5Tclose(t);
  H5Dclose(d);
  H5Fclose(f);
  return buf;
}

static void round_trip(const char *path, const char *outname) {
  char spec[512], out[256];
  snprintf(spec, sizeof spec, "%s:%s", FX, path);
  snprintf(out, sizeof out, "%s_np%d.h5", outname, P);
  lh_h5_dset *in = NULL, *od = NULL;
  lh_h5_out *o = NULL;
  MT_OK(lh_h5_open(MPI_COMM_WORLD, spec, LH_ROWS_SECOND_LAST, &in));
  MT_OK(lh_h5_out_create(MPI_COMM_WORLD, out, &o));
  if (!in || !o) return;
  const lh_h5_info *info = lh_h5_dset_info(in);
  MT_OK(lh_h5_out_dataset(o, path, info->natural, info->ndims, info->dims, LH_ROWS_SECOND_LAST, &od));
  for (int64_t b = 0; b < info->B && od; b++) {
    lh_dmat *m = NULL;
    MT_OK(lh_dmat_create(MPI_COMM_WORLD, info->natural, info->N, info->E, &m));
    MT_OK(lh_h5_read_dmat(in, b, m));
    MT_OK(lh_h5_write_dmat(od, b, m));
    lh_dmat_destroy(&m);
  }
  lh_h5_close(&od);
  if (rank == 0) {
    struct stat sb;
    MT_CHECK(stat(out, &sb) != 0, "%s exists before commit", out);
  }
  MT_OK(lh_h5_out_commit(&o));
  MT_CHECK(o == NULL, "commit clears the handle");
  lh_h5_close(&in);
  if (rank == 0) {
    size_t la, lb;
    unsigned char *a = raw_bytes(FX, path, &la), *c = raw_bytes(out, path, &lb);
    MT_CHECK(la == lb && memcmp(a, c, la) == 0, "%s: round trip not byte-identical", path);
    free(a);
    free(c);
    /* provenance on the dataset */
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
    long long nr = -1;
    hid_t at = H5Aopen(d, "mpi_ranks", H5P_DEFAULT);
    H5Aread(at, H5T_NATIVE_LLONG, &nr);
    H5Aclose(at);
    MT_CHECK(nr == P, "mpi_ranks attribute %lld", nr);
    MT_CHECK(H5Aexists(d, "command_line") > 0 && H5Aexists(d, "created") > 0 &&
                 H5Aexists(f, "latenthook_version") > 0,
             "provenance attributes missing");
    H5Dclose(d);
    H5Fclose(f);
    unlink(out);
  }
}

static void check_discard(void) {
  char out[64];
  snprintf(out, sizeof out, "discarded_np%d.h5", P);
  lh_h5_out *o = NULL;
  MT_OK(lh_h5_out_create(MPI_COMM_WORLD, out, &o));
  lh_h5_out_discard(&o);
  MT_CHECK(o == NULL, "discard clears the handle");
  if (rank == 0) {
    struct stat sb;
    MT_CHECK(stat(out, &sb) != 0, "discarded output exists");
    char cmd[128];
    snprintf(cmd, sizeof cmd, "ls %s.tmp-* >/dev/null 2>&1", out);
    MT_CHECK(system(cmd) != 0, "temporary file left behind");
  }
  MT_STATUS(lh_h5_out_create(MPI_COMM_WORLD, "no/such/folder/out.h5", &o), LH_ERR_IO);
  int pend = lh_error_pending();
  if (pend) MT_CHECK(strstr(lh_error_message(), "does not exist") != NULL, "%s", lh_error_message());
  MPI_Allreduce(MPI_IN_PLACE, &pend, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MT_CHECK(pend == 1, "%d ranks hold the message", pend);
  lh_error_clear();
}

static void check_error(const char *spec, lh_status want, const char *needle) {
  lh_h5_dset *d = NULL;
  lh_status st = lh_h5_open(MPI_COMM_WORLD, spec, LH_ROWS_SECOND_LAST, &d);
  MT_CHECK(st == want, "%s: got %s, expected %s", spec, lh_status_name(st), lh_status_name(want));
  MT_CHECK(d == NULL, "%s: handle set on failure", spec);
  int pend = lh_error_pending();
  if (pend)
    MT_CHECK(strstr(lh_error_message(), needle) != NULL, "%s: message '%s' lacks '%s'", spec,
             lh_error_message(), needle);
  MPI_Allreduce(MPI_IN_PLACE, &pend, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MT_CHECK(pend == 1, "%s: %d ranks hold the message, expected 1", spec, pend);
  lh_error_clear();
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);

  check_dataset(FX ":/a", LH_F32, 3, 100, 8, f_a);
  check_dataset(FX ":/f16", LH_F32, 1, 10, 4, f_f16);
  check_dataset(FX ":/i32", LH_F64, 1, 7, 3, f_i32);
  check_dataset(FX ":/u8", LH_F64, 1, 5, 2, f_u8);
  check_dataset(FX ":/i64", LH_F64, 1, 4, 2, f_i64);
  check_dataset(FX ":/z", LH_F64, 1, 50, 6, f_z);
  check_dataset(FX ":/grp/sub/deep", LH_F64, 6, 4, 5, f_deep);
  check_dataset(FX ":/tiny", LH_F64, 1, 2, 3, f_tiny);
  check_dataset(FX ":/empty", LH_F32, 1, 0, 4, f_tiny);
  check_dataset(FX ":/zerocols", LH_F32, 1, 5, 0, f_tiny);
  check_spread_batches();

  round_trip("/a", "rt_a");
  round_trip("/z", "rt_z");
  round_trip("/grp/sub/deep", "rt_deep");
  round_trip("/tiny", "rt_tiny");
  round_trip("/empty", "rt_empty");
  round_trip("/zerocols", "rt_zerocols");
  check_discard();

  check_error(LH_FIXTURE_DIR "/missing.h5:/a", LH_ERR_IO, "No such file");
  check_error(LH_FIXTURE_DIR "/not_hdf5.h5:/a", LH_ERR_IO, "not an HDF5 file");
  check_error(FX ":/nope", LH_ERR_KEY, "members: a, cmp, empty");
  check_error(FX ":/grp/nope/deep", LH_ERR_KEY, "group '/grp' has no member 'nope'");
  check_error(FX ":/g", LH_ERR_TYPE, "is a group, not a dataset");
  check_error(FX ":/v", LH_ERR_VALUE, "has shape (10,); expected (..., N, D)");
  check_error(FX ":/s", LH_ERR_TYPE, "holds strings");
  check_error(FX ":/cmp", LH_ERR_TYPE, "holds compound data");
  check_error(FX ":/sc", LH_ERR_VALUE, "expected (..., N, D)");
  check_error(FX, LH_ERR_USAGE, "FILE.h5:/path/to/dataset");
  return mt_finish("mpi_h5");
}
