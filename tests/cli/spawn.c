/* spawn.c: see spawn.h. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/spawn.h"

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return strdup("");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  size_t got = fread(buf, 1, (size_t)n, f);
  buf[got] = '\0';
  fclose(f);
  return buf;
}

run_result run_shell(const char *cmd) {
  char outp[] = "/tmp/lhcli_out_XXXXXX", errp[] = "/tmp/lhcli_err_XXXXXX";
  int fo = mkstemp(outp), fe = mkstemp(errp);
  close(fo);
  close(fe);
  size_t len = strlen(cmd) + 256;
  char *full = malloc(len);
  snprintf(full, len, "timeout 120 %s >%s 2>%s", cmd, outp, errp);
  int rc = system(full);
  free(full);
  run_result r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
  r.out = slurp(outp);
  r.err = slurp(errp);
  unlink(outp);
  unlink(errp);
  return r;
}

static run_result run_cli_env(int np, const char *args, const char *env) {
  size_t len = strlen(args) + 512;
  char *cmd = malloc(len);
  snprintf(cmd, len, "%s %s -n %d %s %s", env, LH_MPIEXEC, np, LH_CLI, args);
  run_result r = run_shell(cmd);
  free(cmd);
  return r;
}

run_result run_cli(int np, const char *args) { return run_cli_env(np, args, "env"); }

run_result run_cli_noleak(int np, const char *args) {
  return run_cli_env(np, args, "env ASAN_OPTIONS=detect_leaks=0");
}

void run_free(run_result *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

int count_lines_with(const char *text, const char *needle) {
  int n = 0;
  const char *line = text;
  while (line && *line) {
    const char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    char *copy = strndup(line, len);
    if (strstr(copy, needle)) n++;
    free(copy);
    line = nl ? nl + 1 : NULL;
  }
  return n;
}
