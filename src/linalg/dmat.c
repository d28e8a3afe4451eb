/*
 * dmat.c: the row-block distributed matrix (see dmat.h).
 */
#include <math.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/dmat.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "latenthook/xsum.h"

struct lh_dmat {
  MPI_Comm comm; /* borrowed */
  int rank, nranks;
  lh_dtype dtype;
  int64_t N, D; /* global shape */
  int64_t n, row0; /* local rows and the global index of the first */
  void *data; /* n x D row-major */
};

lh_status lh_dmat_create(MPI_Comm comm, lh_dtype dtype, int64_t N, int64_t D, lh_dmat **out) {
  lh_status st = LH_OK;
  lh_dmat *m = NULL;
  int rank, nranks;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);

  /* Arguments that must be the same on every rank are checked with one reduction. */
  int64_t mine[6] = {N, -N, D, -D, (int64_t)dtype, -(int64_t)dtype}, mx[6];
  MPI_Allreduce(mine, mx, 6, MPI_INT64_T, MPI_MAX, comm);
  lh_status local = LH_OK;
  if (mx[0] != -mx[1] || mx[2] != -mx[3] || mx[4] != -mx[5])
    local = LH_ERROR(LH_ERR_INTERNAL,
                     "lh_dmat_create: shape or dtype differ between ranks (N %lld, D %lld here)",
                     (long long)N, (long long)D);
  else if (N < 0 || D < 0)
    local = LH_ERROR(LH_ERR_VALUE, "matrix shape must be non-negative, got %lld x %lld",
                     (long long)N, (long long)D);
  else if (D > 0 && N > INT64_MAX / D)
    local = LH_ERROR(LH_ERR_VALUE, "matrix %lld x %lld is too large", (long long)N,
                     (long long)D);
  if (local == LH_OK) {
    local = lh_alloc(1, sizeof *m, true, "matrix header", &m);
  }
  if (local == LH_OK) {
    m->comm = comm;
    m->rank = rank;
    m->nranks = nranks;
    m->dtype = dtype;
    m->N = N;
    m->D = D;
    m->n = lh_part_count(N, nranks, rank);
    m->row0 = lh_part_offset(N, nranks, rank);
    local = lh_alloc((size_t)(m->n * D), lh_dtype_size(dtype), true, "local matrix rows",
                     &m->data);
  }
  LH_TRY(lh_agree(comm, local));
  *out = m;
  m = NULL;
done:
  lh_dmat_destroy(&m);
  return st;
}

lh_status lh_dmat_create_like(const lh_dmat *like, lh_dmat **out) {
  return lh_dmat_create(like->comm, like->dtype, like->N, like->D, out);
}

void lh_dmat_destroy(lh_dmat **m) {
  if (!m || !*m) return;
  lh_free((*m)->data);
  lh_free(*m);
  *m = NULL;
}

MPI_Comm lh_dmat_comm(const lh_dmat *m) { return m->comm; }
lh_dtype lh_dmat_dtype(const lh_dmat *m) { return m->dtype; }
int64_t lh_dmat_rows(const lh_dmat *m) { return m->N; }
int64_t lh_dmat_cols(const lh_dmat *m) { return m->D; }
int64_t lh_dmat_local_rows(const lh_dmat *m) { return m->n; }
int64_t lh_dmat_row_offset(const lh_dmat *m) { return m->row0; }
void *lh_dmat_local(lh_dmat *m) { return m->data; }
const void *lh_dmat_local_const(const lh_dmat *m) { return m->data; }

static double elem(const lh_dmat *m, int64_t i, int64_t j) {
  if (m->dtype == LH_F64) return ((const double *)m->data)[i * m->D + j];
  return (double)((const float *)m->data)[i * m->D + j];
}

static lh_status col_exact(const lh_dmat *m, lh_colop op, double *out) {
  lh_status st = LH_OK, local;
  lh_xsum *acc = NULL;
  local = lh_alloc((size_t)m->D, sizeof *acc, false, "column accumulators", &acc);
  LH_TRY(lh_agree(m->comm, local));
  for (int64_t j = 0; j < m->D; j++) lh_xsum_init(&acc[j]);
  /* Row-major sweep: consecutive adds go to different accumulators, which is cache-friendly
   * as long as D accumulators fit in L2; for wide matrices the digits still stay exact. */
  for (int64_t i = 0; i < m->n; i++)
    for (int64_t j = 0; j < m->D; j++) {
      double x = elem(m, i, j);
      if (op == LH_COL_SUMSQ)
        lh_xsum_add_product(&acc[j], x, x);
      else
        lh_xsum_add(&acc[j], x);
    }
  int d;
  LH_TRY(lh_int_cast(m->D, "number of columns", &d));
  LH_TRY(lh_xsum_allreduce(acc, d, m->comm));
  for (int64_t j = 0; j < m->D; j++) {
    double s = lh_xsum_round(&acc[j]);
    out[j] = op == LH_COL_MEAN ? (m->N > 0 ? s / (double)m->N : NAN) : s;
  }
done:
  lh_free(acc);
  return st;
}

static lh_status col_extreme(const lh_dmat *m, lh_colop op, double *out) {
  lh_status st = LH_OK;
  int64_t *cnt = NULL; /* non-NaN entries per column: a column of NaN only gives NaN */
  int d;
  LH_TRY(lh_int_cast(m->D, "number of columns", &d));
  LH_TRY(lh_agree(m->comm, lh_alloc((size_t)m->D, sizeof *cnt, true, "column counts", &cnt)));
  /* MPI_MIN/MAX do not skip NaN: start from the identity and skip NaN here. */
  double ident = op == LH_COL_MIN ? INFINITY : -INFINITY;
  for (int64_t j = 0; j < m->D; j++) out[j] = ident;
  for (int64_t i = 0; i < m->n; i++)
    for (int64_t j = 0; j < m->D; j++) {
      double x = elem(m, i, j);
      if (isnan(x)) continue;
      cnt[j]++;
      if (op == LH_COL_MIN ? x < out[j] : x > out[j]) out[j] = x;
    }
  MPI_Allreduce(MPI_IN_PLACE, out, d, MPI_DOUBLE, op == LH_COL_MIN ? MPI_MIN : MPI_MAX, m->comm);
  MPI_Allreduce(MPI_IN_PLACE, cnt, d, MPI_INT64_T, MPI_SUM, m->comm);
  for (int64_t j = 0; j < m->D; j++)
    if (cnt[j] == 0) out[j] = NAN;
done:
  lh_free(cnt);
  return st;
}

lh_status lh_dmat_col_reduce(const lh_dmat *m, lh_colop op, double *out) {
  switch (op) {
    case LH_COL_SUM:
    case LH_COL_MEAN:
    case LH_COL_SUMSQ: return col_exact(m, op, out);
    case LH_COL_MIN:
    case LH_COL_MAX: return col_extreme(m, op, out);
  }
  return LH_ERROR(LH_ERR_INTERNAL, "unknown column reduction %d", (int)op);
}

/* Counts and displacements (in elements) of every rank's rows, for Gatherv/Scatterv. */
static lh_status gather_layout(const lh_dmat *m, int **counts, int **displs) {
  lh_status st = LH_OK, local = LH_OK;
  int64_t bytes = m->N * m->D * (int64_t)lh_dtype_size(m->dtype);
  *counts = *displs = NULL;
  if (bytes > LH_GATHER_LIMIT_BYTES) {
    char b[32];
    local = LH_ERROR(LH_ERR_VALUE,
                     "refusing to gather a %lld x %lld matrix (%s) on one rank: gathering is "
                     "for small results only (limit 1 GiB)",
                     (long long)m->N, (long long)m->D, lh_format_bytes((double)bytes, b, sizeof b));
  }
  if (local == LH_OK) local = lh_alloc((size_t)m->nranks, sizeof(int), false, "counts", counts);
  if (local == LH_OK) local = lh_alloc((size_t)m->nranks, sizeof(int), false, "displs", displs);
  LH_TRY(lh_agree(m->comm, local));
  for (int r = 0; r < m->nranks; r++) {
    /* bytes <= 1 GiB, so element counts fit an int */
    (*counts)[r] = (int)(lh_part_count(m->N, m->nranks, r) * m->D);
    (*displs)[r] = (int)(lh_part_offset(m->N, m->nranks, r) * m->D);
  }
done:
  if (st != LH_OK) {
    lh_free(*counts);
    lh_free(*displs);
    *counts = *displs = NULL;
  }
  return st;
}

lh_status lh_dmat_gather(const lh_dmat *m, int root, void *buf) {
  lh_status st = LH_OK;
  int *counts = NULL, *displs = NULL;
  LH_TRY(gather_layout(m, &counts, &displs));
  MPI_Datatype t = m->dtype == LH_F64 ? MPI_DOUBLE : MPI_FLOAT;
  MPI_Gatherv(m->data, (int)(m->n * m->D), t, buf, counts, displs, t, root, m->comm);
done:
  lh_free(counts);
  lh_free(displs);
  return st;
}

lh_status lh_dmat_scatter(lh_dmat *m, int root, const void *buf) {
  lh_status st = LH_OK;
  int *counts = NULL, *displs = NULL;
  LH_TRY(gather_layout(m, &counts, &displs));
  MPI_Datatype t = m->dtype == LH_F64 ? MPI_DOUBLE : MPI_FLOAT;
  MPI_Scatterv(buf, counts, displs, t, m->data, (int)(m->n * m->D), t, root, m->comm);
done:
  lh_free(counts);
  lh_free(displs);
  return st;
}

lh_status lh_dmat_copy(const lh_dmat *src, lh_dmat *dst) {
  lh_status local = LH_OK;
  if (src->N != dst->N || src->D != dst->D || src->nranks != dst->nranks)
    local = LH_ERROR(LH_ERR_INTERNAL, "lh_dmat_copy: shapes differ (%lld x %lld vs %lld x %lld)",
                     (long long)src->N, (long long)src->D, (long long)dst->N, (long long)dst->D);
  lh_status st = lh_agree(src->comm, local);
  if (st != LH_OK) return st;
  int64_t cnt = src->n * src->D;
  if (src->dtype == dst->dtype) {
    memcpy(dst->data, src->data, (size_t)cnt * lh_dtype_size(src->dtype));
  } else if (dst->dtype == LH_F64) {
    const float *s = src->data;
    double *d = dst->data;
    for (int64_t i = 0; i < cnt; i++) d[i] = s[i];
  } else {
    const double *s = src->data;
    float *d = dst->data;
    for (int64_t i = 0; i < cnt; i++) d[i] = (float)s[i];
  }
  return LH_OK;
}

/* Rows travel as one contiguous datatype per row and counts are in rows, so that they fit
 * an int; the target indices travel alongside in a second Alltoallv. Duplicate targets
 * always land on the owner of the target row, which detects them before writing anything. */
lh_status lh_dmat_scatter_rows(const lh_dmat *src, const int64_t *pos, lh_dmat *dst) {
  lh_status st = LH_OK, local = LH_OK;
  int P = src->nranks, same = MPI_UNEQUAL, rowbytes = 0;
  size_t rb = (size_t)src->D * lh_dtype_size(src->dtype); /* bytes per row */
  int *cnt = NULL;       /* [4P]: sc, sd, rc, rd in rows */
  int64_t *cnt64 = NULL; /* [3P]: rows to each rank, from each rank, packing cursors */
  int64_t *sidx = NULL, *ridx = NULL; /* [nsend], [m] target rows */
  char *srow = NULL, *rrow = NULL;     /* [nsend x D], [m x D] */
  unsigned char *hit = NULL;           /* [dst n]: local row already targeted */
  MPI_Datatype row = MPI_DATATYPE_NULL;
  int64_t nsend = 0, m = 0;

  MPI_Comm_compare(src->comm, dst->comm, &same);
  if (same != MPI_IDENT || src->D != dst->D || src->dtype != dst->dtype)
    local = LH_ERROR(LH_ERR_VALUE,
                     "lh_dmat_scatter_rows: source (%lld x %lld %s) and destination (%lld x "
                     "%lld %s) differ in columns, dtype or communicator",
                     (long long)src->N, (long long)src->D, lh_dtype_name(src->dtype),
                     (long long)dst->N, (long long)dst->D, lh_dtype_name(dst->dtype));
  for (int64_t i = 0; local == LH_OK && i < src->n; i++) {
    if (pos[i] >= dst->N)
      local = LH_ERROR(LH_ERR_VALUE,
                       "lh_dmat_scatter_rows: row %lld targets row %lld of a %lld-row matrix",
                       (long long)(src->row0 + i), (long long)pos[i], (long long)dst->N);
    else if (pos[i] >= 0)
      nsend++;
  }
  if (local == LH_OK) local = lh_int_cast((int64_t)rb, "bytes per row", &rowbytes);
  if (local == LH_OK) local = lh_alloc((size_t)P * 4, sizeof *cnt, true, "row counts", &cnt);
  if (local == LH_OK) local = lh_alloc((size_t)P * 3, sizeof *cnt64, true, "row counts", &cnt64);
  if (local == LH_OK) local = lh_alloc((size_t)nsend, sizeof *sidx, false, "row targets", &sidx);
  if (local == LH_OK) local = lh_alloc((size_t)nsend, rb, false, "rows to send", &srow);
  LH_TRY(lh_agree(src->comm, local));
  int *sc = cnt, *sd = cnt + P, *rc = cnt + 2 * P, *rd = cnt + 3 * P;
  int64_t *to = cnt64, *from = cnt64 + P, *cur = cnt64 + 2 * P;

  /* pack by owner of the target row */
  for (int64_t i = 0; i < src->n; i++)
    if (pos[i] >= 0) to[lh_part_owner(dst->N, P, pos[i])]++;
  for (int r = 0; r < P; r++) cur[r] = r == 0 ? 0 : cur[r - 1] + to[r - 1];
  for (int64_t i = 0; i < src->n; i++) {
    if (pos[i] < 0) continue;
    int64_t k = cur[lh_part_owner(dst->N, P, pos[i])]++;
    sidx[k] = pos[i];
    memcpy(srow + (size_t)k * rb, (const char *)src->data + (size_t)i * rb, rb);
  }
  MPI_Alltoall(to, 1, MPI_INT64_T, from, 1, MPI_INT64_T, src->comm);
  int64_t sent = 0;
  for (int r = 0; r < P; r++) {
    if (local == LH_OK) local = lh_int_cast(to[r], "rows sent to one rank", &sc[r]);
    if (local == LH_OK) local = lh_int_cast(sent, "send displacement", &sd[r]);
    if (local == LH_OK) local = lh_int_cast(from[r], "rows received from one rank", &rc[r]);
    if (local == LH_OK) local = lh_int_cast(m, "receive displacement", &rd[r]);
    sent += to[r];
    m += from[r];
  }
  if (local == LH_OK) local = lh_alloc((size_t)m, sizeof *ridx, false, "row targets", &ridx);
  if (local == LH_OK) local = lh_alloc((size_t)m, rb, false, "received rows", &rrow);
  if (local == LH_OK) local = lh_alloc((size_t)dst->n, 1, true, "row marks", &hit);
  LH_TRY(lh_agree(src->comm, local));
  MPI_Alltoallv(sidx, sc, sd, MPI_INT64_T, ridx, rc, rd, MPI_INT64_T, src->comm);
  if (rb > 0) {
    MPI_Type_contiguous(rowbytes, MPI_BYTE, &row);
    MPI_Type_commit(&row);
    MPI_Alltoallv(srow, sc, sd, row, rrow, rc, rd, row, src->comm);
  }
  for (int64_t k = 0; k < m && local == LH_OK; k++) {
    int64_t li = ridx[k] - dst->row0;
    if (hit[li])
      local = LH_ERROR(LH_ERR_VALUE, "lh_dmat_scatter_rows: two source rows target row %lld",
                       (long long)ridx[k]);
    hit[li] = 1;
  }
  LH_TRY(lh_agree(src->comm, local));
  for (int64_t k = 0; k < m; k++)
    memcpy((char *)dst->data + (size_t)(ridx[k] - dst->row0) * rb, rrow + (size_t)k * rb, rb);
done:
  if (row != MPI_DATATYPE_NULL) MPI_Type_free(&row);
  lh_free(cnt);
  lh_free(cnt64);
  lh_free(sidx);
  lh_free(ridx);
  lh_free(srow);
  lh_free(rrow);
  lh_free(hit);
  return st;
}

lh_status lh_dmat_fetch_rows(const lh_dmat *m, int64_t count, const int64_t *rows, void *out) {
  lh_status st = LH_OK, local = LH_OK;
  const int P = m->nranks;
  const size_t esz = lh_dtype_size(m->dtype), rb = (size_t)m->D * esz;
  int *c = NULL;                            /* [4P]: send/recv counts and displacements */
  int64_t *order = NULL, *want = NULL;      /* [count]: request slots by owner; [nrecv] */
  int64_t *fill = NULL;                     /* [P] cursors */
  char *reply = NULL, *got = NULL;          /* [nrecv x D], [nreq x D] */
  MPI_Datatype rowt = MPI_DATATYPE_NULL;
  int64_t nreq = 0, nrecv = 0;

  for (int64_t t = 0; t < count && local == LH_OK; t++) {
    if (rows[t] >= m->N)
      local = LH_ERROR(LH_ERR_VALUE, "lh_dmat_fetch_rows: row %lld of a %lld-row matrix",
                       (long long)rows[t], (long long)m->N);
    nreq += rows[t] >= 0;
  }
  if (local == LH_OK) local = lh_alloc((size_t)P * 4, sizeof *c, true, "fetch counts", &c);
  if (local == LH_OK) local = lh_alloc((size_t)P, sizeof *fill, true, "fetch counts", &fill);
  if (local == LH_OK) local = lh_alloc((size_t)nreq, sizeof *order, false, "fetch requests", &order);
  if (local == LH_OK) local = lh_alloc((size_t)nreq * rb, 1, false, "fetched rows", &got);
  LH_TRY(lh_agree(m->comm, local));
  int *sc = c, *sd = c + P, *rc = c + 2 * P, *rd = c + 3 * P;
  /* requests grouped by owner (a counting sort), in the order of `rows` within an owner */
  for (int64_t t = 0; t < count; t++)
    if (rows[t] >= 0) sc[lh_part_owner(m->N, P, rows[t])]++;
  for (int r = 1; r < P; r++) sd[r] = sd[r - 1] + sc[r - 1];
  for (int64_t t = 0; t < count; t++) {
    if (rows[t] < 0) continue;
    int o = lh_part_owner(m->N, P, rows[t]);
    order[sd[o] + fill[o]++] = t;
  }
  MPI_Alltoall(sc, 1, MPI_INT, rc, 1, MPI_INT, m->comm);
  for (int r = 0; r < P; r++) {
    rd[r] = r ? rd[r - 1] + rc[r - 1] : 0;
    nrecv += rc[r];
  }
  int64_t *sendidx = NULL;
  local = lh_alloc((size_t)nreq, sizeof *sendidx, false, "fetch requests", &sendidx);
  if (local == LH_OK) local = lh_alloc((size_t)nrecv, sizeof *want, false, "fetch requests", &want);
  if (local == LH_OK) local = lh_alloc((size_t)nrecv * rb, 1, false, "fetch replies", &reply);
  if (local != LH_OK) lh_free(sendidx);
  LH_TRY(lh_agree(m->comm, local));
  for (int64_t q = 0; q < nreq; q++) sendidx[q] = rows[order[q]];
  MPI_Alltoallv(sendidx, sc, sd, MPI_INT64_T, want, rc, rd, MPI_INT64_T, m->comm);
  lh_free(sendidx);
  for (int64_t q = 0; q < nrecv; q++)
    memcpy(reply + (size_t)q * rb, (const char *)m->data + (size_t)(want[q] - m->row0) * rb, rb);
  int rowbytes;
  LH_TRY(lh_int_cast((int64_t)LH_MAX(rb, 1), "bytes per row", &rowbytes));
  MPI_Type_contiguous(rowbytes, MPI_BYTE, &rowt);
  MPI_Type_commit(&rowt);
  MPI_Alltoallv(reply, rc, rd, rowt, got, sc, sd, rowt, m->comm);
  for (int64_t t = 0; t < count; t++)
    if (rows[t] < 0)
      for (int64_t j = 0; j < m->D; j++) {
        if (m->dtype == LH_F64)
          ((double *)out)[t * m->D + j] = NAN;
        else
          ((float *)out)[t * m->D + j] = NAN;
      }
  for (int64_t q = 0; q < nreq; q++)
    memcpy((char *)out + (size_t)order[q] * rb, got + (size_t)q * rb, rb);
done:
  if (rowt != MPI_DATATYPE_NULL) MPI_Type_free(&rowt);
  lh_free(c);
  lh_free(fill);
  lh_free(order);
  lh_free(want);
  lh_free(reply);
  lh_free(got);
  return st;
}

lh_status lh_dmat_centred(const lh_dmat *m, lh_dmat **out) {
  lh_status st = LH_OK;
  double *mean = NULL;
  lh_dmat *C = NULL;
  LH_TRY(lh_agree(m->comm, lh_alloc((size_t)m->D, sizeof *mean, false, "column means", &mean)));
  LH_TRY(lh_dmat_col_reduce(m, LH_COL_MEAN, mean));
  LH_TRY(lh_dmat_create(m->comm, LH_F64, m->N, m->D, &C));
  LH_TRY(lh_dmat_copy(m, C));
  double *c = C->data;
  for (int64_t i = 0; i < C->n; i++)
    for (int64_t j = 0; j < C->D; j++) c[i * C->D + j] -= mean[j];
  *out = C;
  C = NULL;
done:
  lh_free(mean);
  lh_dmat_destroy(&C);
  return st;
}
