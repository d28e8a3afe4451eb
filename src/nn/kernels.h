/*
 * kernels.h (private): the pure layer kernels of the hooked forward pass.
 *
 * In the manner of llm.c: every kernel takes raw pointers plus size letters, never allocates,
 * never does I/O or MPI, and has a shape comment. B = samples in the batch, T = positions,
 * C = channels, OC = output channels, NH = heads, hs = C / NH, BT = B * T (any leading
 * dimensions flattened into rows). All tensors are contiguous row-major float32; matrix
 * products go through BLAS (cblas_sgemm). Unless said otherwise `out` must not alias an input;
 * the element-wise kernels allow out == inp.
 *
 * Each fast kernel has a naive reference twin (lh_kref_*, kernels_ref.c): plain loops,
 * accumulating in float64, used only by the tests to check the fast one.
 *
 * Semantics follow PyTorch (torch.nn) in eval mode:
 *   linear     out = inp @ W^T + b, W (OC, C) as in nn.Linear / a state_dict
 *   conv1d     out = inp @ W + b,   W (C, OC): Hugging Face's GPT-2 Conv1D (transposed linear)
 *   embedding  out[i] = table[ids[i]]; ids are integer-valued floats already range-checked
 *   layernorm  out = (x - mean) / sqrt(var + eps) * w + b over the last dim, biased variance
 *   gelu       0.5 x (1 + erf(x / sqrt 2));  gelu_tanh: 0.5 x (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))
 *              (Hugging Face's "gelu_new" / NewGELUActivation, torch's approximate="tanh")
 *   softmax    over the last dim, max-subtracted
 *   attention  causal multi-head self-attention in two halves so that the probabilities can
 *              be hooked between them (Hugging Face's attn_dropout sits there):
 *              attn_probs: scores = q k^T * scale, masked above the diagonal, softmax; the
 *              masked entries are exactly 0 (as torch gives after masking with finfo.min);
 *              attn_mix:   out = probs @ v, heads merged back into C channels.
 */
#ifndef LH_NN_KERNELS_H
#define LH_NN_KERNELS_H

#include <stdint.h>

/* out (BT, OC) = inp (BT, C) @ weight (OC, C)^T + bias (OC, may be NULL) */
void lh_k_linear(float *out, const float *inp, const float *weight, const float *bias,
                 int64_t BT, int64_t C, int64_t OC);
/* out (BT, OC) = inp (BT, C) @ weight (C, OC) + bias (OC, may be NULL) */
void lh_k_conv1d(float *out, const float *inp, const float *weight, const float *bias,
                 int64_t BT, int64_t C, int64_t OC);
/* out (BT, C) = table (V, C)[ids (BT)]; 0 <= ids[i] < V is the caller's check */
void lh_k_embedding(float *out, const float *ids, const float *table, int64_t BT, int64_t C);
/* out (BT, C) = layernorm(inp (BT, C)) * weight (C) + bias (C); weight/bias may be NULL
 * (elementwise_affine=False) */
void lh_k_layernorm(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t BT, int64_t C, float eps);
/* element-wise over n values; out may equal inp */
void lh_k_relu(float *out, const float *inp, int64_t n);
void lh_k_gelu(float *out, const float *inp, int64_t n);
void lh_k_gelu_tanh(float *out, const float *inp, int64_t n);
void lh_k_tanh(float *out, const float *inp, int64_t n);
void lh_k_sigmoid(float *out, const float *inp, int64_t n);
/* out (n) = a (n) + b (n); out may equal a or b */
void lh_k_add(float *out, const float *a, const float *b, int64_t n);
/* out (rows, C) = softmax over the last dim of inp (rows, C); out may equal inp */
void lh_k_softmax(float *out, const float *inp, int64_t rows, int64_t C);
/* probs (B, NH, T, T) from qkv (B, T, 3C) laid out [q | k | v] along the last dim, head h
 * owning channels [h hs, (h+1) hs) of each; scale multiplies q.k (GPT-2: 1/sqrt(hs)) */
void lh_k_attn_probs(float *probs, const float *qkv, int64_t B, int64_t T, int64_t C,
                     int64_t NH, float scale);
/* out (B, T, C) = per head probs (B, NH, T, T) @ v, v taken from qkv (B, T, 3C) */
void lh_k_attn_mix(float *out, const float *probs, const float *qkv, int64_t B, int64_t T,
                   int64_t C, int64_t NH);

/* Naive references (kernels_ref.c), same contracts. */
void lh_kref_linear(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t BT, int64_t C, int64_t OC);
void lh_kref_conv1d(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t BT, int64_t C, int64_t OC);
void lh_kref_embedding(float *out, const float *ids, const float *table, int64_t BT, int64_t C);
void lh_kref_layernorm(float *out, const float *inp, const float *weight, const float *bias,
                       int64_t BT, int64_t C, float eps);
void lh_kref_relu(float *out, const float *inp, int64_t n);
void lh_kref_gelu(float *out, const float *inp, int64_t n);
void lh_kref_gelu_tanh(float *out, const float *inp, int64_t n);
void lh_kref_tanh(float *out, const float *inp, int64_t n);
void lh_kref_sigmoid(float *out, const float *inp, int64_t n);
void lh_kref_add(float *out, const float *a, const float *b, int64_t n);
void lh_kref_softmax(float *out, const float *inp, int64_t rows, int64_t C);
void lh_kref_attn_probs(float *probs, const float *qkv, int64_t B, int64_t T, int64_t C,
                        int64_t NH, float scale);
void lh_kref_attn_mix(float *out, const float *probs, const float *qkv, int64_t B, int64_t T,
                      int64_t C, int64_t NH);

#endif
