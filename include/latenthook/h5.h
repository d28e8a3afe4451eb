/*
 * h5.h: parallel HDF5 input and output.
 *
 * Datasets are addressed as "FILE.h5:/path/to/dataset" everywhere (command line, job files).
 * A dataset is read and written as rows: its dimensions are (batch..., N, row...) around a
 * row axis, so that
 *   - an (..., N, D) point cloud (row axis = second last) is B = prod(...) independent
 *     N x D matrices, one lh_dmat per batch item;
 *   - an (N, T) token array or (N,) label vector (row axis = first) is one item of N rows;
 *   - an (..., N) per-point result (row axis = last) has one element per row.
 * E = product of the dimensions after the row axis is the row length.
 *
 * All reads and writes are collective MPI-IO transfers (ranks without rows join with an empty
 * selection); each rank may select a different batch item, which is how batches are spread
 * over ranks. Files are converted on read: float16/32/64 and any integer type to float32 or
 * float64; chunked and compressed datasets are decoded by HDF5 itself.
 *
 * Outputs are written under a temporary name in the destination folder and renamed into
 * place by lh_h5_out_commit() only when complete, so a failed or killed run never leaves a
 * partial file under the real name. Every output file and dataset carries provenance
 * attributes (version.h).
 *
 * Validation failures name the file, the dataset and what was expected: missing file
 * (LH_ERR_IO), not an HDF5 file (LH_ERR_IO), missing dataset (LH_ERR_KEY, listing what the
 * parent group holds), a group where a dataset was expected (LH_ERR_TYPE), non-numeric data
 * (LH_ERR_TYPE), too few dimensions (LH_ERR_VALUE).
 */
#ifndef LATENTHOOK_H5_H
#define LATENTHOOK_H5_H

#include <stdbool.h>
#include <stdint.h>
#include <mpi.h>

#include "latenthook/dmat.h"
#include "latenthook/dtype.h"
#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LH_H5_MAX_DIMS 16
#define LH_H5_PATH_CAP 4096

/* A parsed "FILE:/path" address. */
typedef struct lh_h5_addr {
  char file[LH_H5_PATH_CAP];
  char path[LH_H5_PATH_CAP]; /* always starts with '/' */
} lh_h5_addr;

/* Splits "FILE.h5:/path/to/dataset" at the last ':' followed by '/'. Pure.
 * Fails with LH_ERR_USAGE (saying the expected form) if there is none or a part is empty. */
LH_NODISCARD lh_status lh_h5_addr_parse(const char *spec, lh_h5_addr *out);

typedef enum lh_h5_class { LH_H5_FLOAT, LH_H5_INT, LH_H5_UINT } lh_h5_class;

/* Row axis selectors for lh_h5_open (non-negative values count from the front). */
#define LH_ROWS_LAST (-1)        /* (..., N): one element per row */
#define LH_ROWS_SECOND_LAST (-2) /* (..., N, D): matrices */

/* What a dataset holds and how it is laid out. */
typedef struct lh_h5_info {
  lh_h5_addr addr;
  int ndims;
  int64_t dims[LH_H5_MAX_DIMS];
  int row_axis;       /* index into dims */
  int64_t B, N, E;    /* batch items, rows per item, elements per row */
  lh_h5_class cls;    /* stored element class */
  int type_size;      /* stored bytes per element */
  bool big_endian;
  lh_dtype natural;   /* float64 for float64 and integer data, float32 otherwise */
  bool chunked;
  int64_t chunk[LH_H5_MAX_DIMS];
  char filters[128];  /* "deflate, shuffle" or "" */
} lh_h5_info;

typedef struct lh_h5_dset lh_h5_dset;
typedef struct lh_h5_out lh_h5_out;

/* Opens dataset `spec` read-only on all ranks of `comm`, rows along `row_axis`
 * (LH_ROWS_SECOND_LAST for matrices). Validates that it is a numeric dataset with enough
 * dimensions. Collective. */
LH_NODISCARD lh_status lh_h5_open(MPI_Comm comm, const char *spec, int row_axis,
                                  lh_h5_dset **out);

/* Closes a dataset (and its file when it owns it); accepts NULL. Collective. */
void lh_h5_close(lh_h5_dset **d);

/* Shape and storage of an open dataset. Local. */
const lh_h5_info *lh_h5_dset_info(const lh_h5_dset *d);

/* Reads rows [row0, row0 + nrows) of batch item b into buf (nrows x E, type mt). Collective:
 * every rank of the dataset's communicator calls it, each with its own b, row0 and nrows
 * (nrows = 0 joins with an empty selection). */
LH_NODISCARD lh_status lh_h5_read_rows(lh_h5_dset *d, int64_t b, int64_t row0, int64_t nrows,
                                       lh_dtype mt, void *buf);

/* Reads this rank's rows of batch item b into `m` (which must be N x E). Collective over the
 * dataset's communicator; m may live on a sub-communicator (a different b per group), and a
 * rank with nothing to read passes m = NULL. */
LH_NODISCARD lh_status lh_h5_read_dmat(lh_h5_dset *d, int64_t b, lh_dmat *m);

/* Creates an output file: writes go to a temporary file beside `path` until commit.
 * Fails early (LH_ERR_IO) if the folder does not exist or is not writable. Collective. */
LH_NODISCARD lh_status lh_h5_out_create(MPI_Comm comm, const char *path, lh_h5_out **out);

/* Closes the file and renames it to its final name. Collective; *o becomes NULL. All
 * datasets of the file must be closed. On failure the temporary file is removed. */
LH_NODISCARD lh_status lh_h5_out_commit(lh_h5_out **o);

/* Closes and deletes the temporary file; accepts NULL. Collective. */
void lh_h5_out_discard(lh_h5_out **o);

/* The final path of an output. Local. */
const char *lh_h5_out_path(const lh_h5_out *o);

/* Creates dataset `path` (intermediate groups created) of type `dt` and shape dims[ndims],
 * rows along `row_axis`, chunked, with provenance attributes. Collective. */
LH_NODISCARD lh_status lh_h5_out_dataset(lh_h5_out *o, const char *path, lh_dtype dt, int ndims,
                                         const int64_t *dims, int row_axis, lh_h5_dset **out);

/* Writes rows [row0, row0 + nrows) of batch item b from buf (nrows x E, type mt).
 * Collective, each rank with its own selection. */
LH_NODISCARD lh_status lh_h5_write_rows(lh_h5_dset *d, int64_t b, int64_t row0, int64_t nrows,
                                        lh_dtype mt, const void *buf);

/* Writes this rank's rows of `m` as batch item b. Collective; m = NULL writes nothing. */
LH_NODISCARD lh_status lh_h5_write_dmat(lh_h5_dset *d, int64_t b, const lh_dmat *m);

/* Same for int64 elements (neighbour indices). Collective. */
LH_NODISCARD lh_status lh_h5_out_dataset_i64(lh_h5_out *o, const char *path, int ndims,
                                             const int64_t *dims, int row_axis, lh_h5_dset **out);
LH_NODISCARD lh_status lh_h5_write_rows_i64(lh_h5_dset *d, int64_t b, int64_t row0,
                                            int64_t nrows, const int64_t *buf);

/* Creates and writes a small dataset (ndims = 0: a scalar) of type `dt` from the float64
 * `values` (row-major) held by rank 0; other ranks pass anything. Collective. */
LH_NODISCARD lh_status lh_h5_out_write_small(lh_h5_out *o, const char *path, lh_dtype dt,
                                             int ndims, const int64_t *dims,
                                             const double *values);

/* Attaches a string attribute to the object at `obj_path` ("/" for the file). Collective;
 * the value must be the same on all ranks. */
LH_NODISCARD lh_status lh_h5_out_attr_string(lh_h5_out *o, const char *obj_path,
                                             const char *name, const char *value);

/* The datasets directly inside group `spec` ("FILE.h5:/group", "FILE.h5:/" for the root), in
 * natural order (digit runs compare as numbers: layer2 before layer10). On success *names is
 * an array of *count strings, each a full address "FILE.h5:/group/name", to release with
 * lh_h5_list_free. Collective. Errors: the file errors of lh_h5_open, LH_ERR_KEY for a missing
 * group, LH_ERR_TYPE when the path is a dataset. */
LH_NODISCARD lh_status lh_h5_list(MPI_Comm comm, const char *spec, char ***names, int64_t *count);
void lh_h5_list_free(char **names, int64_t count);

/* "float32", "int64", "uint8", "float16", ... for the stored type. Pure. */
const char *lh_h5_type_name(const lh_h5_info *info, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
