/*
 * version.c: version string and provenance (see version.h).
 */
#include <stdio.h>
#include <string.h>

#include <cblas.h>

#include "core/check.h"
#include "latenthook/comm.h"
#include "latenthook/version.h"
#include "lh_config.h"

#define CMD_CAP 8192

static char g_cmd[CMD_CAP] = "(library call)";

const char *lh_version(void) { return LH_VERSION_STRING; }

/* Appends `arg` to buf, single-quoted when it holds anything a shell would interpret. */
static void append_quoted(char *buf, size_t cap, const char *arg) {
  size_t len = strlen(buf);
  bool plain = arg[0] != '\0';
  for (const char *c = arg; *c && plain; c++)
    plain = strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=./:,@%",
                   *c) != NULL;
  if (len && len + 1 < cap) buf[len++] = ' ';
  if (plain) {
    for (const char *c = arg; *c && len + 1 < cap; c++) buf[len++] = *c;
  } else {
    if (len + 1 < cap) buf[len++] = '\'';
    for (const char *c = arg; *c && len + 5 < cap; c++) {
      if (*c == '\'') {
        memcpy(buf + len, "'\\''", 4);
        len += 4;
      } else {
        buf[len++] = *c;
      }
    }
    if (len + 1 < cap) buf[len++] = '\'';
  }
  buf[len] = '\0';
}

lh_status lh_provenance_init(MPI_Comm comm, int argc, char **argv) {
  int rank;
  MPI_Comm_rank(comm, &rank);
  if (rank == 0) {
    g_cmd[0] = '\0';
    for (int i = 0; i < argc; i++) append_quoted(g_cmd, sizeof g_cmd, argv[i]);
  }
  MPI_Bcast(g_cmd, CMD_CAP, MPI_CHAR, 0, comm);
  return LH_OK;
}

const char *lh_provenance_command_line(void) { return g_cmd; }

const char *lh_blas_core(void) {
  const char *c = openblas_get_corename();
  return c ? c : "unknown";
}
