/*
 * reduce.c: the built-in reductions of cached activations (reduce.h). The tensor of one
 * sample is viewed as (outer, T, inner) around the position axis (the second last), so every
 * reduction is a loop over outer x inner with T either summed or indexed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/reduce.h"

lh_status lh_reduce_parse(const char *s, lh_reduce *out) {
  lh_reduce r = {LH_REDUCE_NONE, 0};
  if (strcmp(s, "none") == 0)
    r.kind = LH_REDUCE_NONE;
  else if (strcmp(s, "mean") == 0)
    r.kind = LH_REDUCE_MEAN;
  else if (strcmp(s, "last") == 0)
    r.kind = LH_REDUCE_LAST;
  else if (strcmp(s, "flatten") == 0)
    r.kind = LH_REDUCE_FLATTEN;
  else if (strncmp(s, "position:", 9) == 0) {
    char *end = NULL;
    long long v = strtoll(s + 9, &end, 10);
    if (end == s + 9 || *end != '\0')
      return LH_ERROR(LH_ERR_USAGE, "reduction '%s': expected position:I with an integer I", s);
    r.kind = LH_REDUCE_POSITION;
    r.position = v;
  } else {
    return LH_ERROR(LH_ERR_USAGE,
                    "unknown reduction '%s' (expected none, mean, last, position:I or flatten)", s);
  }
  *out = r;
  return LH_OK;
}

const char *lh_reduce_name(const lh_reduce *r, char *buf, size_t cap) {
  switch (r->kind) {
    case LH_REDUCE_NONE:
      snprintf(buf, cap, "none");
      break;
    case LH_REDUCE_MEAN:
      snprintf(buf, cap, "mean");
      break;
    case LH_REDUCE_LAST:
      snprintf(buf, cap, "last");
      break;
    case LH_REDUCE_FLATTEN:
      snprintf(buf, cap, "flatten");
      break;
    case LH_REDUCE_POSITION:
      snprintf(buf, cap, "position:%lld", (long long)r->position);
      break;
  }
  return buf;
}

static void shape_str(int k, const int64_t *s, char *buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "(");
  for (int i = 0; i < k && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%lld%s", (long long)s[i],
                          k == 1 ? "," : (i + 1 < k ? ", " : ""));
  if (n < cap) snprintf(buf + n, cap - n, ")");
}

lh_status lh_reduce_shape(const lh_reduce *r, const char *what, int k, const int64_t *in,
                          int *k_out, int64_t *out) {
  char sh[128], nm[32];
  if (r->kind == LH_REDUCE_NONE) {
    memcpy(out, in, (size_t)k * sizeof *in);
    *k_out = k;
    return LH_OK;
  }
  if (r->kind == LH_REDUCE_FLATTEN) {
    int64_t n = 1;
    for (int i = 0; i < k; i++) n *= in[i];
    out[0] = n;
    *k_out = 1;
    return LH_OK;
  }
  if (k < 2) {
    shape_str(k, in, sh, sizeof sh);
    return LH_ERROR(LH_ERR_VALUE,
                    "--reduce %s: %s gives per-sample shape %s, which has no position axis "
                    "(expected (positions, features) or more dimensions; use none or flatten)",
                    lh_reduce_name(r, nm, sizeof nm), what, sh);
  }
  const int64_t T = in[k - 2];
  if (r->kind == LH_REDUCE_POSITION && (r->position >= T || r->position < -T))
    return LH_ERROR(LH_ERR_VALUE, "--reduce %s: %s has %lld positions (valid: %lld to %lld)",
                    lh_reduce_name(r, nm, sizeof nm), what, (long long)T, (long long)-T,
                    (long long)T - 1);
  if (r->kind == LH_REDUCE_MEAN && T == 0)
    return LH_ERROR(LH_ERR_VALUE, "--reduce mean: %s has no positions", what);
  if (r->kind == LH_REDUCE_LAST && T == 0)
    return LH_ERROR(LH_ERR_VALUE, "--reduce last: %s has no positions", what);
  for (int i = 0, j = 0; i < k; i++)
    if (i != k - 2) out[j++] = in[i];
  *k_out = k - 1;
  return LH_OK;
}

void lh_reduce_apply(const lh_reduce *r, const lh_tensor *t, float *out) {
  const int64_t b = t->shape[0], row = lh_tensor_row_len(t);
  if (r->kind == LH_REDUCE_NONE || r->kind == LH_REDUCE_FLATTEN) {
    memcpy(out, t->data, (size_t)(b * row) * sizeof *out);
    return;
  }
  /* per sample: (outer, T, inner) */
  const int64_t T = t->shape[t->ndim - 2], inner = t->shape[t->ndim - 1];
  const int64_t outer = row / (T * inner);
  for (int64_t s = 0; s < b; s++) {
    const float *x = t->data + s * row;
    float *y = out + s * outer * inner;
    for (int64_t o = 0; o < outer; o++) {
      const float *xo = x + o * T * inner;
      float *yo = y + o * inner;
      if (r->kind == LH_REDUCE_MEAN) {
        for (int64_t c = 0; c < inner; c++) {
          double acc = 0;
          for (int64_t p = 0; p < T; p++) acc += xo[p * inner + c];
          yo[c] = (float)(acc / (double)T);
        }
      } else {
        int64_t p = r->kind == LH_REDUCE_LAST ? T - 1
                    : r->position < 0         ? T + r->position
                                              : r->position;
        memcpy(yo, xo + p * inner, (size_t)inner * sizeof *yo);
      }
    }
  }
}
