// Decode attention of one query head over its KV head's cache prefix (float32):
//   out = softmax(q . k_j / sqrt(D)) . v_j  over positions j < L.
// `attend` is the portable form; `attend64` the AVX2 one for head_dim 64 (SmolLM2, Llama):
// q stays in registers, scores come 4 positions at a time with one shared horizontal sum,
// exp is vectorized, and the output accumulates in registers. It grows with the context,
// so at a few hundred positions it is a tenth of a step.
#pragma once
#include <cmath>

#include "vmath.h"
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

// sum(a*b) over n (a multiple of 16 or not) with 16 partial sums, so it vectorizes.
inline float dot(const float* a, const float* b, int n) {
  float acc[16] = {0};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  float s = 0.f;
  for (int j = 0; j < 16; ++j) s += acc[j];
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// kc, vc: [L, D] rows of one KV head; s: L floats of scratch.
inline void attend(const float* q, const float* kc, const float* vc, int L, int D, float* s,
                   float* out) {
  const float scale = 1.f / std::sqrt(float(D));
  float mx = -INFINITY;
  for (int j = 0; j < L; ++j) {
    s[j] = dot(q, kc + size_t(j) * D, D) * scale;
    mx = s[j] > mx ? s[j] : mx;
  }
  float total = 0.f;
  for (int j = 0; j < L; ++j) total += (s[j] = std::exp(s[j] - mx));
  for (int i = 0; i < D; ++i) out[i] = 0.f;
  for (int j = 0; j < L; ++j) {
    const float p = s[j] / total;
    const float* v = vc + size_t(j) * D;
    for (int i = 0; i < D; ++i) out[i] += p * v[i];
  }
}

#if defined(__AVX2__) && defined(__FMA__)
inline void attend64(const float* q, const float* kc, const float* vc, int L, float* s,
                     float* out) {
  constexpr int D = 64;
  __m256 qv[8];
  for (int i = 0; i < 8; ++i) qv[i] = _mm256_mul_ps(_mm256_loadu_ps(q + 8 * i),
                                                    _mm256_set1_ps(0.125f));  // 1/sqrt(64)
  int j = 0;
  for (; j + 4 <= L; j += 4) {  // scores of positions j..j+3
    __m256 a[4];
    for (int r = 0; r < 4; ++r) {
      a[r] = _mm256_setzero_ps();
      for (int i = 0; i < 8; ++i)
        a[r] = _mm256_fmadd_ps(qv[i], _mm256_loadu_ps(kc + size_t(j + r) * D + 8 * i), a[r]);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    _mm_storeu_ps(s + j, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
  }
  for (; j < L; ++j) s[j] = dot(q, kc + size_t(j) * D, D) * 0.125f;
  float mx = -INFINITY;
  for (int t = 0; t < L; ++t) mx = s[t] > mx ? s[t] : mx;
  const __m256 mv = _mm256_set1_ps(mx);
  __m256 tv = _mm256_setzero_ps();
  for (j = 0; j + 8 <= L; j += 8) {
    const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(s + j), mv));
    _mm256_storeu_ps(s + j, e);
    tv = _mm256_add_ps(tv, e);
  }
  alignas(32) float t8[8];
  _mm256_store_ps(t8, tv);
  float total = 0.f;
  for (int i = 0; i < 8; ++i) total += t8[i];
  for (; j < L; ++j) total += (s[j] = std::exp(s[j] - mx));
  __m256 acc[8];
  for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
  for (j = 0; j < L; ++j) {
    const __m256 p = _mm256_set1_ps(s[j]);
    for (int i = 0; i < 8; ++i)
      acc[i] = _mm256_fmadd_ps(p, _mm256_loadu_ps(vc + size_t(j) * D + 8 * i), acc[i]);
  }
  const __m256 inv = _mm256_set1_ps(1.f / total);
  for (int i = 0; i < 8; ++i) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(acc[i], inv));
}
#endif

// The fastest form for this head size.
inline void attend_head(const float* q, const float* kc, const float* vc, int L, int D,
                        float* s, float* out) {
#if defined(__AVX2__) && defined(__FMA__)
  if (D == 64) return attend64(q, kc, vc, L, s, out);
#endif
  attend(q, kc, vc, L, D, s, out);
}
