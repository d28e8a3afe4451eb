/*
 * h5.c: collective HDF5 reads and writes of row slabs (see h5.h).
 *
 * Every rank performs the same sequence of HDF5 metadata calls (so that a failure is the same
 * failure everywhere), and lh_agree() follows each step that can fail, before the next
 * collective. The file itself is opened through the MPI-IO driver with collective metadata
 * operations, so metadata is read once by one rank and broadcast, instead of every rank of a
 * large job hitting the file system at once.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/h5.h"
#include "latenthook/mem.h"
#include "latenthook/progress.h"
#include "latenthook/timer.h"
#include "latenthook/version.h"

#ifndef H5_HAVE_PARALLEL
#error "LatentHook needs a parallel (MPI) build of HDF5 (Debian: libhdf5-openmpi-dev)"
#endif

/* Bytes moved per collective H5Dread/H5Dwrite call: keeps MPI-IO counts far below 2^31. */
#define IO_PIECE_BYTES (INT64_C(256) << 20)
/* Target size of a chunk of a dataset we create. */
#define CHUNK_TARGET_BYTES (INT64_C(1) << 20)

struct lh_h5_dset {
  MPI_Comm comm; /* borrowed */
  hid_t file;    /* owned when own_file */
  bool own_file;
  hid_t dset;
  lh_h5_info info;
};

struct lh_h5_out {
  MPI_Comm comm;
  hid_t file;
  char path[LH_H5_PATH_CAP];
  char tmp[LH_H5_PATH_CAP + 64];
  char created[64];
};

static void silence_hdf5(void) {
  static bool done;
  if (!done) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    done = true;
  }
}

/* The innermost HDF5 error description, e.g. "file signature not found". */
static herr_t walk_cb(unsigned n, const H5E_error2_t *err, void *data) {
  char *buf = data;
  if (n == 0 && err->desc) snprintf(buf, 256, "%s", err->desc);
  return 0;
}
static const char *hdf5_detail(char *buf) {
  buf[0] = '\0';
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
  H5Eclear2(H5E_DEFAULT);
  if (!buf[0]) snprintf(buf, 256, "unknown HDF5 error");
  return buf;
}

lh_status lh_h5_addr_parse(const char *spec, lh_h5_addr *out) {
  const char *split = NULL;
  for (const char *c = spec; *c; c++)
    if (c[0] == ':' && c[1] == '/') split = c;
  if (!split || split == spec || strlen(split + 1) < 2)
    return LH_ERROR(LH_ERR_USAGE, "'%s' is not a dataset address: expected FILE.h5:/path/to/dataset",
                    spec);
  size_t flen = (size_t)(split - spec);
  if (flen >= LH_H5_PATH_CAP || strlen(split + 1) >= LH_H5_PATH_CAP)
    return LH_ERROR(LH_ERR_USAGE, "dataset address '%.64s...' is too long", spec);
  memcpy(out->file, spec, flen);
  out->file[flen] = '\0';
  snprintf(out->path, sizeof out->path, "%s", split + 1);
  /* drop trailing slashes: "/a/b/" names the same object as "/a/b" */
  size_t plen = strlen(out->path);
  while (plen > 1 && out->path[plen - 1] == '/') out->path[--plen] = '\0';
  return LH_OK;
}

const char *lh_h5_type_name(const lh_h5_info *info, char *buf, size_t cap) {
  const char *k = info->cls == LH_H5_FLOAT ? "float" : info->cls == LH_H5_INT ? "int" : "uint";
  snprintf(buf, cap, "%s%d%s", k, 8 * info->type_size, info->big_endian ? " (big-endian)" : "");
  return buf;
}

/* "(3, 100, 8)" */
static const char *shape_str(const int64_t *dims, int nd, char *buf, size_t cap) {
  size_t len = (size_t)snprintf(buf, cap, "(");
  for (int k = 0; k < nd && len < cap; k++)
    len += (size_t)snprintf(buf + len, cap - len, "%s%lld", k ? ", " : "", (long long)dims[k]);
  if (len < cap) snprintf(buf + len, cap - len, nd == 1 ? ",)" : ")");
  return buf;
}

/* Lists up to 12 member names of the group at `gpath` into buf ("a, b, c, ..."). */
typedef struct {
  char *buf;
  size_t cap, len;
  int count;
} member_list;
static herr_t member_cb(hid_t g, const char *name, const H5L_info_t *li, void *data) {
  member_list *ml = data;
  if (ml->count < 12 && ml->len < ml->cap)
    ml->len += (size_t)snprintf(ml->buf + ml->len, ml->cap - ml->len, "%s%s",
                                ml->count ? ", " : "", name);
  else if (ml->count == 12 && ml->len < ml->cap)
    ml->len += (size_t)snprintf(ml->buf + ml->len, ml->cap - ml->len, ", ...");
  ml->count++;
  return 0;
}
static const char *list_members(hid_t file, const char *gpath, char *buf, size_t cap) {
  member_list ml = {buf, cap, 0, 0};
  buf[0] = '\0';
  hid_t g = H5Gopen2(file, gpath, H5P_DEFAULT);
  if (g >= 0) {
    hsize_t idx = 0;
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, member_cb, &ml);
    H5Gclose(g);
  }
  H5Eclear2(H5E_DEFAULT);
  if (ml.count == 0) snprintf(buf, cap, "it is empty");
  return buf;
}

/* Rank-0 checks on the file before any collective open: exists, readable, HDF5. */
static lh_status check_input_file(const char *path) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return LH_ERROR(LH_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  if (S_ISDIR(sb.st_mode))
    return LH_ERROR(LH_ERR_IO, "cannot open '%s': it is a directory, expected an HDF5 file", path);
  if (access(path, R_OK) != 0)
    return LH_ERROR(LH_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
  htri_t is = H5Fis_hdf5(path);
  H5Eclear2(H5E_DEFAULT);
  if (is <= 0)
    return LH_ERROR(LH_ERR_IO, "'%s' is not an HDF5 file (no HDF5 signature found)", path);
  return LH_OK;
}

/* Walks the components of info->addr.path; fails naming the first one that is missing. */
static lh_status check_path(hid_t file, const lh_h5_addr *a) {
  char prefix[LH_H5_PATH_CAP], parent[LH_H5_PATH_CAP] = "/", members[512];
  const char *p = a->path;
  size_t len = 0;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *e = strchr(p, '/');
    size_t clen = e ? (size_t)(e - p) : strlen(p);
    if (len + 1 + clen >= sizeof prefix) break;
    prefix[len++] = '/';
    memcpy(prefix + len, p, clen);
    len += clen;
    prefix[len] = '\0';
    htri_t ex = H5Lexists(file, prefix, H5P_DEFAULT);
    H5Eclear2(H5E_DEFAULT);
    if (ex <= 0)
      return LH_ERROR(LH_ERR_KEY, "no dataset '%s' in '%s': group '%s' has no member '%.*s' (%s%s)",
                      a->path, a->file, parent, (int)clen, p,
                      strcmp(list_members(file, parent, members, sizeof members), "it is empty")
                          ? "members: "
                          : "",
                      members);
    if (e) { /* an intermediate component must be a group */
      H5O_info_t oi;
      if (H5Oget_info_by_name2(file, prefix, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
          oi.type != H5O_TYPE_GROUP) {
        H5Eclear2(H5E_DEFAULT);
        return LH_ERROR(LH_ERR_KEY, "no dataset '%s' in '%s': '%s' is not a group", a->path,
                        a->file, prefix);
      }
    }
    snprintf(parent, sizeof parent, "%s", prefix);
    p += clen;
  }
  H5O_info_t oi;
  if (H5Oget_info_by_name2(file, a->path, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    char d[256];
    return LH_ERROR(LH_ERR_IO, "cannot inspect '%s' in '%s': %s", a->path, a->file,
                    hdf5_detail(d));
  }
  if (oi.type == H5O_TYPE_GROUP)
    return LH_ERROR(LH_ERR_TYPE, "'%s' in '%s' is a group, not a dataset (%s%s)", a->path,
                    a->file,
                    strcmp(list_members(file, a->path, members, sizeof members), "it is empty")
                        ? "members: "
                        : "",
                    members);
  if (oi.type != H5O_TYPE_DATASET)
    return LH_ERROR(LH_ERR_TYPE, "'%s' in '%s' is not a dataset", a->path, a->file);
  return LH_OK;
}

static const char *row_form(int row_axis) {
  switch (row_axis) {
    case LH_ROWS_SECOND_LAST: return "(..., N, D)";
    case LH_ROWS_LAST: return "(..., N)";
    case 0: return "(N, ...)";
    default: return "(..., N, ...)";
  }
}

/* Reads type, shape and layout of an open dataset into info; validates them. */
static lh_status describe(hid_t dset, int row_axis, lh_h5_info *info) {
  lh_status st = LH_OK;
  hid_t type = -1, space = -1, dcpl = -1;
  char d[256], shp[256];
  type = H5Dget_type(dset);
  space = H5Dget_space(dset);
  dcpl = H5Dget_create_plist(dset);
  if (type < 0 || space < 0 || dcpl < 0)
    LH_FAIL(LH_ERR_IO, "cannot read the description of '%s' in '%s': %s", info->addr.path,
            info->addr.file, hdf5_detail(d));
  H5T_class_t cls = H5Tget_class(type);
  if (cls == H5T_STRING)
    LH_FAIL(LH_ERR_TYPE, "dataset '%s' in '%s' holds strings; expected numbers (float or integer)",
            info->addr.path, info->addr.file);
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) {
    static const char *names[] = {"integer", "float", "time", "string", "bitfield", "opaque",
                                  "compound", "reference", "enum", "variable-length", "array"};
    LH_FAIL(LH_ERR_TYPE, "dataset '%s' in '%s' holds %s data; expected numbers (float or integer)",
            info->addr.path, info->addr.file,
            cls >= 0 && cls <= H5T_ARRAY ? names[cls] : "unknown");
  }
  info->cls = cls == H5T_FLOAT ? LH_H5_FLOAT
                               : (H5Tget_sign(type) == H5T_SGN_NONE ? LH_H5_UINT : LH_H5_INT);
  info->type_size = (int)H5Tget_size(type);
  info->big_endian = H5Tget_order(type) == H5T_ORDER_BE;
  info->natural = (cls == H5T_FLOAT && info->type_size <= 4) ? LH_F32 : LH_F64;

  int nd = H5Sget_simple_extent_ndims(space);
  if (nd < 0 || nd > LH_H5_MAX_DIMS)
    LH_FAIL(LH_ERR_VALUE, "dataset '%s' in '%s' has %d dimensions; at most %d are supported",
            info->addr.path, info->addr.file, nd, LH_H5_MAX_DIMS);
  hsize_t hd[LH_H5_MAX_DIMS];
  H5Sget_simple_extent_dims(space, hd, NULL);
  info->ndims = nd;
  for (int k = 0; k < nd; k++) info->dims[k] = (int64_t)hd[k];
  int ra = row_axis < 0 ? nd + row_axis : row_axis;
  if (ra < 0 || ra >= nd)
    LH_FAIL(LH_ERR_VALUE, "dataset '%s' in '%s' has shape %s; expected %s, at least %d dimension%s",
            info->addr.path, info->addr.file, shape_str(info->dims, nd, shp, sizeof shp),
            row_form(row_axis), row_axis < 0 ? -row_axis : row_axis + 1,
            (row_axis < 0 ? -row_axis : row_axis + 1) == 1 ? "" : "s");
  info->row_axis = ra;
  info->B = 1;
  for (int k = 0; k < ra; k++) info->B *= info->dims[k];
  info->N = info->dims[ra];
  info->E = 1;
  for (int k = ra + 1; k < nd; k++) info->E *= info->dims[k];

  info->chunked = H5Pget_layout(dcpl) == H5D_CHUNKED;
  if (info->chunked) {
    hsize_t cd[LH_H5_MAX_DIMS];
    H5Pget_chunk(dcpl, nd, cd);
    for (int k = 0; k < nd; k++) info->chunk[k] = (int64_t)cd[k];
  }
  info->filters[0] = '\0';
  int nf = H5Pget_nfilters(dcpl);
  size_t flen = 0;
  for (int f = 0; f < nf && flen < sizeof info->filters; f++) {
    unsigned flags, conf;
    size_t ncd = 0;
    char fname[64] = "";
    H5Pget_filter2(dcpl, (unsigned)f, &flags, &ncd, NULL, sizeof fname, fname, &conf);
    flen += (size_t)snprintf(info->filters + flen, sizeof info->filters - flen, "%s%s",
                             f ? ", " : "", fname);
  }
done:
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  if (dcpl >= 0) H5Pclose(dcpl);
  H5Eclear2(H5E_DEFAULT);
  return st;
}

lh_status lh_h5_open(MPI_Comm comm, const char *spec, int row_axis, lh_h5_dset **out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_h5_dset *d = NULL;
  hid_t fapl = -1;
  char det[256];
  int rank;
  MPI_Comm_rank(comm, &rank);
  silence_hdf5();

  local = lh_alloc(1, sizeof *d, true, "dataset handle", &d);
  if (local == LH_OK) {
    d->file = d->dset = -1;
    d->comm = comm;
    local = lh_h5_addr_parse(spec, &d->info.addr);
  }
  if (local == LH_OK && rank == 0) local = check_input_file(d->info.addr.file);
  LH_TRY(lh_agree(comm, local));

  fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Pset_all_coll_metadata_ops(fapl, true);
  d->file = H5Fopen(d->info.addr.file, H5F_ACC_RDONLY, fapl);
  d->own_file = d->file >= 0;
  if (d->file < 0)
    local = LH_ERROR(LH_ERR_IO, "cannot open '%s' with MPI-IO: %s", d->info.addr.file,
                     hdf5_detail(det));
  LH_TRY(lh_agree(comm, local));

  local = check_path(d->file, &d->info.addr);
  LH_TRY(lh_agree(comm, local));
  d->dset = H5Dopen2(d->file, d->info.addr.path, H5P_DEFAULT);
  if (d->dset < 0)
    local = LH_ERROR(LH_ERR_IO, "cannot open dataset '%s' in '%s': %s", d->info.addr.path,
                     d->info.addr.file, hdf5_detail(det));
  else
    local = describe(d->dset, row_axis, &d->info);
  LH_TRY(lh_agree(comm, local));
  *out = d;
  d = NULL;
done:
  if (fapl >= 0) H5Pclose(fapl);
  lh_h5_close(&d);
  return st;
}

void lh_h5_close(lh_h5_dset **d) {
  if (!d || !*d) return;
  if ((*d)->dset >= 0) H5Dclose((*d)->dset);
  if ((*d)->own_file && (*d)->file >= 0) H5Fclose((*d)->file);
  H5Eclear2(H5E_DEFAULT);
  lh_free(*d);
  *d = NULL;
}

const lh_h5_info *lh_h5_dset_info(const lh_h5_dset *d) { return &d->info; }

/* Selects rows [row0, row0+nrows) of item b in the file space (none if nrows == 0). */
static herr_t select_rows(const lh_h5_info *in, hid_t fspace, int64_t b, int64_t row0,
                          int64_t nrows) {
  if (nrows == 0 || in->E == 0) return H5Sselect_none(fspace);
  hsize_t start[LH_H5_MAX_DIMS], count[LH_H5_MAX_DIMS];
  int64_t rem = b;
  for (int k = in->row_axis - 1; k >= 0; k--) {
    start[k] = (hsize_t)(rem % in->dims[k]);
    rem /= in->dims[k];
    count[k] = 1;
  }
  start[in->row_axis] = (hsize_t)row0;
  count[in->row_axis] = (hsize_t)nrows;
  for (int k = in->row_axis + 1; k < in->ndims; k++) {
    start[k] = 0;
    count[k] = (hsize_t)in->dims[k];
  }
  return H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
}

/* Memory element types of transfers: the two lh_dtypes and int64 (neighbour indices). */
typedef enum { ELEM_F32 = LH_F32, ELEM_F64 = LH_F64, ELEM_I64 } elem_t;

static size_t elem_size(elem_t e) { return e == ELEM_F32 ? 4 : 8; }
static hid_t elem_hid(elem_t e) {
  return e == ELEM_F32 ? H5T_NATIVE_FLOAT : e == ELEM_F64 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64;
}

/* One collective transfer loop shared by reads and writes. */
static lh_status transfer(lh_h5_dset *d, bool write, int64_t b, int64_t row0, int64_t nrows,
                          elem_t mt, void *buf) {
  lh_status st = LH_OK, local = LH_OK;
  const lh_h5_info *in = &d->info;
  hid_t fspace = -1, dxpl = -1;
  char det[256];
  static lh_event ev_read = -2, ev_write = -2;
  if (ev_read == -2) {
    ev_read = lh_event_get("h5.read");
    ev_write = lh_event_get("h5.write");
  }
  lh_event ev = write ? ev_write : ev_read;
  lh_event_begin(ev);

  if (nrows < 0 || (nrows > 0 && (b < 0 || b >= in->B || row0 < 0 || row0 + nrows > in->N)))
    local = LH_ERROR(LH_ERR_INTERNAL,
                     "%s rows [%lld, %lld) of item %lld of '%s' (%lld items of %lld rows)",
                     write ? "writing" : "reading", (long long)row0, (long long)(row0 + nrows),
                     (long long)b, in->addr.path, (long long)in->B, (long long)in->N);
  size_t esz = elem_size(mt);
  int64_t row_bytes = in->E * (int64_t)esz;
  int64_t per = row_bytes > 0 ? LH_MAX(IO_PIECE_BYTES / row_bytes, 1) : LH_MAX(nrows, 1);
  int64_t pieces = nrows > 0 ? (nrows + per - 1) / per : 0, maxp = 0;
  LH_TRY(lh_agree(d->comm, local));
  MPI_Allreduce(&pieces, &maxp, 1, MPI_INT64_T, MPI_MAX, d->comm);

  if (in->B * in->N * in->E == 0) goto done; /* an empty dataset: nothing to move, anywhere */
  fspace = H5Dget_space(d->dset);
  dxpl = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
  hid_t mtype = elem_hid(mt);
  int rank;
  MPI_Comm_rank(d->comm, &rank);
  lh_progress bar;
  lh_progress_start(&bar, maxp > 1 ? rank : -1, write ? "writing" : "reading", "rows", nrows);
  for (int64_t p = 0; p < maxp; p++) {
    int64_t r0 = row0 + p * per;
    int64_t cnt = p < pieces ? LH_MIN(per, nrows - p * per) : 0;
    herr_t rc = select_rows(in, fspace, b, r0, cnt);
    hsize_t melems = (hsize_t)(cnt * in->E);
    hid_t mspace = H5Screate_simple(1, &melems, NULL);
    if (melems == 0) H5Sselect_none(mspace);
    char *ptr = melems ? (char *)buf + (size_t)(p * per) * (size_t)row_bytes : NULL;
    if (rc >= 0)
      rc = write ? H5Dwrite(d->dset, mtype, mspace, fspace, dxpl, ptr)
                 : H5Dread(d->dset, mtype, mspace, fspace, dxpl, ptr);
    H5Sclose(mspace);
    if (rc < 0)
      local = LH_ERROR(LH_ERR_IO, "%s rows %lld..%lld of '%s:%s' failed: %s",
                       write ? "writing" : "reading", (long long)r0, (long long)(r0 + cnt - 1),
                       in->addr.file, in->addr.path, hdf5_detail(det));
    LH_TRY(lh_agree(d->comm, local));
    lh_progress_update(&bar, LH_MIN(nrows, (p + 1) * per));
  }
  lh_progress_finish(&bar);
done:
  if (fspace >= 0) H5Sclose(fspace);
  if (dxpl >= 0) H5Pclose(dxpl);
  lh_event_end(ev);
  return st;
}

lh_status lh_h5_read_rows(lh_h5_dset *d, int64_t b, int64_t row0, int64_t nrows, lh_dtype mt,
                          void *buf) {
  return transfer(d, false, b, row0, nrows, (elem_t)mt, buf);
}

lh_status lh_h5_write_rows(lh_h5_dset *d, int64_t b, int64_t row0, int64_t nrows, lh_dtype mt,
                           const void *buf) {
  return transfer(d, true, b, row0, nrows, (elem_t)mt, (void *)buf);
}

lh_status lh_h5_write_rows_i64(lh_h5_dset *d, int64_t b, int64_t row0, int64_t nrows,
                               const int64_t *buf) {
  return transfer(d, true, b, row0, nrows, ELEM_I64, (void *)buf);
}

static lh_status check_dmat_shape(const lh_h5_dset *d, const lh_dmat *m) {
  if (lh_dmat_rows(m) != d->info.N || lh_dmat_cols(m) != d->info.E)
    return LH_ERROR(LH_ERR_INTERNAL, "matrix %lld x %lld does not match '%s' (%lld rows of %lld)",
                    (long long)lh_dmat_rows(m), (long long)lh_dmat_cols(m), d->info.addr.path,
                    (long long)d->info.N, (long long)d->info.E);
  return LH_OK;
}

lh_status lh_h5_read_dmat(lh_h5_dset *d, int64_t b, lh_dmat *m) {
  lh_status st = lh_agree(d->comm, m ? check_dmat_shape(d, m) : LH_OK);
  if (st != LH_OK) return st;
  if (!m) return transfer(d, false, 0, 0, 0, ELEM_F64, NULL);
  return transfer(d, false, b, lh_dmat_row_offset(m), lh_dmat_local_rows(m),
                  (elem_t)lh_dmat_dtype(m), lh_dmat_local(m));
}

lh_status lh_h5_write_dmat(lh_h5_dset *d, int64_t b, const lh_dmat *m) {
  lh_status st = lh_agree(d->comm, m ? check_dmat_shape(d, m) : LH_OK);
  if (st != LH_OK) return st;
  if (!m) return transfer(d, true, 0, 0, 0, ELEM_F64, NULL);
  return transfer(d, true, b, lh_dmat_row_offset(m), lh_dmat_local_rows(m),
                  (elem_t)lh_dmat_dtype(m), (void *)lh_dmat_local_const(m));
}

/* ------------------------------------------------------------------------------------------ */
/* Output files                                                                               */

static lh_status write_attr_str(hid_t obj, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  hid_t s = H5Screate(H5S_SCALAR);
  if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
  hid_t a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a >= 0 ? H5Awrite(a, t, &value) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(s);
  H5Tclose(t);
  if (rc < 0) {
    char det[256];
    return LH_ERROR(LH_ERR_IO, "cannot write attribute '%s': %s", name, hdf5_detail(det));
  }
  return LH_OK;
}

static lh_status write_attr_int(hid_t obj, const char *name, long long v) {
  hid_t s = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
  herr_t rc = a >= 0 ? H5Awrite(a, H5T_NATIVE_LLONG, &v) : -1;
  if (a >= 0) H5Aclose(a);
  H5Sclose(s);
  if (rc < 0) {
    char det[256];
    return LH_ERROR(LH_ERR_IO, "cannot write attribute '%s': %s", name, hdf5_detail(det));
  }
  return LH_OK;
}

/* Attribute creation is collective: every rank attempts all four (no early exit) and the
 * caller agrees on the first failure afterwards. */
static lh_status write_provenance(const lh_h5_out *o, hid_t obj) {
  int P;
  MPI_Comm_size(o->comm, &P);
  lh_status s[4] = {write_attr_str(obj, "latenthook_version", lh_version()),
                    write_attr_str(obj, "command_line", lh_provenance_command_line()),
                    write_attr_int(obj, "mpi_ranks", P),
                    write_attr_str(obj, "created", o->created)};
  for (int k = 0; k < 4; k++)
    if (s[k] != LH_OK) return s[k];
  return LH_OK;
}

lh_status lh_h5_out_create(MPI_Comm comm, const char *path, lh_h5_out **out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_h5_out *o = NULL;
  hid_t fapl = -1;
  int rank;
  char det[256];
  MPI_Comm_rank(comm, &rank);
  silence_hdf5();
  local = lh_alloc(1, sizeof *o, true, "output handle", &o);
  if (local == LH_OK) {
    o->file = -1;
    o->comm = comm;
    if (strlen(path) == 0 || strlen(path) >= LH_H5_PATH_CAP)
      local = LH_ERROR(LH_ERR_USAGE, "output path '%.64s' is empty or too long", path);
    else
      snprintf(o->path, sizeof o->path, "%s", path);
  }
  if (local == LH_OK && rank == 0) {
    char dir[LH_H5_PATH_CAP];
    snprintf(dir, sizeof dir, "%s", path);
    const char *dname = dirname(dir);
    struct stat sb;
    if (stat(dname, &sb) != 0 || !S_ISDIR(sb.st_mode))
      local = LH_ERROR(LH_ERR_IO, "cannot write '%s': folder '%s' does not exist", path, dname);
    else if (access(dname, W_OK | X_OK) != 0)
      local = LH_ERROR(LH_ERR_IO, "cannot write '%s': folder '%s' is not writable (%s)", path,
                       dname, strerror(errno));
    else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
      local = LH_ERROR(LH_ERR_IO, "cannot write '%s': it is a directory", path);
    snprintf(o->tmp, sizeof o->tmp, "%s.tmp-%ld", path, (long)getpid());
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(o->created, sizeof o->created, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  }
  LH_TRY(lh_agree(comm, local));
  MPI_Bcast(o->tmp, (int)sizeof o->tmp, MPI_CHAR, 0, comm);
  MPI_Bcast(o->created, (int)sizeof o->created, MPI_CHAR, 0, comm);

  fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Pset_all_coll_metadata_ops(fapl, true);
  H5Pset_coll_metadata_write(fapl, true);
  o->file = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (o->file < 0)
    local = LH_ERROR(LH_ERR_IO, "cannot create '%s': %s", o->tmp, hdf5_detail(det));
  LH_TRY(lh_agree(comm, local));
  LH_TRY(lh_agree(comm, write_provenance(o, o->file)));
  *out = o;
  o = NULL;
done:
  if (fapl >= 0) H5Pclose(fapl);
  lh_h5_out_discard(&o);
  return st;
}

const char *lh_h5_out_path(const lh_h5_out *o) { return o->path; }

lh_status lh_h5_out_commit(lh_h5_out **op) {
  lh_status st = LH_OK, local = LH_OK;
  lh_h5_out *o = *op;
  int rank;
  MPI_Comm_rank(o->comm, &rank);
  ssize_t open_objs = H5Fget_obj_count(o->file, H5F_OBJ_DATASET | H5F_OBJ_GROUP |
                                                    H5F_OBJ_DATATYPE | H5F_OBJ_ATTR);
  if (open_objs > 0)
    local = LH_ERROR(LH_ERR_INTERNAL, "committing '%s' with %zd objects still open", o->path,
                     open_objs);
  LH_TRY(lh_agree(o->comm, local));
  herr_t rc = H5Fclose(o->file);
  o->file = -1;
  if (rc < 0) {
    char det[256];
    local = LH_ERROR(LH_ERR_IO, "cannot close '%s': %s", o->tmp, hdf5_detail(det));
  }
  LH_TRY(lh_agree(o->comm, local));
  if (rank == 0 && rename(o->tmp, o->path) != 0)
    local = LH_ERROR(LH_ERR_IO, "cannot rename '%s' to '%s': %s", o->tmp, o->path,
                     strerror(errno));
  LH_TRY(lh_agree(o->comm, local));
  lh_free(o);
  *op = NULL;
  return LH_OK;
done:
  lh_h5_out_discard(op);
  return st;
}

void lh_h5_out_discard(lh_h5_out **op) {
  if (!op || !*op) return;
  lh_h5_out *o = *op;
  int rank;
  MPI_Comm_rank(o->comm, &rank);
  /* H5Fclose is collective (MPI_File_close synchronises), so once rank 0 returns from it the
   * file is closed everywhere; no barrier, which a rank whose handle was never allocated
   * could not join. */
  if (o->file >= 0) H5Fclose(o->file);
  H5Eclear2(H5E_DEFAULT);
  if (rank == 0 && o->tmp[0]) unlink(o->tmp);
  lh_free(o);
  *op = NULL;
}

static lh_status create_dataset(lh_h5_out *o, const char *path, elem_t dt, int ndims,
                               const int64_t *dims, int row_axis, lh_h5_dset **out) {
  lh_status st = LH_OK, local = LH_OK;
  lh_h5_dset *d = NULL;
  hid_t space = -1, dcpl = -1, lcpl = -1;
  char det[256];
  int ra = row_axis < 0 ? ndims + row_axis : row_axis;
  if (ndims < 1 || ndims > LH_H5_MAX_DIMS || ra < 0 || ra >= ndims)
    local = LH_ERROR(LH_ERR_INTERNAL, "bad output shape for '%s' (%d dims, row axis %d)", path,
                     ndims, row_axis);
  if (local == LH_OK) local = lh_alloc(1, sizeof *d, true, "dataset handle", &d);
  LH_TRY(lh_agree(o->comm, local));
  d->comm = o->comm;
  d->file = o->file;
  d->own_file = false;
  d->dset = -1;
  snprintf(d->info.addr.file, sizeof d->info.addr.file, "%s", o->path);
  snprintf(d->info.addr.path, sizeof d->info.addr.path, "%s", path);
  lh_h5_info *in = &d->info;
  in->ndims = ndims;
  in->row_axis = ra;
  in->B = 1;
  in->E = 1;
  bool empty = false;
  hsize_t hd[LH_H5_MAX_DIMS], cd[LH_H5_MAX_DIMS];
  for (int k = 0; k < ndims; k++) {
    in->dims[k] = dims[k];
    hd[k] = (hsize_t)dims[k];
    empty = empty || dims[k] == 0;
    if (k < ra) in->B *= dims[k];
    if (k > ra) in->E *= dims[k];
  }
  in->N = dims[ra];
  in->cls = dt == ELEM_I64 ? LH_H5_INT : LH_H5_FLOAT;
  in->type_size = (int)elem_size(dt);
  in->natural = dt == ELEM_F32 ? LH_F32 : LH_F64;
  /* Chunks: one batch item, as many rows as make ~1 MiB, whole rows (split the first trailing
   * dimension only when one row alone exceeds HDF5's 4 GiB chunk limit). */
  int64_t row_bytes = in->E * in->type_size;
  int64_t rows = row_bytes > 0 ? LH_MAX(CHUNK_TARGET_BYTES / row_bytes, 1) : 1;
  for (int k = 0; k < ndims; k++) cd[k] = k < ra ? 1 : (hsize_t)dims[k];
  cd[ra] = (hsize_t)LH_MIN(rows, LH_MAX(in->N, 1));
  if (row_bytes > (INT64_C(1) << 31) && ra + 1 < ndims)
    cd[ra + 1] = (hsize_t)LH_MAX(dims[ra + 1] / (row_bytes >> 31), 1);
  in->chunked = !empty;
  for (int k = 0; k < ndims; k++) in->chunk[k] = in->chunked ? (int64_t)cd[k] : 0;

  space = H5Screate_simple(ndims, hd, NULL);
  dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (!empty) H5Pset_chunk(dcpl, ndims, cd);
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
  lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t ftype = dt == ELEM_F64 ? H5T_IEEE_F64LE : dt == ELEM_F32 ? H5T_IEEE_F32LE : H5T_STD_I64LE;
  d->dset = H5Dcreate2(o->file, path, ftype, space, lcpl, dcpl, H5P_DEFAULT);
  if (d->dset < 0)
    local = LH_ERROR(LH_ERR_IO, "cannot create dataset '%s' in '%s': %s", path, o->path,
                     hdf5_detail(det));
  LH_TRY(lh_agree(o->comm, local));
  LH_TRY(lh_agree(o->comm, write_provenance(o, d->dset)));
  *out = d;
  d = NULL;
done:
  if (space >= 0) H5Sclose(space);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (lcpl >= 0) H5Pclose(lcpl);
  lh_h5_close(&d);
  return st;
}

lh_status lh_h5_out_dataset(lh_h5_out *o, const char *path, lh_dtype dt, int ndims,
                            const int64_t *dims, int row_axis, lh_h5_dset **out) {
  return create_dataset(o, path, (elem_t)dt, ndims, dims, row_axis, out);
}

lh_status lh_h5_out_dataset_i64(lh_h5_out *o, const char *path, int ndims, const int64_t *dims,
                                int row_axis, lh_h5_dset **out) {
  return create_dataset(o, path, ELEM_I64, ndims, dims, row_axis, out);
}

lh_status lh_h5_out_write_small(lh_h5_out *o, const char *path, lh_dtype dt, int ndims,
                                const int64_t *dims, const double *values) {
  lh_status st = LH_OK, local = LH_OK;
  hid_t space = -1, dset = -1, lcpl = -1, dxpl = -1;
  char det[256];
  int rank;
  MPI_Comm_rank(o->comm, &rank);
  hsize_t hd[LH_H5_MAX_DIMS];
  if (ndims < 0 || ndims > LH_H5_MAX_DIMS)
    local = LH_ERROR(LH_ERR_INTERNAL, "bad rank %d for '%s'", ndims, path);
  LH_TRY(lh_agree(o->comm, local));
  for (int k = 0; k < ndims; k++) hd[k] = (hsize_t)dims[k];
  space = ndims ? H5Screate_simple(ndims, hd, NULL) : H5Screate(H5S_SCALAR);
  lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  dset = H5Dcreate2(o->file, path, dt == LH_F64 ? H5T_IEEE_F64LE : H5T_IEEE_F32LE, space, lcpl,
                    H5P_DEFAULT, H5P_DEFAULT);
  if (dset < 0)
    local = LH_ERROR(LH_ERR_IO, "cannot create dataset '%s' in '%s': %s", path, o->path,
                     hdf5_detail(det));
  LH_TRY(lh_agree(o->comm, local));
  LH_TRY(lh_agree(o->comm, write_provenance(o, dset)));
  dxpl = H5Pcreate(H5P_DATASET_XFER);
  H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
  hid_t fsel = H5Scopy(space), msel = H5Scopy(space);
  if (rank != 0) {
    H5Sselect_none(fsel);
    H5Sselect_none(msel);
  }
  /* values are float64 in memory; HDF5 converts to the stored type */
  herr_t rc = H5Dwrite(dset, H5T_NATIVE_DOUBLE, msel, fsel, dxpl, rank == 0 ? values : NULL);
  H5Sclose(fsel);
  H5Sclose(msel);
  if (rc < 0)
    local = LH_ERROR(LH_ERR_IO, "writing '%s' in '%s' failed: %s", path, o->path, hdf5_detail(det));
  LH_TRY(lh_agree(o->comm, local));
done:
  if (dset >= 0) H5Dclose(dset);
  if (space >= 0) H5Sclose(space);
  if (lcpl >= 0) H5Pclose(lcpl);
  if (dxpl >= 0) H5Pclose(dxpl);
  return st;
}

lh_status lh_h5_out_attr_string(lh_h5_out *o, const char *obj_path, const char *name,
                                const char *value) {
  lh_status local = LH_OK;
  hid_t obj = H5Oopen(o->file, obj_path, H5P_DEFAULT);
  if (obj < 0) {
    char det[256];
    local = LH_ERROR(LH_ERR_IO, "cannot open '%s' in '%s': %s", obj_path, o->path,
                     hdf5_detail(det));
  } else {
    local = write_attr_str(obj, name, value);
    H5Oclose(obj);
  }
  return lh_agree(o->comm, local);
}

/* ---- listing a group ----------------------------------------------------------------------- */

typedef struct name_list {
  char **v;
  int64_t n, cap;
  hid_t group;
  int failed;
} name_list;

static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *li, void *data) {
  name_list *nl = data;
  H5O_info_t oi;
  if (H5Oget_info_by_name2(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
      oi.type != H5O_TYPE_DATASET)
    return 0;
  if (nl->n == nl->cap) {
    int64_t cap = nl->cap ? 2 * nl->cap : 16;
    char **v = NULL;
    if (lh_alloc((size_t)cap, sizeof *v, true, "dataset names", &v) != LH_OK) {
      nl->failed = 1;
      return -1;
    }
    if (nl->n) memcpy(v, nl->v, (size_t)nl->n * sizeof *v);
    lh_free(nl->v);
    nl->v = v;
    nl->cap = cap;
  }
  char *copy = NULL;
  if (lh_alloc(strlen(name) + 1, 1, false, "dataset name", &copy) != LH_OK) {
    nl->failed = 1;
    return -1;
  }
  memcpy(copy, name, strlen(name) + 1);
  nl->v[nl->n++] = copy;
  return 0;
}

/* Natural order: runs of digits compare by value, everything else bytewise. */
static int natural_cmp(const void *pa, const void *pb) {
  const char *a = *(char *const *)pa, *b = *(char *const *)pb;
  while (*a && *b) {
    if (*a >= '0' && *a <= '9' && *b >= '0' && *b <= '9') {
      while (*a == '0') a++;
      while (*b == '0') b++;
      size_t la = 0, lb = 0;
      while (a[la] >= '0' && a[la] <= '9') la++;
      while (b[lb] >= '0' && b[lb] <= '9') lb++;
      if (la != lb) return la < lb ? -1 : 1;
      int c = strncmp(a, b, la);
      if (c) return c;
      a += la;
      b += lb;
    } else {
      if (*a != *b) return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
      a++;
      b++;
    }
  }
  return *a ? 1 : (*b ? -1 : 0);
}

void lh_h5_list_free(char **names, int64_t count) {
  for (int64_t i = 0; names && i < count; i++) lh_free(names[i]);
  lh_free(names);
}

lh_status lh_h5_list(MPI_Comm comm, const char *spec, char ***names, int64_t *count) {
  lh_status st = LH_OK, local = LH_OK;
  lh_h5_addr a;
  hid_t fapl = -1, file = -1, g = -1;
  name_list nl = {0};
  char det[256], **full = NULL;
  int rank;
  MPI_Comm_rank(comm, &rank);
  silence_hdf5();
  /* "FILE.h5:/" is the root group: lh_h5_addr_parse wants a path after the slash */
  const char *colon = strrchr(spec, ':');
  if (colon && strcmp(colon, ":/") == 0) {
    size_t fl = (size_t)(colon - spec);
    if (fl == 0 || fl >= sizeof a.file)
      local = LH_ERROR(LH_ERR_USAGE, "'%s' is not a group address: expected FILE.h5:/group", spec);
    else {
      memcpy(a.file, spec, fl);
      a.file[fl] = '\0';
      snprintf(a.path, sizeof a.path, "/");
    }
  } else {
    local = lh_h5_addr_parse(spec, &a);
  }
  if (local == LH_OK && rank == 0) local = check_input_file(a.file);
  LH_TRY(lh_agree(comm, local));
  fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
  H5Pset_all_coll_metadata_ops(fapl, true);
  file = H5Fopen(a.file, H5F_ACC_RDONLY, fapl);
  if (file < 0) local = LH_ERROR(LH_ERR_IO, "cannot open '%s' with MPI-IO: %s", a.file, hdf5_detail(det));
  LH_TRY(lh_agree(comm, local));
  if (strcmp(a.path, "/") != 0) {
    htri_t ex = H5Lexists(file, a.path, H5P_DEFAULT);
    H5O_info_t oi;
    H5Eclear2(H5E_DEFAULT);
    if (ex <= 0)
      local = LH_ERROR(LH_ERR_KEY, "no group '%s' in '%s'", a.path, a.file);
    else if (H5Oget_info_by_name2(file, a.path, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0 ||
             oi.type != H5O_TYPE_GROUP)
      local = LH_ERROR(LH_ERR_TYPE, "'%s' in '%s' is not a group: expected a group of datasets",
                       a.path, a.file);
  }
  LH_TRY(lh_agree(comm, local));
  g = H5Gopen2(file, a.path, H5P_DEFAULT);
  hsize_t idx = 0;
  if (g < 0 || H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_cb, &nl) < 0 || nl.failed)
    local = nl.failed ? LH_ERROR(LH_ERR_NOMEM, "cannot list '%s'", a.path)
                      : LH_ERROR(LH_ERR_IO, "cannot list '%s' in '%s': %s", a.path, a.file, hdf5_detail(det));
  if (local == LH_OK && nl.n)
    local = lh_alloc((size_t)nl.n, sizeof *full, true, "dataset addresses", &full);
  for (int64_t i = 0; local == LH_OK && i < nl.n; i++) {
    size_t len = strlen(a.file) + strlen(a.path) + strlen(nl.v[i]) + 4;
    local = lh_alloc(len, 1, false, "dataset address", &full[i]);
    if (local == LH_OK)
      snprintf(full[i], len, "%s:%s%s%s", a.file, strcmp(a.path, "/") ? a.path : "", "/", nl.v[i]);
  }
  LH_TRY(lh_agree(comm, local));
  qsort(full, (size_t)nl.n, sizeof *full, natural_cmp);
  *names = full;
  *count = nl.n;
  full = NULL;
done:
  if (full) lh_h5_list_free(full, nl.n);
  lh_h5_list_free(nl.v, nl.n);
  if (g >= 0) H5Gclose(g);
  if (file >= 0) H5Fclose(file);
  if (fapl >= 0) H5Pclose(fapl);
  H5Eclear2(H5E_DEFAULT);
  return st;
}
