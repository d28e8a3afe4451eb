/*
 * interrupt.c: the stop flag behind interrupt.h. The handler only stores the signal number in
 * a sig_atomic_t; everything else happens at the checkpoints.
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/interrupt.h"

static volatile sig_atomic_t g_signal;
static bool g_armed;
static struct sigaction g_old_term, g_old_usr1;

static void on_signal(int sig) {
  if (g_signal == 0) g_signal = sig;
}

lh_status lh_interrupt_arm(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  g_signal = 0;
  if (sigaction(SIGTERM, &sa, &g_old_term) != 0)
    return LH_ERROR(LH_ERR_RUNTIME, "cannot install the SIGTERM handler");
  if (sigaction(SIGUSR1, &sa, &g_old_usr1) != 0) {
    sigaction(SIGTERM, &g_old_term, NULL);
    return LH_ERROR(LH_ERR_RUNTIME, "cannot install the SIGUSR1 handler");
  }
  g_armed = true;
  return LH_OK;
}

void lh_interrupt_disarm(void) {
  if (!g_armed) return;
  sigaction(SIGTERM, &g_old_term, NULL);
  sigaction(SIGUSR1, &g_old_usr1, NULL);
  g_armed = false;
}

bool lh_interrupt_armed(void) {
  return g_armed;
}

int lh_interrupt_signal(void) {
  return (int)g_signal;
}

int lh_interrupt_agree(MPI_Comm comm) {
  if (!g_armed) return 0;
  int mine = g_signal > 0 ? (int)g_signal : 1 << 30, any = 0;
  MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MIN, comm);
  return any == 1 << 30 ? 0 : any;
}
