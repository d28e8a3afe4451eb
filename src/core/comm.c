/*
 * comm.c: collective agreement on failure (see comm.h).
 *
 * One MPI_Allreduce(MIN) over a 64-bit key orders the failures: ranks holding a message come
 * first, then lower ranks; the key carries the status, so every rank learns the same status
 * and which rank reports it, in one collective.
 */
#include <limits.h>
#include <stdio.h>

#include "core/check.h"
#include "latenthook/log.h"
#include "latenthook/comm.h"

static bool g_reporter;

lh_status lh_agree(MPI_Comm comm, lh_status local) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  /* bit 62: "has no message"; bits 16..61: rank; bits 0..15: status */
  int64_t key = INT64_MAX;
  if (local != LH_OK) {
    int64_t nomsg = lh_error_pending() ? 0 : 1;
    key = (nomsg << 62) | ((int64_t)rank << 16) | (int64_t)local;
  }
  int64_t agreed = INT64_MAX;
  MPI_Allreduce(&key, &agreed, 1, MPI_INT64_T, MPI_MIN, comm);
  if (agreed == INT64_MAX) return LH_OK;
  lh_status st = (lh_status)(agreed & 0xffff);
  int reporter = (int)((agreed >> 16) & ((INT64_C(1) << 46) - 1));
  if (reporter == rank) {
    g_reporter = true;
    if (!lh_error_pending())
      lh_error_set(st, __FILE__, __LINE__, "failed without a message (%s)", lh_status_name(st));
  } else {
    /* Someone else prints; our own message (if any) would be a duplicate or a consequence. */
    if (lh_error_pending()) lh_log_debug("suppressed on this rank: %s", lh_error_message());
    lh_error_clear();
    g_reporter = false;
  }
  return st;
}

bool lh_error_is_reporter(void) { return g_reporter && lh_error_pending(); }

void lh_error_report(const char *prefix) {
  if (!lh_error_is_reporter()) return;
  int rank = 0, initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (prefix && prefix[0])
    fprintf(stderr, "latenthook %s: error (rank %d): %s\n", prefix, rank, lh_error_message());
  else
    fprintf(stderr, "latenthook: error (rank %d): %s\n", rank, lh_error_message());
  lh_log_debug("error raised at %s", lh_error_origin());
  fflush(stderr);
}

lh_status lh_int_cast(int64_t v, const char *what, int *out) {
  if (v < INT_MIN || v > INT_MAX)
    return LH_ERROR(LH_ERR_VALUE, "%s = %lld does not fit a 32-bit MPI/ScaLAPACK integer",
                    what, (long long)v);
  *out = (int)v;
  return LH_OK;
}
