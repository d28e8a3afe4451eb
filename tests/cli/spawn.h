/*
 * spawn.h: runs the latenthook executable under mpiexec for the command-line tests and
 * captures what it printed. A 120 s `timeout` guards every run, so a hang fails the test.
 */
#ifndef LH_TESTS_SPAWN_H
#define LH_TESTS_SPAWN_H

#include <stdbool.h>

typedef struct run_result {
  int status; /* exit status of mpiexec (124 = timed out) */
  char *out;  /* stdout, NUL-terminated */
  char *err;  /* stderr */
} run_result;

/* Seconds the `timeout` of the next runs allows (default 120). */
extern int cli_timeout;

/* Runs `mpiexec -n np latenthook <args>` (args is a shell fragment). */
run_result run_cli(int np, const char *args);

/* Same, with LeakSanitizer off in the ASan build (leak checking every launch of a many-rank
 * run costs seconds in Open MPI's start-up; single-rank runs keep it). */
run_result run_cli_noleak(int np, const char *args);

/* Runs an arbitrary shell command with the same capture. */
run_result run_shell(const char *cmd);

void run_free(run_result *r);

/* Number of lines of `text` containing `needle`. */
int count_lines_with(const char *text, const char *needle);

/* run_cli for np <= 2, run_cli_noleak above (the tests' usual choice). */
run_result run_cli_np(int np, const char *args);

/* Creates a fresh folder /tmp/lh_cli_<tag>_XXXXXX into dir; fails the test if it cannot. */
void cli_make_dir(char dir[64], const char *tag);

/* rm -rf dir (expects success). */
void cli_remove_dir(const char *dir);

/* Number of entries of dir other than dot files; -1 if it cannot be read. */
int cli_entries(const char *dir);

/* 0 when h5diff finds dataset pa of file a equal to pb of file b (within the tolerance in
 * opts, e.g. "-d 1e-5"; "" = exactly), else 1. h5diff's own exit status also counts
 * attributes, which differ by design (provenance: command line, time, ranks), so its verbose
 * report is read instead: every compared dataset (not attribute) must say "0 differences
 * found", and nothing may be "not comparable", "not found" or an error. The report's lines
 * about data (not attributes) are kept in cli_h5diff_report (first 2 KiB) for messages. */
int cli_h5diff(const char *opts, const char *a, const char *pa, const char *b, const char *pb);
extern char cli_h5diff_report[2048];

/* Removes from s (in place) the lines of a JSON summary that differ between runs by design:
 * those holding "seconds" or "out". */
void cli_strip_volatile(char *s);

/* 1 when a and b are the same text up to numbers agreeing within tol * max(1, |x|, |y|)
 * (stdout of runs on different rank counts), else 0. */
int cli_same_numbers(const char *a, const char *b, double tol);

/* True when path starts with the PNG signature and an IHDR chunk; *w and *h get its size. */
bool cli_png_size(const char *path, unsigned *w, unsigned *h);

#endif
