/*
 * infoimb.c: information imbalance by three passes of distributed neighbour ranks (see
 * infoimb.h).
 */
#include <math.h>
#include <stdlib.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dsort.h"
#include "latenthook/infoimb.h"
#include "latenthook/knn.h"
#include "latenthook/mem.h"
#include "latenthook/rng.h"
#include "latenthook/xsum.h"

lh_ii_opts lh_ii_defaults(void) {
  lh_ii_opts o = {.p = 2.0, .k = 1, .subsample = 0, .seed = 0};
  return o;
}

typedef struct thr {
  double key;
  int64_t ix, src;
} thr;

static int thr_cmp(const void *a, const void *b) {
  const thr *x = a, *y = b;
  if (x->key < y->key) return -1;
  if (x->key > y->key) return 1;
  return (x->ix > y->ix) - (x->ix < y->ix);
}

/* For each source s, the sum over this rank's rows of the ranks in `to` of the rows'
 * neighbours in s (nb[s]): r = 1 + #{l != i : (key_to(i,l), l) < (key_to(i,j), j)}, and the
 * number of (row, neighbour) pairs ranked (pairs whose rows are not finite are skipped). One
 * ring pass over `to` counts for every source at once, the thresholds of a row sorted
 * together; with `next` non-NULL the same pass finds the nearest neighbours in `to`.
 * Collective. */
/* With Q non-NULL the rows ranked are the queries Q (rows qid of `to`), and rowval (if not
 * NULL) receives each query's mean rank for source 0. */
static lh_status rank_sums(const lh_dmat *to, const lh_dmat *Q, const int64_t *qid,
                           const lh_knn_result *const *nb, int64_t S, const lh_knn_opts *ko,
                           int64_t *sum, int64_t *pairs, double *rowval, lh_knn_result **next) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(to);
  const lh_dmat *own_rows = Q ? Q : to;
  const int64_t n = lh_dmat_local_rows(own_rows), D = lh_dmat_cols(to), k = S ? nb[0]->k : 0;
  const int64_t nt = S * k;
  const size_t rb = (size_t)D * lh_dtype_size(lh_dmat_dtype(to));
  char *rows = NULL;
  thr *t = NULL;
  double *key = NULL;
  int64_t *ix = NULL, *cnt = NULL, *src = NULL;
  local = lh_alloc((size_t)(n * k), rb, false, "neighbour rows", &rows);
  if (local == LH_OK) local = lh_alloc((size_t)(n * nt), sizeof *t, false, "thresholds", &t);
  if (local == LH_OK) local = lh_alloc((size_t)(n * nt), sizeof *key, false, "thresholds", &key);
  if (local == LH_OK) local = lh_alloc((size_t)(n * nt), sizeof *ix, false, "thresholds", &ix);
  if (local == LH_OK) local = lh_alloc((size_t)(n * nt), sizeof *cnt, false, "counts", &cnt);
  if (local == LH_OK) local = lh_alloc((size_t)(n * nt), sizeof *src, false, "sources", &src);
  LH_TRY(lh_agree(comm, local));
  const char *own = lh_dmat_local_const(own_rows);
  for (int64_t s = 0; s < S; s++) {
    /* the neighbours' rows in `to`, one source at a time, then the keys that rank them */
    LH_TRY(lh_dmat_fetch_rows(to, n * k, nb[s]->index, rows));
    for (int64_t i = 0; i < n; i++)
      for (int64_t q = 0; q < k; q++) {
        int64_t j = nb[s]->index[i * k + q];
        double v = j >= 0 ? lh_knn_key(own + (size_t)i * rb, rows + (size_t)(i * k + q) * rb, D,
                                       lh_dmat_dtype(to), ko->p)
                          : NAN;
        /* a pair without a finite key is not ranked: an impossible threshold counts nothing */
        thr *e = &t[i * nt + s * k + q];
        e->key = isfinite(v) ? v : -INFINITY;
        e->ix = isfinite(v) ? j : -1;
        e->src = s;
      }
  }
  for (int64_t i = 0; i < n; i++) {
    qsort(t + i * nt, (size_t)nt, sizeof *t, thr_cmp); /* thresholds ascending per row */
    for (int64_t q = 0; q < nt; q++) {
      key[i * nt + q] = t[i * nt + q].key;
      ix[i * nt + q] = t[i * nt + q].ix;
      src[i * nt + q] = t[i * nt + q].src;
    }
  }
  lh_knn_ranks rk = {.nt = nt, .key = key, .index = ix, .count = cnt};
  if (Q)
    LH_TRY(lh_knn_search_queries(Q, qid, to, ko, &rk, next));
  else
    LH_TRY(lh_knn_search(to, ko, &rk, next));
  for (int64_t s = 0; s < S; s++) sum[s] = pairs[s] = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t rs = 0, np = 0;
    for (int64_t q = 0; q < nt; q++) {
      int64_t e = i * nt + q;
      if (ix[e] < 0) continue;
      sum[src[e]] += 1 + cnt[e];
      pairs[src[e]]++;
      if (src[e] == 0) {
        rs += 1 + cnt[e];
        np++;
      }
    }
    if (rowval) rowval[i] = np ? (double)rs / (double)np : NAN;
  }
done:
  lh_free(rows);
  lh_free(t);
  lh_free(key);
  lh_free(ix);
  lh_free(cnt);
  lh_free(src);
  return st;
}

static lh_status check_opts(MPI_Comm comm, int64_t N, const lh_ii_opts *opts) {
  lh_status local = LH_OK;
  if (N < 2)
    local = LH_ERROR(LH_ERR_VALUE, "Expected at least 2 samples, got %lld", (long long)N);
  else if (opts->k < 1 || opts->k > N - 1)
    local = LH_ERROR(LH_ERR_VALUE, "k must be between 1 and N - 1 = %lld, got %lld",
                     (long long)(N - 1), (long long)opts->k);
  else if (!(opts->p >= 1.0))
    local = LH_ERROR(LH_ERR_VALUE, "the Minkowski exponent p must be >= 1 (or inf), got %g", opts->p);
  return lh_agree(comm, local);
}

static lh_knn_opts knn_opts(const lh_ii_opts *opts) {
  lh_knn_opts ko = lh_knn_defaults();
  ko.k = opts->k;
  ko.p = opts->p;
  ko.eps = -1.0; /* every other sample is a neighbour, duplicates included */
  return ko;
}

static double imbalance(int64_t N, int64_t sum, int64_t pairs) {
  return pairs ? 2.0 * (double)sum / ((double)N * (double)pairs) : NAN;
}

lh_status lh_ii_matrix(const lh_dmat *const *layers, int64_t L, const lh_ii_opts *opts,
                       double *M) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(layers[0]);
  const int64_t N = lh_dmat_rows(layers[0]);
  lh_knn_result **nb = NULL;
  const lh_knn_result **others = NULL;
  int64_t *v = NULL;
  for (int64_t a = 1; a < L && local == LH_OK; a++)
    if (lh_dmat_rows(layers[a]) != N)
      local = LH_ERROR(LH_ERR_VALUE, "Expected matching sample counts, got %lld and %lld",
                       (long long)N, (long long)lh_dmat_rows(layers[a]));
  LH_TRY(lh_agree(comm, local));
  LH_TRY(check_opts(comm, N, opts));
  lh_knn_opts ko = knn_opts(opts);
  local = lh_alloc((size_t)L, sizeof *nb, true, "neighbour lists", &nb);
  if (local == LH_OK) local = lh_alloc((size_t)L, sizeof *others, true, "neighbour lists", &others);
  if (local == LH_OK) local = lh_alloc((size_t)(2 * L), sizeof *v, true, "rank sums", &v);
  LH_TRY(lh_agree(comm, local));
  for (int64_t a = 0; a < L; a++) LH_TRY(lh_knn_run(layers[a], &ko, &nb[a])); /* once each */
  for (int64_t b = 0; b < L; b++) {
    /* one counting pass over b for every source a != b */
    int64_t S = 0, *sum = v, *pairs = v + L;
    for (int64_t a = 0; a < L; a++)
      if (a != b) others[S++] = nb[a];
    LH_TRY(rank_sums(layers[b], NULL, NULL, others, S, &ko, sum, pairs, NULL, NULL));
    int s2;
    LH_TRY(lh_int_cast(2 * L, "layers", &s2));
    MPI_Allreduce(MPI_IN_PLACE, v, s2, MPI_INT64_T, MPI_SUM, comm);
    for (int64_t a = 0, s = 0; a < L; a++) {
      if (a == b) {
        M[a * L + b] = (double)(opts->k + 1) / (double)N; /* a space ranks its own neighbours 1..k */
        continue;
      }
      M[a * L + b] = imbalance(N, sum[s], pairs[s]);
      s++;
    }
  }
done:
  for (int64_t a = 0; nb && a < L; a++) lh_knn_result_destroy(&nb[a]);
  lh_free(nb);
  lh_free(others);
  lh_free(v);
  return st;
}

/* The subsampled estimate: the M rows with the smallest keys rng(seed, i) are the queries;
 * their ranks are counted against all N rows. Each query's (2/N) x mean rank is one sample:
 * mean and standard error (sample standard deviation / sqrt(M)), sums exact. */
static lh_status ii_subsample(const lh_dmat *A, const lh_dmat *B, const lh_ii_opts *opts,
                              lh_ii_result *out) {
  lh_status st = LH_OK, local = LH_OK;
  MPI_Comm comm = lh_dmat_comm(A);
  const int64_t N = lh_dmat_rows(A), n = lh_dmat_local_rows(A), row0 = lh_dmat_row_offset(A);
  const int64_t M = LH_MIN(opts->subsample, N);
  uint64_t *keys = NULL;
  int64_t *ids = NULL, *pos = NULL, *qid = NULL;
  double *val = NULL;
  lh_dmat *QA = NULL, *QB = NULL, *ID = NULL, *src_id = NULL;
  lh_knn_result *na = NULL, *nb = NULL;
  local = lh_alloc((size_t)n, sizeof *keys, false, "query keys", &keys);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *ids, false, "query keys", &ids);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *pos, false, "query keys", &pos);
  LH_TRY(lh_agree(comm, local));
  for (int64_t i = 0; i < n; i++) {
    ids[i] = row0 + i;
    keys[i] = lh_rng_u64(opts->seed, (uint64_t)(row0 + i));
  }
  LH_TRY(lh_dsort_positions_u64(comm, n, keys, ids, pos));
  for (int64_t i = 0; i < n; i++)
    if (pos[i] >= M) pos[i] = -1; /* not a query */
  /* the queries' rows of A and B, and their global indices, as M-row matrices */
  LH_TRY(lh_dmat_create(comm, lh_dmat_dtype(A), M, lh_dmat_cols(A), &QA));
  LH_TRY(lh_dmat_create(comm, lh_dmat_dtype(B), M, lh_dmat_cols(B), &QB));
  LH_TRY(lh_dmat_create(comm, LH_F64, N, 1, &src_id));
  LH_TRY(lh_dmat_create(comm, LH_F64, M, 1, &ID));
  for (int64_t i = 0; i < n; i++) ((double *)lh_dmat_local(src_id))[i] = (double)(row0 + i);
  LH_TRY(lh_dmat_scatter_rows(A, pos, QA));
  LH_TRY(lh_dmat_scatter_rows(B, pos, QB));
  LH_TRY(lh_dmat_scatter_rows(src_id, pos, ID));
  const int64_t nq = lh_dmat_local_rows(QA);
  local = lh_alloc((size_t)nq, sizeof *qid, false, "query ids", &qid);
  if (local == LH_OK) local = lh_alloc((size_t)nq, sizeof *val, false, "query values", &val);
  LH_TRY(lh_agree(comm, local));
  for (int64_t i = 0; i < nq; i++) qid[i] = (int64_t)((const double *)lh_dmat_local_const(ID))[i];
  lh_knn_opts ko = knn_opts(opts);
  double res[2][2];
  for (int dir = 0; dir < 2; dir++) {
    const lh_dmat *from = dir ? B : A, *to = dir ? A : B, *qf = dir ? QB : QA, *qt = dir ? QA : QB;
    lh_knn_result *nbr = NULL;
    int64_t sum, pairs;
    st = lh_knn_search_queries(qf, qid, from, &ko, NULL, &nbr);
    const lh_knn_result *srcs = nbr;
    if (st == LH_OK) st = rank_sums(to, qt, qid, &srcs, 1, &ko, &sum, &pairs, val, NULL);
    lh_knn_result_destroy(&nbr);
    LH_TRY(st);
    lh_xsum acc[3]; /* sum v, sum v^2, count */
    for (int t = 0; t < 3; t++) lh_xsum_init(&acc[t]);
    for (int64_t i = 0; i < nq; i++) {
      if (!isfinite(val[i])) continue;
      double v = 2.0 * val[i] / (double)N;
      lh_xsum_add(&acc[0], v);
      lh_xsum_add_product(&acc[1], v, v);
      lh_xsum_add(&acc[2], 1.0);
    }
    LH_TRY(lh_xsum_allreduce(acc, 3, comm));
    double s1 = lh_xsum_round(&acc[0]), s2 = lh_xsum_round(&acc[1]), m = lh_xsum_round(&acc[2]);
    double mean = m > 0 ? s1 / m : NAN;
    double var = m > 1 ? (s2 - s1 * s1 / m) / (m - 1) : NAN;
    res[dir][0] = mean;
    res[dir][1] = m > 1 ? sqrt(var > 0 ? var : 0) / sqrt(m) : NAN;
    if (dir == 0) out->pairs_a_to_b = (int64_t)m;
    else out->pairs_b_to_a = (int64_t)m;
  }
  out->a_to_b = res[0][0];
  out->se_a_to_b = res[0][1];
  out->b_to_a = res[1][0];
  out->se_b_to_a = res[1][1];
  out->floor = (double)(opts->k + 1) / (double)N;
done:
  lh_free(keys);
  lh_free(ids);
  lh_free(pos);
  lh_free(qid);
  lh_free(val);
  lh_dmat_destroy(&QA);
  lh_dmat_destroy(&QB);
  lh_dmat_destroy(&ID);
  lh_dmat_destroy(&src_id);
  lh_knn_result_destroy(&na);
  lh_knn_result_destroy(&nb);
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
  LH_TRY(lh_agree(comm, local));
  LH_TRY(check_opts(comm, N, opts));
  if (opts->subsample > 0) return ii_subsample(A, B, opts, out);
  lh_knn_opts ko = knn_opts(opts);
  int64_t v[4] = {0, 0, 0, 0}; /* rank sums and pair counts, A -> B then B -> A */
  LH_TRY(lh_knn_run(A, &ko, &na));                                    /* pass 1 */
  const lh_knn_result *src = na;
  LH_TRY(rank_sums(B, NULL, NULL, &src, 1, &ko, &v[0], &v[1], NULL, &nb)); /* pass 2 */
  src = nb;
  LH_TRY(rank_sums(A, NULL, NULL, &src, 1, &ko, &v[2], &v[3], NULL, NULL)); /* pass 3 */
  MPI_Allreduce(MPI_IN_PLACE, v, 4, MPI_INT64_T, MPI_SUM, comm);
  out->pairs_a_to_b = v[1];
  out->pairs_b_to_a = v[3];
  out->a_to_b = imbalance(N, v[0], v[1]);
  out->b_to_a = imbalance(N, v[2], v[3]);
  out->floor = (double)(opts->k + 1) / (double)N;
  out->se_a_to_b = out->se_b_to_a = NAN;
done:
  lh_knn_result_destroy(&na);
  lh_knn_result_destroy(&nb);
  return st;
}
