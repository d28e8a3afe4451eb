/*
 * plot.c: PNG figures through PLplot's C API and its cairo driver (see plot.h).
 *
 * PLplot ends the process (exit) on a fatal error unless its exit handler jumps away: each
 * figure is drawn inside a setjmp frame that the handler longjmps to, so a failure becomes an
 * lh_status. Inputs are validated before PLplot is called, so that path is for the
 * unexpected (the driver cannot write, fonts missing).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <libgen.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <plplot.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/plot.h"

static jmp_buf g_jump;
static char g_plmsg[512];

static int on_exit_request(const char *msg) {
  snprintf(g_plmsg, sizeof g_plmsg, "%s", msg ? msg : "PLplot error");
  longjmp(g_jump, 1);
  return 0; /* not reached */
}

static void on_abort(const char *msg) {
  snprintf(g_plmsg, sizeof g_plmsg, "%s", msg ? msg : "PLplot warning");
}

/* Checks the destination folder and names the temporary file beside it. */
static lh_status prepare_path(const char *png, char *tmp, size_t cap) {
  char dir[4096];
  snprintf(dir, sizeof dir, "%s", png);
  const char *d = dirname(dir);
  struct stat sb;
  if (stat(d, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return LH_ERROR(LH_ERR_IO, "cannot write '%s': folder '%s' does not exist", png, d);
  if (access(d, W_OK | X_OK) != 0)
    return LH_ERROR(LH_ERR_IO, "cannot write '%s': folder '%s' is not writable (%s)", png, d,
                    strerror(errno));
  snprintf(tmp, cap, "%s.tmp-%ld.png", png, (long)getpid());
  return LH_OK;
}

/* Opens a PLplot stream on the temporary file: 900 x 700, white background, black text. */
static void open_stream(const char *tmp) {
  plsexit(on_exit_request);
  plsabort(on_abort);
  plsdev("pngcairo");
  plsfnam(tmp);
  plsetopt("geometry", "900x700");
  plscolbg(255, 255, 255);
  plinit();
  plscol0(1, 0, 0, 0); /* colour 1: black for axes and text */
  plcol0(1);
}

/* Closes the stream and moves the finished file into place. */
static lh_status finish(const char *tmp, const char *png) {
  plend1();
  struct stat sb;
  if (stat(tmp, &sb) != 0 || sb.st_size == 0) {
    unlink(tmp);
    return LH_ERROR(LH_ERR_IO, "drawing '%s' failed: PLplot wrote no image%s%s", png,
                    g_plmsg[0] ? ": " : "", g_plmsg);
  }
  if (rename(tmp, png) != 0) {
    int e = errno;
    unlink(tmp);
    return LH_ERROR(LH_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, png, strerror(e));
  }
  return LH_OK;
}

static lh_status failed(const char *tmp, const char *png) {
  unlink(tmp);
  return LH_ERROR(LH_ERR_IO, "drawing '%s' failed: %s", png, g_plmsg);
}

/* Runs one drawing inside the setjmp frame PLplot's exit handler returns to. Only the
 * arguments (never modified afterwards) live across the jump. */
typedef void (*draw_fn)(const void *ctx);

static lh_status draw(const char *png_path, draw_fn fn, const void *ctx) {
  char tmp[4200];
  lh_status st = prepare_path(png_path, tmp, sizeof tmp);
  if (st != LH_OK) return st;
  g_plmsg[0] = '\0';
  if (setjmp(g_jump)) return failed(tmp, png_path);
  open_stream(tmp);
  fn(ctx);
  return finish(tmp, png_path);
}

/* A perceptually ordered blue-green-yellow colour map (after matplotlib's viridis). */
static void set_cmap1(void) {
  PLFLT pos[5] = {0.0, 0.25, 0.5, 0.75, 1.0};
  PLFLT r[5] = {0.267, 0.230, 0.128, 0.369, 0.993};
  PLFLT g[5] = {0.005, 0.322, 0.567, 0.789, 0.906};
  PLFLT b[5] = {0.329, 0.546, 0.551, 0.383, 0.144};
  plscmap1l(1, 5, pos, r, g, b, NULL);
}

typedef struct heat_ctx {
  int64_t rows, cols;
  const double *values;
  const char *const *row_labels, *const *col_labels;
  const char *title, *value_label;
  double vmin, vmax;
} heat_ctx;

static void draw_heatmap(const void *p) {
  const heat_ctx *h = p;
  const int64_t rows = h->rows, cols = h->cols;
  const double vmin = h->vmin, vmax = h->vmax;
  set_cmap1();
  plscol0(15, 190, 190, 190); /* NaN cells */
  pladv(0);
  plvpor(0.22, 0.80, 0.20, 0.88);
  plwind(0.0, (PLFLT)cols, 0.0, (PLFLT)rows);
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < cols; j++) {
      double v = h->values[i * cols + j];
      PLFLT x[4] = {(PLFLT)j, (PLFLT)(j + 1), (PLFLT)(j + 1), (PLFLT)j};
      PLFLT y0 = (PLFLT)(rows - 1 - i), y[4] = {y0, y0, y0 + 1, y0 + 1};
      if (isfinite(v)) {
        double t = (v - vmin) / (vmax - vmin);
        plcol1(t < 0 ? 0 : (t > 1 ? 1 : t));
      } else {
        plcol0(15);
      }
      plfill(4, x, y);
    }
  plcol0(1);
  plbox("bc", 0.0, 0, "bc", 0.0, 0);
  plschr(0.0, rows > 24 || cols > 24 ? 0.5 : 0.8);
  for (int64_t i = 0; h->row_labels && i < rows; i++)
    plmtex("l", 0.8, (PLFLT)((rows - i - 0.5) / rows), 1.0, h->row_labels[i]);
  for (int64_t j = 0; h->col_labels && j < cols; j++)
    plmtex("bv", 0.8, (PLFLT)((j + 0.5) / cols), 1.0, h->col_labels[j]);
  if (rows <= 12 && cols <= 12) { /* the values, dark on light cells and light on dark */
    plschr(0.0, 0.7);
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) {
        double v = h->values[i * cols + j];
        char txt[32];
        snprintf(txt, sizeof txt, isfinite(v) ? "%.2f" : "nan", v);
        double t = isfinite(v) ? (v - vmin) / (vmax - vmin) : 0.5;
        int c = t > 0.6 ? 0 : 255;
        plscol0(14, c, c, c);
        plcol0(14);
        plptex((PLFLT)j + 0.5, (PLFLT)(rows - 1 - i) + 0.35, 1.0, 0.0, 0.5, txt);
      }
    plcol0(1);
  }
  plschr(0.0, 1.0);
  pllab("", "", h->title ? h->title : "");
  /* colour bar on the right */
  PLFLT cw, chh, vals[2] = {vmin, vmax};
  const PLFLT *valp[1] = {vals};
  PLINT n_values[1] = {2}, label_opts[1] = {PL_COLORBAR_LABEL_RIGHT}, sub_ticks[1] = {0};
  PLFLT ticks[1] = {0.0};
  const char *labels[1] = {h->value_label ? h->value_label : ""}, *axis_opts[1] = {"bcvtm"};
  plcolorbar(&cw, &chh, PL_COLORBAR_GRADIENT, PL_POSITION_RIGHT | PL_POSITION_VIEWPORT, 0.04,
             0.0, 0.04, 0.9, 0, 1, 1, 0.0, 0.0, 0, 0.0, 1, label_opts, labels, 1, axis_opts,
             ticks, sub_ticks, n_values, valp);
}

lh_status lh_plot_heatmap(const char *png_path, int64_t rows, int64_t cols, const double *values,
                          const char *const *row_labels, const char *const *col_labels,
                          const char *title, const char *value_label, double vmin, double vmax) {
  if (rows < 1 || cols < 1 || rows > 4096 || cols > 4096)
    return LH_ERROR(LH_ERR_VALUE, "heatmap '%s': %lld x %lld cells, expected 1..4096 each",
                    png_path, (long long)rows, (long long)cols);
  heat_ctx h = {rows, cols, values, row_labels, col_labels, title, value_label, vmin,
                vmax > vmin ? vmax : vmin + 1.0};
  return draw(png_path, draw_heatmap, &h);
}

typedef struct lines_ctx {
  const char *title, *xlabel, *ylabel;
  int nseries;
  const lh_plot_series *series;
  const char *const *xticks;
  int64_t nxticks;
  double x0, x1, y0, y1; /* data range, padded */
  PLFLT *px, *py;        /* scratch for one series */
} lines_ctx;

static void draw_lines(const void *p) {
  const lines_ctx *c = p;
  static const int rgb[8][3] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
                                {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}};
  for (int k = 0; k < 8; k++) plscol0(2 + k, rgb[k][0], rgb[k][1], rgb[k][2]);
  pladv(0);
  plvpor(0.12, 0.95, c->xticks ? 0.25 : 0.12, 0.90);
  plwind(c->x0, c->x1, c->y0, c->y1);
  plbox(c->xticks ? "bcst" : "bcnst", c->xticks ? 1.0 : 0.0, 0, "bcnstv", 0.0, 0);
  for (int64_t t = 0; c->xticks && t < c->nxticks; t++) {
    PLFLT pos = ((PLFLT)t - c->x0) / (c->x1 - c->x0);
    if (pos >= 0 && pos <= 1) plmtex("bv", 0.8, pos, 1.0, c->xticks[t]);
  }
  pllab(c->xticks ? "" : (c->xlabel ? c->xlabel : ""), c->ylabel ? c->ylabel : "",
        c->title ? c->title : "");
  if (c->xticks && c->xlabel) plmtex("b", 9.0, 0.5, 0.5, c->xlabel);
  for (int s = 0; s < c->nseries; s++) {
    const lh_plot_series *sr = &c->series[s];
    plcol0(2 + s % 8);
    plwidth(2.0);
    PLINT m = 0; /* finite points: a line through them, a symbol on each */
    for (int64_t i = 0; i < sr->n; i++) {
      if (!isfinite(sr->x[i]) || !isfinite(sr->y[i])) continue;
      c->px[m] = sr->x[i];
      c->py[m] = sr->y[i];
      m++;
      if (sr->yerr && isfinite(sr->yerr[i])) {
        PLFLT ex = sr->x[i], lo = sr->y[i] - sr->yerr[i], hi = sr->y[i] + sr->yerr[i];
        plerry(1, &ex, &lo, &hi);
      }
    }
    if (m > 1) plline(m, c->px, c->py);
    if (m > 0) plpoin(m, c->px, c->py, 17);
    if (c->nseries > 1) { /* legend entry, top left */
      double w = c->x1 - c->x0, hgt = c->y1 - c->y0;
      PLFLT lx[2] = {c->x0 + 0.03 * w, c->x0 + 0.09 * w};
      PLFLT ly = c->y1 - (0.06 + 0.06 * s) * hgt, lyv[2] = {ly, ly};
      plline(2, lx, lyv);
      plcol0(1);
      plschr(0.0, 0.8);
      plptex(lx[1] + 0.01 * w, ly, 1.0, 0.0, 0.0, sr->name ? sr->name : "");
      plschr(0.0, 1.0);
    }
    plwidth(1.0);
  }
}

lh_status lh_plot_lines(const char *png_path, const char *title, const char *xlabel,
                        const char *ylabel, int nseries, const lh_plot_series *series,
                        const char *const *xticks, int64_t nxticks) {
  lines_ctx c = {title, xlabel, ylabel, nseries, series, xticks, nxticks,
                 INFINITY, -INFINITY, INFINITY, -INFINITY, NULL, NULL};
  int64_t most = 1;
  for (int s = 0; s < nseries; s++) {
    most = series[s].n > most ? series[s].n : most;
    for (int64_t i = 0; i < series[s].n; i++) {
      double x = series[s].x[i], y = series[s].y[i], e = series[s].yerr ? series[s].yerr[i] : 0;
      if (!isfinite(x) || !isfinite(y)) continue;
      if (!isfinite(e)) e = 0;
      c.x0 = fmin(c.x0, x);
      c.x1 = fmax(c.x1, x);
      c.y0 = fmin(c.y0, y - e);
      c.y1 = fmax(c.y1, y + e);
    }
  }
  if (!(c.x1 >= c.x0)) { /* nothing finite to draw: an empty frame */
    c.x0 = c.y0 = 0;
    c.x1 = c.y1 = 1;
  }
  if (c.x1 == c.x0) {
    c.x0 -= 0.5;
    c.x1 += 0.5;
  }
  if (c.y1 == c.y0) {
    c.y0 -= 0.5;
    c.y1 += 0.5;
  }
  double px = 0.05 * (c.x1 - c.x0), py = 0.08 * (c.y1 - c.y0);
  c.x0 -= px;
  c.x1 += px;
  c.y0 -= py;
  c.y1 += py;
  lh_status st = lh_alloc((size_t)most, sizeof(PLFLT), false, "plot points", &c.px);
  if (st == LH_OK) st = lh_alloc((size_t)most, sizeof(PLFLT), false, "plot points", &c.py);
  if (st == LH_OK) st = draw(png_path, draw_lines, &c);
  lh_free(c.px);
  lh_free(c.py);
  return st;
}

typedef struct hist_ctx {
  const char *title, *xlabel;
  const PLFLT *v;
  PLINT m;
  int bins;
  double lo, hi;
  int64_t top;
} hist_ctx;

static void draw_histogram(const void *p) {
  const hist_ctx *h = p;
  plscol0(2, 31, 119, 180);
  pladv(0);
  plvpor(0.12, 0.95, 0.12, 0.90);
  plwind(h->lo, h->hi, 0.0, 1.08 * (double)h->top);
  plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
  pllab(h->xlabel ? h->xlabel : "", "count", h->title);
  plcol0(2);
  if (h->m > 0) plhist(h->m, h->v, h->lo, h->hi, h->bins, PL_HIST_NOSCALING | PL_HIST_IGNORE_OUTLIERS);
}

lh_status lh_plot_histogram(const char *png_path, const char *title, const char *xlabel,
                            int64_t n, const double *values, int bins) {
  char full[512];
  PLFLT *v = NULL;
  int64_t *cnt = NULL;
  hist_ctx h = {NULL, xlabel, NULL, 0, bins < 1 ? 30 : bins, INFINITY, -INFINITY, 1};
  lh_status st = lh_alloc((size_t)(n ? n : 1), sizeof *v, false, "histogram values", &v);
  if (st == LH_OK) st = lh_alloc((size_t)h.bins, sizeof *cnt, true, "histogram bins", &cnt);
  if (st != LH_OK) goto out;
  int64_t skipped = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(values[i])) {
      skipped++;
      continue;
    }
    v[h.m++] = values[i];
    h.lo = fmin(h.lo, values[i]);
    h.hi = fmax(h.hi, values[i]);
  }
  if (h.m == 0) {
    h.lo = 0;
    h.hi = 1;
  }
  if (h.hi == h.lo) {
    h.lo -= 0.5;
    h.hi += 0.5;
  }
  for (PLINT i = 0; i < h.m; i++) { /* the tallest bin sets the y range */
    int b = (int)((v[i] - h.lo) / (h.hi - h.lo) * h.bins);
    cnt[b < 0 ? 0 : (b >= h.bins ? h.bins - 1 : b)]++;
  }
  for (int b = 0; b < h.bins; b++) h.top = cnt[b] > h.top ? cnt[b] : h.top;
  if (skipped)
    snprintf(full, sizeof full, "%s (%lld non-finite values not shown)", title ? title : "",
             (long long)skipped);
  else
    snprintf(full, sizeof full, "%s", title ? title : "");
  h.title = full;
  h.v = v;
  st = draw(png_path, draw_histogram, &h);
out:
  lh_free(v);
  lh_free(cnt);
  return st;
}
