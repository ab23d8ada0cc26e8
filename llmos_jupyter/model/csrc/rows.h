// Row operations both kernel libraries use: RMSNorm and RoPE of one row (float32).
#pragma once
#include <cmath>

#include "attention.h"  // dot

// y = w * (x / rms(x)) for one row of K; returns 1 / rms = 1 / sqrt(mean(x^2) + eps).
inline float rms_norm_row(const float* x, const float* w, int K, float eps, float* y) {
  const float r = 1.f / std::sqrt(dot(x, x, K) / float(K) + eps);
  for (int k = 0; k < K; ++k) y[k] = w[k] * (x[k] * r);
  return r;
}

// out = x rotated by RoPE in the rotate_half layout: [x1, x2] * cos + [x2, x1] * sin
// (sin's first half negated, as rope.rope_tables gives it); with transpose, by its
// transpose (the backward): [g1, g2] * cos + [g2 * sin2, g1 * sin1].
inline void rope_row(const float* x, const float* cos, const float* sin, int D, float* out,
                     bool transpose = false) {
  const int h = D / 2;
  for (int i = 0; i < h; ++i) out[i] = x[i] * cos[i] + x[i + h] * sin[transpose ? i + h : i];
  for (int i = h; i < D; ++i) out[i] = x[i] * cos[i] + x[i - h] * sin[transpose ? i - h : i];
}
