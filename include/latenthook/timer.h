/*
 * timer.h: named timing events and the --log-view report.
 *
 * Code brackets its phases with lh_event_begin/lh_event_end on a named event; each rank
 * accumulates wall time and call counts. lh_log_view() prints, on rank 0, one line per event
 * with the call count and the max / min / average time over ranks and the max/min ratio (the
 * load imbalance), like PETSc's -log_view. Events are registered lazily by name, so ranks
 * that never enter a phase report zero for it.
 */
#ifndef LATENTHOOK_TIMER_H
#define LATENTHOOK_TIMER_H

#include <stdio.h>
#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef int lh_event;

/* Returns the id of the event called `name`, registering it on first use. Local.
 * Returns -1 (and the event is then ignored) if the table of 128 events is full. */
lh_event lh_event_get(const char *name);

/* Starts / stops timing event `ev`. Nesting different events is fine. Local. */
void lh_event_begin(lh_event ev);
void lh_event_end(lh_event ev);

/* Seconds accumulated by `ev` on this rank. Local. */
double lh_event_seconds(lh_event ev);

/* Prints the event table on rank 0 to `f`. Collective over `comm`. */
LH_NODISCARD lh_status lh_log_view(MPI_Comm comm, FILE *f);

/* Wall-clock seconds since an arbitrary origin (MPI_Wtime if MPI is initialised). Local. */
double lh_wtime(void);

#ifdef __cplusplus
}
#endif
#endif
