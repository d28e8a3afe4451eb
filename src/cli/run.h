/*
 * run.h (private): what the batch runner's files share (cmd_run.c: the steps; run_report.c:
 * summary.json and the figures).
 */
#ifndef LH_CLI_RUN_H
#define LH_CLI_RUN_H

#include <stdint.h>

#include <jansson.h>
#include <mpi.h>

#include "cli/job.h"
#include "latenthook/status.h"

#define RUN_PATH 4096

/* The layers the analyses run over: a name and a dataset address. */
typedef struct run_layer {
  char name[256];      /* "input", "layers.0", "fwd.layers.0" */
  char file_name[256]; /* the name made safe as a file name */
  char addr[RUN_PATH]; /* FILE.h5:/path */
  int ndims;
} run_layer;

/* What the report needs: the run's folder, its layers and (on rank 0) the results. */
typedef struct run_report_in {
  const char *dir;
  const run_layer *layers;
  int64_t nlayers;
  const job_file *jf;
  json_t *results; /* rank 0: {"cache": {...}, "twonn": {layer: {...}}, ...} (borrowed) */
} run_report_in;

/* Draws the per-layer figures (intrinsic dimension, probe accuracy, local-dimension
 * histograms) into DIR/plots and returns their paths in *plots (a new JSON array). Local
 * (rank 0). Errors: those of plot.h and HDF5 reads (LH_ERR_IO). */
LH_NODISCARD lh_status run_report_plots(const run_report_in *in, json_t **plots);

/* Writes `doc` as indented JSON to path through a temporary file renamed into place. Local.
 * Errors: LH_ERR_IO naming the path. */
LH_NODISCARD lh_status run_write_json(const char *path, const json_t *doc);

#endif
