/*
 * xsum.c: exact summation with a carry-save long accumulator (see xsum.h).
 *
 * A finite double is m * 2^e with an integer m < 2^53 and e >= -1074. Its bits are added
 * into the 32-bit digits that they cover (at most three), each digit an int64 so that 2^30
 * additions fit before carries must be propagated. Normalisation propagates carries so that
 * every digit but the top one lies in [0, 2^32); the top digit carries the sign.
 */
#include <math.h>
#include <string.h>

#include "core/check.h"
#include "latenthook/xsum.h"

#define LOW_EXP (-1088) /* weight of digit 0 is 2^LOW_EXP; multiple of 32, <= -1074 */
#define SLOT_NAN (LH_XSUM_DIGITS)
#define SLOT_PINF (LH_XSUM_DIGITS + 1)
#define SLOT_NINF (LH_XSUM_DIGITS + 2)
#define SLOT_ADDS (LH_XSUM_DIGITS + 3)
#define NORMALISE_EVERY (INT64_C(1) << 30)
#define DIGIT_MASK INT64_C(0xffffffff)

void lh_xsum_init(lh_xsum *acc) { memset(acc, 0, sizeof *acc); }

static void normalise(lh_xsum *acc) {
  int64_t *d = acc->slot;
  for (int k = 0; k < LH_XSUM_DIGITS - 1; k++) {
    int64_t low = d[k] & DIGIT_MASK; /* int64_t is two's complement (C11 7.20.1.1) */
    int64_t carry = (d[k] - low) / (INT64_C(1) << 32);
    d[k] = low;
    d[k + 1] += carry;
  }
  acc->slot[SLOT_ADDS] = 0;
}

void lh_xsum_add(lh_xsum *acc, double x) {
  uint64_t bits;
  memcpy(&bits, &x, sizeof bits);
  int biased = (int)((bits >> 52) & 0x7ff);
  uint64_t m = bits & ((UINT64_C(1) << 52) - 1);
  bool neg = (bits >> 63) != 0;
  if (biased == 0x7ff) {
    if (m != 0)
      acc->slot[SLOT_NAN]++;
    else
      acc->slot[neg ? SLOT_NINF : SLOT_PINF]++;
    return;
  }
  if (biased == 0 && m == 0) return;
  int lsb_exp = biased == 0 ? -1074 : biased - 1075;
  if (biased != 0) m |= UINT64_C(1) << 52;
  int off = lsb_exp - LOW_EXP; /* >= 14 */
  int k = off >> 5, s = off & 31;
  /* m << s spans up to 85 bits: three digits, computed without overflowing 64 bits. */
  int64_t d0 = (int64_t)((m << s) & UINT64_C(0xffffffff));
  uint64_t t = s ? m >> (32 - s) : m >> 32;
  int64_t d1 = (int64_t)(t & UINT64_C(0xffffffff));
  int64_t d2 = (int64_t)(t >> 32);
  int64_t *d = acc->slot;
  if (neg) {
    d[k] -= d0;
    d[k + 1] -= d1;
    d[k + 2] -= d2;
  } else {
    d[k] += d0;
    d[k + 1] += d1;
    d[k + 2] += d2;
  }
  if (++acc->slot[SLOT_ADDS] >= NORMALISE_EVERY) normalise(acc);
}

void lh_xsum_add_product(lh_xsum *acc, double a, double b) {
  double p = a * b;
  if (!isfinite(p)) {
    lh_xsum_add(acc, p);
    return;
  }
  double e = fma(a, b, -p); /* p + e == a*b exactly */
  lh_xsum_add(acc, p);
  lh_xsum_add(acc, e);
}

void lh_xsum_merge(lh_xsum *acc, const lh_xsum *other) {
  lh_xsum tmp = *other;
  normalise(&tmp);
  normalise(acc);
  for (int k = 0; k < LH_XSUM_DIGITS + 3; k++) acc->slot[k] += tmp.slot[k];
  acc->slot[SLOT_ADDS] = 2; /* digits are now below 2^33: far from overflow */
}

/* Bit i of the non-negative normalised integer held in the digits. */
static int bit_at(const int64_t *d, int i) {
  if (i < 0) return 0;
  return (int)((d[i >> 5] >> (i & 31)) & 1);
}

double lh_xsum_round(lh_xsum *acc) {
  if (acc->slot[SLOT_NAN] > 0 || (acc->slot[SLOT_PINF] > 0 && acc->slot[SLOT_NINF] > 0))
    return NAN;
  if (acc->slot[SLOT_PINF] > 0) return INFINITY;
  if (acc->slot[SLOT_NINF] > 0) return -INFINITY;
  normalise(acc);
  int64_t mag[LH_XSUM_DIGITS];
  bool neg = acc->slot[LH_XSUM_DIGITS - 1] < 0;
  for (int k = 0; k < LH_XSUM_DIGITS; k++) mag[k] = neg ? -acc->slot[k] : acc->slot[k];
  if (neg) { /* re-normalise the negated digits into [0, 2^32) */
    for (int k = 0; k < LH_XSUM_DIGITS - 1; k++) {
      int64_t low = mag[k] & DIGIT_MASK;
      mag[k + 1] += (mag[k] - low) / (INT64_C(1) << 32);
      mag[k] = low;
    }
  }
  int h = LH_XSUM_DIGITS - 1;
  while (h >= 0 && mag[h] == 0) h--;
  if (h < 0) return 0.0;
  int top = 31;
  while (((mag[h] >> top) & 1) == 0) top--;
  int msb = 32 * h + top; /* bit index of the leading one */
  /* 53 significant bits, then the round bit and a sticky bit for everything below. */
  uint64_t mant = 0;
  for (int i = msb; i > msb - 53; i--) mant = (mant << 1) | (uint64_t)bit_at(mag, i);
  int round = bit_at(mag, msb - 53);
  bool sticky = false;
  for (int i = msb - 54; i >= 0 && !sticky; i--) {
    if ((i & 31) == 31 && mag[i >> 5] == 0) { /* skip whole zero digits */
      i -= 31;
      continue;
    }
    sticky = bit_at(mag, i) != 0;
  }
  if (round && (sticky || (mant & 1))) mant++;
  /* Sums of doubles are multiples of 2^-1074, so a subnormal result is exact and ldexp does
   * not round again; mant == 2^53 after rounding is fine for ldexp. */
  double v = ldexp((double)mant, msb - 52 + LOW_EXP);
  return neg ? -v : v;
}

lh_status lh_xsum_allreduce(lh_xsum *acc, int count, MPI_Comm comm) {
  /* Normalised digits are below 2^32, so up to 2^31 ranks can be summed without overflow. */
  for (int i = 0; i < count; i++) normalise(&acc[i]);
  const int per_call = INT32_MAX / LH_XSUM_SLOTS;
  for (int first = 0; first < count; first += per_call) {
    int m = count - first < per_call ? count - first : per_call;
    MPI_Allreduce(MPI_IN_PLACE, acc[first].slot, m * LH_XSUM_SLOTS, MPI_INT64_T, MPI_SUM, comm);
  }
  for (int i = 0; i < count; i++) normalise(&acc[i]);
  return LH_OK;
}
