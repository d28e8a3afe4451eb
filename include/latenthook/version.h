/*
 * version.h: LatentHook's version and the provenance recorded with every output.
 *
 * Every HDF5 file and dataset LatentHook writes carries the command line that produced it,
 * the LatentHook version, the number of MPI ranks and the time of writing, so that a result
 * found months later in a pipeline's output folder says where it came from.
 */
#ifndef LATENTHOOK_VERSION_H
#define LATENTHOOK_VERSION_H

#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* "0.1.0". Pure. */
const char *lh_version(void);

/* Records the command line (rank 0's argv, shell-quoted) for provenance. Collective.
 * Without it, the command line recorded is "(library call)". */
LH_NODISCARD lh_status lh_provenance_init(MPI_Comm comm, int argc, char **argv);

/* The recorded command line. Local. */
const char *lh_provenance_command_line(void);

/* The OpenBLAS core in use (openblas_get_corename), e.g. "Haswell". Local. */
const char *lh_blas_core(void);

#ifdef __cplusplus
}
#endif
#endif
