/*
 * log.h: diagnostics on stderr.
 *
 * Rank 0 owns stdout (results); everything else goes to stderr, prefixed with the rank when
 * more than one rank runs. Info messages come from rank 0 only, warnings and debug messages
 * from any rank.
 */
#ifndef LATENTHOOK_LOG_H
#define LATENTHOOK_LOG_H

#include "latenthook/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum lh_log_level {
  LH_LOG_QUIET = 0, /* errors only */
  LH_LOG_WARN = 1,
  LH_LOG_INFO = 2, /* default */
  LH_LOG_DEBUG = 3
} lh_log_level;

/* Sets the level and the rank/size used in prefixes (negative: unchanged). Local. */
void lh_log_setup(lh_log_level level, int rank, int nranks);
lh_log_level lh_log_get_level(void);

/* Rank 0 only. Local. */
void lh_log_info(const char *fmt, ...) LH_PRINTF(1, 2);
/* Any rank. Local. */
void lh_log_warn(const char *fmt, ...) LH_PRINTF(1, 2);
void lh_log_debug(const char *fmt, ...) LH_PRINTF(1, 2);

#ifdef __cplusplus
}
#endif
#endif
