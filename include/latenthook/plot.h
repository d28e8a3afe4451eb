/*
 * plot.h: the PNG figures of LatentHook's reports, drawn with PLplot (Debian's libplplot,
 * cairo driver): similarity heatmaps across layers, curves per layer (intrinsic dimension,
 * probe accuracy), histograms (local dimensions).
 *
 * Every function writes the image under a temporary name beside `png_path` and renames it
 * into place only when complete. They are Local: one rank (usually rank 0) draws. PLplot never
 * writes to stdout here and a PLplot failure becomes an lh_status instead of ending the
 * process.
 */
#ifndef LATENTHOOK_PLOT_H
#define LATENTHOOK_PLOT_H

#include <stdint.h>

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A rows x cols matrix (row-major) as coloured cells between vmin and vmax (NaN cells grey),
 * with row and column labels (either may be NULL), a colour bar labelled `value_label`, and
 * the values printed in the cells when the matrix is at most 12 x 12. Local.
 * Errors: LH_ERR_IO (folder missing or not writable, drawing failed), LH_ERR_VALUE. */
LH_NODISCARD lh_status lh_plot_heatmap(const char *png_path, int64_t rows, int64_t cols,
                                       const double *values, const char *const *row_labels,
                                       const char *const *col_labels, const char *title,
                                       const char *value_label, double vmin, double vmax);

/* One curve of a line plot: n points (x, y), optional error bars yerr (NULL for none). */
typedef struct lh_plot_series {
  const char *name;
  int64_t n;
  const double *x, *y, *yerr;
} lh_plot_series;

/* Curves over a shared x axis, a legend when there are several, and x tick labels (xticks,
 * one per integer x from 0, e.g. layer names) when xticks is non-NULL. Non-finite points are
 * skipped. Local. */
LH_NODISCARD lh_status lh_plot_lines(const char *png_path, const char *title, const char *xlabel,
                                     const char *ylabel, int nseries,
                                     const lh_plot_series *series, const char *const *xticks,
                                     int64_t nxticks);

/* A histogram of n values in `bins` bins; non-finite values are skipped and counted in the
 * title. Local. */
LH_NODISCARD lh_status lh_plot_histogram(const char *png_path, const char *title,
                                         const char *xlabel, int64_t n, const double *values,
                                         int bins);

#ifdef __cplusplus
}
#endif
#endif
