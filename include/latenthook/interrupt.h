/*
 * interrupt.h: stop requests at checkpoints (SIGTERM, SIGUSR1).
 *
 * A batch job that SLURM is about to kill at its time limit gets a signal first (sbatch
 * --signal). Once lh_interrupt_arm() has installed the handlers, SIGTERM and SIGUSR1 only set
 * a flag; long-running collective loops ask lh_interrupt_agree() at their checkpoints whether
 * any rank got one, and stop there with LH_ERR_INTERRUPTED, leaving nothing half written.
 * Without arming, the signals keep their default actions and lh_interrupt_agree() costs
 * nothing (no collective).
 */
#ifndef LATENTHOOK_INTERRUPT_H
#define LATENTHOOK_INTERRUPT_H

#include <stdbool.h>

#include <mpi.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Installs the handlers (SA_RESTART: system calls are not interrupted) and clears the flag.
 * Local; call it on every rank. Errors: LH_ERR_RUNTIME if sigaction fails. */
LH_NODISCARD lh_status lh_interrupt_arm(void);

/* Restores the previous actions. Local. */
void lh_interrupt_disarm(void);

/* True when armed. Local, async-signal-safe reads only. */
bool lh_interrupt_armed(void);

/* The signal received on this rank since arming (0: none). Local. */
int lh_interrupt_signal(void);

/* Whether any rank of comm received a stop signal: the lowest signal number seen, or 0.
 * Collective over comm when armed (one MPI_Allreduce of an int); 0 without a collective when
 * not armed (every rank must then be unarmed). */
int lh_interrupt_agree(MPI_Comm comm);

#ifdef __cplusplus
}
#endif
#endif
