/* lh_dmat on any rank count: layout, exact column reductions equal to offline exact sums
 * (tests/golden/xsum.json), cancellation across rank boundaries, min/max with NaN, gather and
 * scatter, and N < P. */
#include <stdlib.h>

#include <jansson.h>

#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/partition.h"
#include "mpi/mpitest.h"
#include "testgen.h"

static void fill_wide(lh_dmat *m, uint64_t seed) {
  int64_t n = lh_dmat_local_rows(m), D = lh_dmat_cols(m), o = lh_dmat_row_offset(m);
  double *x = lh_dmat_local(m);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++) x[i * D + j] = tg_wide(seed, (uint64_t)((o + i) * D + j));
}

static void test_layout(int P, int rank) {
  int64_t shapes[][2] = {{0, 3}, {1, 1}, {2, 3}, {7, 2}, {100, 8}, {5, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    lh_dmat *m = NULL;
    MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, shapes[s][0], shapes[s][1], &m));
    if (!m) continue;
    MT_CHECK(lh_dmat_local_rows(m) == lh_part_count(shapes[s][0], P, rank), "local rows");
    MT_CHECK(lh_dmat_row_offset(m) == lh_part_offset(shapes[s][0], P, rank), "offset");
    int64_t tot = lh_dmat_local_rows(m);
    MPI_Allreduce(MPI_IN_PLACE, &tot, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
    MT_CHECK(tot == shapes[s][0], "rows add up to N");
    lh_dmat_destroy(&m);
    MT_CHECK(m == NULL, "destroy clears the handle");
  }
  lh_dmat_destroy(NULL);
  /* a negative shape is an agreed error, not a crash */
  lh_dmat *bad = NULL;
  MT_STATUS(lh_dmat_create(MPI_COMM_WORLD, LH_F64, -1, 3, &bad), LH_ERR_VALUE);
  MT_CHECK(bad == NULL, "no matrix on failure");
  lh_error_clear();
}

static void test_golden_colsums(void) {
  json_error_t err;
  json_t *doc = json_load_file(LH_GOLDEN_DIR "/xsum.json", 0, &err);
  MT_CHECK(doc != NULL, "xsum.json: %s", err.text);
  if (!doc) return;
  json_t *c;
  size_t idx;
  json_array_foreach(json_object_get(doc, "colsum"), idx, c) {
    uint64_t seed = (uint64_t)json_integer_value(json_object_get(c, "seed"));
    int64_t N = json_integer_value(json_object_get(c, "N"));
    int64_t D = json_integer_value(json_object_get(c, "D"));
    lh_dmat *m = NULL;
    MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &m));
    fill_wide(m, seed);
    double *s = calloc((size_t)D, sizeof *s), *q = calloc((size_t)D, sizeof *q);
    double *mean = calloc((size_t)D, sizeof *mean);
    MT_OK(lh_dmat_col_reduce(m, LH_COL_SUM, s));
    MT_OK(lh_dmat_col_reduce(m, LH_COL_SUMSQ, q));
    MT_OK(lh_dmat_col_reduce(m, LH_COL_MEAN, mean));
    for (int64_t j = 0; j < D; j++) {
      double ws = strtod(json_string_value(json_array_get(json_object_get(c, "sum"), (size_t)j)), NULL);
      double wq = strtod(json_string_value(json_array_get(json_object_get(c, "sumsq"), (size_t)j)), NULL);
      MT_CHECK(mt_same(s[j], ws), "seed %llu col %lld: sum %a, exact %a", (unsigned long long)seed,
               (long long)j, s[j], ws);
      MT_CHECK(mt_same(q[j], wq), "col %lld: sumsq %a, exact %a", (long long)j, q[j], wq);
      MT_CHECK(mt_same(mean[j], ws / (double)N), "col %lld: mean", (long long)j);
    }
    free(s);
    free(q);
    free(mean);
    lh_dmat_destroy(&m);
  }
  json_decref(doc);
}

/* Rows alternate +1e16, 1, -1e16: whatever rank holds which rows, the exact sum is the count
 * of complete triples plus the leftovers, while naive per-rank partial sums lose the ones. */
static void test_cancellation(void) {
  int64_t N = 31, D = 2;
  lh_dmat *m = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &m));
  double *x = lh_dmat_local(m);
  int64_t o = lh_dmat_row_offset(m);
  for (int64_t i = 0; i < lh_dmat_local_rows(m); i++) {
    int64_t g = o + i;
    double v = g % 3 == 0 ? 1e16 : (g % 3 == 1 ? 1.0 : -1e16);
    x[i * D] = v;
    x[i * D + 1] = -v;
  }
  double s[2];
  MT_OK(lh_dmat_col_reduce(m, LH_COL_SUM, s));
  /* 10 full triples (+10), then row 30 = 1e16 */
  MT_CHECK(s[0] == 1e16 + 10.0, "sum %.17g", s[0]);
  MT_CHECK(s[1] == -(1e16 + 10.0), "sum %.17g", s[1]);
  lh_dmat_destroy(&m);
}

static void test_minmax_gather(int rank) {
  int64_t N = 6, D = 3;
  lh_dmat *m = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N, D, &m));
  float *x = lh_dmat_local(m);
  int64_t o = lh_dmat_row_offset(m);
  for (int64_t i = 0; i < lh_dmat_local_rows(m); i++) {
    int64_t g = o + i;
    x[i * D + 0] = (float)(g - 2);            /* -2 .. 3 */
    x[i * D + 1] = g == 4 ? NAN : (float)g;   /* NaN skipped */
    x[i * D + 2] = NAN;                       /* all NaN */
  }
  double mn[3], mx[3];
  MT_OK(lh_dmat_col_reduce(m, LH_COL_MIN, mn));
  MT_OK(lh_dmat_col_reduce(m, LH_COL_MAX, mx));
  MT_CHECK(mn[0] == -2 && mx[0] == 3, "col 0 min/max %g %g", mn[0], mx[0]);
  MT_CHECK(mn[1] == 0 && mx[1] == 5, "col 1 min/max %g %g", mn[1], mx[1]);
  MT_CHECK(isnan(mn[2]) && isnan(mx[2]), "col 2 all NaN");

  float all[18];
  MT_OK(lh_dmat_gather(m, 0, all));
  if (rank == 0)
    for (int g = 0; g < 6; g++) MT_CHECK(all[g * 3] == (float)(g - 2), "gathered row %d", g);
  /* scatter a new matrix from rank 0 and check every local element */
  lh_dmat *m2 = NULL;
  MT_OK(lh_dmat_create_like(m, &m2));
  float src[18];
  for (int k = 0; k < 18; k++) src[k] = (float)k * 0.5f;
  MT_OK(lh_dmat_scatter(m2, 0, rank == 0 ? src : NULL));
  float *y = lh_dmat_local(m2);
  for (int64_t i = 0; i < lh_dmat_local_rows(m2); i++)
    for (int64_t j = 0; j < D; j++)
      MT_CHECK(y[i * D + j] == (float)((o + i) * D + j) * 0.5f, "scattered element");
  /* float32 -> float64 copy */
  lh_dmat *m3 = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, D, &m3));
  MT_OK(lh_dmat_copy(m2, m3));
  double *z = lh_dmat_local(m3);
  for (int64_t k = 0; k < lh_dmat_local_rows(m3) * D; k++) MT_CHECK(z[k] == (double)y[k], "copy");
  lh_dmat_destroy(&m);
  lh_dmat_destroy(&m2);
  lh_dmat_destroy(&m3);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int P, rank;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  test_layout(P, rank);
  test_golden_colsums();
  test_cancellation();
  test_minmax_gather(rank);
  return mt_finish("mpi_dmat");
}
