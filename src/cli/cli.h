/*
 * cli.h (private): what the command files of the `latenthook` executable share.
 *
 * main.c owns MPI and the dispatch; each command lives in its own cmd_<name>.c and returns
 * an lh_status that is already agreed across ranks. Rank 0 owns stdout: commands that compute
 * results print exactly one JSON document there; logs and progress go to stderr.
 */
#ifndef LH_CLI_CLI_H
#define LH_CLI_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <mpi.h>

#include <jansson.h>

#include "latenthook/status.h"

/* Options every command accepts. */
typedef struct cli_common {
  bool help;
  bool progress;
  bool log_view;
  bool json;
} cli_common;

/* Long-option codes of the common options (above any short option character). */
enum { OPT_HELP = 1000, OPT_PROGRESS, OPT_LOG_VIEW, OPT_VERBOSE, OPT_QUIET, OPT_JSON };

/* The common entries to append to a command's option table (terminated by a zero entry). */
#define CLI_COMMON_OPTIONS                                      \
  {"help", no_argument, NULL, OPT_HELP},                        \
  {"progress", no_argument, NULL, OPT_PROGRESS},                \
  {"log-view", no_argument, NULL, OPT_LOG_VIEW},                \
  {"verbose", no_argument, NULL, OPT_VERBOSE},                  \
  {"quiet", no_argument, NULL, OPT_QUIET}

/* Help text for the common options, for the commands' --help. */
#define CLI_COMMON_HELP                                                             \
  "  --progress        show a progress bar with rate and ETA on stderr (default: only\n" \
  "                    when stderr is a terminal)\n"                                 \
  "  --log-view        print named timers (max/min/avg over ranks) at the end\n"     \
  "  --verbose         debug messages from every rank\n"                             \
  "  --quiet           errors only\n"                                                \
  "  --help            this text\n"

/* Runs getopt_long over argv from a fresh state; handles the common options into `cc` and
 * returns every other option to `handle(code, optarg, user)`. Unknown options, missing
 * arguments and failures of `handle` become LH_ERR_USAGE naming the option. Local (every rank
 * parses the same argv). On success *first_positional is the index of the first operand. */
typedef lh_status (*cli_option_fn)(int code, const char *arg, void *user);
LH_NODISCARD lh_status cli_parse(const char *cmd, int argc, char **argv,
                                 const struct option *opts, const char *shortopts,
                                 cli_common *cc, cli_option_fn handle, void *user,
                                 int *first_positional);

/* Prints `text` on rank 0's stdout. Local. */
void cli_print_help(MPI_Comm comm, const char *text);

/* Prints `doc` (consumed) on rank 0's stdout as one indented JSON document. Local.
 * While a capture slot is set (cli_capture_json), the document replaces the slot's content
 * instead, on every rank. */
void cli_emit_json(MPI_Comm comm, json_t *doc);

/* Sets (slot) or clears (NULL) the capture slot of cli_emit_json: `run` collects the results
 * of the commands it drives this way. Local. */
void cli_capture_json(json_t **slot);

/* Parses a number option; LH_ERR_USAGE naming `opt` if it is not one. Pure. */
LH_NODISCARD lh_status cli_parse_double(const char *opt, const char *arg, double *out);
LH_NODISCARD lh_status cli_parse_int(const char *opt, const char *arg, long long *out);

/* Appends the comma-separated names of arg ("a,b,c") to names[*n ..], each a copy (lh_alloc;
 * the caller lh_frees them). Errors: LH_ERR_USAGE when more than cap names in all (naming
 * opt), LH_ERR_NOMEM. */
LH_NODISCARD lh_status cli_add_names(const char *opt, const char *arg, char **names, int64_t *n,
                                     int64_t cap);

/* Commands */
typedef lh_status (*cli_command_fn)(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_info(MPI_Comm comm, int argc, char **argv, cli_common *cc);

/* ---- analysis commands over point clouds (..., N, D) ------------------------------------ */
#include "latenthook/h5.h"

/* A JSON value for per-item results: a number (null for NaN/inf) for an unbatched dataset,
 * nested lists in the batch shape otherwise. */
json_t *cli_batch_values(const double *v, const lh_h5_info *in);
/* The same for integer counts. */
json_t *cli_batch_counts(const int64_t *v, const lh_h5_info *in);
/* A JSON number, or null when not finite. */
json_t *cli_real(double v);

lh_status cmd_twonn(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_localknn(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_knn(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_synth(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_infoimb(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_cka(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_similarity(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_cache(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_maxact(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_patch(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_steer(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_addition(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_attention(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_probe(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_probe_model(MPI_Comm comm, int argc, char **argv, cli_common *cc);
lh_status cmd_run(MPI_Comm comm, int argc, char **argv, cli_common *cc);


/* ---- items of a batched dataset, spread over the ranks (batch.h) ------------------------ */

/* What one rank sees of one round. */
typedef struct cli_item {
  int64_t b;       /* batch item of this rank's group, or -1 (nothing this round) */
  lh_dmat *X;      /* its rows, on `group`; NULL when b < 0 */
  lh_dmat *Y;      /* the same item of the second dataset (cli_each_pair), else NULL */
  MPI_Comm group;  /* the ranks working on item b */
  bool leader;     /* rank 0 of the group: the one that records the item's scalars */
} cli_item;

typedef lh_status (*cli_item_fn)(cli_item *it, void *user);

/* For every item of `d` (read as `dtype`): reads it collectively, calls compute(it) on the
 * group that holds it (group-collective; not called when it.b < 0), agrees over comm, then
 * calls write(it) on every rank of comm (collective: a rank with it.b < 0 writes nothing).
 * write may be NULL. Collective over comm. */
LH_NODISCARD lh_status cli_each_item(MPI_Comm comm, lh_h5_dset *d, lh_dtype dtype,
                                     cli_item_fn compute, cli_item_fn write, void *user);

/* The same over two datasets with the same batch shape and N (validated by the caller):
 * it.X from d, it.Y from e. Collective. */
LH_NODISCARD lh_status cli_each_pair(MPI_Comm comm, lh_h5_dset *d, lh_h5_dset *e,
                                     lh_dtype dtype_d, lh_dtype dtype_e, cli_item_fn compute,
                                     cli_item_fn write, void *user);

/* Checks that two point-cloud datasets can be compared item by item, with tdhook's messages
 * ("Expected matching batch shapes, got (...) and (...)", "Expected matching sample counts,
 * got N and M"). Local (every rank sees the same datasets). */
LH_NODISCARD lh_status cli_check_pair(const lh_h5_info *a, const lh_h5_info *b);

/* Completes per-item arrays whose entries were set by one rank each (zero elsewhere), on
 * every rank (a sum). Collective. */
LH_NODISCARD lh_status cli_share_f64(MPI_Comm comm, int64_t count, double *v);
LH_NODISCARD lh_status cli_share_i64(MPI_Comm comm, int64_t count, int64_t *v);

#endif
