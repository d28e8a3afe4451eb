/*
 * probe_bilinear.c: the forward pass of tdhook's LowRankBilinearEstimator (SPEC 3.8):
 * y = (U h1 + u) * (V h2 + v) + b, elementwise over the C outputs, with the per-factor
 * biases u, v that the reference docstring omits. One rank-1 bilinear form per output.
 */
#include "latenthook/probe.h"

void lh_probe_bilinear_forward(int64_t C, int64_t d1, int64_t d2, const double *U,
                               const double *u, const double *V, const double *v,
                               const double *b, int64_t n, const double *h1, const double *h2,
                               double *out) {
  for (int64_t i = 0; i < n; i++) {
    const double *x1 = h1 + i * d1, *x2 = h2 + i * d2;
    for (int64_t c = 0; c < C; c++) {
      double a = u[c], z = v[c];
      for (int64_t j = 0; j < d1; j++) a += U[c * d1 + j] * x1[j];
      for (int64_t j = 0; j < d2; j++) z += V[c * d2 + j] * x2[j];
      out[i * C + c] = a * z + (b ? b[c] : 0.0);
    }
  }
}
