/*
 * progress.h: a progress bar with rate and ETA for long work, on rank 0's stderr.
 *
 * Enabled when stderr is a terminal or when the user asked for it (--progress); off on other
 * ranks. On a terminal the line is redrawn in place; otherwise (a SLURM log file) a line is
 * appended every 10% so logs stay short. Updates are rate-limited and cost a clock read.
 * The caller passes a global count when it has one (after a collective step) or its own
 * count: ranks share work evenly, so rank 0's progress stands for the job's.
 */
#ifndef LATENTHOOK_PROGRESS_H
#define LATENTHOOK_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lh_progress {
  bool enabled, tty;
  char label[48];
  char unit[16];
  int64_t total, done;
  double start, last_draw;
  int last_decile;
} lh_progress;

/* Global switch set from the command line (--progress): show even when not a terminal. */
void lh_progress_force(bool on);

/* Starts a bar for `total` units ("rows", "pairs") labelled `label`; shows only on rank
 * `rank` == 0. Local. */
void lh_progress_start(lh_progress *p, int rank, const char *label, const char *unit,
                       int64_t total);

/* Sets the amount done (not an increment). Local. */
void lh_progress_update(lh_progress *p, int64_t done);

/* Draws the final state and ends the line. Local. */
void lh_progress_finish(lh_progress *p);

/* Formats one progress line: "label [#####.....]  42.0%  1.2e+06 rows/s  ETA 0:01:23".
 * Pure; used by the bar and by its tests. Returns buf. */
const char *lh_progress_format(char *buf, size_t cap, const char *label, const char *unit,
                               int64_t done, int64_t total, double elapsed);

#ifdef __cplusplus
}
#endif
#endif
