/*
 * spawn.h: runs the latenthook executable under mpiexec for the command-line tests and
 * captures what it printed. A 120 s `timeout` guards every run, so a hang fails the test.
 */
#ifndef LH_TESTS_SPAWN_H
#define LH_TESTS_SPAWN_H

typedef struct run_result {
  int status; /* exit status of mpiexec (124 = timed out) */
  char *out;  /* stdout, NUL-terminated */
  char *err;  /* stderr */
} run_result;

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

#endif
