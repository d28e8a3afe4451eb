/*
 * kernels.c: the fast layer kernels of the hooked forward pass (contracts in kernels.h).
 *
 * Pure functions in the manner of llm.c's train_gpt2.c: raw pointers and size letters in,
 * results out, no allocation, no I/O, no MPI and no OpenMP (the ranks are the parallelism;
 * OpenBLAS is expected to run one thread per rank). Every matrix product is one cblas_sgemm
 * call on strided views of the caller's buffers, so nothing is ever copied or transposed:
 *   linear      out = inp W^T + b     sgemm NoTrans x Trans, bias pre-broadcast, beta = 1
 *   conv1d      out = inp W + b       sgemm NoTrans x NoTrans, same bias trick
 *   attn_probs  per (b, h): S = scale q k^T straight into probs (q, k read with stride 3C),
 *               then the causal mask and a row softmax over the first t + 1 entries
 *   attn_mix    per (b, h): probs (T, T) @ v (T, hs, stride 3C) written into the head's
 *               channel slice of out (stride C), which merges the heads for free
 * The full T x T score product is computed although only its lower triangle is used: one
 * large sgemm beats T small ones, and the masked entries are overwritten with exact zeros
 * (so attn_mix may multiply by them).
 *
 * Accuracy. The matrix products are plain float32 BLAS, as PyTorch's are. The reductions
 * that PyTorch also does in float32 are done here in float64, which is cheap next to the
 * GEMMs and brings them to within about one float ulp of the float64 references: layernorm
 * takes the mean and the biased variance of each row in two passes in double (eps inside the
 * square root, as torch.nn.LayerNorm), and softmax sums its max-subtracted exponentials in
 * double. The GELU variants use forms that are equal to the header's formulas but avoid the
 * cancellation of 1 + erf(z) and 1 + tanh(u) for negative arguments, so that their error is
 * small relative to each value, not only to |x|:
 *   gelu       0.5 x (1 + erf(x / sqrt 2))  = 0.5 x erfc(-x / sqrt 2)
 *   gelu_tanh  0.5 x (1 + tanh(u))          = x / (1 + exp(-2u)),  u = sqrt(2/pi)(x + 0.044715 x^3)
 * (both give -0 or a tiny negative value for very negative x, and x for very large x).
 * sigmoid evaluates exp only of non-positive arguments, so it never overflows and keeps
 * subnormal results for very negative x.
 *
 * BLAS integers. cblas takes int sizes. The model dimensions (C, OC, T, 3C, hs) are the
 * caller's to check against INT_MAX when the model is loaded (they are tiny in practice); the
 * row count BT of linear/conv1d depends on the data and is split into calls of at most
 * INT_MAX rows, so it may be any int64_t. Element offsets are formed in int64_t/pointer
 * arithmetic, never in int. Leading dimensions are clamped to at least 1 so that an empty
 * inner dimension (C = 0) is still a legal call. As everywhere in kernels.h, NH > 0 dividing C
 * and the ids being in range are the caller's checks.
 */
#include <limits.h>
#include <math.h>
#include <string.h>

#include <cblas.h>

#include "nn/kernels.h"

/* A size that the caller (or the row splitting below) guarantees to fit an int. */
static int blas_int(int64_t x) {
  return (int)x;
}
/* A leading dimension: BLAS rejects 0 even when the matrix is empty. */
static int blas_ld(int64_t x) {
  return x > 0 ? (int)x : 1;
}

/* out (rows, OC) = bias broadcast over rows, or zeros without a bias; returns the beta that
 * makes the following sgemm accumulate onto it (1) or overwrite it (0). */
static float bias_rows(float *out, const float *bias, int64_t rows, int64_t OC) {
  if (!bias) return 0.0f;
  for (int64_t i = 0; i < rows; i++) memcpy(out + i * OC, bias, (size_t)OC * sizeof *out);
  return 1.0f;
}

/* out (BT, OC) = inp (BT, C) @ op(weight) + bias, op = transpose for nn.Linear's (OC, C)
 * layout, identity for Conv1D's (C, OC) layout. */
static void matmul_bias(float *out, const float *inp, const float *weight, const float *bias,
                        int64_t BT, int64_t C, int64_t OC, int transposed) {
  if (BT <= 0 || OC <= 0) return;
  const int64_t max_rows = INT_MAX;
  for (int64_t r0 = 0; r0 < BT; r0 += max_rows) {
    const int64_t rows = BT - r0 < max_rows ? BT - r0 : max_rows;
    float *o = out + r0 * OC; /* (rows, OC) */
    const float beta = bias_rows(o, bias, rows, OC);
    if (C <= 0) {
      if (!bias) memset(o, 0, (size_t)(rows * OC) * sizeof *o);
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, transposed ? CblasTrans : CblasNoTrans, blas_int(rows),
                blas_int(OC), blas_int(C), 1.0f, inp + r0 * C, blas_ld(C), weight,
                blas_ld(transposed ? C : OC), beta, o, blas_ld(OC));
  }
}

void lh_k_linear(float *out, const float *inp, const float *weight, const float *bias, int64_t BT,
                 int64_t C, int64_t OC) {
  matmul_bias(out, inp, weight, bias, BT, C, OC, 1);
}

void lh_k_conv1d(float *out, const float *inp, const float *weight, const float *bias, int64_t BT,
                 int64_t C, int64_t OC) {
  matmul_bias(out, inp, weight, bias, BT, C, OC, 0);
}

void lh_k_embedding(float *out, const float *ids, const float *table, int64_t BT, int64_t C) {
  if (C <= 0) return;
  for (int64_t i = 0; i < BT; i++) {
    /* ids are exact integers in float (any vocabulary below 2^24 is exact). */
    const int64_t id = (int64_t)ids[i];
    memcpy(out + i * C, table + id * C, (size_t)C * sizeof *out);
  }
}

void lh_k_layernorm(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t BT, int64_t C, float eps) {
  if (C <= 0) return;
  for (int64_t i = 0; i < BT; i++) {
    const float *x = inp + i * C; /* (C) */
    float *y = out + i * C;       /* (C) */
    double sum = 0.0;
    for (int64_t c = 0; c < C; c++) sum += x[c];
    const double mean = sum / (double)C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; c++) {
      const double d = x[c] - mean;
      ss += d * d;
    }
    const double rstd = 1.0 / sqrt(ss / (double)C + (double)eps);
    /* Each x[c] is read before y[c] is written: in-place use is safe, if not promised. */
    for (int64_t c = 0; c < C; c++) {
      double v = (x[c] - mean) * rstd;
      if (weight) v *= weight[c];
      if (bias) v += bias[c];
      y[c] = (float)v;
    }
  }
}

void lh_k_relu(float *out, const float *inp, int64_t n) {
  /* x < 0 ? 0 : x lets NaN through, as torch.relu does. */
  for (int64_t i = 0; i < n; i++) out[i] = inp[i] < 0.0f ? 0.0f : inp[i];
}

void lh_k_gelu(float *out, const float *inp, int64_t n) {
  const float inv_sqrt2 = 0.70710678118654752440f;
  for (int64_t i = 0; i < n; i++) {
    const float x = inp[i];
    out[i] = 0.5f * x * erfcf(-x * inv_sqrt2);
  }
}

void lh_k_gelu_tanh(float *out, const float *inp, int64_t n) {
  const float k = 0.79788456080286535588f; /* sqrt(2 / pi) */
  for (int64_t i = 0; i < n; i++) {
    const float x = inp[i];
    const float u = k * (x + 0.044715f * x * x * x);
    /* exp(-2u) = inf for very negative u gives x / inf = -0, as the tanh form does. */
    out[i] = x / (1.0f + expf(-2.0f * u));
  }
}

void lh_k_tanh(float *out, const float *inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = tanhf(inp[i]);
}

void lh_k_sigmoid(float *out, const float *inp, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float x = inp[i];
    if (x >= 0.0f) {
      out[i] = 1.0f / (1.0f + expf(-x));
    } else {
      const float e = expf(x);
      out[i] = e / (1.0f + e);
    }
  }
}

void lh_k_add(float *out, const float *a, const float *b, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* y (n) = softmax(x (n)), max-subtracted, the sum in double; y may equal x. */
static void softmax_row(float *y, const float *x, int64_t n) {
  if (n <= 0) return;
  float max = x[0];
  for (int64_t j = 1; j < n; j++)
    if (x[j] > max) max = x[j];
  double sum = 0.0;
  for (int64_t j = 0; j < n; j++) {
    const float e = expf(x[j] - max);
    y[j] = e;
    sum += e;
  }
  const double inv = 1.0 / sum;
  for (int64_t j = 0; j < n; j++) y[j] = (float)(y[j] * inv);
}

void lh_k_softmax(float *out, const float *inp, int64_t rows, int64_t C) {
  for (int64_t i = 0; i < rows; i++) softmax_row(out + i * C, inp + i * C, C);
}

void lh_k_attn_probs(float *probs, const float *qkv, int64_t B, int64_t T, int64_t C, int64_t NH,
                     float scale) {
  if (B <= 0 || T <= 0 || NH <= 0) return;
  const int64_t hs = C / NH, C3 = 3 * C;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++) {
      const float *q = qkv + b * T * C3 + h * hs; /* (T, hs), row stride 3C */
      const float *k = q + C;                     /* (T, hs), row stride 3C */
      float *p = probs + (b * NH + h) * T * T;    /* (T, T) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blas_int(T), blas_int(T), blas_int(hs),
                  scale, q, blas_ld(C3), k, blas_ld(C3), 0.0f, p, blas_ld(T));
      for (int64_t t = 0; t < T; t++) {
        float *row = p + t * T;
        softmax_row(row, row, t + 1);
        for (int64_t j = t + 1; j < T; j++) row[j] = 0.0f;
      }
    }
}

void lh_k_attn_mix(float *out, const float *probs, const float *qkv, int64_t B, int64_t T,
                   int64_t C, int64_t NH) {
  if (B <= 0 || T <= 0 || NH <= 0) return;
  const int64_t hs = C / NH, C3 = 3 * C;
  if (hs <= 0) return;
  for (int64_t b = 0; b < B; b++)
    for (int64_t h = 0; h < NH; h++) {
      const float *p = probs + (b * NH + h) * T * T;      /* (T, T) */
      const float *v = qkv + b * T * C3 + 2 * C + h * hs; /* (T, hs), row stride 3C */
      float *o = out + b * T * C + h * hs;                /* (T, hs), row stride C */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, blas_int(T), blas_int(hs), blas_int(T),
                  1.0f, p, blas_ld(T), v, blas_ld(C3), 0.0f, o, blas_ld(C));
    }
}
