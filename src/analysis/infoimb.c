/*
 * infoimb.c: information imbalance by three passes of distributed neighbour ranks (see
 * infoimb.h).
 */
#include <math.h>
#include <stdlib.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/infoimb.h"
#include "latenthook/knn.h"
#include "latenthook/mem.h"

lh_ii_opts lh_ii_defaults(void) {
  lh_ii_opts o = {.p = 2.0, .k = 1};
  return o;
}

typedef struct thr {
  double key;
  int64_t ix;
} thr;

static int thr_cmp(const void *a, const void *b) {
  const thr *x = a, *y = b;
  if (x->key < y->key) return -1;
  if (x->key > y->key) return 1;
  return (x->ix > y->ix) - (x->ix < y->ix);
}

/* Sum over this rank's rows of the ranks, in `to`, of each row's neighbours `nb` (from the
 * other space): r = 1 + #{l != i : (key_to(i,l), l) < (key_to(i,j), j)}. Pairs whose rows are
 * not finite are skipped; *pairs counts the others. Collective (one ring pass over `to`),
 * and with `next` non-NULL the same pass finds the k nearest neighbours in `to`. */
static lh_status rank_sum(const lh_dmat *to, const lh_knn_result *nb, const lh_knn_opts *ko,
                          int64_t *sum, int64_t *pairs, lh_knn_result **next) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(to);
  const int64_t n = lh_dmat_local_rows(to), D = lh_dmat_cols(to), k = nb->k;
  const size_t rb = (size_t)D * lh_dtype_size(lh_dmat_dtype(to));
  char *rows = NULL;
  thr *t = NULL;
  double *key = NULL;
  int64_t *ix = NULL, *cnt = NULL;
  local = lh_alloc((size_t)(n * k), rb, false, "neighbour rows", &rows);
  if (local == LH_OK) local = lh_alloc((size_t)(n * k), sizeof *t, false, "thresholds", &t);
  if (local == LH_OK) local = lh_alloc((size_t)(n * k), sizeof *key, false, "thresholds", &key);
  if (local == LH_OK) local = lh_alloc((size_t)(n * k), sizeof *ix, false, "thresholds", &ix);
  if (local == LH_OK) local = lh_alloc((size_t)(n * k), sizeof *cnt, false, "counts", &cnt);
  LH_TRY(lh_agree(comm, local));
  /* the neighbours' rows in `to`, then the keys that rank them */
  LH_TRY(lh_dmat_fetch_rows(to, n * k, nb->index, rows));
  const char *own = lh_dmat_local_const(to);
  for (int64_t i = 0; i < n; i++) {
    for (int64_t q = 0; q < k; q++) {
      int64_t j = nb->index[i * k + q];
      double s = j >= 0 ? lh_knn_key(own + (size_t)i * rb, rows + (size_t)(i * k + q) * rb, D,
                                     lh_dmat_dtype(to), ko->p)
                        : NAN;
      /* a pair without a finite key is not ranked: an impossible threshold counts nothing */
      t[i * k + q].key = isfinite(s) ? s : -INFINITY;
      t[i * k + q].ix = isfinite(s) ? j : -1;
    }
    qsort(t + i * k, (size_t)k, sizeof *t, thr_cmp); /* thresholds ascending per row */
    for (int64_t q = 0; q < k; q++) {
      key[i * k + q] = t[i * k + q].key;
      ix[i * k + q] = t[i * k + q].ix;
    }
  }
  lh_knn_ranks rk = {.nt = k, .key = key, .index = ix, .count = cnt};
  LH_TRY(lh_knn_search(to, ko, &rk, next));
  int64_t s = 0, np = 0;
  for (int64_t i = 0; i < n * k; i++)
    if (ix[i] >= 0) {
      s += 1 + cnt[i];
      np++;
    }
  *sum = s;
  *pairs = np;
done:
  lh_free(rows);
  lh_free(t);
  lh_free(key);
  lh_free(ix);
  lh_free(cnt);
  return st;
}

lh_status lh_ii_run(const lh_dmat *A, const lh_dmat *B, const lh_ii_opts *opts,
                    lh_ii_result *out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(A);
  const int64_t N = lh_dmat_rows(A);
  lh_knn_result *na = NULL, *nb = NULL;
  int same = MPI_UNEQUAL;
  MPI_Comm_compare(comm, lh_dmat_comm(B), &same);
  if (same != MPI_IDENT)
    local = LH_ERROR(LH_ERR_INTERNAL, "information imbalance: A and B live on different communicators");
  else if (lh_dmat_rows(B) != N)
    local = LH_ERROR(LH_ERR_VALUE, "Expected matching sample counts, got %lld and %lld",
                     (long long)N, (long long)lh_dmat_rows(B));
  else if (N < 2)
    local = LH_ERROR(LH_ERR_VALUE, "Expected at least 2 samples, got %lld", (long long)N);
  else if (opts->k < 1 || opts->k > N - 1)
    local = LH_ERROR(LH_ERR_VALUE, "k must be between 1 and N - 1 = %lld, got %lld",
                     (long long)(N - 1), (long long)opts->k);
  else if (!(opts->p >= 1.0))
    local = LH_ERROR(LH_ERR_VALUE, "the Minkowski exponent p must be >= 1 (or inf), got %g", opts->p);
  LH_TRY(lh_agree(comm, local));

  lh_knn_opts ko = lh_knn_defaults();
  ko.k = opts->k;
  ko.p = opts->p;
  ko.eps = -1.0; /* every other sample is a neighbour, duplicates included */
  int64_t v[4] = {0, 0, 0, 0}; /* rank sums and pair counts, A -> B then B -> A */
  LH_TRY(lh_knn_run(A, &ko, &na));                        /* pass 1: neighbours in A */
  LH_TRY(rank_sum(B, na, &ko, &v[0], &v[1], &nb));        /* pass 2: their B-ranks; B's */
  LH_TRY(rank_sum(A, nb, &ko, &v[2], &v[3], NULL));       /* pass 3: those A-ranks */
  MPI_Allreduce(MPI_IN_PLACE, v, 4, MPI_INT64_T, MPI_SUM, comm);
  out->pairs_a_to_b = v[1];
  out->pairs_b_to_a = v[3];
  out->a_to_b = v[1] ? 2.0 * (double)v[0] / ((double)N * (double)v[1]) : NAN;
  out->b_to_a = v[3] ? 2.0 * (double)v[2] / ((double)N * (double)v[3]) : NAN;
  out->floor = (double)(opts->k + 1) / (double)N;
done:
  lh_knn_result_destroy(&na);
  lh_knn_result_destroy(&nb);
  return st;
}
