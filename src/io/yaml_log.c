/*
 * yaml_log.c: collects libcyaml's error log (yaml_log.h).
 */
#include <stdio.h>
#include <string.h>

#include "io/yaml_log.h"

void lh_ylog_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args) {
  lh_ylog *lg = ctx;
  char buf[512];
  if (level < CYAML_LOG_ERROR) return;
  vsnprintf(buf, sizeof buf, fmt, args);
  size_t n = strlen(buf);
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
  const char *s = buf;
  if (strncmp(s, "Load: ", 6) == 0) s += 6;
  if (strncmp(s, "Backtrace:", 10) == 0) return;
  while (*s == ' ') s++;
  if (strncmp(s, "in ", 3) == 0) {
    if (lg->where[0]) return;
    snprintf(lg->where, sizeof lg->where, "%s", s + 3);
    const char *l = strstr(s, "(line: ");
    if (l) sscanf(l, "(line: %d, column: %d)", &lg->line, &lg->col);
    char *paren = strstr(lg->where, " (line:");
    if (paren) *paren = '\0';
    return;
  }
  if (!lg->msg[0]) snprintf(lg->msg, sizeof lg->msg, "%s", s);
}
