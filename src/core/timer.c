/*
 * timer.c: named events and the max/min/avg report (see timer.h).
 *
 * The report first agrees on the union of event names (rank 0 gathers every rank's names,
 * merges them in first-seen order, broadcasts the list), then reduces the times per name.
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <math.h>
#include <time.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/mem.h"
#include "latenthook/timer.h"

#define MAX_EVENTS 128
#define NAME_CAP 48

static struct {
  char name[NAME_CAP];
  double total, started;
  long long calls;
  int depth;
} g_ev[MAX_EVENTS];
static int g_nev;

double lh_wtime(void) {
  int init = 0;
  MPI_Initialized(&init);
  if (init) return MPI_Wtime();
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lh_event lh_event_get(const char *name) {
  for (int i = 0; i < g_nev; i++)
    if (strncmp(g_ev[i].name, name, NAME_CAP - 1) == 0) return i;
  if (g_nev == MAX_EVENTS) return -1;
  snprintf(g_ev[g_nev].name, NAME_CAP, "%s", name);
  return g_nev++;
}

void lh_event_begin(lh_event ev) {
  if (ev < 0) return;
  if (g_ev[ev].depth++ == 0) g_ev[ev].started = lh_wtime();
}

void lh_event_end(lh_event ev) {
  if (ev < 0 || g_ev[ev].depth == 0) return;
  if (--g_ev[ev].depth == 0) {
    g_ev[ev].total += lh_wtime() - g_ev[ev].started;
    g_ev[ev].calls++;
  }
}

double lh_event_seconds(lh_event ev) { return ev < 0 ? 0.0 : g_ev[ev].total; }

lh_status lh_log_view(MPI_Comm comm, FILE *f) {
  lh_status st = LH_OK, local = LH_OK;
  int rank, P;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &P);
  char *mine = NULL, *all = NULL, names[MAX_EVENTS][NAME_CAP];
  int *counts = NULL, *displs = NULL, nnames = 0;
  double *t = NULL, *tmax = NULL, *tmin = NULL, *tsum = NULL;
  long long *calls = NULL, *cmax = NULL;

  local = lh_alloc((size_t)MAX_EVENTS * NAME_CAP, 1, true, "event names", &mine);
  if (local == LH_OK) local = lh_alloc((size_t)P * 2, sizeof(int), true, "counts", &counts);
  if (local == LH_OK && rank == 0)
    local = lh_alloc((size_t)P * MAX_EVENTS * NAME_CAP, 1, true, "event names", &all);
  if (local == LH_OK) local = lh_alloc(MAX_EVENTS * 4, sizeof(double), true, "times", &t);
  if (local == LH_OK) local = lh_alloc(MAX_EVENTS * 2, sizeof(long long), true, "calls", &calls);
  LH_TRY(lh_agree(comm, local));
  displs = counts + P;
  tmax = t + MAX_EVENTS;
  tmin = t + 2 * MAX_EVENTS;
  tsum = t + 3 * MAX_EVENTS;
  cmax = calls + MAX_EVENTS;
  for (int i = 0; i < g_nev; i++) memcpy(mine + i * NAME_CAP, g_ev[i].name, NAME_CAP);
  int len = g_nev * NAME_CAP;
  MPI_Gather(&len, 1, MPI_INT, counts, 1, MPI_INT, 0, comm);
  if (rank == 0)
    for (int r = 0; r < P; r++) displs[r] = r * MAX_EVENTS * NAME_CAP;
  MPI_Gatherv(mine, len, MPI_CHAR, all, counts, displs, MPI_CHAR, 0, comm);
  if (rank == 0) {
    for (int r = 0; r < P; r++)
      for (int k = 0; k < counts[r] / NAME_CAP; k++) {
        const char *nm = all + displs[r] + k * NAME_CAP;
        bool seen = false;
        for (int q = 0; q < nnames && !seen; q++) seen = strcmp(names[q], nm) == 0;
        if (!seen && nnames < MAX_EVENTS) memcpy(names[nnames++], nm, NAME_CAP);
      }
  }
  MPI_Bcast(&nnames, 1, MPI_INT, 0, comm);
  MPI_Bcast(names, nnames * NAME_CAP, MPI_CHAR, 0, comm);
  for (int q = 0; q < nnames; q++) {
    t[q] = 0;
    calls[q] = 0;
    for (int i = 0; i < g_nev; i++)
      if (strcmp(g_ev[i].name, names[q]) == 0) {
        t[q] = g_ev[i].total;
        calls[q] = g_ev[i].calls;
      }
  }
  MPI_Reduce(t, tmax, nnames, MPI_DOUBLE, MPI_MAX, 0, comm);
  MPI_Reduce(t, tmin, nnames, MPI_DOUBLE, MPI_MIN, 0, comm);
  MPI_Reduce(t, tsum, nnames, MPI_DOUBLE, MPI_SUM, 0, comm);
  MPI_Reduce(calls, cmax, nnames, MPI_LONG_LONG, MPI_MAX, 0, comm);
  double rss = (double)lh_peak_rss_bytes(), rmax = 0, rmin = 0, rsum = 0;
  MPI_Reduce(&rss, &rmax, 1, MPI_DOUBLE, MPI_MAX, 0, comm);
  MPI_Reduce(&rss, &rmin, 1, MPI_DOUBLE, MPI_MIN, 0, comm);
  MPI_Reduce(&rss, &rsum, 1, MPI_DOUBLE, MPI_SUM, 0, comm);
  if (rank == 0) {
    fprintf(f, "--- latenthook log view: %d rank%s ---\n", P, P == 1 ? "" : "s");
    fprintf(f, "%-32s %8s %12s %12s %12s %7s\n", "event", "calls", "max (s)", "min (s)",
            "avg (s)", "max/min");
    for (int q = 0; q < nnames; q++) {
      double ratio = tmin[q] > 0 ? tmax[q] / tmin[q] : (tmax[q] > 0 ? INFINITY : 1.0);
      fprintf(f, "%-32s %8lld %12.4f %12.4f %12.4f %7.2f\n", names[q], cmax[q], tmax[q],
              tmin[q], tsum[q] / P, ratio);
    }
    char b1[32], b2[32], b3[32];
    fprintf(f, "%-32s %8s %12s %12s %12s\n", "peak memory per rank", "",
            lh_format_bytes(rmax, b1, sizeof b1), lh_format_bytes(rmin, b2, sizeof b2),
            lh_format_bytes(rsum / P, b3, sizeof b3));
    fflush(f);
  }
done:
  lh_free(mine);
  lh_free(all);
  lh_free(counts);
  lh_free(t);
  lh_free(calls);
  return st;
}
