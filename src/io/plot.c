/*
 * plot.c: PNG figures through PLplot's C API and its pngcairo device (see plot.h).
 *
 * PLplot reports trouble in three ways: plexit() for fatal errors, which calls the exit
 * handler and then exit(); plabort() for a refused operation, which calls the abort handler
 * and then prints to stderr unless plsError() gave it a buffer; plwarn(), which only prints to
 * stderr. So each figure is drawn inside a setjmp frame: the exit handler (plsexit) records
 * the message and jumps back instead of returning, the abort handler (plsabort) and the
 * plsError buffer record refused operations, and the figure fails with that message after its
 * stream is closed. PLplot also prompts on stdout for a device that is not installed and, when
 * it cannot open its output file, retries, prints and exits; so the pngcairo device is looked
 * up first (plgDevs) and the temporary file is created here before PLplot reopens it.
 *
 * A jump can leak what the interrupted PLplot call allocated, never ours: everything a figure
 * needs (transposed matrix, points, bins, legend texts) is allocated before the frame and
 * freed after it, and the draw_* functions only compute layout and call PLplot.
 *
 * Layout is in millimetres of PLplot's page (900 x 700 pixels at 72 dpi, 317.5 x 246.9 mm),
 * with label widths estimated from the character height (PLplot 5.15 cannot measure text).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <plplot.h>

#include "core/check.h"
#include "latenthook/mem.h"
#include "latenthook/plot.h"

#define PATH_CAP 4096
#define TEXT_CAP 512         /* one label or title, escaped */
#define LABEL_KEEP 28        /* characters of a tick label kept (the end of a long name) */
#define HEAT_MAX_CELLS 1000000
#define HEAT_VALUES_MAX 12   /* values are written in cells up to this many rows and columns */
#define HIST_MAX_BINS 100000
#define TEXT_SCALE 0.72      /* PLplot's default 5.6 mm characters are too large at 900 px */
#define CHAR_ASPECT 0.78     /* estimated glyph width / PLplot character height (DejaVu) */

/* Colour map 0. */
enum {
  C_BG, C_FG, C_NAN, C_GRID, C_MUTED, C_WHITE, C_HIST_FILL, C_HIST_EDGE,
  C_SERIES /* C_SERIES + k, k < NSERIES_COLOURS */
};
#define NSERIES_COLOURS 10

/* What PLplot said during the current figure. */
static struct {
  jmp_buf jump;
  volatile int armed; /* the exit handler may jump to `jump` */
  char msg[512];      /* the first complaint, from either handler */
  PLINT errcode;      /* plsError targets: plabort() sets errcode and sprintf()s into errmsg */
  char errmsg[4096];
} pl;

static void note(const char *msg) {
  if (pl.msg[0]) return;
  snprintf(pl.msg, sizeof pl.msg, "%s", msg && *msg ? msg : "unknown error");
  size_t len = strlen(pl.msg);
  while (len > 0 && (pl.msg[len - 1] == '\n' || pl.msg[len - 1] == ' ')) pl.msg[--len] = '\0';
}

static int on_plexit(const char *msg) {
  note(msg);
  if (pl.armed) {
    pl.armed = 0;
    longjmp(pl.jump, 1);
  }
  return 1; /* outside a figure: PLplot's own behaviour (it exits) */
}

static void on_plabort(const char *msg) { note(msg); }

/* ---- text ---------------------------------------------------------------------------------- */

static size_t utf8_len(unsigned char lead) {
  return lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
}

static size_t utf8_chars(const char *s) {
  size_t n = 0;
  for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
  return n;
}

/* s made safe for PLplot: '#' (its escape character) doubled, NULL as "", and text longer than
 * `keep` characters (0: no limit) cut to its last keep - 1 behind an ellipsis, since layer
 * names differ at their ends. Pure. */
static const char *safe_text(char *buf, size_t cap, const char *s, size_t keep) {
  size_t o = 0;
  if (!s) s = "";
  if (keep > 1 && utf8_chars(s) > keep) {
    for (size_t skip = utf8_chars(s) - (keep - 1); skip > 0; skip--) s += utf8_len((unsigned char)*s);
    memcpy(buf, "\xE2\x80\xA6", 3);
    o = 3;
  }
  while (*s) {
    size_t len = utf8_len((unsigned char)*s), need = *s == '#' ? 2 : len;
    if (o + need >= cap) break;
    if (*s == '#') buf[o++] = '#';
    for (size_t k = 0; k < len && s[k]; k++) buf[o++] = s[k];
    s += len;
  }
  buf[o] = '\0';
  return buf;
}

/* Current character height in mm. */
static double char_mm(void) {
  PLFLT def, ht;
  plgchr(&def, &ht);
  return ht;
}

static double clampd(double v, double lo, double hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Every how many of n labels one is shown when each needs `need` mm and has `slot` mm. */
static int64_t label_stride(double need, double slot, int64_t n) {
  if (slot >= need) return 1;
  if (!(slot > 0.0)) return LH_MAX(n, (int64_t)1);
  return (int64_t)clampd(ceil(need / slot), 1.0, (double)LH_MAX(n, (int64_t)1));
}

/* ---- one figure ---------------------------------------------------------------------------- */

typedef void draw_fn(const void *fig);

static bool have_pngcairo(void) {
  const char *menu[128], *name[128];
  const char **pm = menu, **pn = name;
  int n = 128;
  plgDevs(&pm, &pn, &n);
  for (int i = 0; i < n; i++)
    if (name[i] && strcmp(name[i], "pngcairo") == 0) return true;
  return false;
}

/* Creates an empty file under a fresh temporary name beside png, so that a missing or
 * read-only folder is reported here with its reason. */
static lh_status create_tmp(const char *png, char *tmp, size_t cap) {
  static unsigned serial;
  for (int attempt = 0; attempt < 100; attempt++) {
    int len = snprintf(tmp, cap, "%s.tmp-%ld-%u", png, (long)getpid(), serial++);
    if (len < 0 || (size_t)len >= cap)
      return LH_ERROR(LH_ERR_VALUE, "figure path '%s' is too long", png);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      close(fd);
      return LH_OK;
    }
    if (errno != EEXIST)
      return LH_ERROR(LH_ERR_IO, "cannot write figure '%s': cannot create '%s': %s", png, tmp,
                      strerror(errno));
  }
  return LH_ERROR(LH_ERR_IO, "cannot write figure '%s': no free temporary name", png);
}

/* Checks that PLplot wrote a whole PNG: the signature first and the IEND chunk last. */
static lh_status check_png(const char *png, const char *tmp) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  unsigned char head[8], tail[12];
  long size = -1;
  bool ok = false;
  FILE *f = fopen(tmp, "rb");
  if (f) {
    ok = fread(head, 1, 8, f) == 8 && fseek(f, -12, SEEK_END) == 0 && fread(tail, 1, 12, f) == 12;
    if (fseek(f, 0, SEEK_END) == 0) size = ftell(f);
    fclose(f);
  }
  if (!ok || memcmp(head, sig, 8) != 0 || memcmp(tail, iend, 12) != 0)
    return LH_ERROR(LH_ERR_IO, "cannot write figure '%s': PLplot left an incomplete PNG in '%s' "
                    "(%ld bytes; disk full?)", png, tmp, size);
  return LH_OK;
}

/* The palette: white background, black text, then the figure colours. */
static void set_palette(void) {
  static const PLINT rgb[C_SERIES + NSERIES_COLOURS][3] = {
      {255, 255, 255}, {0, 0, 0},       {200, 200, 200}, {228, 228, 228}, {90, 90, 90},
      {255, 255, 255}, {158, 202, 225}, {33, 102, 172},
      /* series: matplotlib's tab10 */
      {31, 119, 180},  {255, 127, 14},  {44, 160, 44},   {214, 39, 40},   {148, 103, 189},
      {140, 86, 75},   {227, 119, 194}, {127, 127, 127}, {188, 189, 34},  {23, 190, 207}};
  enum { N = C_SERIES + NSERIES_COLOURS };
  PLINT r[N], g[N], b[N];
  for (int i = 0; i < N; i++) {
    r[i] = rgb[i][0];
    g[i] = rgb[i][1];
    b[i] = rgb[i][2];
  }
  plscmap0(r, g, b, N);
}

/* Draws one figure into png: a new PLplot stream on a temporary file, draw(fig), the stream
 * closed, the file checked and renamed into place. On failure nothing is left behind and the
 * stream is closed. The caller's current PLplot stream is restored. */
static lh_status render(const char *png, draw_fn *draw, const void *fig) {
  lh_status st = LH_OK;
  char tmp[PATH_CAP];
  bool have_tmp = false;
  volatile int device = 1, stream = 0; /* stream: 0 none, 1 open, 2 closing */
  PLINT prev = 0;
  LH_TRY(create_tmp(png, tmp, sizeof tmp));
  have_tmp = true;
  pl.msg[0] = pl.errmsg[0] = '\0';
  pl.errcode = 0;
  plsexit(on_plexit);
  plsabort(on_plabort);
  plgstrm(&prev);
  if (setjmp(pl.jump) == 0) {
    pl.armed = 1;
    if (!have_pngcairo()) {
      device = 0;
    } else {
      PLINT strm = -1;
      plmkstrm(&strm);
      if (strm >= 0) {
        stream = 1;
        plsError(&pl.errcode, pl.errmsg);
        plsdev("pngcairo");
        plsfnam(tmp);
        plspage(0.0, 0.0, LH_PLOT_WIDTH, LH_PLOT_HEIGHT, 0, 0);
        set_palette();
        plinit();
        plschr(0.0, TEXT_SCALE);
        draw(fig);
        stream = 2;
        plend1();
        stream = 0;
      } else {
        note("plmkstrm: no free PLplot stream");
      }
    }
  } else if (stream == 1) { /* PLplot wanted to exit while drawing: close its stream */
    stream = 2;
    if (setjmp(pl.jump) == 0) {
      pl.armed = 1;
      plend1();
    }
    stream = 0;
  }
  pl.armed = 0;
  plsstrm(prev);
  if (!device)
    LH_FAIL(LH_ERR_RUNTIME, "cannot draw figure '%s': PLplot has no pngcairo device (install "
            "PLplot's cairo driver; Debian: plplot-driver-cairo)", png);
  if (pl.msg[0] || pl.errcode)
    LH_FAIL(LH_ERR_RUNTIME, "cannot draw figure '%s': PLplot: %s", png,
            pl.msg[0] ? pl.msg : pl.errmsg);
  LH_TRY(check_png(png, tmp));
  if (rename(tmp, png) != 0)
    LH_FAIL(LH_ERR_IO, "cannot write figure '%s': renaming '%s': %s", png, tmp, strerror(errno));
  have_tmp = false;
done:
  if (have_tmp) unlink(tmp);
  return st;
}

static lh_status check_path(const char *png) {
  if (!png || !png[0]) return LH_ERROR(LH_ERR_VALUE, "figure path is empty");
  return LH_OK;
}

/* Title centred above the viewport. */
static void draw_title(const char *title) {
  char t[TEXT_CAP];
  plschr(0.0, TEXT_SCALE * 1.15);
  plcol0(C_FG);
  plmtex("t", 1.2, 0.5, 0.5, safe_text(t, sizeof t, title, 0));
  plschr(0.0, TEXT_SCALE);
}

/* "no data" in the middle of the current window. */
static void draw_no_data(void) {
  PLFLT x0, x1, y0, y1;
  plgvpw(&x0, &x1, &y0, &y1);
  plcol0(C_MUTED);
  plptex(0.5 * (x0 + x1), 0.5 * (y0 + y1), 1.0, 0.0, 0.5, "no data");
  plcol0(C_FG);
}

/* ---- heatmap ------------------------------------------------------------------------------- */

typedef struct heat_fig {
  int64_t rows, cols;
  const double *values;               /* rows x cols, row-major */
  const PLFLT *const *image;          /* cols pointers to rows values, bottom row first */
  const char *const *row_labels, *const *col_labels;
  const char *title, *value_label;
  double vmin, vmax;
  bool any_nan;
  const char *fmt; /* of the values written in cells */
} heat_fig;

/* A perceptually uniform map (matplotlib's viridis at nine points). */
static void set_viridis(void) {
  static const PLFLT r[9] = {0.267, 0.283, 0.230, 0.172, 0.128, 0.135, 0.369, 0.678, 0.993};
  static const PLFLT g[9] = {0.005, 0.141, 0.322, 0.448, 0.567, 0.659, 0.789, 0.864, 0.906};
  static const PLFLT b[9] = {0.329, 0.458, 0.546, 0.558, 0.551, 0.518, 0.383, 0.190, 0.144};
  static const PLFLT pos[9] = {0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0};
  plscmap1n(256);
  plscmap1l(1, 9, pos, r, g, b, NULL);
}

static const char *index_label(char *buf, size_t cap, const char *const *labels, int64_t i) {
  if (labels && labels[i]) return safe_text(buf, cap, labels[i], LABEL_KEEP);
  snprintf(buf, cap, "%lld", (long long)i);
  return buf;
}

static size_t max_label_chars(const char *const *labels, int64_t n) {
  size_t most = 1;
  for (int64_t i = 0; i < n; i++) {
    size_t c = labels && labels[i] ? utf8_chars(labels[i]) : (size_t)snprintf(NULL, 0, "%lld", (long long)i);
    most = LH_MAX(most, LH_MIN(c, (size_t)LABEL_KEEP));
  }
  return most;
}

static void draw_heatmap(const void *p) {
  const heat_fig *h = p;
  const int64_t rows = h->rows, cols = h->cols;
  char buf[TEXT_CAP];
  PLFLT pw, ph, xa, ya;
  set_viridis();
  pladv(0);
  plgspa(&xa, &pw, &ya, &ph); /* page size in mm */
  /* Label size shrinks with the cells, down to a floor; labels are then thinned. */
  const double ch0 = char_mm();
  const double left_room = 0.30 * pw, bottom_room = 0.30 * ph;
  const double right = 46.0, top = 3.0 * ch0;
  const size_t rl = max_label_chars(h->row_labels, rows), cl = max_label_chars(h->col_labels, cols);
  double boxw = pw - right - LH_MIN(rl * CHAR_ASPECT * ch0 + 2.0 * ch0, left_room);
  double boxh = ph - top - LH_MIN(cl * CHAR_ASPECT * ch0 + 2.0 * ch0, bottom_room);
  double cw = cols ? boxw / (double)cols : boxw, chh = rows ? boxh / (double)rows : boxh;
  double lscale = clampd(LH_MIN(cw, chh) / (1.3 * ch0), 0.75, 1.0);
  plschr(0.0, TEXT_SCALE * lscale);
  const double ch = char_mm();
  const double left = LH_MIN(rl * CHAR_ASPECT * ch + 1.5 * ch, left_room);
  const double bottom = LH_MIN(cl * CHAR_ASPECT * ch + 1.5 * ch, bottom_room);
  boxw = pw - right - left;
  boxh = ph - top - bottom;
  cw = cols ? boxw / (double)cols : boxw;
  chh = rows ? boxh / (double)rows : boxh;
  if (cw > 1.5 * chh) cw = 1.5 * chh; /* near-square cells */
  if (chh > 1.5 * cw) chh = 1.5 * cw;
  const double w = cols ? cw * (double)cols : boxw, hgt = rows ? chh * (double)rows : boxh;
  plsvpa(left, left + w, ph - top - hgt, ph - top);
  plwind(0.0, cols ? (PLFLT)cols : 1.0, 0.0, rows ? (PLFLT)rows : 1.0);

  if (rows && cols) {
    plcol0(C_NAN); /* under the image: NaN cells are not painted by plimagefr */
    PLFLT fx[4] = {0, (PLFLT)cols, (PLFLT)cols, 0}, fy[4] = {0, 0, (PLFLT)rows, (PLFLT)rows};
    plfill(4, fx, fy);
    /* pltr0 (identity): cell (j, i) covers [j, j + 1] x [i, i + 1]. Without a transform
     * PLplot 5.15 maps xmin and xmax to the centres of the edge cells. */
    plimagefr((const PLFLT *const *)h->image, (PLINT)cols, (PLINT)rows, 0.0, (PLFLT)cols, 0.0,
              (PLFLT)rows, -INFINITY, INFINITY, h->vmin, h->vmax, pltr0, NULL);
  }
  plcol0(C_FG);
  plbox("bc", 0.0, 0, "bc", 0.0, 0);
  if (!rows || !cols) draw_no_data();

  /* Tick labels: rows on the left, columns rotated below; every stride-th if crowded. */
  const int64_t rstride = label_stride(1.1 * ch, chh, rows);
  const int64_t cstride = label_stride(1.1 * ch, cw, cols);
  for (int64_t i = 0; cols && i < rows; i += rstride)
    plmtex("lv", 0.6, (PLFLT)(((double)(rows - i) - 0.5) / (double)rows), 1.0,
           index_label(buf, sizeof buf, h->row_labels, i));
  for (int64_t j = 0; rows && j < cols; j += cstride)
    plmtex("bv", 0.6, (PLFLT)(((double)j + 0.5) / (double)cols), 1.0,
           index_label(buf, sizeof buf, h->col_labels, j));

  if (rows && cols && rows <= HEAT_VALUES_MAX && cols <= HEAT_VALUES_MAX) {
    /* "0.00" in 80 % of a cell's width and 40 % of its height. */
    const double want = LH_MIN(0.8 * cw / (5.0 * CHAR_ASPECT), 0.4 * chh);
    plschr(0.0, TEXT_SCALE * clampd(want / ch0, 0.45, 1.0));
    for (int64_t i = 0; i < rows; i++)
      for (int64_t j = 0; j < cols; j++) {
        const double v = h->values[i * cols + j];
        const double t = isfinite(v) ? (v - h->vmin) / (h->vmax - h->vmin) : 1.0;
        if (isnan(v)) snprintf(buf, sizeof buf, "NaN");
        else snprintf(buf, sizeof buf, h->fmt, v);
        plcol0(t < 0.55 ? C_WHITE : C_FG); /* viridis is dark below the middle */
        plptex((PLFLT)j + 0.5, (PLFLT)(rows - 1 - i) + 0.5, 1.0, 0.0, 0.5, buf);
      }
    plschr(0.0, TEXT_SCALE * lscale);
  }
  plschr(0.0, TEXT_SCALE);
  plcol0(C_FG);
  draw_title(h->title);

  /* Colour bar right of the cells, 80 % of their height (lengths are viewport fractions). */
  PLFLT bar_w, bar_h;
  const PLFLT range[2] = {h->vmin, h->vmax};
  const PLFLT *values[1] = {range};
  const PLINT n_values[1] = {2}, label_opts[1] = {PL_COLORBAR_LABEL_RIGHT}, sub_ticks[1] = {0};
  const PLFLT ticks[1] = {0.0};
  char vl[TEXT_CAP];
  const char *labels[1] = {safe_text(vl, sizeof vl, h->value_label, 0)};
  const char *axis_opts[1] = {"bcvtm"};
  plcolorbar(&bar_w, &bar_h, PL_COLORBAR_GRADIENT,
             PL_POSITION_RIGHT | PL_POSITION_OUTSIDE | PL_POSITION_VIEWPORT, 0.03, 0.0,
             0.03, 0.8, C_BG, C_FG, 1, 0.0, 0.0, 0, 0.0, 1, label_opts, labels, 1,
             axis_opts, ticks, sub_ticks, n_values, values);
  if (h->any_nan) { /* a grey key for NaN below the colour bar */
    PLFLT lw, lh;
    const PLINT opt[1] = {PL_LEGEND_COLOR_BOX}, tcol[1] = {C_FG}, bcol[1] = {C_NAN};
    const PLINT bpat[1] = {0}, none[1] = {0};
    const PLFLT bscale[1] = {1.0}, bwidth[1] = {1.0}, zero[1] = {0.0};
    const char *text[1] = {"NaN"}, *nosym[1] = {""};
    pllegend(&lw, &lh, 0, PL_POSITION_RIGHT | PL_POSITION_BOTTOM | PL_POSITION_OUTSIDE, 0.01,
             0.0, 0.03, C_BG, C_FG, 1, 1, 1, 1, opt, 0.5, 0.75, 1.5, 0.0, tcol, text, bcol,
             bpat, bscale, bwidth, none, none, zero, none, zero, none, nosym);
  }
}

lh_status lh_plot_heatmap(const char *png_path, int64_t rows, int64_t cols, const double *values,
                          const char *const *row_labels, const char *const *col_labels,
                          const char *title, const char *value_label, double vmin,
                          double vmax) {
  lh_status st = LH_OK;
  PLFLT *image = NULL;  /* cols x rows: column j bottom row first */
  PLFLT **colp = NULL;  /* cols */
  LH_TRY(check_path(png_path));
  if (rows < 0 || cols < 0 || (rows && cols > HEAT_MAX_CELLS / rows))
    LH_FAIL(LH_ERR_VALUE, "heatmap '%s': %lld x %lld cells, expected at most %d", png_path,
            (long long)rows, (long long)cols, HEAT_MAX_CELLS);
  const int64_t cells = rows * cols;
  if (cells > 0 && !values) LH_FAIL(LH_ERR_VALUE, "heatmap '%s': no values", png_path);
  if (!isnan(vmin) && !isnan(vmax) && vmin > vmax)
    LH_FAIL(LH_ERR_VALUE, "heatmap '%s': vmin %g > vmax %g", png_path, vmin, vmax);
  double lo = INFINITY, hi = -INFINITY, amax = 0.0;
  bool any_nan = false;
  for (int64_t t = 0; t < cells; t++) {
    const double v = values[t];
    any_nan |= isnan(v);
    if (!isfinite(v)) continue;
    lo = fmin(lo, v);
    hi = fmax(hi, v);
    amax = fmax(amax, fabs(v));
  }
  if (!isfinite(vmin)) vmin = lo <= hi ? lo : 0.0;
  if (!isfinite(vmax)) vmax = lo <= hi ? hi : 1.0;
  if (vmin > vmax) vmax = vmin; /* one bound given, the data all on the other side of it */
  if (vmax == vmin) {
    vmin -= 0.5;
    vmax += 0.5;
  }
  LH_TRY(lh_alloc((size_t)cells, sizeof *image, false, "heatmap image", &image));
  LH_TRY(lh_alloc((size_t)cols, sizeof *colp, false, "heatmap columns", &colp));
  for (int64_t j = 0; j < cols; j++) {
    colp[j] = image + j * rows;
    for (int64_t i = 0; i < rows; i++) colp[j][rows - 1 - i] = values[i * cols + j];
  }
  heat_fig h = {rows, cols, values, (const PLFLT *const *)colp, row_labels, col_labels, title,
                value_label, vmin, vmax, any_nan,
                amax >= 100.0 || (amax > 0.0 && amax < 0.1) ? "%.2g" : "%.2f"};
  LH_TRY(render(png_path, draw_heatmap, &h));
done:
  lh_free(colp);
  lh_free(image);
  return st;
}

/* ---- lines --------------------------------------------------------------------------------- */

#define NAME_CAP 128

typedef struct xtick {
  double x;
  int64_t seq; /* order given: the first label for an x wins */
  const char *label;
} xtick;

typedef struct lines_fig {
  const char *title, *xlabel, *ylabel;
  int nseries;
  const lh_plot_series *series;
  double x0, x1, y0, y1; /* window */
  bool empty;
  const xtick *ticks; /* sorted by x, one per x */
  int64_t nticks;
  size_t tick_chars; /* longest tick label */
  size_t name_chars; /* longest legend entry */
  PLFLT *px, *py, *lo, *hi; /* scratch: the longest series */
  char *names;              /* nseries x NAME_CAP: legend texts, escaped */
} lines_fig;

static const char *const SYMBOLS[] = {"\xE2\x97\x8F", "\xE2\x96\xA0", "\xE2\x96\xB2",
                                      "\xE2\x97\x86", "\xE2\x96\xBC"}; /* ● ■ ▲ ◆ ▼ */
#define NSYMBOLS 5

static void draw_lines(const void *p) {
  const lines_fig *c = p;
  char buf[TEXT_CAP];
  PLFLT pw, ph, xa, ya;
  pladv(0);
  plgspa(&xa, &pw, &ya, &ph); /* page size in mm */
  const double ch = char_mm();
  /* Tick labels horizontal when they fit side by side, else rotated; thinned if crowded. */
  const double left = 0.11 * pw;
  const double legend =
      c->nseries > 1 ? LH_MIN(0.75 * c->name_chars * CHAR_ASPECT * ch + 18.0, 0.35 * pw) : 0.0;
  const double vpw = pw - left - legend - 0.03 * pw;
  const double label_w = (double)c->tick_chars * CHAR_ASPECT * ch + ch;
  const bool rotate = c->nticks > 0 && (double)c->nticks * label_w > 0.95 * vpw;
  const double tick_room = !c->nticks ? 1.5 * ch
                           : rotate   ? LH_MIN((double)c->tick_chars * CHAR_ASPECT * ch + 1.5 * ch, 0.3 * ph)
                                      : 1.5 * ch;
  const double bottom = tick_room + 2.5 * ch, top = 3.0 * ch;
  plsvpa(left, left + vpw, bottom, ph - top);
  plwind(c->x0, c->x1, c->y0, c->y1);
  plcol0(C_GRID);
  plbox(c->nticks ? "" : "g", 0.0, 0, "g", 0.0, 0);
  plcol0(C_FG);
  plbox(c->nticks ? "bc" : "bcnst", 0.0, 0, "bcnstv", 0.0, 0);
  if (c->nticks) {
    const int64_t stride =
        label_stride(rotate ? 1.2 * ch : label_w, vpw / (double)c->nticks, c->nticks);
    const double tl = 0.015 * (c->y1 - c->y0);
    for (int64_t t = 0; t < c->nticks; t += stride) {
      const double x = c->ticks[t].x, pos = (x - c->x0) / (c->x1 - c->x0);
      pljoin(x, c->y0, x, c->y0 + tl);
      pljoin(x, c->y1, x, c->y1 - tl);
      plmtex(rotate ? "bv" : "b", rotate ? 0.6 : 1.3, pos, rotate ? 1.0 : 0.5,
             safe_text(buf, sizeof buf, c->ticks[t].label, LABEL_KEEP));
    }
  }
  plmtex("b", tick_room / ch + 1.2, 0.5, 0.5, safe_text(buf, sizeof buf, c->xlabel, 0));
  plmtex("l", 5.0, 0.5, 0.5, safe_text(buf, sizeof buf, c->ylabel, 0));
  draw_title(c->title);
  if (c->empty) draw_no_data();

  for (int s = 0; s < c->nseries; s++) {
    const lh_plot_series *sr = &c->series[s];
    plcol0(C_SERIES + s % NSERIES_COLOURS);
    pllsty(1 + (s / NSERIES_COLOURS) % 8);
    /* error bars, then the curve in runs of finite points, then a symbol on each point */
    PLINT m = 0;
    for (int64_t i = 0; sr->yerr && i < sr->n; i++)
      if (isfinite(sr->x[i]) && isfinite(sr->y[i]) && isfinite(sr->yerr[i])) {
        c->px[m] = sr->x[i];
        c->lo[m] = sr->y[i] - fabs(sr->yerr[i]);
        c->hi[m] = sr->y[i] + fabs(sr->yerr[i]);
        m++;
      }
    plwidth(1.2);
    if (m > 0) plerry(m, c->px, c->lo, c->hi);
    plwidth(2.0);
    PLINT run = 0;
    m = 0;
    for (int64_t i = 0; i <= sr->n; i++) {
      if (i < sr->n && isfinite(sr->x[i]) && isfinite(sr->y[i])) {
        c->px[m + run] = sr->x[i];
        c->py[m + run] = sr->y[i];
        run++;
        continue;
      }
      if (run > 1) plline(run, c->px + m, c->py + m);
      m += run;
      run = 0;
    }
    pllsty(1);
    plwidth(1.0);
    plschr(0.0, TEXT_SCALE * 0.8);
    if (m > 0) plstring(m, c->px, c->py, SYMBOLS[s % NSYMBOLS]);
    plschr(0.0, TEXT_SCALE);
  }

  if (c->nseries > 1) {
    enum { MAXLEG = 64 }; /* legend entries drawn; more series share the last colours anyway */
    const int nl = LH_MIN(c->nseries, (int)MAXLEG);
    PLINT opt[MAXLEG], tcol[MAXLEG], lcol[MAXLEG], lsty[MAXLEG], scol[MAXLEG], snum[MAXLEG];
    PLFLT lwid[MAXLEG], sscale[MAXLEG];
    const char *text[MAXLEG], *sym[MAXLEG];
    for (int s = 0; s < nl; s++) {
      opt[s] = PL_LEGEND_LINE | PL_LEGEND_SYMBOL;
      tcol[s] = C_FG;
      lcol[s] = scol[s] = C_SERIES + s % NSERIES_COLOURS;
      lsty[s] = 1 + (s / NSERIES_COLOURS) % 8;
      lwid[s] = 2.0;
      sscale[s] = 0.8;
      snum[s] = 1;
      text[s] = c->names + (size_t)s * NAME_CAP;
      sym[s] = SYMBOLS[s % NSYMBOLS];
    }
    PLFLT lw, lh; /* in the right margin, level with the top of the axes */
    plsvpa(left + vpw + 0.01 * pw, pw - 0.01 * pw, bottom, ph - top);
    pllegend(&lw, &lh, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
             PL_POSITION_LEFT | PL_POSITION_TOP | PL_POSITION_INSIDE | PL_POSITION_VIEWPORT,
             0.0, 0.0, 0.05, C_BG, C_FG, 1, nl, 1, nl, opt, 0.6, 0.75, 2.0, 0.0, tcol, text,
             NULL, NULL, NULL, NULL, lcol, lsty, lwid, scol, sscale, snum, sym);
  }
}

static int xtick_cmp(const void *a, const void *b) {
  const xtick *p = a, *q = b;
  if (p->x != q->x) return p->x < q->x ? -1 : 1;
  return (p->seq > q->seq) - (p->seq < q->seq);
}

lh_status lh_plot_lines(const char *png_path, const char *title, const char *xlabel,
                        const char *ylabel, int nseries, const lh_plot_series *series) {
  lh_status st = LH_OK;
  xtick *ticks = NULL;
  lines_fig c = {title, xlabel, ylabel, nseries, series, INFINITY, -INFINITY, INFINITY,
                 -INFINITY, false, NULL, 0, 1, 1, NULL, NULL, NULL, NULL, NULL};
  LH_TRY(check_path(png_path));
  if (nseries < 0 || (nseries > 0 && !series))
    LH_FAIL(LH_ERR_VALUE, "line plot '%s': %d series%s", png_path, nseries,
            nseries > 0 ? " but no array" : "");
  int64_t most = 1, labelled = 0;
  for (int s = 0; s < nseries; s++) {
    const lh_plot_series *sr = &series[s];
    if (sr->n < 0 || sr->n > INT32_MAX || (sr->n > 0 && (!sr->x || !sr->y)))
      LH_FAIL(LH_ERR_VALUE, "line plot '%s': series %d ('%s') has n = %lld%s", png_path, s,
              sr->name ? sr->name : "", (long long)sr->n,
              sr->n > 0 && sr->n <= INT32_MAX ? " but no x or y" : ", expected 0 .. 2^31 - 1");
    most = LH_MAX(most, sr->n);
    for (int64_t i = 0; i < sr->n; i++) {
      const double x = sr->x[i], y = sr->y[i];
      if (sr->xticks && sr->xticks[i] && isfinite(x)) labelled++;
      if (!isfinite(x) || !isfinite(y)) continue;
      const double e = sr->yerr && isfinite(sr->yerr[i]) ? fabs(sr->yerr[i]) : 0.0;
      c.x0 = fmin(c.x0, x);
      c.x1 = fmax(c.x1, x);
      c.y0 = fmin(c.y0, y - e);
      c.y1 = fmax(c.y1, y + e);
    }
  }
  /* Category labels: sorted by x, the first given for each x kept. */
  LH_TRY(lh_alloc((size_t)labelled, sizeof *ticks, false, "x tick labels", &ticks));
  for (int s = 0; s < nseries; s++)
    for (int64_t i = 0; series[s].xticks && i < series[s].n; i++)
      if (series[s].xticks[i] && isfinite(series[s].x[i])) {
        ticks[c.nticks] = (xtick){series[s].x[i], c.nticks, series[s].xticks[i]};
        c.nticks++;
      }
  qsort(ticks, (size_t)c.nticks, sizeof *ticks, xtick_cmp);
  int64_t kept = 0;
  for (int64_t t = 0; t < c.nticks; t++)
    if (kept == 0 || ticks[t].x != ticks[kept - 1].x) {
      ticks[kept++] = ticks[t];
      c.tick_chars = LH_MAX(c.tick_chars, LH_MIN(utf8_chars(ticks[t].label), (size_t)LABEL_KEEP));
    }
  c.nticks = kept;
  c.ticks = ticks;
  for (int64_t t = 0; t < c.nticks; t++) { /* labels widen the x range */
    c.x0 = fmin(c.x0, ticks[t].x);
    c.x1 = fmax(c.x1, ticks[t].x);
  }
  if (!(c.x0 <= c.x1)) {
    c.x0 = 0.0;
    c.x1 = 1.0;
  }
  if (!(c.y0 <= c.y1)) {
    c.empty = true;
    c.y0 = 0.0;
    c.y1 = 1.0;
  }
  if (c.x1 == c.x0) {
    c.x0 -= 0.5;
    c.x1 += 0.5;
  }
  if (c.y1 == c.y0) {
    const double d = c.y0 != 0.0 ? 0.1 * fabs(c.y0) : 0.5;
    c.y0 -= d;
    c.y1 += d;
  }
  const double padx = 0.04 * (c.x1 - c.x0), pady = 0.06 * (c.y1 - c.y0);
  c.x0 -= padx;
  c.x1 += padx;
  c.y0 -= pady;
  c.y1 += pady;
  LH_TRY(lh_alloc((size_t)most, sizeof *c.px, false, "plot points", &c.px));
  LH_TRY(lh_alloc((size_t)most, sizeof *c.py, false, "plot points", &c.py));
  LH_TRY(lh_alloc((size_t)most, sizeof *c.lo, false, "plot error bars", &c.lo));
  LH_TRY(lh_alloc((size_t)most, sizeof *c.hi, false, "plot error bars", &c.hi));
  LH_TRY(lh_alloc((size_t)nseries, NAME_CAP, false, "legend entries", &c.names));
  for (int s = 0; s < nseries; s++) {
    safe_text(c.names + (size_t)s * NAME_CAP, NAME_CAP, series[s].name, 40);
    c.name_chars = LH_MAX(c.name_chars, utf8_chars(c.names + (size_t)s * NAME_CAP));
  }
  LH_TRY(render(png_path, draw_lines, &c));
done:
  lh_free(c.names);
  lh_free(c.hi);
  lh_free(c.lo);
  lh_free(c.py);
  lh_free(c.px);
  lh_free(ticks);
  return st;
}

/* ---- histogram ----------------------------------------------------------------------------- */

typedef struct hist_fig {
  const char *title, *xlabel;
  int bins;
  const int64_t *count; /* bins */
  double lo, hi;        /* range of the finite values */
  int64_t m, skipped, top;
} hist_fig;

static void draw_histogram(const void *p) {
  const hist_fig *h = p;
  char buf[TEXT_CAP];
  PLFLT pw, ph, xa, ya;
  pladv(0);
  plgspa(&xa, &pw, &ya, &ph); /* page size in mm */
  const double ch = char_mm();
  plsvpa(0.11 * pw, 0.97 * pw, 4.0 * ch, ph - 3.0 * ch);
  const double pad = 0.02 * (h->hi - h->lo);
  plwind(h->lo - pad, h->hi + pad, 0.0, 1.06 * (double)LH_MAX(h->top, (int64_t)1));
  plcol0(C_GRID);
  plbox("", 0.0, 0, "g", 0.0, 0);
  const double bw = (h->hi - h->lo) / h->bins;
  for (int b = 0; b < h->bins; b++) {
    if (!h->count[b]) continue;
    const PLFLT l = h->lo + b * bw, r = h->lo + (b + 1) * bw, t = (PLFLT)h->count[b];
    PLFLT bx[5] = {l, r, r, l, l}, by[5] = {0, 0, t, t, 0};
    plcol0(C_HIST_FILL);
    plfill(4, bx, by);
    plcol0(C_HIST_EDGE);
    plline(5, bx, by);
  }
  plcol0(C_FG);
  plbox("bcnst", 0.0, 0, "bcnstv", 0.0, 0);
  plmtex("b", 2.8, 0.5, 0.5, safe_text(buf, sizeof buf, h->xlabel, 0));
  plmtex("l", 5.0, 0.5, 0.5, "count");
  char t[TEXT_CAP], full[TEXT_CAP + 64];
  safe_text(t, sizeof t, h->title, 0);
  if (h->skipped)
    snprintf(full, sizeof full, "%s (%lld non-finite skipped)", t, (long long)h->skipped);
  else
    snprintf(full, sizeof full, "%s", t);
  draw_title(full);
  plcol0(C_MUTED);
  snprintf(buf, sizeof buf, "n = %lld, %d bin%s", (long long)h->m, h->bins, h->bins == 1 ? "" : "s");
  plmtex("b", 2.8, 1.0, 1.0, buf);
  plcol0(C_FG);
  if (!h->m) draw_no_data();
}

lh_status lh_plot_histogram(const char *png_path, const char *title, const char *xlabel,
                            int64_t n, const double *values, int bins) {
  lh_status st = LH_OK;
  int64_t *count = NULL;
  hist_fig h = {title, xlabel, bins, NULL, INFINITY, -INFINITY, 0, 0, 0};
  LH_TRY(check_path(png_path));
  if (n < 0 || (n > 0 && !values))
    LH_FAIL(LH_ERR_VALUE, "histogram '%s': n = %lld%s", png_path, (long long)n,
            n > 0 ? " but no values" : "");
  if (bins > HIST_MAX_BINS)
    LH_FAIL(LH_ERR_VALUE, "histogram '%s': %d bins, expected at most %d", png_path, bins,
            HIST_MAX_BINS);
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(values[i])) {
      h.skipped++;
      continue;
    }
    h.m++;
    h.lo = fmin(h.lo, values[i]);
    h.hi = fmax(h.hi, values[i]);
  }
  if (h.bins <= 0) h.bins = h.m > 1 ? 1 + (int)ceil(log2((double)h.m)) : 1;
  if (!h.m) {
    h.lo = 0.0;
    h.hi = 1.0;
  }
  if (h.hi == h.lo) {
    const double d = h.lo != 0.0 ? 0.1 * fabs(h.lo) : 0.5;
    h.lo -= d;
    h.hi += d;
  }
  LH_TRY(lh_alloc((size_t)h.bins, sizeof *count, true, "histogram bins", &count));
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(values[i])) continue;
    const double b = floor((values[i] - h.lo) / (h.hi - h.lo) * h.bins);
    const int k = b < 0.0 ? 0 : (b >= h.bins ? h.bins - 1 : (int)b); /* max: the last bin */
    count[k]++;
  }
  for (int b = 0; b < h.bins; b++) h.top = LH_MAX(h.top, count[b]);
  h.count = count;
  LH_TRY(render(png_path, draw_histogram, &h));
done:
  lh_free(count);
  return st;
}
