/*
 * cli.c: option parsing and output helpers shared by the commands (see cli.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/log.h"
#include "latenthook/mem.h"
#include "latenthook/progress.h"

lh_status cli_parse(const char *cmd, int argc, char **argv, const struct option *opts,
                    const char *shortopts, cli_common *cc, cli_option_fn handle, void *user,
                    int *first_positional) {
  lh_status st = LH_OK;
  optind = 0; /* GNU: full re-initialisation */
  opterr = 0;
  char sopts[64];
  snprintf(sopts, sizeof sopts, ":%s", shortopts ? shortopts : "");
  int c, idx;
  while ((c = getopt_long(argc, argv, sopts, opts, &idx)) != -1) {
    const char *given = argv[optind - 1];
    switch (c) {
      case OPT_HELP: cc->help = true; break;
      case OPT_PROGRESS:
        cc->progress = true;
        lh_progress_force(true);
        break;
      case OPT_LOG_VIEW: cc->log_view = true; break;
      case OPT_VERBOSE: lh_log_setup(LH_LOG_DEBUG, -1, -1); break;
      case OPT_QUIET: lh_log_setup(LH_LOG_QUIET, -1, -1); break;
      case '?':
        if (isprint(optopt)) /* a short option (long options report 0 or their code) */
          LH_FAIL(LH_ERR_USAGE, "unknown option '-%c' (see 'latenthook %s --help')", optopt, cmd);
        if (optopt != 0 && strchr(given, '='))
          LH_FAIL(LH_ERR_USAGE, "option '%.*s' takes no value (see 'latenthook %s --help')",
                  (int)(strchr(given, '=') - given), given, cmd);
        LH_FAIL(LH_ERR_USAGE, "unknown option '%s' (see 'latenthook %s --help')", given, cmd);
      case ':':
        if (isprint(optopt))
          LH_FAIL(LH_ERR_USAGE, "option '-%c' needs a value (see 'latenthook %s --help')", optopt, cmd);
        LH_FAIL(LH_ERR_USAGE, "option '%s' needs a value (see 'latenthook %s --help')", given, cmd);
      default:
        /* a value the command rejects is a usage error (exit status 2) */
        if (handle && handle(c, optarg, user) != LH_OK) {
          if (!lh_error_pending()) LH_ERROR(LH_ERR_USAGE, "bad value for option '%s'", given);
          st = LH_ERR_USAGE;
          goto done;
        }
    }
  }
  *first_positional = optind;
done:
  return st;
}

void cli_print_help(MPI_Comm comm, const char *text) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    fputs(text, stdout);
    fflush(stdout);
  }
}

static json_t **g_capture;

void cli_capture_json(json_t **slot) { g_capture = slot; }

void cli_emit_json(MPI_Comm comm, json_t *doc) {
  if (g_capture) {
    json_decref(*g_capture);
    *g_capture = doc;
    return;
  }
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0 && doc) {
    json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    fputc('\n', stdout);
    fflush(stdout);
  }
  json_decref(doc);
}

lh_status cli_parse_double(const char *opt, const char *arg, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(arg, &end);
  if (errno != 0 || end == arg || *end != '\0' || isnan(v))
    return LH_ERROR(LH_ERR_USAGE, "%s expects a number, got '%s'", opt, arg);
  *out = v;
  return LH_OK;
}

lh_status cli_parse_int(const char *opt, const char *arg, long long *out) {
  char *end = NULL;
  errno = 0;
  long long v = strtoll(arg, &end, 10);
  if (errno != 0 || end == arg || *end != '\0')
    return LH_ERROR(LH_ERR_USAGE, "%s expects an integer, got '%s'", opt, arg);
  *out = v;
  return LH_OK;
}

json_t *cli_real(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static json_t *nest(const double *v, const int64_t *iv, const int64_t *dims, int nd,
                    int64_t *idx) {
  if (nd == 0) {
    int64_t k = (*idx)++;
    return v ? cli_real(v[k]) : json_integer((json_int_t)iv[k]);
  }
  json_t *a = json_array();
  for (int64_t i = 0; i < dims[0]; i++) json_array_append_new(a, nest(v, iv, dims + 1, nd - 1, idx));
  return a;
}

json_t *cli_batch_values(const double *v, const lh_h5_info *in) {
  int64_t idx = 0;
  return nest(v, NULL, in->dims, in->row_axis, &idx);
}

json_t *cli_batch_counts(const int64_t *v, const lh_h5_info *in) {
  int64_t idx = 0;
  return nest(NULL, v, in->dims, in->row_axis, &idx);
}

lh_status cli_add_names(const char *opt, const char *arg, char **names, int64_t *n, int64_t cap) {
  for (const char *s = arg;;) {
    const char *c = strchr(s, ',');
    size_t len = c ? (size_t)(c - s) : strlen(s);
    if (*n == cap) return LH_ERROR(LH_ERR_USAGE, "%s: at most %lld names", opt, (long long)cap);
    char *m = NULL;
    if (lh_alloc(len + 1, 1, false, "module name", &m) != LH_OK) return LH_ERR_NOMEM;
    memcpy(m, s, len);
    m[len] = '\0';
    names[(*n)++] = m;
    if (!c) return LH_OK;
    s = c + 1;
  }
}
