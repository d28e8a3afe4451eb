/*
 * yaml_log.h (private): what libcyaml says when a YAML file does not fit its schema, collected
 * for one clear message: the first error and the innermost location of its backtrace (field,
 * line, column). Shared by the model loader (model_yaml.c) and the job files (cli/job.c).
 */
#ifndef LH_IO_YAML_LOG_H
#define LH_IO_YAML_LOG_H

#include <stdarg.h>

#include <cyaml/cyaml.h>

typedef struct lh_ylog {
  char msg[512];   /* the first error, without libcyaml's "Load: " */
  char where[256]; /* "mapping field 'x'", "sequence entry 2", ... (innermost) */
  int line, col;   /* of `where`, 0 if unknown */
} lh_ylog;

/* A cyaml_log_fn_t collecting into the lh_ylog given as its context (zero it first). */
void lh_ylog_fn(cyaml_log_t level, void *ctx, const char *fmt, va_list args);

#endif
