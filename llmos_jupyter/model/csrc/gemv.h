// Float32 matrix-vector products over dense float32 rows or GGML Q4_0 / Q4_1 / Q8_0 blocks.
//
// y[m, n] = sum_k x[m, k] * w[n, k]. Quantized weights are dequantized in registers to
// exactly the float32 values gguf's numpy dequantizer produces (Q4_1: (d*q) + m; Q4_0:
// d*(q-8); Q8_0: q*d) and multiplied in float32. Every kind accumulates
// a row in the SAME order (one 16-lane accumulator, k ascending in chunks of 16, then the
// same horizontal sum), so a quantized matrix gives bit for bit the result of the dense
// float32 matrix holding its dequantized weights: weight mode "ggml" decodes exactly like
// "float32". (d*q is exact in float32 — see q4_dequant — which is what lets Q4_1 use one
// FMA and still round like numpy's multiply-then-add.)
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

extern "C" {
// One weight matrix [N, K] as the caller (ctypes) lays it out; see native.py's Mat.
struct Mat {
  int32_t kind, N, K, pad;
  const void* w;      // F32: float [N, K]; Q4: uint8 [N, K/32, 16]; Q8_0: int8 [N, K]
  const float* d;     // [N, K/32] block scales (quantized kinds)
  const float* m;     // [N, K/32] block minimums (Q4_1 only)
  const float* bias;  // [N] or null
};
}

enum Kind { F32 = 0, Q4_0 = 1, Q4_1 = 2, Q8_0 = 3 };

namespace vec {
// V is 16 float lanes; every kernel is written once against it. AVX2 holds it in two
// 8-lane registers. (No AVX-512 branch on purpose: our machines' gcc does not enable it
// for their CPUs, and a path no test runs here is a path that is not known to work.)
#if defined(__AVX2__) && defined(__FMA__)
struct V { __m256 a, b; };  // lanes 0-7, 8-15
inline V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline V fma(V x, V y, V c) {
  return {_mm256_fmadd_ps(x.a, y.a, c.a), _mm256_fmadd_ps(x.b, y.b, c.b)};
}
// Tree sum: lanes j + 8, then j + 4, j + 2, j + 1 (the portable build's order).
inline float sum(V v) {
  const __m256 s8 = _mm256_add_ps(v.a, v.b);
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_movehdup_ps(s2)));
}
// Dequantized weights of 8 nibbles q (int32 lanes), as gguf rounds them. d is an fp16
// (11 significant bits) and q has 4, so d*q is exact in float32: (d*q) + m rounds once,
// exactly like fma(d, q, m), which saves a multiply per 8 weights.
template <int KIND>
inline __m256 q4_dequant(__m256i q, __m256 d, __m256 m) {
  if (KIND == Q4_1) return _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), d, m);
  return _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(8))));
}
inline __m256i widen8(const uint8_t* q) {  // 8 bytes -> 8 int32 lanes
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q)));
}
// Byte j of a block holds element j (low nibble) and element j + 16 (high nibble).
template <int KIND>
inline void q4_weights(const uint8_t* q, float d, float m, V& lo, V& hi) {
  const __m256i b0 = widen8(q), b1 = widen8(q + 8);  // bytes 0-7, 8-15
  const __m256i low = _mm256_set1_epi32(15);
  const __m256 dv = _mm256_set1_ps(d), mv = _mm256_set1_ps(m);
  lo = {q4_dequant<KIND>(_mm256_and_si256(b0, low), dv, mv),
        q4_dequant<KIND>(_mm256_and_si256(b1, low), dv, mv)};
  hi = {q4_dequant<KIND>(_mm256_srli_epi32(b0, 4), dv, mv),
        q4_dequant<KIND>(_mm256_srli_epi32(b1, 4), dv, mv)};
}
inline V q8_weights(const int8_t* q, float d) {  // q*d: exact (8 x 11 significant bits)
  const __m256 dv = _mm256_set1_ps(d);
  const auto w8 = [&](const int8_t* p) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), dv);
  };
  return {w8(q), w8(q + 8)};
}
#else
// Portable build: the same math and order on a 16-float struct (the compiler vectorizes).
struct V { float v[16]; };
inline V zero() { V r; for (int j = 0; j < 16; ++j) r.v[j] = 0.f; return r; }
inline V load(const float* p) { V r; for (int j = 0; j < 16; ++j) r.v[j] = p[j]; return r; }
inline V fma(V a, V b, V c) {
  for (int j = 0; j < 16; ++j) c.v[j] = std::fma(a.v[j], b.v[j], c.v[j]);
  return c;
}
inline float sum(V a) {
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) a.v[j] += a.v[j + w];
  return a.v[0];
}
template <int KIND>
inline void q4_weights(const uint8_t* q, float d, float m, V& lo, V& hi) {
  for (int j = 0; j < 16; ++j) {
    const int a = q[j] & 15, b = q[j] >> 4;
    lo.v[j] = KIND == Q4_1 ? d * float(a) + m : d * float(a - 8);
    hi.v[j] = KIND == Q4_1 ? d * float(b) + m : d * float(b - 8);
  }
}
inline V q8_weights(const int8_t* q, float d) {
  V r;
  for (int j = 0; j < 16; ++j) r.v[j] = float(q[j]) * d;
  return r;
}
#endif
}  // namespace vec

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

// Block b (of A's row-major block grid) dequantized: lo = elements 0-15, hi = 16-31.
template <int KIND>
inline void block_weights(const Mat& A, size_t b, vec::V& lo, vec::V& hi) {
  if (KIND == Q8_0) {
    const int8_t* q = static_cast<const int8_t*>(A.w) + b * 32;
    lo = vec::q8_weights(q, A.d[b]);
    hi = vec::q8_weights(q + 16, A.d[b]);
  } else {
    vec::q4_weights<KIND>(static_cast<const uint8_t*>(A.w) + b * 16, A.d[b],
                          KIND == Q4_1 ? A.m[b] : 0.f, lo, hi);
  }
}

// Dot products of R consecutive weight rows n..n+R-1 with one x row; out[r] per row.
// R rows share each load of x and give the core R independent FMA chains.
template <int KIND, int R>
inline void dot_rows(const Mat& A, int n, const float* x, float* out) {
  using namespace vec;
  const int K = A.K, G = K / 32;
  V acc[R];
  for (int r = 0; r < R; ++r) acc[r] = zero();
  if (KIND == F32) {
    const float* w = static_cast<const float*>(A.w) + size_t(n) * K;
    const int K16 = K & ~15;
    for (int c = 0; c < K16; c += 16) {
      const V xv = load(x + c);
      for (int r = 0; r < R; ++r) {
        prefetch(w + size_t(r + R) * K + c);  // the same line of the next tile
        acc[r] = fma(load(w + size_t(r) * K + c), xv, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float s = sum(acc[r]);
      for (int k = K16; k < K; ++k) s += w[size_t(r) * K + k] * x[k];  // widths not /16
      out[r] = s;
    }
    return;
  }
  const size_t row0 = size_t(n) * G;  // block index of (row n, block 0)
  constexpr int BLOCK = KIND == Q8_0 ? 32 : 16;  // bytes of quants per block
  const char* wq = static_cast<const char*>(A.w);
  for (int g = 0; g < G; ++g) {
    const V x0 = load(x + g * 32), x1 = load(x + g * 32 + 16);
    for (int r = 0; r < R; ++r) {
      const size_t b = row0 + size_t(r) * G + g;
      // Fetch the next tile's lines while this one computes: the hardware prefetcher alone
      // left the stream at ~40% of the memory bandwidth (one block per line step).
      if (g % (64 / BLOCK) == 0) prefetch(wq + (b + size_t(R) * G) * BLOCK);
      if (g % 16 == 0) {
        prefetch(A.d + b + size_t(R) * G);
        if (KIND == Q4_1) prefetch(A.m + b + size_t(R) * G);
      }
      V lo, hi;
      block_weights<KIND>(A, b, lo, hi);
      acc[r] = fma(lo, x0, acc[r]);
      acc[r] = fma(hi, x1, acc[r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r] = sum(acc[r]);
}

// Quantized rows n..n+R-1 against M x rows at once: each weight block is dequantized ONCE
// and applied to every x row, so a batch of M sequences costs little more than one (the
// dequantization, not memory, is what bounds these kernels). Each (row, x row) keeps its
// own accumulator fed in the same order as dot_rows, so results are bit for bit those of
// M separate dot_rows calls. out is [M][R].
constexpr int MAX_M = 8;
// x rows per pass: MC accumulators (2 AVX2 registers each) plus the dequantized block and
// x must fit the 16 vector registers; a block is dequantized once per MC x rows.
constexpr int MC = 4;
template <int KIND, int R>
inline void dot_rows_batch(const Mat& A, int n, const float* x, int M, float* out) {
  using namespace vec;
  const int K = A.K, G = K / 32;
  const size_t row0 = size_t(n) * G;
  constexpr int BLOCK = KIND == Q8_0 ? 32 : 16;
  const char* wq = static_cast<const char*>(A.w);
  for (int r = 0; r < R; ++r) {
    for (int m0 = 0; m0 < M; m0 += MC) {
      const int mc = M - m0 < MC ? M - m0 : MC;
      V acc[MC];
      for (int m = 0; m < mc; ++m) acc[m] = zero();
      for (int g = 0; g < G; ++g) {
        const size_t b = row0 + size_t(r) * G + g;
        if (g % (64 / BLOCK) == 0) prefetch(wq + (b + size_t(R) * G) * BLOCK);
        V lo, hi;
        block_weights<KIND>(A, b, lo, hi);
        for (int m = 0; m < mc; ++m) {
          const float* xg = x + size_t(m0 + m) * K + g * 32;
          acc[m] = fma(lo, load(xg), acc[m]);
          acc[m] = fma(hi, load(xg + 16), acc[m]);
        }
      }
      for (int m = 0; m < mc; ++m) out[(m0 + m) * R + r] = sum(acc[m]);
    }
  }
}

// Weight rows per tile: dense rows are pure streaming, so 4 share each x load; quantized
// rows keep more registers busy (dequantization), and 2 per tile measured ~7% faster.
template <int KIND>
constexpr int tile_rows() { return KIND == F32 ? 4 : 2; }

// Rows [t*R, ...) of y for all M x rows: y[m*ldy + n] (+)= x[m] . w[n] (+ bias[n]).
// `accumulate` adds into y (the residual stream) instead of overwriting it.
template <int KIND>
inline void gemv_tile(const Mat& A, int t, const float* x, int M, float* y, int ldy,
                      bool accumulate) {
  constexpr int R = tile_rows<KIND>();
  const int n0 = t * R, n1 = n0 + R < A.N ? n0 + R : A.N;
  if (KIND != F32 && M > 1 && M <= MAX_M && n1 - n0 == R) {
    float out[MAX_M * R];
    dot_rows_batch<KIND, R>(A, n0, x, M, out);
    for (int m = 0; m < M; ++m) {
      float* ym = y + size_t(m) * ldy;
      for (int n = n0; n < n1; ++n) {
        float v = out[m * R + (n - n0)];
        if (A.bias) v += A.bias[n];
        ym[n] = accumulate ? ym[n] + v : v;
      }
    }
    return;
  }
  for (int m = 0; m < M; ++m) {
    float out[R];
    const float* xm = x + size_t(m) * A.K;
    if (n1 - n0 == R) {
      dot_rows<KIND, R>(A, n0, xm, out);
    } else {
      for (int n = n0; n < n1; ++n) dot_rows<KIND, 1>(A, n, xm, out + (n - n0));
    }
    float* ym = y + size_t(m) * ldy;
    for (int n = n0; n < n1; ++n) {
      float v = out[n - n0];
      if (A.bias) v += A.bias[n];
      ym[n] = accumulate ? ym[n] + v : v;
    }
  }
}

// All rows, shared among the threads of the enclosing OpenMP parallel region (an orphaned
// `omp for`: its implicit barrier ends the product for everyone). Guided scheduling: big
// contiguous chunks first (prefetch-friendly), small ones last, so a core slowed by a
// neighbour's process does not hold the other at the barrier (measured a few % over
// static). Each row is computed by one thread, so results never depend on the split.
inline void gemv_shared(const Mat& A, const float* x, int M, float* y, int ldy,
                        bool accumulate) {
#define LLMOS_TILES(KIND)                                                   \
  _Pragma("omp for schedule(guided, 4)")                                   \
  for (int t = 0; t < (A.N + tile_rows<KIND>() - 1) / tile_rows<KIND>(); ++t) \
    gemv_tile<KIND>(A, t, x, M, y, ldy, accumulate);
  switch (A.kind) {
    case F32: LLMOS_TILES(F32) break;
    case Q4_0: LLMOS_TILES(Q4_0) break;
    case Q4_1: LLMOS_TILES(Q4_1) break;
    default: LLMOS_TILES(Q8_0) break;
  }
#undef LLMOS_TILES
}
