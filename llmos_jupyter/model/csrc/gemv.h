// Float32 matrix products over dense float32 rows or GGML Q4_0 / Q4_1 / Q8_0 blocks.
//
// y[m, n] = sum_k x[m, k] * w[n, k]. Quantized weights are dequantized in registers to
// exactly the float32 values gguf's numpy dequantizer produces (Q4_1: (d*q) + m; Q4_0:
// d*(q-8); Q8_0: q*d) and multiplied in float32. Every kind and every number of x rows
// accumulates each output in the SAME order (one FMA chain over k ascending, from 0; see
// "panels"), so a quantized matrix gives bit for bit the result of the dense float32
// matrix holding its dequantized weights — weight mode "ggml" decodes exactly like
// "float32" — and a batch gives bit for bit its rows' results alone. (d*q is exact in
// float32 — see q4_dequant — which is what lets Q4_1 use one FMA and still round like
// numpy's multiply-then-add.)
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
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
  // Quantized kinds: the same blocks as panels, packed once by native.py (see "panels"):
  // pq: Q4 uint8 [P, K/32, 32, 8] (byte i: row i low nibble, row i + 8 high), Q8_0 int8
  // [P, K/32, 32, 16]; pd, pm: [P, K/32, 16]; P = ceil(N / 16), rows past N zero.
  const void* pq;
  const float* pd;
  const float* pm;
};
}

enum Kind { F32 = 0, Q4_0 = 1, Q4_1 = 2, Q8_0 = 3 };

namespace vec {
// V is 16 float lanes; every kernel is written once against it. AVX2 holds it in two
// 8-lane registers. AVX-512 machines use them too, except in the one place wider
// registers pay: the register tiles of several x rows (panel_tile_wide). Every path
// rounds alike (tests/model/test_native.py builds the others and compares bits).
#if defined(__AVX2__) && defined(__FMA__)
struct V { __m256 a, b; };  // lanes 0-7, 8-15
inline V zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline V load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void store(float* p, V v) { _mm256_storeu_ps(p, v.a); _mm256_storeu_ps(p + 8, v.b); }
// H is 8 lanes: one half of a V, and the kernels' unit.
using H = __m256;
inline H zero_h() { return _mm256_setzero_ps(); }
inline H load_h(const float* p) { return _mm256_loadu_ps(p); }
inline void store_h(float* p, H h) { _mm256_storeu_ps(p, h); }
inline H fma_h(H x, H y, H c) { return _mm256_fmadd_ps(x, y, c); }
// Keep h in a register: without this gcc folds each use of a loaded vector into the FMA
// as a memory operand, which re-loads it per FMA and makes the loads the bottleneck.
inline void pin(H& h) { asm("" : "+x"(h)); }
inline H bcast_h(const float* p) { return _mm256_broadcast_ss(p); }
inline H add_h(H a, H b) { return _mm256_add_ps(a, b); }
// r[i] lane j <- r[j] lane i.
inline void transpose8(H r[8]) {
  H t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // columns 0, 1 | 4, 5
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // columns 2, 3 | 6, 7
  }
  for (int i = 0; i < 2; ++i) {  // u[4i + c]: column c | c + 4 of rows 4i .. 4i + 3
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[c + 4] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
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
// Column k of a packed panel block: the 16 rows' weights, rows 0-7 in w0, 8-15 in w1.
template <int KIND>
inline void panel_column(const void* pq, int k, H d0, H d1, H m0, H m1, H& w0, H& w1) {
  if (KIND == Q8_0) {
    const int8_t* q = static_cast<const int8_t*>(pq) + k * 16;
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    w0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), d0);
    w1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(b, 8))), d1);
  } else {
    const __m256i b = widen8(static_cast<const uint8_t*>(pq) + k * 8);
    w0 = q4_dequant<KIND>(_mm256_and_si256(b, _mm256_set1_epi32(15)), d0, m0);
    w1 = q4_dequant<KIND>(_mm256_srli_epi32(b, 4), d1, m1);
  }
}
#else
// Portable build: the same math and order on a 16-float struct (the compiler vectorizes).
struct V { float v[16]; };
inline V zero() { V r; for (int j = 0; j < 16; ++j) r.v[j] = 0.f; return r; }
inline V load(const float* p) { V r; for (int j = 0; j < 16; ++j) r.v[j] = p[j]; return r; }
inline void store(float* p, V v) { for (int j = 0; j < 16; ++j) p[j] = v.v[j]; }
struct H { float v[8]; };
inline H zero_h() { H r; for (int j = 0; j < 8; ++j) r.v[j] = 0.f; return r; }
inline H load_h(const float* p) { H r; for (int j = 0; j < 8; ++j) r.v[j] = p[j]; return r; }
inline void store_h(float* p, H h) { for (int j = 0; j < 8; ++j) p[j] = h.v[j]; }
inline H fma_h(H a, H b, H c) {
  for (int j = 0; j < 8; ++j) c.v[j] = std::fma(a.v[j], b.v[j], c.v[j]);
  return c;
}
inline void pin(H&) {}
inline H add_h(H a, H b) {
  for (int j = 0; j < 8; ++j) a.v[j] += b.v[j];
  return a;
}
inline H bcast_h(const float* p) {
  H r;
  for (int j = 0; j < 8; ++j) r.v[j] = *p;
  return r;
}
inline void transpose8(H r[8]) {
  H t[8];
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) t[j].v[i] = r[i].v[j];
  for (int i = 0; i < 8; ++i) r[i] = t[i];
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
template <int KIND>
inline void panel_column(const void* pq, int k, H d0, H d1, H m0, H m1, H& w0, H& w1) {
  for (int i = 0; i < 8; ++i) {
    if (KIND == Q8_0) {
      const int8_t* q = static_cast<const int8_t*>(pq) + k * 16;
      w0.v[i] = float(q[i]) * d0.v[i];
      w1.v[i] = float(q[i + 8]) * d1.v[i];
    } else {
      const int b = static_cast<const uint8_t*>(pq)[k * 8 + i], lo = b & 15, hi = b >> 4;
      w0.v[i] = KIND == Q4_1 ? d0.v[i] * float(lo) + m0.v[i] : d0.v[i] * float(lo - 8);
      w1.v[i] = KIND == Q4_1 ? d1.v[i] * float(hi) + m1.v[i] : d1.v[i] * float(hi - 8);
    }
  }
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

// Weight rows per panel, columns per packed chunk (see panels).
constexpr int PANEL = 16, PANEL_KC = 256;
// Register tiles of several x rows: TILE_N weight rows by up to PANEL_MR x rows. AVX-512's
// 32 registers hold a tile of two panels (two 16-lane weight vectors per k) by 14 rows:
// per k, 2 weight loads and 14 broadcasts feed 28 FMAs, where 16 rows by 1 vector
// left the loads (one broadcast per FMA) the bottleneck. Measured on one Ice Lake core:
// 163 GFLOP/s for the 32 x 14 tile, 95 for 16 x 24, 103 for AVX2's 16 x 5.
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define LLMOS_WIDE_TILES 1
constexpr int TILE_N = 2 * PANEL, PANEL_MR = 14;
#else
#define LLMOS_WIDE_TILES 0
constexpr int TILE_N = PANEL, PANEL_MR = 5;
#endif

// Per-thread scratch of at least n floats, 64-byte aligned (a 32-byte load that straddles
// two cache lines costs two). Grows, never shrinks; one per thread.
inline float* scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n + 16) buf.resize(n + 16);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

inline int panels(const Mat& A) { return (A.N + PANEL - 1) / PANEL; }

// y[m*ldy + n] (+)= v (+ bias[n]); `accumulate` adds into y (the residual stream).
inline void put(const Mat& A, float* y, size_t at, int n, float v, bool accumulate) {
  if (A.bias) v += A.bias[n];
  y[at] = accumulate ? y[at] + v : v;
}

// ---------------------------------------------------------------- panels
// Every product, of one x row or many, dense or quantized, accumulates each output in one
// order — a plain FMA chain over k ascending, from 0 — so a batch gives bit for bit its
// rows' results alone, and quantized weights bit for bit their dequantized dense copy's:
//  - Quantized weights are packed once (native.pack) into panels of PANEL rows side by
//    side per column k, keeping their quants, so one column's 16 weights dequantize with
//    two vector loads' worth of work and no shuffles.
//  - Several x rows: a panel's columns are dequantized PANEL_KC at a time into an L1
//    buffer, and register tiles of up to PANEL_MR x rows run down it. Per k, two weight
//    vectors and one broadcast x value per row feed 2 * MR FMAs into 2 * MR accumulators
//    (the BLIS micro-kernel): K-long chains keep both FMA pipes full. Measured on one
//    Zen 3 core at 32 rows: the tiles ~100 GFLOP/s, the whole kernel ~89 (packing 8%),
//    ~148 on two cores; the 16-lane-accumulator kernel this replaced reached ~58% of
//    peak (its chains were 36 long, or needed a load per FMA), and a lane-sliced
//    variant of it, packing per call, 0.82x of that. With AVX-512 a tile spans two
//    panels (TILE_N = 32 weight rows) by up to 14 x rows: on two Ice Lake cores, SmolLM2's
//    matrices at 32 rows went from 150 to 214 GFLOP/s.
//  - One x row: panels dequantize in registers straight into the chains (a buffer would
//    not be reused); dense rows transpose 8 x 8 blocks in registers.
//  - Dense rows are never copied (a second float32 copy of a model costs too much
//    memory): several x rows transpose them into the same L1 buffer per call.

// Block blk (panel p, block g: p * K/32 + g) of a quantized Mat's panels: its packed
// quants and its 16 rows' scales and minimums, ready to dequantize column after column.
template <int KIND>
struct PanelBlock {
  static constexpr int BYTES = KIND == Q8_0 ? 32 * 16 : 32 * 8;  // packed quants
  const char* q;
  vec::H d0, d1, m0, m1;  // rows 0-7 and 8-15 (m: Q4_1 only, else a copy of d, unused)
  PanelBlock(const Mat& A, size_t blk) : q(static_cast<const char*>(A.pq) + blk * BYTES) {
    const float* d = A.pd + blk * PANEL;
    const float* m = KIND == Q4_1 ? A.pm + blk * PANEL : d;
    d0 = vec::load_h(d), d1 = vec::load_h(d + 8), m0 = vec::load_h(m), m1 = vec::load_h(m + 8);
  }
  // Column k's weights: rows 0-7 in w0, 8-15 in w1.
  void column(int k, vec::H& w0, vec::H& w1) const {
    vec::panel_column<KIND>(q, k, d0, d1, m0, m1, w0, w1);
  }
};

// buf[k * ld + i] = weight (p * PANEL + i, k0 + k) for k < kl, i < PANEL (rows past N:
// 0). Quantized kinds read their pre-packed panel (k0, kl multiples of 32) and only
// dequantize; dense rows are transposed here, 8 x 8 at a time.
template <int KIND>
inline void pack_panel(const Mat& A, int p, int k0, int kl, float* buf, int ld) {
  if (p >= panels(A)) {  // past the last panel (a tile's second half): zeros
    for (int k = 0; k < kl; ++k) std::memset(buf + size_t(k) * ld, 0, sizeof(float) * PANEL);
    return;
  }
  using namespace vec;
  if (KIND != F32) {
    for (int g = k0 / 32; g < (k0 + kl) / 32; ++g) {
      const PanelBlock<KIND> b(A, size_t(p) * (A.K / 32) + g);
      float* out = buf + size_t(g * 32 - k0) * ld;
      for (int k = 0; k < 32; ++k) {
        H w0, w1;
        b.column(k, w0, w1);
        store_h(out + k * ld, w0);
        store_h(out + k * ld + 8, w1);
      }
    }
    return;
  }
  const int n0 = p * PANEL, k8 = kl & ~7;
  const float* w = static_cast<const float*>(A.w);
  for (int half = 0; half < PANEL / 8; ++half) {
    const int r0 = n0 + half * 8;
    for (int k = 0; k < k8; k += 8) {
      H r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = r0 + i < A.N ? load_h(w + size_t(r0 + i) * A.K + k0 + k) : zero_h();
      transpose8(r);
      for (int j = 0; j < 8; ++j) store_h(buf + (k + j) * ld + half * 8, r[j]);
    }
  }
  for (int k = k8; k < kl; ++k)  // widths not a multiple of 8
    for (int i = 0; i < PANEL; ++i)
      buf[k * ld + i] = n0 + i < A.N ? w[size_t(n0 + i) * A.K + k0 + k] : 0.f;
}

// One x row against quantized panels p0 and (NP == 2) p0 + 1, dequantizing in registers:
// the FMA chains of panel_tile with MR = 1, without the buffer. out: NP * PANEL floats.
template <int KIND, int NP>
inline void panels_row(const Mat& A, int p0, const float* x, float* out) {
  using namespace vec;
  const int G = A.K / 32;
  H a0 = zero_h(), b0 = zero_h(), a1 = zero_h(), b1 = zero_h();
  for (int g = 0; g < G; ++g) {
    const size_t blk0 = size_t(p0) * G + g;
    const PanelBlock<KIND> c0(A, blk0), c1(A, NP > 1 ? blk0 + G : blk0);
    prefetch(c0.q + 2 * c0.BYTES);
    if (NP > 1) prefetch(c1.q + 2 * c1.BYTES);
    for (int k = 0; k < 32; ++k) {
      const H xb = bcast_h(x + g * 32 + k);
      H w0, w1;
      c0.column(k, w0, w1);
      a0 = fma_h(w0, xb, a0);
      b0 = fma_h(w1, xb, b0);
      if (NP > 1) {
        c1.column(k, w0, w1);
        a1 = fma_h(w0, xb, a1);
        b1 = fma_h(w1, xb, b1);
      }
    }
  }
  store_h(out, a0), store_h(out + 8, b0);
  if (NP > 1) store_h(out + PANEL, a1), store_h(out + PANEL + 8, b1);
}

// c[m * PANEL + i] += buf[k * PANEL + i] * x[m * ldx + k] for k < kl ascending, m < MR:
// one FMA chain per output. The accumulators are named variables, not an array: gcc kept
// an array of ten or more vectors on the stack, storing it on every k (a third the speed).
template <int MR>
inline void panel_tile(const float* buf, int kl, const float* x, int ldx, float* c) {
  static_assert(MR >= 1 && MR <= 5, "five accumulator pairs below");
  using namespace vec;
  const float* x0 = x;
  const float* x1 = x + size_t(ldx) * (MR > 1 ? 1 : 0);
  const float* x2 = x + size_t(ldx) * (MR > 2 ? 2 : 0);
  const float* x3 = x + size_t(ldx) * (MR > 3 ? 3 : 0);
  const float* x4 = x + size_t(ldx) * (MR > 4 ? 4 : 0);
  H a0 = load_h(c), b0 = load_h(c + 8), a1, b1, a2, b2, a3, b3, a4, b4;
  if constexpr (MR > 1) a1 = load_h(c + PANEL), b1 = load_h(c + PANEL + 8);
  if constexpr (MR > 2) a2 = load_h(c + 2 * PANEL), b2 = load_h(c + 2 * PANEL + 8);
  if constexpr (MR > 3) a3 = load_h(c + 3 * PANEL), b3 = load_h(c + 3 * PANEL + 8);
  if constexpr (MR > 4) a4 = load_h(c + 4 * PANEL), b4 = load_h(c + 4 * PANEL + 8);
  for (int k = 0; k < kl; ++k) {
    H w0 = load_h(buf + k * PANEL), w1 = load_h(buf + k * PANEL + 8);
    pin(w0);
    pin(w1);
    H xb = bcast_h(x0 + k);
    a0 = fma_h(w0, xb, a0);
    b0 = fma_h(w1, xb, b0);
    if constexpr (MR > 1) xb = bcast_h(x1 + k), a1 = fma_h(w0, xb, a1), b1 = fma_h(w1, xb, b1);
    if constexpr (MR > 2) xb = bcast_h(x2 + k), a2 = fma_h(w0, xb, a2), b2 = fma_h(w1, xb, b2);
    if constexpr (MR > 3) xb = bcast_h(x3 + k), a3 = fma_h(w0, xb, a3), b3 = fma_h(w1, xb, b3);
    if constexpr (MR > 4) xb = bcast_h(x4 + k), a4 = fma_h(w0, xb, a4), b4 = fma_h(w1, xb, b4);
  }
  store_h(c, a0), store_h(c + 8, b0);
  if constexpr (MR > 1) store_h(c + PANEL, a1), store_h(c + PANEL + 8, b1);
  if constexpr (MR > 2) store_h(c + 2 * PANEL, a2), store_h(c + 2 * PANEL + 8, b2);
  if constexpr (MR > 3) store_h(c + 3 * PANEL, a3), store_h(c + 3 * PANEL + 8, b3);
  if constexpr (MR > 4) store_h(c + 4 * PANEL, a4), store_h(c + 4 * PANEL + 8, b4);
}

#if LLMOS_WIDE_TILES
// panel_tile for AVX-512: buf holds TILE_N = 32 weight rows per k (two panels), c 32 per
// x row. Each lane is still one FMA chain over k ascending, so the bits are panel_tile's.
template <int MR>
inline void panel_tile_wide(const float* buf, int kl, const float* x, int ldx, float* c) {
  __m512 a[MR], b[MR];  // kept in registers: gcc unrolls these loops fully
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
    a[m] = _mm512_loadu_ps(c + m * TILE_N), b[m] = _mm512_loadu_ps(c + m * TILE_N + PANEL);
  for (int k = 0; k < kl; ++k) {
    const __m512 w0 = _mm512_load_ps(buf + k * TILE_N);
    const __m512 w1 = _mm512_load_ps(buf + k * TILE_N + PANEL);
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
      const __m512 xb = _mm512_set1_ps(x[size_t(m) * ldx + k]);
      a[m] = _mm512_fmadd_ps(w0, xb, a[m]);
      b[m] = _mm512_fmadd_ps(w1, xb, b[m]);
    }
  }
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
    _mm512_storeu_ps(c + m * TILE_N, a[m]), _mm512_storeu_ps(c + m * TILE_N + PANEL, b[m]);
}
#endif

// The register tile of `mr` (1 .. MR) x rows.
template <int MR>
inline void run_tile(const float* buf, int kl, const float* x, int ldx, float* c, int mr) {
  if constexpr (MR > 1) {
    if (mr < MR) return run_tile<MR - 1>(buf, kl, x, ldx, c, mr);
  }
#if LLMOS_WIDE_TILES
  panel_tile_wide<MR>(buf, kl, x, ldx, c);
#else
  panel_tile<MR>(buf, kl, x, ldx, c);
#endif
}

inline int tiles(const Mat& A) { return (A.N + TILE_N - 1) / TILE_N; }

// Tile t's outputs (weight rows [t * TILE_N, + TILE_N)) for all M x rows:
// y[m * ldy + n] (+)= x[m] . w[n] (+ bias[n]).
template <int KIND>
inline void gemv_tile(const Mat& A, int t, const float* x, int M, float* y, int ldy,
                      bool accumulate) {
  const int K = A.K, n0 = t * TILE_N, nr = A.N - n0 < TILE_N ? A.N - n0 : TILE_N;
  float* buf = scratch(size_t(TILE_N) * PANEL_KC + size_t(M) * TILE_N);
  float* c = buf + TILE_N * PANEL_KC;
  // x rows in tiles as even as the register tile allows (32 rows by 5: 5, 5, 5, 5, 4, 4, 4),
  // so no tile is left with too few FMA chains to hide their latency.
  const int n_tiles = (M + PANEL_MR - 1) / PANEL_MR;
  std::memset(c, 0, sizeof(float) * M * TILE_N);  // FMA chains start from 0
  for (int k0 = 0; k0 < K; k0 += PANEL_KC) {
    const int kl = K - k0 < PANEL_KC ? K - k0 : PANEL_KC;
    for (int j = 0; j < TILE_N / PANEL; ++j)
      pack_panel<KIND>(A, t * (TILE_N / PANEL) + j, k0, kl, buf + j * PANEL, TILE_N);
    for (int i = 0, m0 = 0; i < n_tiles; ++i) {
      const int mr = (M - m0 + (n_tiles - i) - 1) / (n_tiles - i);
      run_tile<PANEL_MR>(buf, kl, x + size_t(m0) * K + k0, K, c + m0 * TILE_N, mr);
      m0 += mr;
    }
  }
  for (int m = 0; m < M; ++m) {
    float* ym = y + size_t(m) * ldy + n0;
    const float* cm = c + m * TILE_N;
    int i = 0;
    for (; i + 8 <= nr; i += 8) {  // vectors: a scalar loop here was ~10% of a small matrix's
      using namespace vec;         // time (same arithmetic as put: (c + bias), then y + that)
      H v = load_h(cm + i);
      if (A.bias) v = add_h(v, load_h(A.bias + n0 + i));
      store_h(ym + i, accumulate ? add_h(load_h(ym + i), v) : v);
    }
    for (; i < nr; ++i) put(A, ym, i, n0 + i, cm[i], accumulate);
  }
}

// One x row against dense rows [n0, n0 + 16): each 8 x 8 block of weights is transposed in
// registers and fed to the FMA chains of panel_tile with MR = 1 (no buffer: one x row
// would not repay its stores). out: 16 floats, rows past N give 0. (Two chains, 16 row
// streams: four chains over 32 rows measured slower, the wider stream reading worse.)
inline void dense_rows(const Mat& A, int n0, const float* x, float* out) {
  using namespace vec;
  const float* w = static_cast<const float*>(A.w);
  const int K = A.K, K8 = K & ~7;
  H acc[2] = {zero_h(), zero_h()};
  for (int k = 0; k < K8; k += 8) {
    for (int g = 0; g < 2; ++g) {
      const int r0 = n0 + 8 * g;
      H r[8];
      for (int i = 0; i < 8; ++i)
        r[i] = r0 + i < A.N ? load_h(w + size_t(r0 + i) * K + k) : zero_h();
      transpose8(r);
      for (int j = 0; j < 8; ++j) acc[g] = fma_h(r[j], bcast_h(x + k + j), acc[g]);
    }
  }
  for (int k = K8; k < K; ++k) {  // widths not a multiple of 8
    for (int g = 0; g < 2; ++g) {
      float col[8];
      for (int i = 0; i < 8; ++i) {
        const int n = n0 + 8 * g + i;
        col[i] = n < A.N ? w[size_t(n) * K + k] : 0.f;
      }
      acc[g] = fma_h(load_h(col), bcast_h(x + k), acc[g]);
    }
  }
  store_h(out, acc[0]);
  store_h(out + 8, acc[1]);
}

// Rows [32t, 32t + 32) of y for one x row: two panels of a quantized kind, or dense rows.
template <int KIND>
inline void gemv_row_tile(const Mat& A, int t, const float* x, float* y, bool accumulate) {
  float out[2 * PANEL];
  const int p0 = 2 * t;
  if (KIND == F32)
    dense_rows(A, p0 * PANEL, x, out), dense_rows(A, (p0 + 1) * PANEL, x, out + PANEL);
  else if (p0 + 1 < panels(A))
    panels_row<KIND, 2>(A, p0, x, out);
  else
    panels_row<KIND, 1>(A, p0, x, out);
  const int n0 = p0 * PANEL, n1 = n0 + 2 * PANEL < A.N ? n0 + 2 * PANEL : A.N;
  for (int n = n0; n < n1; ++n) put(A, y, n, n, out[n - n0], accumulate);
}

// Tiles per chunk a thread claims, for tiles of `per_tile` multiply-adds: about 16k
// (~1 us) per chunk, so claiming costs little beside the work, and a chunk held by a
// descheduled thread is small.
inline int gemv_grain(int64_t per_tile) {
  const int64_t g = 16384 / (per_tile > 0 ? per_tile : 1);
  return g < 1 ? 1 : int(g);
}

// All rows, shared among the team's threads (pool.h). Each row is computed by one thread,
// with the same arithmetic whoever it is, so results never depend on the split.
template <int KIND, class Team>
inline void gemv_parallel_kind(Team& team, const Mat& A, const float* x, int M, float* y,
                               int ldy, bool accumulate) {
  if (M == 1) {
    team.for_each((panels(A) + 1) / 2, gemv_grain(int64_t(2 * PANEL) * A.K), [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) gemv_row_tile<KIND>(A, t, x, y, accumulate);
    });
    return;
  }
  team.for_each(tiles(A), gemv_grain(int64_t(TILE_N) * A.K * M), [&](int t0, int t1) {
    for (int t = t0; t < t1; ++t) gemv_tile<KIND>(A, t, x, M, y, ldy, accumulate);
  });
}

template <class Team>
inline void gemv_parallel(Team& team, const Mat& A, const float* x, int M, float* y, int ldy,
                          bool accumulate) {
  switch (A.kind) {
    case F32: return gemv_parallel_kind<F32>(team, A, x, M, y, ldy, accumulate);
    case Q4_0: return gemv_parallel_kind<Q4_0>(team, A, x, M, y, ldy, accumulate);
    case Q4_1: return gemv_parallel_kind<Q4_1>(team, A, x, M, y, ldy, accumulate);
    default: return gemv_parallel_kind<Q8_0>(team, A, x, M, y, ldy, accumulate);
  }
}
