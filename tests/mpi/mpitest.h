/*
 * mpitest.h: assertions for the multi-rank test programs.
 *
 * A check that fails prints "FAIL [rank r] file:line: message" and marks the rank failed;
 * mt_finish() agrees over MPI_COMM_WORLD and returns 1 on every rank if any rank failed, so
 * that mpiexec (and CTest) see the failure whichever rank found it.
 */
#ifndef LH_TESTS_MPITEST_H
#define LH_TESTS_MPITEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <mpi.h>

#include "latenthook/status.h"

static int mt_failures, mt_checks;

static inline int mt_rank(void) {
  int r;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

#define MT_CHECK(cond, ...)                                                   \
  do {                                                                        \
    mt_checks++;                                                              \
    if (!(cond)) {                                                            \
      mt_failures++;                                                          \
      fprintf(stderr, "FAIL [rank %d] %s:%d: ", mt_rank(), __FILE__, __LINE__); \
      fprintf(stderr, __VA_ARGS__);                                           \
      fprintf(stderr, "\n");                                                  \
    }                                                                         \
  } while (0)

/* Asserts a status, printing the recorded error message when it is not the expected one. */
#define MT_STATUS(expr, want)                                                           \
  do {                                                                                  \
    lh_status mt_st_ = (expr);                                                          \
    MT_CHECK(mt_st_ == (want), "%s returned %s, expected %s (%s)", #expr,               \
             lh_status_name(mt_st_), lh_status_name(want), lh_error_message());         \
  } while (0)

#define MT_OK(expr) MT_STATUS(expr, LH_OK)

/* Bitwise equality of doubles (NaN equal to NaN). */
static inline int mt_same(double a, double b) {
  return (isnan(a) && isnan(b)) || memcmp(&a, &b, sizeof a) == 0;
}

static inline int mt_finish(const char *name) {
  int fails = mt_failures, total = 0, checks = 0;
  MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  MPI_Allreduce(&mt_checks, &checks, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
  int P;
  MPI_Comm_size(MPI_COMM_WORLD, &P);
  if (mt_rank() == 0)
    printf("%s on %d rank%s: %d checks, %d failed\n", name, P, P == 1 ? "" : "s", checks, total);
  MPI_Finalize();
  return total ? 1 : 0;
}

#endif
