/*
 * log.c: rank-aware diagnostics on stderr (see log.h).
 */
#include <stdio.h>

#include "latenthook/log.h"

static lh_log_level g_level = LH_LOG_INFO;
static int g_rank = 0, g_nranks = 1;

void lh_log_setup(lh_log_level level, int rank, int nranks) {
  g_level = level;
  if (rank >= 0) g_rank = rank;
  if (nranks >= 0) g_nranks = nranks;
}

lh_log_level lh_log_get_level(void) { return g_level; }

static void emit(const char *tag, const char *fmt, va_list ap) {
  char line[4096];
  vsnprintf(line, sizeof line, fmt, ap);
  if (g_nranks > 1)
    fprintf(stderr, "latenthook[%d]: %s%s\n", g_rank, tag, line);
  else
    fprintf(stderr, "latenthook: %s%s\n", tag, line);
}

void lh_log_info(const char *fmt, ...) {
  if (g_level < LH_LOG_INFO || g_rank != 0) return;
  va_list ap;
  va_start(ap, fmt);
  emit("", fmt, ap);
  va_end(ap);
}

void lh_log_warn(const char *fmt, ...) {
  if (g_level < LH_LOG_WARN) return;
  va_list ap;
  va_start(ap, fmt);
  emit("warning: ", fmt, ap);
  va_end(ap);
}

void lh_log_debug(const char *fmt, ...) {
  if (g_level < LH_LOG_DEBUG) return;
  va_list ap;
  va_start(ap, fmt);
  emit("debug: ", fmt, ap);
  va_end(ap);
}
