/*
 * dsort.c: sample sort returning global positions (see dsort.h).
 *
 * Every variant sorts (group, key, id) triples with an unsigned 64-bit key. A double is mapped
 * to a uint64 whose unsigned order is its numeric order (all bits of a negative flipped, the
 * sign bit of the others set), after -0.0 has become +0.0 and every NaN UINT64_MAX, which lies
 * above +infinity (0xfff0...0). Without groups the group is 0 everywhere.
 *
 * Steps: (1) radix-sort the local elements; (2) rank r sends the middle element of each of P
 * equal chunks, weighted by the chunk length, to rank 0, which takes as splitter j the first
 * sample whose cumulative weight passes j N / P, and broadcasts the P - 1 splitters; (3) the
 * local elements between splitters b - 1 and b form a contiguous run that one Alltoallv sends
 * to rank b; (4) rank b merges the P sorted runs it received and numbers its elements in
 * order, offset by an exclusive scan of the bucket sizes; (5) a reverse Alltoallv with the
 * same counts returns each position to the slot its element was sent from, which is its place
 * in the sender's sorted order. So the origin of an element never travels: a triple of
 * 24 bytes goes out and an 8-byte position comes back.
 *
 * Both Alltoallv count elements through an MPI datatype of one element, so that the counts
 * fit an int for up to 2^31 elements per pair of ranks (checked). The splitters only balance
 * the work; the positions depend on the total order alone.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dsort.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"

/* An element as sorted and sent. */
typedef struct elem {
  int64_t group;
  uint64_t key;
  int64_t id;
} elem;

/* A local element: the part that is sent, then its index in the caller's arrays. */
typedef struct rec {
  elem e;
  int64_t idx;
} rec;

/* A regular sample, or a splitter (weight unused). */
typedef struct sample {
  elem e;
  int64_t weight; /* elements of the chunk it stands for; 0: no sample */
} sample;

static uint64_t order_bits(double x) {
  if (isnan(x)) return UINT64_MAX;
  if (x == 0.0) x = 0.0; /* -0.0 == +0.0 */
  uint64_t b;
  memcpy(&b, &x, sizeof b);
  return (b >> 63) ? ~b : b | (UINT64_C(1) << 63);
}

/* The total order: group, then key, then id. */
static int cmp_elem(const elem *x, const elem *y) {
  if (x->group != y->group) return x->group < y->group ? -1 : 1;
  if (x->key != y->key) return x->key < y->key ? -1 : 1;
  return (x->id > y->id) - (x->id < y->id);
}

static int cmp_sample(const void *a, const void *b) {
  return cmp_elem(&((const sample *)a)->e, &((const sample *)b)->e);
}

/* LSD radix sort of records by (group, key, id), 11 bits per pass: 6 digits for each of the
 * three 64-bit words, least significant (id) first. Digits that are equal in every record
 * (the high bits of ids, a single group) are skipped, so random double keys with ids below
 * 2^22 take 8 passes. Stable and O(n); `tmp` holds n records, `hist` RADIX_DIGITS * RADIX
 * counts. The result is in `a`. */
#define RADIX_BITS 11
#define RADIX (1 << RADIX_BITS)
#define RADIX_PER_WORD 6 /* ceil(64 / 11) */
#define RADIX_DIGITS (3 * RADIX_PER_WORD)

/* Word w of the sort key (0 = least significant) as an unsigned in the same order. */
static uint64_t sort_word(const rec *r, int w) {
  const uint64_t sign = UINT64_C(1) << 63;
  if (w == 0) return (uint64_t)r->e.id ^ sign;
  if (w == 1) return r->e.key;
  return (uint64_t)r->e.group ^ sign;
}

static void radix_sort(rec *a, rec *tmp, int64_t n, int64_t *hist) {
  memset(hist, 0, sizeof(int64_t) * RADIX_DIGITS * RADIX);
  for (int64_t i = 0; i < n; i++)
    for (int w = 0; w < 3; w++) {
      uint64_t v = sort_word(&a[i], w);
      for (int d = 0; d < RADIX_PER_WORD; d++)
        hist[(w * RADIX_PER_WORD + d) * RADIX + (int)((v >> (d * RADIX_BITS)) & (RADIX - 1))]++;
    }
  rec *from = a, *to = tmp;
  for (int w = 0; w < 3; w++)
    for (int d = 0; d < RADIX_PER_WORD; d++) {
      int64_t *h = hist + (w * RADIX_PER_WORD + d) * RADIX;
      bool trivial = n == 0;
      for (int b = 0; b < RADIX && !trivial; b++) trivial = h[b] == n;
      if (trivial) continue;
      for (int64_t b = 0, run = 0; b < RADIX; b++) { /* counts -> first slot of each digit */
        int64_t c = h[b];
        h[b] = run;
        run += c;
      }
      for (int64_t i = 0; i < n; i++)
        to[h[(sort_word(&from[i], w) >> (d * RADIX_BITS)) & (RADIX - 1)]++] = from[i];
      rec *t = from;
      from = to;
      to = t;
    }
  if (from != a) memcpy(a, from, (size_t)n * sizeof *a);
}

/* First index in sorted r[0..n) whose element is not below e. */
static int64_t lower_bound(const rec *r, int64_t n, const elem *e) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (cmp_elem(&r[mid].e, e) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

/* Rank 0: P-1 splitters from the P*P gathered samples (sorted in place). */
static void choose_splitters(sample *all, int P, elem *split) {
  int64_t cnt = 0, N = 0;
  for (int64_t k = 0; k < (int64_t)P * P; k++)
    if (all[k].weight > 0) {
      N += all[k].weight;
      all[cnt++] = all[k];
    }
  qsort(all, (size_t)cnt, sizeof *all, cmp_sample);
  int64_t k = 0, cum = cnt > 0 ? all[0].weight : 0;
  for (int j = 1; j < P; j++) {
    /* floor(j N / P) without overflowing j * N */
    int64_t target = j * (N / P) + (int64_t)j * (N % P) / P;
    while (k + 1 < cnt && cum <= target) cum += all[++k].weight;
    if (cnt > 0)
      split[j - 1] = all[k].e;
    else /* no elements anywhere: every bucket is empty */
      split[j - 1] = (elem){INT64_MAX, UINT64_MAX, INT64_MAX};
  }
}

/* Binary min-heap of run numbers ordered by their current head element. */
static bool run_below(const elem *b, const int64_t *cur, int x, int y) {
  return cmp_elem(&b[cur[x]], &b[cur[y]]) < 0;
}

static void sift_down(int *heap, int len, int i, const elem *b, const int64_t *cur) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, min = i;
    if (l < len && run_below(b, cur, heap[l], heap[min])) min = l;
    if (r < len && run_below(b, cur, heap[r], heap[min])) min = r;
    if (min == i) return;
    int t = heap[i];
    heap[i] = heap[min];
    heap[min] = t;
    i = min;
  }
}

/* Merges the P sorted runs b[start[s] .. start[s] + len[s]) and writes into rank[k] the place
 * (0-based) of element k in the merged order. `cur` and `heap` are scratch of P. Fails with
 * LH_ERR_VALUE (Local) on two equal elements. */
static lh_status merge_ranks(const elem *b, const int64_t *start, const int64_t *len, int P,
                             int64_t *cur, int *heap, int64_t *rank) {
  int hl = 0;
  for (int s = 0; s < P; s++) {
    cur[s] = start[s];
    if (len[s] > 0) heap[hl++] = s;
  }
  for (int i = hl / 2 - 1; i >= 0; i--) sift_down(heap, hl, i, b, cur);
  int64_t t = 0, prev = -1;
  while (hl > 0) {
    int s = heap[0];
    int64_t k = cur[s]++;
    if (prev >= 0 && cmp_elem(&b[prev], &b[k]) == 0)
      return LH_ERROR(LH_ERR_VALUE,
                      "lh_dsort_positions: two elements have the same group, key and id %lld "
                      "(ids must be unique)",
                      (long long)b[k].id);
    rank[k] = t++;
    prev = k;
    if (cur[s] == start[s] + len[s]) heap[0] = heap[--hl];
    sift_down(heap, hl, 0, b, cur);
  }
  return LH_OK;
}

static lh_status dsort(MPI_Comm comm, int64_t n, const int64_t *groups, const double *dkeys,
                       const uint64_t *ukeys, const int64_t *ids, int64_t *pos) {
  lh_status st = LH_OK, local = LH_OK;
  int P, rank;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &rank);
  rec *mine = NULL, *tmp = NULL; /* [n]: local elements, radix scratch */
  elem *bucket = NULL, *split = NULL; /* [m], [P-1] */
  sample *samp = NULL, *all = NULL; /* [P], [P*P] on rank 0 */
  int64_t *place = NULL, *got = NULL; /* [m]: positions of the bucket, [n]: returned */
  int64_t *hist = NULL; /* [RADIX_DIGITS * RADIX] */
  int64_t *cnt64 = NULL; /* [4P]: elements to each rank, from each rank, run starts, cursors */
  int *cnt = NULL; /* [5P]: sc, sd, rc, rd in elements, heap */
  MPI_Datatype tsend = MPI_DATATYPE_NULL, telem = MPI_DATATYPE_NULL, tsamp = MPI_DATATYPE_NULL;
  int64_t m = 0; /* elements in this rank's bucket */

  if (n < 0)
    local = LH_ERROR(LH_ERR_VALUE, "lh_dsort_positions: negative element count %lld",
                     (long long)n);
  else if (n > 0 && (!(dkeys || ukeys) || !ids || !pos))
    local = LH_ERROR(LH_ERR_VALUE, "lh_dsort_positions: NULL array for %lld elements",
                     (long long)n);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *mine, false, "sort records", &mine);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *tmp, false, "sort scratch", &tmp);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *got, false, "sort positions", &got);
  if (local == LH_OK)
    local = lh_alloc(RADIX_DIGITS * RADIX, sizeof *hist, false, "sort histograms", &hist);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof *samp, true, "sort samples", &samp);
  if (local == LH_OK)
    local = lh_alloc((size_t)P - 1, sizeof *split, true, "sort splitters", &split);
  if (local == LH_OK && rank == 0)
    local = lh_alloc((size_t)P * (size_t)P, sizeof *all, false, "gathered sort samples", &all);
  if (local == LH_OK) local = lh_alloc((size_t)P * 4, sizeof *cnt64, true, "sort counts", &cnt64);
  if (local == LH_OK) local = lh_alloc((size_t)P * 5, sizeof *cnt, true, "sort counts", &cnt);
  LH_TRY(lh_agree(comm, local));
  int *sc = cnt, *sd = cnt + P, *rc = cnt + 2 * P, *rd = cnt + 3 * P, *heap = cnt + 4 * P;
  int64_t *to = cnt64, *from = cnt64 + P, *start = cnt64 + 2 * P, *cur = cnt64 + 3 * P;
  /* a local record is sent without its index: a 24-byte element with the extent of a rec */
  MPI_Type_contiguous((int)sizeof(elem), MPI_BYTE, &telem);
  MPI_Type_commit(&telem);
  MPI_Type_create_resized(telem, 0, (MPI_Aint)sizeof(rec), &tsend);
  MPI_Type_commit(&tsend);
  MPI_Type_contiguous((int)sizeof(sample), MPI_BYTE, &tsamp);
  MPI_Type_commit(&tsamp);

  /* (1) local sort, (2) splitters from the middle of each of P chunks */
  for (int64_t i = 0; i < n; i++) {
    mine[i].e.group = groups ? groups[i] : 0;
    mine[i].e.key = dkeys ? order_bits(dkeys[i]) : ukeys[i];
    mine[i].e.id = ids[i];
    mine[i].idx = i;
  }
  radix_sort(mine, tmp, n, hist);
  lh_free(tmp);
  tmp = NULL;
  for (int k = 0; k < P; k++) {
    int64_t c = lh_part_count(n, P, k);
    if (c > 0) samp[k] = (sample){mine[lh_part_offset(n, P, k) + c / 2].e, c};
  }
  MPI_Gather(samp, P, tsamp, all, P, tsamp, 0, comm);
  if (rank == 0) choose_splitters(all, P, split);
  if (P > 1) MPI_Bcast(split, P - 1, telem, 0, comm);

  /* (3) bucket b: the local elements e with split[b-1] <= e < split[b], a contiguous run */
  for (int b = 0; b < P; b++) {
    int64_t lo = b == 0 ? 0 : lower_bound(mine, n, &split[b - 1]);
    int64_t hi = b == P - 1 ? n : lower_bound(mine, n, &split[b]);
    to[b] = hi - lo;
  }
  MPI_Alltoall(to, 1, MPI_INT64_T, from, 1, MPI_INT64_T, comm);
  int64_t sent = 0; /* the runs are consecutive: run b starts after runs 0 .. b-1 */
  for (int s = 0; s < P; s++) {
    if (local == LH_OK) local = lh_int_cast(to[s], "elements sent to one rank", &sc[s]);
    if (local == LH_OK) local = lh_int_cast(sent, "send displacement", &sd[s]);
    if (local == LH_OK) local = lh_int_cast(from[s], "elements received from one rank", &rc[s]);
    if (local == LH_OK) local = lh_int_cast(m, "receive displacement", &rd[s]);
    start[s] = m;
    sent += to[s];
    m += from[s];
  }
  if (local == LH_OK) local = lh_alloc((size_t)m, sizeof *bucket, false, "sort bucket", &bucket);
  if (local == LH_OK) local = lh_alloc((size_t)m, sizeof *place, false, "sort bucket", &place);
  LH_TRY(lh_agree(comm, local));
  MPI_Alltoallv(mine, sc, sd, tsend, bucket, rc, rd, telem, comm);

  /* (4) the bucket is a contiguous range of the global order, starting at `off` */
  local = merge_ranks(bucket, start, from, P, cur, heap, place);
  LH_TRY(lh_agree(comm, local));
  int64_t off = 0;
  MPI_Exscan(&m, &off, 1, MPI_INT64_T, MPI_SUM, comm);
  if (rank == 0) off = 0; /* Exscan leaves rank 0's result undefined */
  for (int64_t k = 0; k < m; k++) place[k] += off;

  /* (5) positions return to the slots their elements left from: got[j] is for mine[j] */
  MPI_Alltoallv(place, rc, rd, MPI_INT64_T, got, sc, sd, MPI_INT64_T, comm);
  for (int64_t j = 0; j < n; j++) pos[mine[j].idx] = got[j];
done:
  if (tsend != MPI_DATATYPE_NULL) MPI_Type_free(&tsend);
  if (telem != MPI_DATATYPE_NULL) MPI_Type_free(&telem);
  if (tsamp != MPI_DATATYPE_NULL) MPI_Type_free(&tsamp);
  lh_free(mine);
  lh_free(tmp);
  lh_free(got);
  lh_free(hist);
  lh_free(samp);
  lh_free(split);
  lh_free(all);
  lh_free(bucket);
  lh_free(place);
  lh_free(cnt64);
  lh_free(cnt);
  return st;
}

lh_status lh_dsort_positions(MPI_Comm comm, int64_t n, const double *keys, const int64_t *ids,
                             int64_t *pos) {
  return dsort(comm, n, NULL, keys, NULL, ids, pos);
}

lh_status lh_dsort_positions_u64(MPI_Comm comm, int64_t n, const uint64_t *keys,
                                 const int64_t *ids, int64_t *pos) {
  return dsort(comm, n, NULL, NULL, keys, ids, pos);
}

lh_status lh_dsort_positions_grouped(MPI_Comm comm, int64_t n, const int64_t *groups,
                                     const double *keys, const int64_t *ids, int64_t *pos) {
  return dsort(comm, n, groups, keys, NULL, ids, pos);
}

lh_status lh_dsort_select(MPI_Comm comm, int64_t n, const double *values, int64_t k,
                          double *out) {
  lh_status st = LH_OK, local = LH_OK;
  int64_t *ids = NULL, *pos = NULL, off = 0, total = 0;
  MPI_Exscan(&n, &off, 1, MPI_INT64_T, MPI_SUM, comm);
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) off = 0; /* MPI_Exscan leaves rank 0's result undefined */
  MPI_Allreduce(&n, &total, 1, MPI_INT64_T, MPI_SUM, comm);
  if (k < 0 || k >= total)
    local = LH_ERROR(LH_ERR_INTERNAL, "selecting position %lld of %lld values", (long long)k,
                     (long long)total);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *ids, false, "selection ids", &ids);
  if (local == LH_OK) local = lh_alloc((size_t)n, sizeof *pos, false, "selection positions", &pos);
  LH_TRY(lh_agree(comm, local));
  for (int64_t i = 0; i < n; i++) ids[i] = off + i;
  LH_TRY(lh_dsort_positions(comm, n, values, ids, pos));
  double v = 0.0;
  int has = 0;
  for (int64_t i = 0; i < n; i++)
    if (pos[i] == k) {
      v = values[i];
      has = 1;
    }
  /* exactly one rank holds position k: pass its value on with a sum (others add 0) */
  double pair[2] = {has ? v : 0.0, (double)has};
  MPI_Allreduce(MPI_IN_PLACE, pair, 2, MPI_DOUBLE, MPI_SUM, comm);
  *out = pair[0];
done:
  lh_free(ids);
  lh_free(pos);
  return st;
}
