/*
 * check.h (private): the error-propagation idiom used in every LatentHook function.
 *
 *   lh_status st = LH_OK;
 *   ...
 *   LH_TRY(lh_something(...));             // on failure: st = its status; goto done
 *   if (bad) LH_FAIL(LH_ERR_VALUE, "...");  // record a message, then goto done
 *   ...
 * done:
 *   release what was acquired;
 *   return st;
 */
#ifndef LH_CORE_CHECK_H
#define LH_CORE_CHECK_H

#include "latenthook/status.h"

#define LH_TRY(expr)                \
  do {                              \
    lh_status lh_try_st_ = (expr);  \
    if (lh_try_st_ != LH_OK) {      \
      st = lh_try_st_;              \
      goto done;                    \
    }                               \
  } while (0)

#define LH_FAIL(code, ...)                                        \
  do {                                                            \
    st = lh_error_set((code), __FILE__, __LINE__, __VA_ARGS__);   \
    goto done;                                                    \
  } while (0)

/* Records a message without jumping (for use where a goto would skip a collective). */
#define LH_ERROR(code, ...) lh_error_set((code), __FILE__, __LINE__, __VA_ARGS__)

#define LH_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LH_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
