/*
 * mem.c: checked, aligned allocation (see mem.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "core/check.h"
#include "latenthook/mem.h"

bool lh_mul_overflows(size_t a, size_t b, size_t *out) {
  if (a != 0 && b > SIZE_MAX / a) return true;
  *out = a * b;
  return false;
}

const char *lh_format_bytes(double bytes, char *buf, size_t cap) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 5) {
    bytes /= 1024.0;
    u++;
  }
  if (u == 0)
    snprintf(buf, cap, "%.0f B", bytes);
  else
    snprintf(buf, cap, "%.1f %s", bytes, units[u]);
  return buf;
}

lh_status lh_alloc(size_t count, size_t size, bool zero, const char *what, void *out) {
  size_t bytes;
  if (lh_mul_overflows(count, size, &bytes))
    return LH_ERROR(LH_ERR_NOMEM, "cannot allocate %zu x %zu bytes for %s: size overflows",
                    count, size, what);
  void *p = NULL;
  size_t req = bytes ? bytes : 64;
  if (posix_memalign(&p, 64, req) != 0 || p == NULL) {
    char b[32];
    return LH_ERROR(LH_ERR_NOMEM, "cannot allocate %s for %s: out of memory",
                    lh_format_bytes((double)bytes, b, sizeof b), what);
  }
  if (zero) memset(p, 0, req);
  memcpy(out, &p, sizeof p);
  return LH_OK;
}

void lh_free(void *p) { free(p); }

int64_t lh_peak_rss_bytes(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1;
  return (int64_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}
