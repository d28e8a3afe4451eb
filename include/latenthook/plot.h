/*
 * plot.h: the PNG figures of LatentHook's reports, drawn with PLplot's C API and its cairo
 * driver ("pngcairo"): similarity heatmaps across layers (CKA, information imbalance),
 * curves per layer (intrinsic dimension, probe accuracy) and histograms (local dimensions).
 *
 * Every figure is LH_PLOT_WIDTH x LH_PLOT_HEIGHT pixels, written under a temporary name beside
 * png_path and renamed into place only once PLplot has finished and the file ends with a PNG
 * IEND chunk: on failure there is no file under the real name and no temporary file. PLplot
 * never ends the process and never writes to stdout here (stdout carries the JSON results):
 * its fatal errors and aborted operations become an lh_status whose message names the figure
 * file; its warnings may still go to stderr. Each call opens a PLplot stream of its own and
 * closes it (also on failure), so figures can be drawn one after another in one process.
 *
 * All functions are Local (one rank draws, usually rank 0) and not thread-safe (PLplot keeps
 * global state). Labels and titles are UTF-8; PLplot's escape character '#' is shown as is.
 * Run-time requirement: the PLplot cairo driver (Debian: plplot-driver-cairo); without it the
 * functions fail with LH_ERR_RUNTIME.
 */
#ifndef LATENTHOOK_PLOT_H
#define LATENTHOOK_PLOT_H

#include <stdint.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define LH_PLOT_WIDTH 900  /* pixels */
#define LH_PLOT_HEIGHT 700 /* pixels */

/* A rows x cols matrix as coloured cells, row 0 at the top. Local.
 * values: rows x cols, row-major. Colours run over [vmin, vmax] (values outside are drawn at
 * the nearest end; a non-finite bound is taken from the finite values); NaN cells are grey. Labels
 * (either array, or any entry, may be NULL: the index is shown) go left of the rows and,
 * rotated, below the columns; a colour bar on the right is labelled value_label; the values
 * are written in the cells when the matrix is at most 12 x 12. rows or cols == 0 draws an
 * empty frame. Errors: LH_ERR_VALUE (negative sizes, more than 10^6 cells, values NULL,
 * vmin > vmax), LH_ERR_IO (folder missing or not writable, incomplete file), LH_ERR_RUNTIME
 * (no pngcairo device, PLplot failed), LH_ERR_NOMEM. */
LH_NODISCARD lh_status lh_plot_heatmap(const char *png_path, int64_t rows, int64_t cols,
                                       const double *values, const char *const *row_labels,
                                       const char *const *col_labels, const char *title,
                                       const char *value_label, double vmin, double vmax);

/* One curve: n points (x[i], y[i]). yerr (may be NULL): half-length of an error bar at each
 * point. xticks (may be NULL): a category label for each x[i] (e.g. layer names), shown on
 * the x axis instead of numbers; NULL entries are skipped. Non-finite points break the curve;
 * a non-finite yerr[i] draws no bar. All arrays are borrowed, n entries each. */
typedef struct lh_plot_series {
  const char *name; /* legend entry (may be NULL) */
  int64_t n;
  const double *x, *y, *yerr;
  const char *const *xticks;
} lh_plot_series;

/* Curves on one pair of axes, with points, error bars when yerr is given, and a legend on the
 * right when nseries > 1. If any series has xticks, the x axis shows their labels at those x
 * (the first label given for an x wins; thinned when they would overlap) instead of numbers.
 * nseries == 0 or nothing finite draws an empty frame marked "no data". Local.
 * Errors: LH_ERR_VALUE (nseries < 0, series NULL, n < 0 or > INT32_MAX, x or y NULL with
 * n > 0), LH_ERR_IO, LH_ERR_RUNTIME, LH_ERR_NOMEM as for lh_plot_heatmap. */
LH_NODISCARD lh_status lh_plot_lines(const char *png_path, const char *title, const char *xlabel,
                                     const char *ylabel, int nseries,
                                     const lh_plot_series *series);

/* A histogram of values[0 .. n) over [min, max] of the finite values in `bins` equal bins
 * (bins <= 0: Sturges' rule, 1 + ceil(log2 m) for m finite values). Non-finite values are
 * skipped and their count is added to the title; no finite value draws an empty frame. Local.
 * Errors: LH_ERR_VALUE (n < 0, values NULL with n > 0, bins > 100000), LH_ERR_IO,
 * LH_ERR_RUNTIME, LH_ERR_NOMEM as for lh_plot_heatmap. */
LH_NODISCARD lh_status lh_plot_histogram(const char *png_path, const char *title,
                                         const char *xlabel, int64_t n, const double *values,
                                         int bins);

#ifdef __cplusplus
}
#endif
#endif
