/*
 * status.c: the per-process error record behind status.h.
 *
 * One record per process is enough: a rank runs one thread of LatentHook code, and a failure
 * travels straight up to main (or to the next agreement point) before any new work starts.
 */
#include <stdio.h>
#include <string.h>

#include "latenthook/status.h"

#define MSG_CAP 2048

static struct {
  bool pending;
  char msg[MSG_CAP];
  char origin[256];
} g_err;

const char *lh_status_name(lh_status st) {
  switch (st) {
    case LH_OK: return "OK";
    case LH_ERR_VALUE: return "ValueError";
    case LH_ERR_TYPE: return "TypeError";
    case LH_ERR_KEY: return "KeyError";
    case LH_ERR_RUNTIME: return "RuntimeError";
    case LH_ERR_NOTIMPL: return "NotImplementedError";
    case LH_ERR_USAGE: return "UsageError";
    case LH_ERR_IO: return "IOError";
    case LH_ERR_NOMEM: return "MemoryError";
    case LH_ERR_MPI: return "MPIError";
    case LH_ERR_INTERNAL: return "InternalError";
    case LH_ERR_INTERRUPTED: return "Interrupted";
  }
  return "UnknownError";
}

lh_status lh_error_set(lh_status st, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err.msg, sizeof g_err.msg, fmt, ap);
  va_end(ap);
  const char *src = strstr(file, "src/");
  snprintf(g_err.origin, sizeof g_err.origin, "%s:%d", src ? src : file, line);
  g_err.pending = true;
  return st;
}

void lh_error_prefix(const char *fmt, ...) {
  if (!g_err.pending) return;
  char head[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(head, sizeof head, fmt, ap);
  va_end(ap);
  size_t hl = strlen(head), ml = strlen(g_err.msg);
  if (hl >= MSG_CAP) hl = MSG_CAP - 1;
  if (hl + ml >= MSG_CAP) ml = MSG_CAP - 1 - hl;
  memmove(g_err.msg + hl, g_err.msg, ml);
  memcpy(g_err.msg, head, hl);
  g_err.msg[hl + ml] = '\0';
}

const char *lh_error_message(void) { return g_err.pending ? g_err.msg : ""; }
const char *lh_error_origin(void) { return g_err.pending ? g_err.origin : ""; }
bool lh_error_pending(void) { return g_err.pending; }

void lh_error_clear(void) {
  g_err.pending = false;
  g_err.msg[0] = '\0';
  g_err.origin[0] = '\0';
}
