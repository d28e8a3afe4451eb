/*
 * progress.c: the rank-0 progress bar (see progress.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "latenthook/progress.h"
#include "latenthook/timer.h"

static bool g_force;

void lh_progress_force(bool on) { g_force = on; }

static void fmt_hms(char *buf, size_t cap, double s) {
  if (!(s >= 0) || s > 360000.0) {
    snprintf(buf, cap, "--:--:--");
    return;
  }
  long t = (long)(s + 0.5);
  snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

const char *lh_progress_format(char *buf, size_t cap, const char *label, const char *unit,
                               int64_t done, int64_t total, double elapsed) {
  enum { WIDTH = 24 };
  double frac = total > 0 ? (double)done / (double)total : 1.0;
  if (frac < 0) frac = 0;
  if (frac > 1) frac = 1;
  char bar[WIDTH + 1];
  int fill = (int)(frac * WIDTH);
  for (int i = 0; i < WIDTH; i++) bar[i] = i < fill ? '#' : '.';
  bar[WIDTH] = '\0';
  double rate = elapsed > 0 ? (double)done / elapsed : 0.0;
  char eta[64];
  if (done >= total)
    fmt_hms(eta, sizeof eta, elapsed);
  else
    fmt_hms(eta, sizeof eta, rate > 0 ? (double)(total - done) / rate : -1.0);
  snprintf(buf, cap, "%s [%s] %5.1f%%  %.3g %s/s  %s %s", label, bar, 100.0 * frac, rate, unit,
           done >= total ? "took" : "ETA", eta);
  return buf;
}

void lh_progress_start(lh_progress *p, int rank, const char *label, const char *unit,
                       int64_t total) {
  memset(p, 0, sizeof *p);
  p->tty = isatty(STDERR_FILENO) == 1;
  p->enabled = rank == 0 && (g_force || p->tty);
  snprintf(p->label, sizeof p->label, "%s", label);
  snprintf(p->unit, sizeof p->unit, "%s", unit);
  p->total = total;
  p->start = p->last_draw = lh_wtime();
  p->last_decile = -1;
}

static void draw(lh_progress *p, bool final) {
  char line[256];
  lh_progress_format(line, sizeof line, p->label, p->unit, p->done, p->total,
                     lh_wtime() - p->start);
  if (p->tty)
    fprintf(stderr, "\r%s%s", line, final ? "\n" : "");
  else
    fprintf(stderr, "%s\n", line);
  fflush(stderr);
}

void lh_progress_update(lh_progress *p, int64_t done) {
  if (!p->enabled) return;
  p->done = done;
  double now = lh_wtime();
  if (p->tty) {
    if (now - p->last_draw < 0.2) return;
    p->last_draw = now;
    draw(p, false);
  } else {
    int decile = p->total > 0 ? (int)(10 * done / p->total) : 10;
    if (decile <= p->last_decile || decile >= 10) return;
    p->last_decile = decile;
    draw(p, false);
  }
}

void lh_progress_finish(lh_progress *p) {
  if (!p->enabled) return;
  p->done = p->total;
  draw(p, true);
  p->enabled = false;
}
