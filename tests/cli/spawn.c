/* spawn.c: see spawn.h. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

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

int cli_timeout = 120;

run_result run_shell(const char *cmd) {
  char outp[] = "/tmp/lhcli_out_XXXXXX", errp[] = "/tmp/lhcli_err_XXXXXX";
  int fo = mkstemp(outp), fe = mkstemp(errp);
  close(fo);
  close(fe);
  size_t len = strlen(cmd) + 256;
  char *full = malloc(len);
  snprintf(full, len, "timeout %d %s >%s 2>%s", cli_timeout, cmd, outp, errp);
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

run_result run_cli_np(int np, const char *args) {
  return np <= 2 ? run_cli(np, args) : run_cli_noleak(np, args);
}

void cli_make_dir(char dir[64], const char *tag) {
  snprintf(dir, 64, "/tmp/lh_cli_%.20s_XXXXXX", tag);
  cr_assert_not_null(mkdtemp(dir), "mkdtemp %s", dir);
}

void cli_remove_dir(const char *dir) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  cr_expect_eq(system(cmd), 0);
}

int cli_entries(const char *dir) {
  int n = 0;
  DIR *d = opendir(dir);
  if (!d) return -1;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) n += e->d_name[0] != '.';
  closedir(d);
  return n;
}

char cli_h5diff_report[2048];

int cli_h5diff(const char *opts, const char *a, const char *pa, const char *b, const char *pb) {
  char cmd[2048], line[1024];
  snprintf(cmd, sizeof cmd, "h5diff -v %s '%s' '%s' '%s' '%s' 2>&1", opts, a, b, pa, pb);
  cli_h5diff_report[0] = '\0';
  FILE *f = popen(cmd, "r");
  if (!f) return 1;
  int zero = 0, bad = 0, in_attr = 0;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "attribute:", 10) == 0) in_attr = 1;
    if (strncmp(line, "dataset:", 8) == 0 || strncmp(line, "group", 5) == 0) in_attr = 0;
    if (!in_attr && strlen(cli_h5diff_report) + strlen(line) < sizeof cli_h5diff_report)
      strcat(cli_h5diff_report, line);
    if (!in_attr && strstr(line, " differences found")) {
      if (strncmp(line, "0 differences found", 19) == 0)
        zero++;
      else
        bad++;
    }
    if (strstr(line, "not comparable") || strstr(line, "rror") || strstr(line, "not found") ||
        strstr(line, "could not"))
      bad++;
  }
  int rc = pclose(f);
  if (!WIFEXITED(rc) || WEXITSTATUS(rc) == 2) return 1;
  return zero > 0 && bad == 0 ? 0 : 1;
}

bool cli_png_size(const char *path, unsigned *w, unsigned *h) {
  static const unsigned char SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  unsigned char b[24] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return false;
  size_t n = fread(b, 1, sizeof b, f);
  fclose(f);
  if (n != sizeof b || memcmp(b, SIG, 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0) return false;
  *w = (unsigned)b[16] << 24 | (unsigned)b[17] << 16 | (unsigned)b[18] << 8 | b[19];
  *h = (unsigned)b[20] << 24 | (unsigned)b[21] << 16 | (unsigned)b[22] << 8 | b[23];
  return true;
}

void cli_strip_volatile(char *s) {
  char *w = s;
  for (char *line = s; *line;) {
    char *nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line + 1) : strlen(line);
    if (!strstr(line, "\"seconds\"") && !strstr(line, "\"out\"")) w += len, memmove(w - len, line, len);
    line += len;
  }
  *w = '\0';
}

/* 1 when a and b are the same text up to numbers agreeing within tol * max(1, |x|, |y|). */
int cli_same_numbers(const char *a, const char *b, double tol) {
  while (*a && *b) {
    int na = isdigit((unsigned char)a[0]) || (a[0] == '-' && isdigit((unsigned char)a[1]));
    int nb = isdigit((unsigned char)b[0]) || (b[0] == '-' && isdigit((unsigned char)b[1]));
    if (na && nb) {
      char *ea, *eb;
      double x = strtod(a, &ea), y = strtod(b, &eb);
      double ax = x < 0 ? -x : x, ay = y < 0 ? -y : y, d = x > y ? x - y : y - x;
      double scale = ax > ay ? ax : ay;
      if (d > tol * (scale > 1.0 ? scale : 1.0)) return 0; /* no libm in the CLI tests */
      a = ea;
      b = eb;
      continue;
    }
    if (*a++ != *b++) return 0;
  }
  return *a == *b;
}
