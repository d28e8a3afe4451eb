/*
 * status.h: error codes and the per-process error record.
 *
 * Every fallible LatentHook function returns an lh_status (LH_OK = 0) and writes its
 * out-parameters only on success. The function that detects a failure records one message
 * saying what failed, where (file, dataset, option, YAML line) and what was expected; callers
 * may prefix context. Collective functions agree on failure with lh_agree() (comm.h) so that
 * every rank returns the same status and exactly one rank prints the message.
 *
 * The codes mirror the Python exception classes of the reference API (ValueError, TypeError,
 * ...) so that tests can check the class of an error, plus the failures C adds (I/O, memory).
 */
#ifndef LATENTHOOK_STATUS_H
#define LATENTHOOK_STATUS_H

#include <stdarg.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LH_NODISCARD __attribute__((warn_unused_result))
#define LH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define LH_NODISCARD
#define LH_PRINTF(f, a)
#endif

/* Error classes. Values are small positive integers (they travel in one allreduce). */
typedef enum lh_status {
  LH_OK = 0,
  LH_ERR_VALUE = 1,     /* a value is out of range or inconsistent (Python ValueError) */
  LH_ERR_TYPE = 2,      /* a value has the wrong type (TypeError), e.g. a string dataset */
  LH_ERR_KEY = 3,       /* a named thing does not exist (KeyError): module, key, dataset */
  LH_ERR_RUNTIME = 4,   /* a valid request failed at run time (RuntimeError) */
  LH_ERR_NOTIMPL = 5,   /* not implemented (NotImplementedError) */
  LH_ERR_USAGE = 6,     /* bad command line */
  LH_ERR_IO = 7,        /* file system or HDF5 failure */
  LH_ERR_NOMEM = 8,     /* allocation failed or a size overflowed */
  LH_ERR_MPI = 9,       /* an MPI, BLACS or ScaLAPACK call failed */
  LH_ERR_INTERNAL = 10, /* a bug in LatentHook */
  LH_ERR_INTERRUPTED = 11 /* stopped on request (SIGTERM/SIGUSR1) at a checkpoint; resumable */
} lh_status;

#define LH_STATUS_MAX 11

/* Short stable name of a status ("ValueError", "IOError", ...). Pure. */
const char *lh_status_name(lh_status st);

/* Records a failure message for this process and returns `st`. Local.
 * The message replaces any earlier one; `file`/`line` locate the C source for --verbose. */
lh_status lh_error_set(lh_status st, const char *file, int line, const char *fmt, ...)
    LH_PRINTF(4, 5);

/* Prefixes the current message with context ("--data: "). Local; no effect without one. */
void lh_error_prefix(const char *fmt, ...) LH_PRINTF(1, 2);

/* The current message, or "" if none. Local. */
const char *lh_error_message(void);

/* The C source location of the current message ("src/io/h5.c:120"), or "". Local. */
const char *lh_error_origin(void);

/* True if this process holds a message that has not been handed to another rank. Local. */
bool lh_error_pending(void);

/* Forgets the current message. Local. */
void lh_error_clear(void);

#ifdef __cplusplus
}
#endif
#endif
