/* lh_dsort_positions on any rank count. Small cases: every position equals the one a qsort
 * reference on rank 0 gives (the test gathers; the library never does). Large case: the
 * positions route (key, id) rows with lh_dmat_scatter_rows into a matrix that must come out
 * completely filled and in strictly increasing (key, id) order. Keys: random, heavy
 * duplicates, all equal, NaN / signed zeros / infinities (uint64 extremes for the u64 variant),
 * grouped; layouts with empty ranks, N < P and N = 0; the error cases. Then
 * lh_dmat_scatter_rows itself: permutation round trip, dropped rows, longer and shorter
 * destinations, D = 0 and its errors. */
#include <stdlib.h>

#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/dsort.h"
#include "latenthook/partition.h"
#include "mpi/mpitest.h"
#include "testgen.h"

typedef enum { KEY_UNIT, KEY_DUP, KEY_EQUAL, KEY_SPECIAL, KEY_KINDS } keykind;
typedef enum { LAY_EVEN, LAY_LAST, LAY_SKIP0, LAY_KINDS } layout;
typedef enum { V_DOUBLE, V_U64, V_GROUPED, V_KINDS } variant;

static const char *key_name[] = {"unit", "dup", "equal", "special"};
static const char *lay_name[] = {"even", "last", "skip0"};
static const char *var_name[] = {"double", "u64", "grouped"};

/* Key of global element g (a double). */
static double dkey(keykind k, uint64_t seed, int64_t g) {
  double u = tg_unit(seed, (uint64_t)g);
  switch (k) {
    case KEY_UNIT: return u;
    case KEY_DUP: return floor(10 * u);
    case KEY_EQUAL: return 3.5;
    case KEY_SPECIAL: break;
    case KEY_KINDS: break;
  }
  uint64_t payload = UINT64_C(0x7ff8000000000123);
  double pnan;
  memcpy(&pnan, &payload, sizeof pnan);
  switch (tg_u64(seed + 1, (uint64_t)g) % 9) {
    case 0: return NAN;
    case 1: return -NAN;
    case 2: return pnan;
    case 3: return -0.0;
    case 4: return 0.0;
    case 5: return INFINITY;
    case 6: return -INFINITY;
    case 7: return floor(4 * u) - 2; /* a few small integers */
    default: return u - 0.5;
  }
}

/* Key of global element g (a uint64). */
static uint64_t ukey(keykind k, uint64_t seed, int64_t g) {
  uint64_t u = tg_u64(seed, (uint64_t)g);
  switch (k) {
    case KEY_UNIT: return u;
    case KEY_DUP: return u % 5;
    case KEY_EQUAL: return 42;
    case KEY_SPECIAL: break;
    case KEY_KINDS: break;
  }
  static const uint64_t ext[] = {0, 1, UINT64_MAX, UINT64_MAX - 1, UINT64_C(1) << 63,
                                 (UINT64_C(1) << 63) - 1};
  uint64_t c = tg_u64(seed + 1, (uint64_t)g) % 8;
  return c < 6 ? ext[c] : u;
}

/* Unique ids, not in storage order, some negative. */
static int64_t gid(int64_t N, int64_t g) { return 3 * (N - 1 - g) - 7; }
static int64_t ggroup(int64_t g) { return g % 3 - 1; }

/* Elements [off, off + n) of the N global ones on this rank. */
static void place(layout l, int64_t N, int P, int rank, int64_t *n, int64_t *off) {
  switch (l) {
    case LAY_EVEN:
      *n = lh_part_count(N, P, rank);
      *off = lh_part_offset(N, P, rank);
      return;
    case LAY_LAST:
      *n = rank == P - 1 ? N : 0;
      *off = 0;
      return;
    case LAY_SKIP0:
    case LAY_KINDS:
      break;
  }
  if (P == 1) {
    *n = N;
    *off = 0;
  } else {
    *n = rank == 0 ? 0 : lh_part_count(N, P - 1, rank - 1);
    *off = rank == 0 ? 0 : lh_part_offset(N, P - 1, rank - 1);
  }
}

typedef struct item {
  int64_t group;
  double key;
  uint64_t ukey;
  int64_t id, pos;
} item;

static variant g_var; /* the comparator's variant */

/* The reference order, written without the library's bit tricks. */
static int ref_cmp(const void *a, const void *b) {
  const item *x = a, *y = b;
  if (g_var == V_GROUPED && x->group != y->group) return x->group < y->group ? -1 : 1;
  if (g_var == V_U64) {
    if (x->ukey != y->ukey) return x->ukey < y->ukey ? -1 : 1;
  } else {
    int nx = isnan(x->key) != 0, ny = isnan(y->key) != 0;
    if (nx != ny) return nx - ny; /* NaN after every number */
    if (!nx && x->key < y->key) return -1;
    if (!nx && x->key > y->key) return 1;
  }
  return (x->id > y->id) - (x->id < y->id);
}

/* Sorts N elements spread by `l` and compares all positions with qsort on rank 0. */
static void small_case(variant v, keykind k, layout l, int64_t N, int P, int rank) {
  uint64_t seed = 1000 + (uint64_t)N;
  int64_t n, off;
  place(l, N, P, rank, &n, &off);
  item *it = calloc((size_t)n + 1, sizeof *it);
  double *keys = calloc((size_t)n + 1, sizeof *keys);
  uint64_t *ukeys = calloc((size_t)n + 1, sizeof *ukeys);
  int64_t *ids = calloc((size_t)n + 1, sizeof *ids), *grp = calloc((size_t)n + 1, sizeof *grp);
  int64_t *pos = calloc((size_t)n + 1, sizeof *pos);
  for (int64_t i = 0; i < n; i++) {
    int64_t g = off + i;
    keys[i] = dkey(k, seed, g);
    ukeys[i] = ukey(k, seed, g);
    ids[i] = gid(N, g);
    grp[i] = ggroup(g);
    pos[i] = -12345;
  }
  /* n == 0 passes NULL arrays, as a caller with nothing to sort may */
  lh_status st = v == V_DOUBLE ? lh_dsort_positions(MPI_COMM_WORLD, n, n ? keys : NULL,
                                                    n ? ids : NULL, n ? pos : NULL)
                 : v == V_U64  ? lh_dsort_positions_u64(MPI_COMM_WORLD, n, n ? ukeys : NULL,
                                                        n ? ids : NULL, n ? pos : NULL)
                               : lh_dsort_positions_grouped(MPI_COMM_WORLD, n, n ? grp : NULL,
                                                            n ? keys : NULL, n ? ids : NULL,
                                                            n ? pos : NULL);
  MT_CHECK(st == LH_OK, "%s %s %s N=%lld: %s", var_name[v], key_name[k], lay_name[l],
           (long long)N, lh_error_message());
  for (int64_t i = 0; i < n; i++)
    it[i] = (item){grp[i], keys[i], ukeys[i], ids[i], pos[i]};

  int cnt = (int)(n * (int64_t)sizeof(item)), *cnts = NULL, *displs = NULL;
  item *all = NULL;
  if (rank == 0) {
    cnts = calloc((size_t)P, sizeof *cnts);
    displs = calloc((size_t)P, sizeof *displs);
    all = calloc((size_t)N + 1, sizeof *all);
  }
  MPI_Gather(&cnt, 1, MPI_INT, cnts, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (rank == 0)
    for (int r = 1; r < P; r++) displs[r] = displs[r - 1] + cnts[r - 1];
  MPI_Gatherv(it, cnt, MPI_BYTE, all, cnts, displs, MPI_BYTE, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    g_var = v;
    qsort(all, (size_t)N, sizeof *all, ref_cmp);
    int64_t bad = 0, first = -1;
    for (int64_t q = 0; q < N; q++)
      if (all[q].pos != q) {
        if (first < 0) first = q;
        bad++;
      }
    MT_CHECK(bad == 0, "%s %s %s N=%lld: %lld wrong positions, first at %lld (got %lld)",
             var_name[v], key_name[k], lay_name[l], (long long)N, (long long)bad,
             (long long)first, (long long)(first >= 0 ? all[first].pos : 0));
  }
  free(it);
  free(keys);
  free(ukeys);
  free(ids);
  free(grp);
  free(pos);
  free(cnts);
  free(displs);
  free(all);
}

static void test_small(int P, int rank) {
  const int64_t sizes[] = {0, 1, 2, 3, 5, 17, 1000, 4099};
  for (int v = 0; v < V_KINDS; v++)
    for (int k = 0; k < KEY_KINDS; k++)
      for (int l = 0; l < LAY_KINDS; l++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
          small_case((variant)v, (keykind)k, (layout)l, sizes[s], P, rank);
}

/* Row (key bits, id) of the large check; the key column holds a double or uint64 bits. */
static int row_cmp(variant v, const double *a, const double *b) {
  item x = {0}, y = {0};
  if (isnan(a[1]) || isnan(b[1])) return -1; /* an unfilled row, counted apart */
  memcpy(&x.key, &a[0], 8);
  memcpy(&x.ukey, &a[0], 8);
  memcpy(&y.key, &b[0], 8);
  memcpy(&y.ukey, &b[0], 8);
  x.id = (int64_t)a[1];
  y.id = (int64_t)b[1];
  g_var = v;
  return ref_cmp(&x, &y);
}

/* N elements, too many to gather: route (key, id) to the positions and check the order. */
static void large_case(variant v, keykind k, int64_t N, int P, int rank) {
  lh_dmat *src = NULL, *dst = NULL;
  uint64_t seed = 77;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, 2, &src));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, N, 2, &dst));
  if (!src || !dst) goto out;
  int64_t n = lh_dmat_local_rows(src), off = lh_dmat_row_offset(src);
  double *keys = malloc((size_t)n * sizeof *keys + 8), *s = lh_dmat_local(src);
  uint64_t *ukeys = malloc((size_t)n * sizeof *ukeys + 8);
  int64_t *ids = malloc((size_t)n * sizeof *ids + 8), *pos = malloc((size_t)n * sizeof *pos + 8);
  for (int64_t i = 0; i < n; i++) {
    keys[i] = dkey(k, seed, off + i);
    ukeys[i] = ukey(k, seed, off + i);
    ids[i] = gid(N, off + i);
    if (v == V_U64)
      memcpy(&s[2 * i], &ukeys[i], 8);
    else
      s[2 * i] = keys[i];
    s[2 * i + 1] = (double)ids[i];
  }
  double t0 = MPI_Wtime();
  if (v == V_U64)
    MT_OK(lh_dsort_positions_u64(MPI_COMM_WORLD, n, ukeys, ids, pos));
  else
    MT_OK(lh_dsort_positions(MPI_COMM_WORLD, n, keys, ids, pos));
  double dt = MPI_Wtime() - t0;
  MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  int64_t out_of_range = 0;
  for (int64_t i = 0; i < n; i++) out_of_range += pos[i] < 0 || pos[i] >= N;
  MT_CHECK(out_of_range == 0, "large %s %s: %lld positions out of range", var_name[v],
           key_name[k], (long long)out_of_range);

  int64_t m = lh_dmat_local_rows(dst);
  double *d = lh_dmat_local(dst);
  for (int64_t i = 0; i < m; i++) d[2 * i] = d[2 * i + 1] = NAN; /* never an id */
  /* N sources, no duplicate target (an error), every target filled: a permutation */
  MT_OK(lh_dmat_scatter_rows(src, pos, dst));
  int64_t unfilled = 0, disorder = 0;
  for (int64_t i = 0; i < m; i++) {
    if (isnan(d[2 * i + 1])) unfilled++;
    if (i > 0 && row_cmp(v, &d[2 * (i - 1)], &d[2 * i]) >= 0) disorder++;
  }
  /* across rank boundaries: last row of rank r before the first row of rank r + 1 */
  double edge[4] = {NAN, NAN, NAN, NAN}, *edges = calloc((size_t)P * 4, sizeof *edges);
  if (m > 0) memcpy(edge, d, 2 * sizeof *d);
  if (m > 0) memcpy(edge + 2, d + 2 * (m - 1), 2 * sizeof *d);
  MPI_Allgather(edge, 4, MPI_DOUBLE, edges, 4, MPI_DOUBLE, MPI_COMM_WORLD);
  if (rank + 1 < P && m > 0 && lh_part_count(N, P, rank + 1) > 0 &&
      row_cmp(v, edges + 4 * rank + 2, edges + 4 * (rank + 1)) >= 0)
    disorder++;
  MT_CHECK(unfilled == 0, "large %s %s: %lld rows not targeted", var_name[v], key_name[k],
           (long long)unfilled);
  MT_CHECK(disorder == 0, "large %s %s: %lld rows out of order", var_name[v], key_name[k],
           (long long)disorder);
  if (rank == 0)
    printf("dsort %s %s: N = %lld on %d ranks in %.3f s\n", var_name[v], key_name[k],
           (long long)N, P, dt);
  free(edges);
  free(keys);
  free(ukeys);
  free(ids);
  free(pos);
out:
  lh_dmat_destroy(&src);
  lh_dmat_destroy(&dst);
}

static void test_large(int P, int rank) {
  large_case(V_DOUBLE, KEY_UNIT, 100000, P, rank);
  large_case(V_DOUBLE, KEY_DUP, 100000, P, rank);
  large_case(V_DOUBLE, KEY_SPECIAL, 100000, P, rank);
  large_case(V_U64, KEY_UNIT, 100000, P, rank);
  large_case(V_U64, KEY_DUP, 100000, P, rank);
}

static void test_sort_errors(int P, int rank) {
  /* a negative count on one rank fails everywhere */
  int64_t pos[2] = {-7, -7}, ids[2] = {5, 5};
  double keys[2] = {1.0, 1.0};
  MT_STATUS(lh_dsort_positions(MPI_COMM_WORLD, rank == P - 1 ? -1 : 0, NULL, NULL, NULL),
            LH_ERR_VALUE);
  lh_error_clear();
  /* the same (key, id) twice: on two ranks, or twice on one */
  int64_t n = P > 1 ? 1 : 2;
  MT_STATUS(lh_dsort_positions(MPI_COMM_WORLD, n, keys, ids, pos), LH_ERR_VALUE);
  MT_CHECK(pos[0] == -7 && pos[1] == -7, "positions unchanged on failure");
  lh_error_clear();
  /* the same id with different keys is a valid (if odd) input */
  keys[0] = rank, keys[1] = rank + 0.5;
  MT_OK(lh_dsort_positions(MPI_COMM_WORLD, n, keys, ids, pos));
  MT_CHECK(pos[0] == (P > 1 ? rank : 0), "rank-ordered keys: position %lld", (long long)pos[0]);
  /* NULL arrays with elements */
  MT_STATUS(lh_dsort_positions_u64(MPI_COMM_WORLD, rank == 0 ? 1 : 0, NULL, ids, pos),
            LH_ERR_VALUE);
  lh_error_clear();
}

/* --- lh_dmat_scatter_rows ----------------------------------------------------------------- */

static double rval(int64_t g, int64_t j) { return (double)g * 4.0 + (double)j + 0.25; }

static lh_dmat *filled(lh_dtype dt, int64_t N, int64_t D, double fill_or_nan) {
  lh_dmat *m = NULL;
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, dt, N, D, &m));
  if (!m) return NULL;
  int64_t n = lh_dmat_local_rows(m), off = lh_dmat_row_offset(m);
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++) {
      double x = isnan(fill_or_nan) ? rval(off + i, j) : fill_or_nan;
      if (dt == LH_F64)
        ((double *)lh_dmat_local(m))[i * D + j] = x;
      else
        ((float *)lh_dmat_local(m))[i * D + j] = (float)x;
    }
  return m;
}

static double get(const lh_dmat *m, int64_t i, int64_t j) {
  int64_t D = lh_dmat_cols(m);
  if (lh_dmat_dtype(m) == LH_F64) return ((const double *)lh_dmat_local_const(m))[i * D + j];
  return (double)((const float *)lh_dmat_local_const(m))[i * D + j];
}

static int64_t gcd(int64_t a, int64_t b) { return b ? gcd(b, a % b) : a; }

static void test_permutation(lh_dtype dt, int64_t N) {
  const int64_t D = 3;
  lh_dmat *src = filled(dt, N, D, NAN), *dst = filled(dt, N, D, -1.0), *back = filled(dt, N, D, -1.0);
  if (!src || !dst || !back) goto out;
  int64_t n = lh_dmat_local_rows(src), off = lh_dmat_row_offset(src), a = 7;
  while (N > 0 && gcd(a, N) != 1) a++;
  int64_t *pos = malloc((size_t)n * sizeof *pos + 8);
  for (int64_t i = 0; i < n; i++) pos[i] = ((off + i) * a + 3) % N; /* a bijection */
  MT_OK(lh_dmat_scatter_rows(src, pos, dst));
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t g = (int64_t)floor(get(dst, i, 0) / 4.0); /* the source row that landed here */
    if (g < 0 || g >= N || (g * a + 3) % N != off + i) bad++;
    for (int64_t j = 0; j < D; j++) bad += get(dst, i, j) != rval(g, j);
  }
  MT_CHECK(bad == 0, "permutation %s N=%lld: %lld bad", lh_dtype_name(dt), (long long)N,
           (long long)bad);
  /* and back: each destination row returns to the source row it came from */
  for (int64_t i = 0; i < n; i++) pos[i] = (int64_t)floor(get(dst, i, 0) / 4.0);
  MT_OK(lh_dmat_scatter_rows(dst, pos, back));
  MT_CHECK(memcmp(lh_dmat_local(back), lh_dmat_local(src), (size_t)(n * D) * lh_dtype_size(dt)) == 0,
           "round trip %s N=%lld", lh_dtype_name(dt), (long long)N);
  free(pos);
out:
  lh_dmat_destroy(&src);
  lh_dmat_destroy(&dst);
  lh_dmat_destroy(&back);
}

/* Odd rows to a half-length matrix (even rows dropped); then every row to 2g + 1 of a longer
 * matrix whose other rows keep their contents. */
static void test_drop_and_resize(lh_dtype dt) {
  const int64_t N = 37, D = 2;
  lh_dmat *src = filled(dt, N, D, NAN), *half = filled(dt, N / 2, D, -5.0);
  lh_dmat *longer = filled(dt, 2 * N + 3, D, 9.0);
  if (!src || !half || !longer) goto out;
  int64_t n = lh_dmat_local_rows(src), off = lh_dmat_row_offset(src);
  int64_t *pos = malloc((size_t)n * sizeof *pos + 8);
  for (int64_t i = 0; i < n; i++) pos[i] = (off + i) % 2 ? (off + i) / 2 : -1 - (off + i);
  MT_OK(lh_dmat_scatter_rows(src, pos, half));
  int64_t bad = 0, h0 = lh_dmat_row_offset(half);
  for (int64_t i = 0; i < lh_dmat_local_rows(half); i++)
    for (int64_t j = 0; j < D; j++) bad += get(half, i, j) != rval(2 * (h0 + i) + 1, j);
  MT_CHECK(bad == 0, "dropped rows %s: %lld bad", lh_dtype_name(dt), (long long)bad);

  for (int64_t i = 0; i < n; i++) pos[i] = 2 * (off + i) + 1;
  MT_OK(lh_dmat_scatter_rows(src, pos, longer));
  bad = 0;
  int64_t l0 = lh_dmat_row_offset(longer);
  for (int64_t i = 0; i < lh_dmat_local_rows(longer); i++) {
    int64_t r = l0 + i;
    for (int64_t j = 0; j < D; j++)
      bad += get(longer, i, j) != (r % 2 && r / 2 < N ? rval(r / 2, j) : 9.0);
  }
  MT_CHECK(bad == 0, "longer destination %s: %lld bad", lh_dtype_name(dt), (long long)bad);
  free(pos);
out:
  lh_dmat_destroy(&src);
  lh_dmat_destroy(&half);
  lh_dmat_destroy(&longer);
}

/* Every element of m equals v. */
static int all_equal(const lh_dmat *m, double v) {
  for (int64_t i = 0; i < lh_dmat_local_rows(m); i++)
    for (int64_t j = 0; j < lh_dmat_cols(m); j++)
      if (get(m, i, j) != v) return 0;
  return 1;
}

static void test_scatter_errors(int P, int rank) {
  const int64_t N = 10, D = 3;
  lh_dmat *src = filled(LH_F64, N, D, NAN), *dst = filled(LH_F64, N, D, 2.0);
  lh_dmat *narrow = filled(LH_F64, N, 2, 2.0), *single = filled(LH_F32, N, D, 2.0);
  lh_dmat *empty = NULL, *empty_dst = NULL;
  if (!src || !dst || !narrow || !single) goto out;
  int64_t n = lh_dmat_local_rows(src), off = lh_dmat_row_offset(src);
  int64_t *pos = malloc((size_t)n * sizeof *pos + 8);

  /* one target past the end, on the last rank only */
  for (int64_t i = 0; i < n; i++) pos[i] = off + i == N - 1 ? N : off + i;
  MT_STATUS(lh_dmat_scatter_rows(src, pos, dst), LH_ERR_VALUE);
  MT_CHECK(all_equal(dst, 2.0), "destination unchanged after a bad target");
  lh_error_clear();

  /* first and last row both to row 0 (from different ranks when P > 1) */
  for (int64_t i = 0; i < n; i++) pos[i] = off + i == N - 1 ? 0 : off + i;
  MT_STATUS(lh_dmat_scatter_rows(src, pos, dst), LH_ERR_VALUE);
  MT_CHECK(all_equal(dst, 2.0), "destination unchanged after duplicate targets");
  lh_error_clear();

  /* every row to row 5 (duplicates from the same rank too) */
  for (int64_t i = 0; i < n; i++) pos[i] = 5;
  MT_STATUS(lh_dmat_scatter_rows(src, pos, dst), LH_ERR_VALUE);
  MT_CHECK(all_equal(dst, 2.0), "destination unchanged after duplicate targets");
  lh_error_clear();

  /* columns or dtype differ */
  for (int64_t i = 0; i < n; i++) pos[i] = off + i;
  MT_STATUS(lh_dmat_scatter_rows(src, pos, narrow), LH_ERR_VALUE);
  lh_error_clear();
  MT_STATUS(lh_dmat_scatter_rows(src, pos, single), LH_ERR_VALUE);
  lh_error_clear();

  /* identity works, D = 0 and N = 0 work */
  MT_OK(lh_dmat_scatter_rows(src, pos, dst));
  int64_t bad = 0;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < D; j++) bad += get(dst, i, j) != rval(off + i, j);
  MT_CHECK(bad == 0, "identity scatter: %lld bad", (long long)bad);
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N, 0, &empty));
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F32, N + 4, 0, &empty_dst));
  if (empty && empty_dst) {
    for (int64_t i = 0; i < n; i++) pos[i] = N - 1 - (off + i);
    MT_OK(lh_dmat_scatter_rows(empty, pos, empty_dst));
  }
  lh_dmat_destroy(&empty);
  lh_dmat_destroy(&empty_dst);
  MT_OK(lh_dmat_create(MPI_COMM_WORLD, LH_F64, 0, D, &empty));
  if (empty) MT_OK(lh_dmat_scatter_rows(empty, NULL, dst));
  (void)P;
  (void)rank;
  free(pos);
out:
  lh_dmat_destroy(&src);
  lh_dmat_destroy(&dst);
  lh_dmat_destroy(&narrow);
  lh_dmat_destroy(&single);
  lh_dmat_destroy(&empty);
  lh_dmat_destroy(&empty_dst);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  int P, rank;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  test_small(P, rank);
  test_sort_errors(P, rank);
  for (int t = 0; t < 2; t++) {
    lh_dtype dt = t ? LH_F64 : LH_F32;
    const int64_t sizes[] = {0, 1, 5, 37, 1000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) test_permutation(dt, sizes[s]);
    test_drop_and_resize(dt);
  }
  test_scatter_errors(P, rank);
  test_large(P, rank);
  return mt_finish("mpi_dsort");
}
