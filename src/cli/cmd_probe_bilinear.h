/*
 * cmd_probe_bilinear.h (private): `latenthook probe --estimator low-rank-bilinear`, called by
 * cmd_probe.c once its options are parsed (cmd_probe_bilinear.c).
 */
#ifndef LH_CLI_CMD_PROBE_BILINEAR_H
#define LH_CLI_CMD_PROBE_BILINEAR_H

#include <stdbool.h>

#include <mpi.h>

#include "latenthook/status.h"

typedef struct cli_bilinear_args {
  const char *data, *data2, *labels, *out;
  long long classes; /* -1: regression */
  long long seed, epochs, batch;
  double test, lr;
  bool no_bias;
} cli_bilinear_args;

/* Fits, scores and writes the estimator. Collective. */
lh_status cmd_probe_bilinear(MPI_Comm comm, const cli_bilinear_args *a);

#endif
