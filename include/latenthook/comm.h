/*
 * comm.h: agreement on failure across the ranks of a communicator.
 *
 * The rule that keeps LatentHook from hanging: a failure that may happen on some ranks only
 * (a missing file on one node, an allocation) is agreed with lh_agree() before the next
 * collective call, so that all ranks either go on together or return the same status
 * together. One rank, the lowest failing rank that holds a message, keeps the message and is
 * the one that prints it; the others forget theirs.
 */
#ifndef LATENTHOOK_COMM_H
#define LATENTHOOK_COMM_H

#include <stdint.h>
#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Agrees on `local` (this rank's status) over `comm` with one allreduce. Collective.
 * Returns LH_OK on every rank if every rank passed LH_OK, otherwise the status of the
 * lowest-ranked failure holding a message (or the lowest-ranked failure) on every rank. */
LH_NODISCARD lh_status lh_agree(MPI_Comm comm, lh_status local);

/* True if this process is the one that must print the agreed message. Local. */
bool lh_error_is_reporter(void);

/* Prints the agreed error message once (by the reporting rank) as
 * "latenthook[: <prefix>]: error (rank R): <message>". Local; prints nothing on other ranks. */
void lh_error_report(const char *prefix);

/* Converts an int64 count to int for an MPI or ScaLAPACK argument. Local.
 * Fails with LH_ERR_VALUE naming `what` when the value does not fit. */
LH_NODISCARD lh_status lh_int_cast(int64_t v, const char *what, int *out);

#ifdef __cplusplus
}
#endif
#endif
