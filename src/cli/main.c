/*
 * main.c: the `latenthook` executable: MPI start-up, command dispatch, error report, exit.
 *
 * Every rank runs the same command with the same argv. A command returns an lh_status that
 * all ranks agree on; on failure the one rank holding the message prints it, and every rank
 * finalises MPI and exits with the same non-zero code (2 for a bad command line, 1 otherwise).
 */
#include <stdio.h>
#include <string.h>

#include <hdf5.h>

#include "cli/cli.h"
#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/log.h"
#include "latenthook/timer.h"
#include "latenthook/version.h"

typedef struct {
  const char *name;
  cli_command_fn fn;
  const char *summary;
} command;

static const command COMMANDS[] = {
    {"info", cmd_info, "describe an HDF5 dataset and how its rows split over the ranks"},
    {"knn", cmd_knn, "exact k nearest neighbours of every point"},
    {"twonn", cmd_twonn, "TwoNN intrinsic dimension (and MLE, block analysis)"},
    {"local-knn", cmd_localknn, "per-point local intrinsic dimension from k-NN distances"},
    {"cka", cmd_cka, "centred kernel alignment between two representations"},
    {"information-imbalance", cmd_infoimb, "information imbalance between two representations"},
    {"similarity", cmd_similarity, "CKA or information-imbalance matrix over the layers of a group"},
    {"cache", cmd_cache, "run a model over the inputs and cache the activations of matching modules"},
    {"max-activations", cmd_maxact, "the samples (and positions) that activate each unit of matching modules most"},
    {"patch", cmd_patch, "activation patching (interchange intervention) and a patching sweep"},
    {"steer", cmd_steer, "run a model with module outputs steered (add a vector, project it out, scale)"},
    {"activation-addition", cmd_addition, "steering vectors: mean positive - negative activation per module"},
    {"attention", cmd_attention, "attention rollout of every sample and attention heatmaps of chosen samples"},
    {"probe", cmd_probe, "fit a linear probe or mean-difference direction on activations in HDF5"},
    {"run", cmd_run, "run a YAML job file: forward pass, caches, analyses, figures; resumable"},
    {"synth", cmd_synth, "write a synthetic point cloud of known intrinsic dimension"},
};
#define NCOMMANDS ((int)(sizeof COMMANDS / sizeof COMMANDS[0]))

static void usage(MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0) return;
  printf("usage: mpiexec -n P latenthook <command> [options]\n\n"
         "LatentHook %s: latent-space analysis of neural networks on MPI clusters.\n\n"
         "Commands:\n",
         lh_version());
  for (int i = 0; i < NCOMMANDS; i++) printf("  %-22s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
  printf("\nDatasets are addressed as FILE.h5:/path/to/dataset.\n"
         "'latenthook <command> --help' describes a command; 'latenthook --version' prints\n"
         "the version and the libraries in use.\n");
  fflush(stdout);
}

static void version(MPI_Comm comm) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank != 0) return;
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  MPI_Get_library_version(mpi, &len);
  char *nl = strchr(mpi, ',');
  if (nl) *nl = '\0';
  unsigned maj, min, rel;
  H5get_libversion(&maj, &min, &rel);
  printf("latenthook %s\n  MPI: %s\n  HDF5: %u.%u.%u (parallel)\n  OpenBLAS core: %s\n",
         lh_version(), mpi, maj, min, rel, lh_blas_core());
  fflush(stdout);
}

static lh_status dispatch(MPI_Comm comm, int argc, char **argv, const char **cmdname) {
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(comm);
    return argc < 2 ? LH_ERROR(LH_ERR_USAGE, "no command given (see 'latenthook --help')")
                    : LH_OK;
  }
  if (strcmp(argv[1], "--version") == 0) {
    version(comm);
    return LH_OK;
  }
  for (int i = 0; i < NCOMMANDS; i++) {
    if (strcmp(argv[1], COMMANDS[i].name) != 0) continue;
    *cmdname = COMMANDS[i].name;
    cli_common cc = {0};
    lh_status st = COMMANDS[i].fn(comm, argc - 1, argv + 1, &cc);
    if (st == LH_OK && cc.log_view && !cc.help) st = lh_log_view(comm, stderr);
    return st;
  }
  char known[512] = "";
  for (int i = 0; i < NCOMMANDS; i++)
    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
             COMMANDS[i].name);
  return LH_ERROR(LH_ERR_USAGE, "unknown command '%s' (commands: %s)", argv[1], known);
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm comm = MPI_COMM_WORLD;
  int rank, nranks;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &nranks);
  lh_log_setup(LH_LOG_INFO, rank, nranks);

  const char *cmdname = NULL;
  lh_status st = lh_provenance_init(comm, argc, argv);
  if (st == LH_OK) st = dispatch(comm, argc, argv, &cmdname);
  /* Commands return agreed statuses; errors raised before a command (dispatch) happen
   * identically on every rank. One more agreement makes sure of both. */
  st = lh_agree(comm, st);
  if (st != LH_OK) lh_error_report(cmdname);
  MPI_Finalize();
  /* 75 (EX_TEMPFAIL): stopped at a checkpoint on request; running again resumes */
  return st == LH_OK ? 0 : st == LH_ERR_USAGE ? 2 : st == LH_ERR_INTERRUPTED ? 75 : 1;
}
