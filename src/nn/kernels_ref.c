/*
 * kernels_ref.c: naive reference twins of the layer kernels (contracts in kernels.h).
 *
 * These exist only so that the tests can check the fast kernels (kernels.c) against
 * something obviously right, the way llm.c keeps a plain loop beside each optimised kernel.
 * Each one is written straight from the definition quoted in kernels.h, with plain loops, no
 * BLAS and no cleverness: every sum and every transcendental function is evaluated in
 * float64 and rounded to float32 once, at the store. Attention is computed from its
 * definition: for row t of head h the scores scale * q_t . k_j for j <= t only, their
 * softmax, and exact zeros for j > t; the mix is the full product probs @ v. They are slow
 * (O(BT C OC) scalar loops) and are not meant for production use.
 */
#include <math.h>

#include "nn/kernels.h"

void lh_kref_linear(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t BT, int64_t C, int64_t OC) {
  for (int64_t i = 0; i < BT; i++)
    for (int64_t o = 0; o < OC; o++) {
      double s = bias ? bias[o] : 0.0;
      for (int64_t c = 0; c < C; c++) s += (double)inp[i * C + c] * weight[o * C + c];
      out[i * OC + o] = (float)s;
    }
}

void lh_kref_conv1d(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t BT, int64_t C, int64_t OC) {
  for (int64_t i = 0; i < BT; i++)
    for (int64_t o = 0; o < OC; o++) {
      double s = bias ? bias[o] : 0.0;
      for (int64_t c = 0; c < C; c++) s += (double)inp[i * C + c] * weight[c * OC + o];
      out[i * OC + o] = (float)s;
    }
}

void lh_kref_embedding(float *out, const float *ids, const float *table, int64_t BT, int64_t C) {
  for (int64_t i = 0; i < BT; i++) {
    const int64_t id = (int64_t)ids[i];
    for (int64_t c = 0; c < C; c++) out[i * C + c] = table[id * C + c];
  }
}

void lh_kref_layernorm(float *out, const float *inp, const float *weight, const float *bias,
                       int64_t BT, int64_t C, float eps) {
  for (int64_t i = 0; i < BT; i++) {
    const float *x = inp + i * C;
    double mean = 0.0, var = 0.0;
    for (int64_t c = 0; c < C; c++) mean += x[c];
    mean /= (double)C;
    for (int64_t c = 0; c < C; c++) var += (x[c] - mean) * (x[c] - mean);
    var /= (double)C;
    const double sd = sqrt(var + (double)eps);
    for (int64_t c = 0; c < C; c++) {
      const double w = weight ? weight[c] : 1.0, b = bias ? bias[c] : 0.0;
      out[i * C + c] = (float)((x[c] - mean) / sd * w + b);
    }
  }
}

void lh_kref_relu(float *out, const float *inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
}

void lh_kref_gelu(float *out, const float *inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const double x = inp[i];
    out[i] = (float)(0.5 * x * (1.0 + erf(x / sqrt(2.0))));
  }
}

void lh_kref_gelu_tanh(float *out, const float *inp, int64_t n) {
  const double pi = 3.14159265358979323846;
  for (int64_t i = 0; i < n; i++) {
    const double x = inp[i];
    out[i] = (float)(0.5 * x * (1.0 + tanh(sqrt(2.0 / pi) * (x + 0.044715 * x * x * x))));
  }
}

void lh_kref_tanh(float *out, const float *inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)tanh((double)inp[i]);
}

void lh_kref_sigmoid(float *out, const float *inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = (float)(1.0 / (1.0 + exp(-(double)inp[i])));
}

void lh_kref_add(float *out, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void lh_kref_softmax(float *out, const float *inp, int64_t rows, int64_t C) {
  for (int64_t i = 0; i < rows; i++) {
    const float *x = inp + i * C;
    double max = -INFINITY, sum = 0.0;
    for (int64_t c = 0; c < C; c++) max = x[c] > max ? x[c] : max;
    for (int64_t c = 0; c < C; c++) sum += exp(x[c] - max);
    /* In place is fine: out[c] is written after the last read of x[c]. */
    for (int64_t c = 0; c < C; c++) out[i * C + c] = (float)(exp(x[c] - max) / sum);
  }
}

/* scale * q_t . k_j of head h in sample b, in double. */
static double score(const float *qkv, int64_t b, int64_t t, int64_t j, int64_t h, int64_t T,
                    int64_t C, int64_t hs, float scale) {
  const float *q = qkv + (b * T + t) * 3 * C + h * hs;
  const float *k = qkv + (b * T + j) * 3 * C + C + h * hs;
  double s = 0.0;
  for (int64_t d = 0; d < hs; d++) s += (double)q[d] * k[d];
  return s * scale;
}

void lh_kref_attn_probs(float *probs, const float *qkv, int64_t B, int64_t T, int64_t C, int64_t NH,
                        float scale) {
  if (NH <= 0) return;
  const int64_t hs = C / NH;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T; t++) {
        float *row = probs + ((b * NH + h) * T + t) * T;
        double max = -INFINITY, sum = 0.0;
        for (int64_t j = 0; j <= t; j++) {
          const double s = score(qkv, b, t, j, h, T, C, hs, scale);
          max = s > max ? s : max;
        }
        for (int64_t j = 0; j <= t; j++) sum += exp(score(qkv, b, t, j, h, T, C, hs, scale) - max);
        for (int64_t j = 0; j < T; j++)
          row[j] =
              j <= t ? (float)(exp(score(qkv, b, t, j, h, T, C, hs, scale) - max) / sum) : 0.0f;
      }
}

void lh_kref_attn_mix(float *out, const float *probs, const float *qkv, int64_t B, int64_t T,
                      int64_t C, int64_t NH) {
  if (NH <= 0) return;
  const int64_t hs = C / NH;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++)
      for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < hs; d++) {
          const float *p = probs + ((b * NH + h) * T + t) * T;
          double s = 0.0;
          for (int64_t j = 0; j < T; j++)
            s += (double)p[j] * qkv[(b * T + j) * 3 * C + 2 * C + h * hs + d];
          out[(b * T + t) * C + h * hs + d] = (float)s;
        }
}
