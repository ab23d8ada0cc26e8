// Row kernels of the training pass (llmos_train.cpp): RMSNorm (alone or after a residual
// add) and SwiGLU, forward and backward, and the online softmax of the fused
// cross-entropy, each one pass over a row. A row's arithmetic never depends on which
// thread runs it, so results do not depend on the thread count.
#pragma once
#include <cmath>
#include <cstddef>

#include "attention.h"
#include "rows.h"
#include "vmath.h"

namespace training {

// sigmoid(g) = 1 / (1 + e^-g), from e^-|g| so it never overflows: 1 / (1 + z) for g >= 0,
// z / (1 + z) for g < 0.
inline float sigmoid(float g) {
  const float z = std::exp(-std::fabs(g));
  return (g < 0.f ? z : 1.f) / (1.f + z);
}

#if defined(__AVX2__) && defined(__FMA__)
inline __m256 sigmoid8(__m256 g) {
  const __m256 one = _mm256_set1_ps(1.f);
  const __m256 z = exp_neg(_mm256_or_ps(g, _mm256_set1_ps(-0.f)));  // e^-|g|
  const __m256 neg = _mm256_cmp_ps(g, _mm256_setzero_ps(), _CMP_LT_OQ);
  return _mm256_div_ps(_mm256_blendv_ps(one, z, neg), _mm256_add_ps(one, z));
}
#endif

// y = x r w with r = 1 / sqrt(mean(x^2) + eps), r kept in rstd (one float per row).
inline void rms_norm_rows(const float* x, const float* w, int m0, int m1, int K, float eps,
                          float* y, float* rstd) {
  for (int m = m0; m < m1; ++m)
    rstd[m] = rms_norm_row(x + size_t(m) * K, w, K, eps, y + size_t(m) * K);
}

// h = x + a (the residual stream), then y and rstd of h as rms_norm_rows gives them.
inline void add_rms_norm_rows(const float* x, const float* a, const float* w, int m0, int m1,
                              int K, float eps, float* h, float* y, float* rstd) {
  for (int m = m0; m < m1; ++m) {
    const size_t o = size_t(m) * K;
    for (int k = 0; k < K; ++k) h[o + k] = x[o + k] + a[o + k];
    rms_norm_rows(h, w, m, m + 1, K, eps, y, rstd);  // h's row is still in L1
  }
}

// gx = r (gy w) - x r^3 mean(gy w x), the input gradient of rms_norm_rows, plus gres
// when not null (the residual stream's own gradient, for add_rms_norm_rows).
inline void rms_norm_backward_rows(const float* x, const float* w, const float* rstd,
                                   const float* gy, const float* gres, int m0, int m1, int K,
                                   float* gx) {
  for (int m = m0; m < m1; ++m) {
    const float* xr = x + size_t(m) * K;
    const float* gr = gy + size_t(m) * K;
    float* out = gx + size_t(m) * K;
    const float r = rstd[m];
    for (int k = 0; k < K; ++k) out[k] = gr[k] * w[k];  // g w, reused below from L1
    const float coef = dot(out, xr, K) * (r * r * r / float(K));
    if (gres) {
      const float* res = gres + size_t(m) * K;
      for (int k = 0; k < K; ++k) out[k] = (out[k] * r - xr[k] * coef) + res[k];
    } else {
      for (int k = 0; k < K; ++k) out[k] = out[k] * r - xr[k] * coef;
    }
  }
}

// One row of SwiGLU's backward, gate g and up u [F] side by side in gu, gh [F] the
// gradient of silu(g) u: dg = gh u silu'(g) with silu'(g) = s (1 + g (1 - s)), s the
// sigmoid; du = gh silu(g). h (when not null) gets silu(g) u again, for the down
// projection's weight gradient.
inline void swiglu_backward_row(const float* gu, const float* gh, int F, float* dg,
                                float* du, float* h) {
  const float* g = gu;
  const float* u = gu + F;
  int j = 0;
#if defined(__AVX2__) && defined(__FMA__)
  const __m256 one = _mm256_set1_ps(1.f);
  for (; j + 8 <= F; j += 8) {
    const __m256 gv = _mm256_loadu_ps(g + j), uv = _mm256_loadu_ps(u + j);
    const __m256 hv = _mm256_loadu_ps(gh + j);
    const __m256 s = sigmoid8(gv);
    const __m256 act = _mm256_mul_ps(gv, s);
    const __m256 dsilu = _mm256_mul_ps(
        s, _mm256_add_ps(one, _mm256_mul_ps(gv, _mm256_sub_ps(one, s))));
    _mm256_storeu_ps(du + j, _mm256_mul_ps(hv, act));
    _mm256_storeu_ps(dg + j, _mm256_mul_ps(_mm256_mul_ps(hv, uv), dsilu));
    if (h) _mm256_storeu_ps(h + j, _mm256_mul_ps(act, uv));
  }
#endif
  for (; j < F; ++j) {
    const float s = sigmoid(g[j]);
    const float act = g[j] * s;
    du[j] = gh[j] * act;
    dg[j] = (gh[j] * u[j]) * (s * (1.f + g[j] * (1.f - s)));
    if (h) h[j] = act * u[j];
  }
}

// max(m, x[0..n)).
inline float row_max(const float* x, int n, float m) {
  int j = 0;
#if defined(__AVX512F__)
  __m512 v = _mm512_set1_ps(m);
  for (; j + 16 <= n; j += 16) v = _mm512_max_ps(v, _mm512_loadu_ps(x + j));
  m = _mm512_reduce_max_ps(v);
#elif defined(__AVX2__) && defined(__FMA__)
  __m256 v = _mm256_set1_ps(m);
  for (; j + 8 <= n; j += 8) v = _mm256_max_ps(v, _mm256_loadu_ps(x + j));
  m = hmax8(v);
#endif
  for (; j < n; ++j) m = std::max(m, x[j]);
  return m;
}

// x[j] <- e^(x[j] - top) for j < n (every x[j] <= top); returns their sum.
inline float exp_shifted(float* x, int n, float top) {
  float total = 0.f;
  int j = 0;
#if defined(__AVX512F__)
  const __m512 t = _mm512_set1_ps(top);
  __m512 sum = _mm512_setzero_ps();
  for (; j + 16 <= n; j += 16) {
    const __m512 e = exp_neg16(_mm512_sub_ps(_mm512_loadu_ps(x + j), t));
    _mm512_storeu_ps(x + j, e);
    sum = _mm512_add_ps(sum, e);
  }
  total = _mm512_reduce_add_ps(sum);
#elif defined(__AVX2__) && defined(__FMA__)
  const __m256 t = _mm256_set1_ps(top);
  __m256 sum = _mm256_setzero_ps();
  for (; j + 8 <= n; j += 8) {
    const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(x + j), t));
    _mm256_storeu_ps(x + j, e);
    sum = _mm256_add_ps(sum, e);
  }
  total = hsum8(sum);
#endif
  for (; j < n; ++j) total += (x[j] = std::exp(x[j] - top));
  return total;
}

// One row of a logits tile in the fused cross-entropy's online softmax (engine/loss.py).
// m is the running maximum and s the running sum of e^(logit - m) over the earlier tiles:
// with m' = max(m, max x), x <- e^(x - m'), rescale = e^(m - m') (0 on the first tile,
// where m = -inf), s <- s rescale + sum x, m <- m'.
inline void online_softmax_row(float* x, int n, float& m, float& s, float& rescale) {
  const float mx = row_max(x, n, m);
  const float total = exp_shifted(x, n, mx);
  rescale = mx == m ? 1.f : std::exp(m - mx);
  s = s * rescale + total;
  m = mx;
}

}  // namespace training
