/*
 * bcmat.c: BLACS grids, block-cyclic matrices and the lh_dmat <-> block-cyclic conversion
 * (see bcmat.h).
 */
#include <math.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/bcmat.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/partition.h"
#include "linalg/scalapack.h"

struct lh_blacs {
  MPI_Comm comm; /* borrowed */
  int handle;    /* BLACS system handle of comm */
  int ctxt;      /* nprow x npcol grid */
  int ctxt_col;  /* P x 1 grid for the 1-D row-block stage of conversions */
  int nprow, npcol, myrow, mycol, nranks;
};

struct lh_bcmat {
  lh_blacs *grid; /* borrowed */
  int64_t M, N;
  int mb, nb;
  int desc[LH_DESC_LEN];
  int lrows, lcols;
  double *data; /* lld x lcols, column-major */
};

lh_status lh_blacs_create(MPI_Comm comm, int nprow, int npcol, lh_blacs **out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_blacs *g = NULL;
  int nranks;
  MPI_Comm_size(comm, &nranks);
  if (nprow == 0 && npcol == 0) {
    nprow = (int)floor(sqrt((double)nranks));
    while (nranks % nprow != 0) nprow--;
    npcol = nranks / nprow;
  }
  if (nprow <= 0 || npcol <= 0 || nprow * npcol != nranks)
    local = LH_ERROR(LH_ERR_VALUE, "process grid %d x %d does not match %d ranks", nprow, npcol,
                     nranks);
  if (local == LH_OK) local = lh_alloc(1, sizeof *g, true, "BLACS grid", &g);
  LH_TRY(lh_agree(comm, local));
  g->comm = comm;
  g->nranks = nranks;
  g->handle = Csys2blacs_handle(comm);
  g->ctxt = g->handle;
  Cblacs_gridinit(&g->ctxt, "Row", nprow, npcol);
  g->ctxt_col = g->handle;
  Cblacs_gridinit(&g->ctxt_col, "Row", nranks, 1);
  Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
  *out = g;
  g = NULL;
done:
  lh_free(g);
  return st;
}

void lh_blacs_destroy(lh_blacs **g) {
  if (!g || !*g) return;
  Cblacs_gridexit((*g)->ctxt);
  Cblacs_gridexit((*g)->ctxt_col);
  Cfree_blacs_system_handle((*g)->handle);
  lh_free(*g);
  *g = NULL;
}

MPI_Comm lh_blacs_comm(const lh_blacs *g) { return g->comm; }

void lh_blacs_info(const lh_blacs *g, int *nprow, int *npcol, int *myrow, int *mycol) {
  if (nprow) *nprow = g->nprow;
  if (npcol) *npcol = g->npcol;
  if (myrow) *myrow = g->myrow;
  if (mycol) *mycol = g->mycol;
}

/* Fills a descriptor for an M x N matrix in context ctxt; lld is max(1, local rows). */
static lh_status make_desc(int ctxt, int nprow_, int myrow_, int64_t M, int64_t N, int mb,
                           int nb, int *desc, int *lrows) {
  lh_status st = LH_OK;
  int m, n, zero = 0, info = 0;
  LH_TRY(lh_int_cast(M, "matrix rows (ScaLAPACK)", &m));
  LH_TRY(lh_int_cast(N, "matrix columns (ScaLAPACK)", &n));
  *lrows = numroc_(&m, &mb, &myrow_, &zero, &nprow_);
  int lld = *lrows > 1 ? *lrows : 1;
  descinit_(desc, &m, &n, &mb, &nb, &zero, &zero, &ctxt, &lld, &info);
  if (info != 0) LH_FAIL(LH_ERR_MPI, "descinit failed (info %d) for a %d x %d matrix", info, m, n);
done:
  return st;
}

lh_status lh_bcmat_create(lh_blacs *g, int64_t M, int64_t N, int mb, int nb, lh_bcmat **out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_bcmat *a = NULL;
  if (mb <= 0) mb = 64;
  if (nb <= 0) nb = 64;
  local = lh_alloc(1, sizeof *a, true, "block-cyclic matrix header", &a);
  if (local == LH_OK) {
    a->grid = g;
    a->M = M;
    a->N = N;
    a->mb = mb;
    a->nb = nb;
    local = make_desc(g->ctxt, g->nprow, g->myrow, M, N, mb, nb, a->desc, &a->lrows);
  }
  if (local == LH_OK) {
    int n = (int)N, zero = 0;
    a->lcols = numroc_(&n, &nb, &g->mycol, &zero, &g->npcol);
    /* ScaLAPACK indexes local storage with 32-bit integers */
    int ignored;
    local = lh_int_cast((int64_t)a->desc[LH_DESC_LLD] * a->lcols, "local block elements", &ignored);
  }
  if (local == LH_OK) {
    local = lh_alloc((size_t)a->desc[LH_DESC_LLD] * (size_t)a->lcols, sizeof(double), true,
                     "block-cyclic local block", &a->data);
  }
  LH_TRY(lh_agree(g->comm, local));
  *out = a;
  a = NULL;
done:
  lh_bcmat_destroy(&a);
  return st;
}

void lh_bcmat_destroy(lh_bcmat **a) {
  if (!a || !*a) return;
  lh_free((*a)->data);
  lh_free(*a);
  *a = NULL;
}

const int *lh_bcmat_desc(const lh_bcmat *a) { return a->desc; }
double *lh_bcmat_local(lh_bcmat *a) { return a->data; }
int lh_bcmat_local_rows(const lh_bcmat *a) { return a->lrows; }
int lh_bcmat_local_cols(const lh_bcmat *a) { return a->lcols; }
int64_t lh_bcmat_rows(const lh_bcmat *a) { return a->M; }
int64_t lh_bcmat_cols(const lh_bcmat *a) { return a->N; }
lh_blacs *lh_bcmat_grid(const lh_bcmat *a) { return a->grid; }

void lh_bcmat_global_index(const lh_bcmat *a, int li, int lj, int64_t *i, int64_t *j) {
  const lh_blacs *g = a->grid;
  *i = ((int64_t)(li / a->mb) * g->nprow + g->myrow) * a->mb + li % a->mb;
  *j = ((int64_t)(lj / a->nb) * g->npcol + g->mycol) * a->nb + lj % a->nb;
}

/* The even 1-D layout on the P x 1 grid: rank r holds rows [r*mb1, min(N, (r+1)*mb1)). */
static int64_t even_block(int64_t N, int P) { return N > 0 ? (N + P - 1) / P : 1; }
static int64_t even_offset(int64_t N, int P, int r) {
  int64_t o = (int64_t)r * even_block(N, P);
  return o < N ? o : N;
}
static int64_t even_count(int64_t N, int P, int r) {
  return even_offset(N, P, r + 1) - even_offset(N, P, r);
}

static int64_t overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1) {
  int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
  return hi > lo ? hi - lo : 0;
}

/* Moves rows between the lh_dmat layout and the even layout with one Alltoallv, counting in
 * rows (a contiguous datatype of D doubles) so that counts fit an int. `to_even` selects the
 * direction. send/recv are row-major. */
static lh_status shift_rows(MPI_Comm comm, int64_t N, int64_t D, bool to_even,
                            const double *send, double *recv) {
  lh_status st = LH_OK, local = LH_OK;
  int P, r;
  MPI_Comm_size(comm, &P);
  MPI_Comm_rank(comm, &r);
  int *sc = NULL, *sd = NULL, *rc = NULL, *rd = NULL;
  MPI_Datatype row = MPI_DATATYPE_NULL;
  local = lh_alloc((size_t)P * 4, sizeof(int), true, "alltoallv counts", &sc);
  LH_TRY(lh_agree(comm, local));
  sd = sc + P;
  rc = sc + 2 * P;
  rd = sc + 3 * P;
  for (int s = 0; s < P; s++) {
    int64_t my0, my1, their0, their1, from0, from1, to0, to1;
    /* what I send to s */
    my0 = to_even ? lh_part_offset(N, P, r) : even_offset(N, P, r);
    my1 = my0 + (to_even ? lh_part_count(N, P, r) : even_count(N, P, r));
    their0 = to_even ? even_offset(N, P, s) : lh_part_offset(N, P, s);
    their1 = their0 + (to_even ? even_count(N, P, s) : lh_part_count(N, P, s));
    int64_t o = overlap(my0, my1, their0, their1);
    sc[s] = (int)o;
    sd[s] = (int)(o ? (their0 > my0 ? their0 : my0) - my0 : 0);
    /* what I receive from s */
    from0 = to_even ? lh_part_offset(N, P, s) : even_offset(N, P, s);
    from1 = from0 + (to_even ? lh_part_count(N, P, s) : even_count(N, P, s));
    to0 = to_even ? even_offset(N, P, r) : lh_part_offset(N, P, r);
    to1 = to0 + (to_even ? even_count(N, P, r) : lh_part_count(N, P, r));
    o = overlap(from0, from1, to0, to1);
    rc[s] = (int)o;
    rd[s] = (int)(o ? (from0 > to0 ? from0 : to0) - to0 : 0);
  }
  int d;
  LH_TRY(lh_int_cast(D > 0 ? D : 1, "number of columns", &d));
  MPI_Type_contiguous(d, MPI_DOUBLE, &row);
  MPI_Type_commit(&row);
  MPI_Alltoallv(send, sc, sd, row, recv, rc, rd, row, comm);
done:
  if (row != MPI_DATATYPE_NULL) MPI_Type_free(&row);
  lh_free(sc);
  return st;
}

/* The buffers of a conversion: this rank's rows (float64, row-major), its rows of the even
 * layout (row-major, then column-major for ScaLAPACK) and that layout's descriptor. */
typedef struct staging {
  double *rows, *even, *colmaj;
  int64_t n, c, lld; /* rows here, rows in the even layout, its leading dimension */
  int desc[LH_DESC_LEN];
} staging;

static void staging_free(staging *sg) {
  lh_free(sg->rows);
  lh_free(sg->even);
  lh_free(sg->colmaj);
}

/* Allocates the staging buffers. Local (the caller agrees). */
static lh_status staging_alloc(staging *sg, const lh_blacs *g, int64_t N, int64_t D, int64_t n) {
  lh_status st = LH_OK;
  int P = g->nranks, r = g->myrow * g->npcol + g->mycol, lr, ignored;
  sg->n = n;
  sg->c = even_count(N, P, r);
  sg->lld = LH_MAX(sg->c, 1);
  LH_TRY(lh_int_cast(sg->lld * D, "staging slab elements", &ignored));
  LH_TRY(lh_alloc((size_t)(n * D), sizeof(double), false, "conversion buffer", &sg->rows));
  LH_TRY(lh_alloc((size_t)(sg->c * D), sizeof(double), false, "conversion buffer", &sg->even));
  LH_TRY(lh_alloc((size_t)(sg->lld * D), sizeof(double), true, "conversion buffer", &sg->colmaj));
  LH_TRY(make_desc(g->ctxt_col, P, r, N, D, (int)even_block(N, P), (int)D, sg->desc, &lr));
done:
  return st;
}

lh_status lh_dmat_to_bcmat(const lh_dmat *m, lh_blacs *g, int mb, int nb, lh_bcmat **out) {
  lh_status st = LH_OK;
  MPI_Comm comm = lh_dmat_comm(m);
  const int64_t N = lh_dmat_rows(m), D = lh_dmat_cols(m), n = lh_dmat_local_rows(m);
  lh_bcmat *a = NULL;
  staging sg = {0};

  LH_TRY(lh_bcmat_create(g, N, D, mb, nb, &a));
  if (N == 0 || D == 0) { /* nothing to move (N and D are the same on every rank) */
    *out = a;
    return LH_OK;
  }
  LH_TRY(lh_agree(comm, staging_alloc(&sg, g, N, D, n)));
  /* widen to float64, move to the even layout, transpose to column-major, redistribute */
  if (lh_dmat_dtype(m) == LH_F64) {
    memcpy(sg.rows, lh_dmat_local_const(m), (size_t)(n * D) * sizeof(double));
  } else {
    const float *s = lh_dmat_local_const(m);
    for (int64_t k = 0; k < n * D; k++) sg.rows[k] = s[k];
  }
  LH_TRY(shift_rows(comm, N, D, true, sg.rows, sg.even));
  for (int64_t i = 0; i < sg.c; i++)
    for (int64_t j = 0; j < D; j++) sg.colmaj[i + j * sg.lld] = sg.even[i * D + j];
  int one = 1, mm = (int)N, nn = (int)D;
  pdgemr2d_(&mm, &nn, sg.colmaj, &one, &one, sg.desc, a->data, &one, &one, a->desc, &g->ctxt);
  *out = a;
  a = NULL;
done:
  lh_bcmat_destroy(&a);
  staging_free(&sg);
  return st;
}

lh_status lh_bcmat_to_dmat(const lh_bcmat *a, lh_dmat *m) {
  lh_status st = LH_OK, local = LH_OK;
  lh_blacs *g = a->grid;
  MPI_Comm comm = lh_dmat_comm(m);
  const int64_t N = lh_dmat_rows(m), D = lh_dmat_cols(m), n = lh_dmat_local_rows(m);
  staging sg = {0};

  if (a->M != N || a->N != D)
    local = LH_ERROR(LH_ERR_INTERNAL, "lh_bcmat_to_dmat: shapes differ (%lld x %lld vs %lld x %lld)",
                     (long long)a->M, (long long)a->N, (long long)N, (long long)D);
  if (local == LH_OK && (N == 0 || D == 0)) return lh_agree(comm, local);
  if (local == LH_OK) local = staging_alloc(&sg, g, N, D, n);
  LH_TRY(lh_agree(comm, local));
  int one = 1, mm = (int)N, nn = (int)D;
  pdgemr2d_(&mm, &nn, a->data, &one, &one, a->desc, sg.colmaj, &one, &one, sg.desc, &g->ctxt);
  for (int64_t i = 0; i < sg.c; i++)
    for (int64_t j = 0; j < D; j++) sg.even[i * D + j] = sg.colmaj[i + j * sg.lld];
  LH_TRY(shift_rows(comm, N, D, false, sg.even, sg.rows));
  if (lh_dmat_dtype(m) == LH_F64) {
    memcpy(lh_dmat_local(m), sg.rows, (size_t)(n * D) * sizeof(double));
  } else {
    float *d = lh_dmat_local(m);
    for (int64_t k = 0; k < n * D; k++) d[k] = (float)sg.rows[k];
  }
done:
  staging_free(&sg);
  return st;
}
