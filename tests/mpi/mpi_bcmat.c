/* lh_dmat <-> ScaLAPACK block-cyclic: every element lands where the descriptor says, the
 * round trip is exact, and PDGEMM on the converted matrix gives X^T X equal to the closed
 * form. Several grid shapes and block sizes, N not divisible by P, N < P. */
#include <stdlib.h>

#include "latenthook/bcmat.h"
#include "latenthook/dmat.h"
#include "linalg/scalapack.h"
#include "mpi/mpitest.h"

/* x[i][j] = i + 1000 j (exact in float32 for the sizes used) */
static double val(int64_t i, int64_t j) { return (double)i + 1000.0 * (double)j; }

static void one_case(int64_t N, int64_t D, int nprow, int npcol, int mb, int nb, lh_dtype dt) {
  lh_blacs *g = NULL;
  lh_dmat *m = NULL, *back = NULL;
  lh_bcmat *a = NULL;
  MT_OK(lh_blacs_create(MPI_COMM_WORLD, nprow, npcol, &g));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, dt, N, D, &m));
  if (!g || !m) goto out;
  int64_t n = lh_dmat_local_rows(m), o = lh_dmat_row_offset(m);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++) {
      if (dt == LH_F64)
        ((double *)lh_dmat_local(m))[i * D + j] = val(o + i, j);
      else
        ((float *)lh_dmat_local(m))[i * D + j] = (float)val(o + i, j);
    }
  MT_OK(lh_dmat_to_bcmat(m, g, mb, nb, &a));
  if (!a) goto out;
  const int *desc = lh_bcmat_desc(a);
  int lr = lh_bcmat_local_rows(a), lc = lh_bcmat_local_cols(a);
  double *loc = lh_bcmat_local(a);
  int bad = 0;
  for (int lj = 0; lj < lc; lj++)
    for (int li = 0; li < lr; li++) {
      int64_t gi, gj;
      lh_bcmat_global_index(a, li, lj, &gi, &gj);
      if (loc[li + (int64_t)lj * desc[LH_DESC_LLD]] != val(gi, gj)) bad++;
    }
  MT_CHECK(bad == 0, "N=%lld D=%lld grid %dx%d blocks %dx%d: %d misplaced elements",
           (long long)N, (long long)D, nprow, npcol, mb, nb, bad);
  int64_t cnt = lr * (int64_t)lc;
  MPI_Allreduce(MPI_IN_PLACE, &cnt, 1, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
  MT_CHECK(cnt == N * D, "local blocks hold %lld elements, expected %lld", (long long)cnt,
           (long long)(N * D));

  /* Gram matrix X^T X by PDGEMM: G[p][q] = sum_i (i + 1000p)(i + 1000q), in closed form. */
  if (N > 0 && D > 0) {
    lh_bcmat *gram = NULL;
    MT_OK(lh_bcmat_create(g, D, D, nb, nb, &gram));
    int one = 1, d = (int)D, nn = (int)N;
    double alpha = 1.0, beta = 0.0;
    pdgemm_("T", "N", &d, &d, &nn, &alpha, loc, &one, &one, desc, loc, &one, &one, desc, &beta,
            lh_bcmat_local(gram), &one, &one, lh_bcmat_desc(gram));
    double S1 = (double)N * (double)(N - 1) / 2.0;
    double S2 = (double)(N - 1) * (double)N * (double)(2 * N - 1) / 6.0;
    int gbad = 0;
    for (int lj = 0; lj < lh_bcmat_local_cols(gram); lj++)
      for (int li = 0; li < lh_bcmat_local_rows(gram); li++) {
        int64_t p, q;
        lh_bcmat_global_index(gram, li, lj, &p, &q);
        double want = S2 + 1000.0 * (double)(p + q) * S1 + 1e6 * (double)(p * q) * (double)N;
        double got = lh_bcmat_local(gram)[li + (int64_t)lj * lh_bcmat_desc(gram)[LH_DESC_LLD]];
        if (fabs(got - want) > 1e-12 * fabs(want)) gbad++;
      }
    MT_CHECK(gbad == 0, "PDGEMM Gram: %d wrong entries", gbad);
    lh_bcmat_destroy(&gram);
  }

  MT_OK(lh_dmat_create(MPI_COMM_WORLD, dt, N, D, &back));
  MT_OK(lh_bcmat_to_dmat(a, back));
  size_t bytes = (size_t)(n * D) * lh_dtype_size(dt);
  MT_CHECK(memcmp(lh_dmat_local(m), lh_dmat_local(back), bytes) == 0,
           "round trip differs (N=%lld D=%lld)", (long long)N, (long long)D);
out:
  lh_bcmat_destroy(&a);
  lh_dmat_destroy(&m);
  lh_dmat_destroy(&back);
  lh_blacs_destroy(&g);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int P;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  int64_t shapes[][2] = {{37, 5}, {2, 3}, {101, 17}, {1, 1}, {64, 64}, {0, 3}, {5, 0}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    one_case(shapes[s][0], shapes[s][1], 0, 0, 4, 3, LH_F64);   /* square-ish grid */
    one_case(shapes[s][0], shapes[s][1], 1, P, 2, 2, LH_F32);   /* 1 x P */
    one_case(shapes[s][0], shapes[s][1], P, 1, 8, 64, LH_F64);  /* P x 1 */
  }
  /* a grid that does not match the rank count is an agreed error */
  lh_blacs *g = NULL;
  MT_STATUS(lh_blacs_create(MPI_COMM_WORLD, P + 1, 1, &g), LH_ERR_VALUE);
  lh_error_clear();
  return mt_finish("mpi_bcmat");
}
