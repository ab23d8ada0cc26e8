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
inline void store(float* p, V v) { _mm256_storeu_ps(p, v.a); _mm256_storeu_ps(p + 8, v.b); }
// H is 8 lanes: one half of a V. Lane j of a V's accumulator only ever meets elements
// 16c + j, so the halves can be accumulated in separate passes and joined for the sum.
using H = __m256;
inline H zero_h() { return _mm256_setzero_ps(); }
inline H load_h(const float* p) { return _mm256_loadu_ps(p); }
inline void store_h(float* p, H h) { _mm256_storeu_ps(p, h); }
inline H fma_h(H x, H y, H c) { return _mm256_fmadd_ps(x, y, c); }
// Keep h in a register: without this gcc folds each use of a loaded vector into the FMA
// as a memory operand, which re-loads it per FMA and makes the loads the bottleneck.
inline void pin(H& h) { asm("" : "+x"(h)); }
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
// sum() of the eight 16-lane accumulators p, p + stride, ..., p + 7 * stride at once, in
// sum()'s order (lanes j + 8, then j + 4, j + 2, j + 1), so bit for bit its results.
inline __m256 sum8(const float* p, size_t stride) {
  __m256 s[8];  // s[i] lane j: lanes j and j + 8 of accumulator i
  for (int i = 0; i < 8; ++i)
    s[i] = _mm256_add_ps(_mm256_loadu_ps(p + i * stride), _mm256_loadu_ps(p + i * stride + 8));
  __m256 t[4];  // t[i] = [s[2i] j + (j + 4) | s[2i + 1] j + (j + 4)], j < 4
  for (int i = 0; i < 4; ++i)
    t[i] = _mm256_add_ps(_mm256_permute2f128_ps(s[2 * i], s[2 * i + 1], 0x20),
                         _mm256_permute2f128_ps(s[2 * i], s[2 * i + 1], 0x31));
  // + (j + 2): [u0 0, u0 1, u2 0, u2 1 | u1 0, u1 1, u3 0, u3 1] and likewise u4..u7.
  const __m256 u0 = _mm256_add_ps(_mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm256_shuffle_ps(t[0], t[1], _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 u1 = _mm256_add_ps(_mm256_shuffle_ps(t[2], t[3], _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm256_shuffle_ps(t[2], t[3], _MM_SHUFFLE(3, 2, 3, 2)));
  // + (j + 1): [r0, r2, r4, r6 | r1, r3, r5, r7], then into order.
  const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(u0, u1, _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
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

// ---------------------------------------------------------------- several x rows (M > 1)
// A batch multiplies each weight row with M x rows, so FMAs, not memory, bound it, and the
// work is arranged for them while every (row, x row) pair still accumulates in exactly the
// order of dot_rows (16 lanes, k ascending in chunks of 16, the same horizontal sum, then
// the tail): a batch gives bit for bit the results of single rows.
//  - Register blocking: lanes 0-7 and 8-15 of the 16-lane accumulators are summed in two
//    passes (lane j only ever meets elements 16c + j), so BATCH_RN x BATCH_MN pairs take
//    one register each, and a step loads RN weight and MN x vectors for RN * MN FMAs
//    (3 x 4: 7 loads, 12 FMAs). A whole-V accumulator would need a load per FMA.
//  - K blocking: a tile of BATCH_ROWS weight rows runs over K in blocks of BATCH_KB, its
//    accumulators parked in memory between blocks, so the x block all the rows share and
//    the dequantized weight block stay near L1 (a whole x of 8 rows x 1536 does not). 576
//    measured best on SmolLM2 at 8-32 rows: smaller blocks lost more to the parked
//    accumulators than they won in cache.
//  - A quantized block is dequantized once per tile and block, not once per x row.
//  Measured and not taken (SmolLM2 at 32 rows): x rows outer with 6-24-row tiles and
//  192-576 K-blocks (within noise), and a BLIS-style 6x16 broadcast kernel over each
//  lane's K/16 slice joined in sum()'s tree (bit-exact too; its micro-kernel alone runs
//  at ~85% of peak, but packing each 16-row panel per call and the 16 lane joins left it
//  at 0.82x of this one). Going past ~58% of peak needs K-long loops, i.e. a sequential
//  order over k for every path with weights packed once into panels.
constexpr int BATCH_RN = 3, BATCH_MN = 4, BATCH_ROWS = 4 * BATCH_RN, BATCH_KB = 576;

// acc[(r * M + m) * 16 + lane] += w[r][c] * x[m][c] for c in [0, kl), RN rows, MN x rows.
template <int RN, int MN>
inline void block_fma(const float* const* w, int kl, const float* x, int ldx, float* acc,
                      int M) {
  using namespace vec;
  for (int half = 0; half < 2; ++half) {
    H a[RN][MN];
    for (int r = 0; r < RN; ++r)
      for (int m = 0; m < MN; ++m) a[r][m] = load_h(acc + (r * M + m) * 16 + half * 8);
    for (int c = half * 8; c < kl; c += 16) {
      H wv[RN];
      for (int r = 0; r < RN; ++r) {
        wv[r] = load_h(w[r] + c);
        pin(wv[r]);
      }
      for (int m = 0; m < MN; ++m) {
        H xv = load_h(x + size_t(m) * ldx + c);
        pin(xv);
        for (int r = 0; r < RN; ++r) a[r][m] = fma_h(wv[r], xv, a[r][m]);
      }
    }
    for (int r = 0; r < RN; ++r)
      for (int m = 0; m < MN; ++m) store_h(acc + (r * M + m) * 16 + half * 8, a[r][m]);
  }
}

// RN rows against all M x rows, MN at a time.
template <int RN>
inline void block_fma_all(const float* const* w, int kl, const float* x, int ldx, float* acc,
                          int M) {
  int m0 = 0;
  for (; m0 + BATCH_MN <= M; m0 += BATCH_MN)
    block_fma<RN, BATCH_MN>(w, kl, x + size_t(m0) * ldx, ldx, acc + m0 * 16, M);
  static_assert(BATCH_MN == 4, "the remainder cases below");
  const float* xr = x + size_t(m0) * ldx;
  switch (M - m0) {
    case 3: block_fma<RN, 3>(w, kl, xr, ldx, acc + m0 * 16, M); break;
    case 2: block_fma<RN, 2>(w, kl, xr, ldx, acc + m0 * 16, M); break;
    case 1: block_fma<RN, 1>(w, kl, xr, ldx, acc + m0 * 16, M); break;
    default: break;
  }
}

// Weights [k0, k0 + kl) of quantized row n into buf (k0, kl multiples of 32), prefetching
// the same row's next block.
template <int KIND>
inline void dequant_slice(const Mat& A, int n, int k0, int kl, float* buf) {
  const size_t b0 = size_t(n) * (A.K / 32) + k0 / 32;
  constexpr int BLOCK = KIND == Q8_0 ? 32 : 16;
  const char* wq = static_cast<const char*>(A.w);
  for (int g = 0; g < kl / 32; ++g) {
    if (g % (64 / BLOCK) == 0) prefetch(wq + (b0 + BATCH_KB / 32 + g) * BLOCK);
    vec::V lo, hi;
    block_weights<KIND>(A, b0 + g, lo, hi);
    vec::store(buf + g * 32, lo);
    vec::store(buf + g * 32 + 16, hi);
  }
  prefetch(A.d + b0 + BATCH_KB / 32);
  if (KIND == Q4_1) prefetch(A.m + b0 + BATCH_KB / 32);
}

// Per-thread scratch of at least n floats, 64-byte aligned (a 32-byte load that straddles
// two cache lines costs two). Grows, never shrinks; one per thread.
inline float* scratch(size_t n) {
  static thread_local std::vector<float> buf;
  if (buf.size() < n + 16) buf.resize(n + 16);
  const uintptr_t p = reinterpret_cast<uintptr_t>(buf.data());
  return reinterpret_cast<float*>((p + 63) & ~uintptr_t(63));
}

// Weight rows per tile: dense rows are pure streaming, so 4 share each x load; quantized
// rows keep more registers busy (dequantization), and 2 per tile measured ~7% faster.
// Several x rows take BATCH_ROWS rows per tile (see the batch kernels).
template <int KIND>
constexpr int tile_rows() { return KIND == F32 ? 4 : 2; }

template <int KIND>
inline int tiles(const Mat& A, int M) {
  const int R = M > 1 ? BATCH_ROWS : tile_rows<KIND>();
  return (A.N + R - 1) / R;
}

// y[m*ldy + n] (+)= v (+ bias[n]); `accumulate` adds into y (the residual stream).
inline void put(const Mat& A, float* y, size_t at, int n, float v, bool accumulate) {
  if (A.bias) v += A.bias[n];
  y[at] = accumulate ? y[at] + v : v;
}

// Rows [t*R, t*R + R) of y for one x row, R = tile_rows.
template <int KIND>
inline void gemv_tile(const Mat& A, int t, const float* x, float* y, bool accumulate) {
  constexpr int R = tile_rows<KIND>();
  const int n0 = t * R, n1 = n0 + R < A.N ? n0 + R : A.N;
  float out[R];
  if (n1 - n0 == R) {
    dot_rows<KIND, R>(A, n0, x, out);
  } else {
    for (int n = n0; n < n1; ++n) dot_rows<KIND, 1>(A, n, x, out + (n - n0));
  }
  for (int n = n0; n < n1; ++n) put(A, y, n, n, out[n - n0], accumulate);
}

// Rows [t*BATCH_ROWS, ...) of y for all M > 1 x rows (see the batch kernels).
template <int KIND>
inline void gemv_batch_tile(const Mat& A, int t, const float* x, int M, float* y, int ldy,
                            bool accumulate) {
  const int K = A.K, K16 = K & ~15;
  const int n0 = t * BATCH_ROWS, nr = n0 + BATCH_ROWS < A.N ? BATCH_ROWS : A.N - n0;
  float* acc = scratch(size_t(nr) * M * 16 + BATCH_RN * BATCH_KB);
  float* wbuf = acc + size_t(nr) * M * 16;  // 64-byte aligned: nr * M * 16 floats before
  for (size_t i = 0; i < size_t(nr) * M * 16; ++i) acc[i] = 0.f;
  for (int k0 = 0; k0 < K16; k0 += BATCH_KB) {
    const int kl = K16 - k0 < BATCH_KB ? K16 - k0 : BATCH_KB;
    for (int g = 0; g < nr; g += BATCH_RN) {
      const int rn = nr - g < BATCH_RN ? nr - g : BATCH_RN;
      const float* w[BATCH_RN];
      for (int r = 0; r < rn; ++r) {
        if (KIND == F32) {
          w[r] = static_cast<const float*>(A.w) + size_t(n0 + g + r) * K + k0;
        } else {
          dequant_slice<KIND>(A, n0 + g + r, k0, kl, wbuf + r * BATCH_KB);
          w[r] = wbuf + r * BATCH_KB;
        }
      }
      float* a = acc + size_t(g) * M * 16;
      switch (rn) {
        case 3: block_fma_all<3>(w, kl, x + k0, K, a, M); break;
        case 2: block_fma_all<2>(w, kl, x + k0, K, a, M); break;
        default: block_fma_all<1>(w, kl, x + k0, K, a, M); break;
      }
    }
  }
  for (int m = 0; m < M; ++m) {
    int r = 0;
#if defined(__AVX2__) && defined(__FMA__)
    // Eight outputs at a time (a scalar horizontal sum per output was ~10% of a batch-32
    // decode step), the same order of additions as vec::sum, bias and residual as put.
    for (; r + 8 <= nr && !(KIND == F32 && K16 < K); r += 8) {
      __m256 v = vec::sum8(acc + (size_t(r) * M + m) * 16, size_t(M) * 16);
      if (A.bias) v = _mm256_add_ps(v, _mm256_loadu_ps(A.bias + n0 + r));
      float* out = y + size_t(m) * ldy + n0 + r;
      _mm256_storeu_ps(out, accumulate ? _mm256_add_ps(_mm256_loadu_ps(out), v) : v);
    }
#endif
    for (; r < nr; ++r) {
      const int n = n0 + r;
      float v = vec::sum(vec::load(acc + (size_t(r) * M + m) * 16));
      if (KIND == F32 && K16 < K) {  // widths not /16 (dense only), as dot_rows does
        const float* wd = static_cast<const float*>(A.w) + size_t(n) * K;
        const float* xm = x + size_t(m) * K;
        for (int k = K16; k < K; ++k) v += wd[k] * xm[k];
      }
      put(A, y, size_t(m) * ldy + n, n, v, accumulate);
    }
  }
}

// Tiles [t0, t1) of y = x W^T for M x rows (one row: gemv_tile; several: the batch kernels).
template <int KIND>
inline void gemv_tiles(const Mat& A, int t0, int t1, const float* x, int M, float* y, int ldy,
                       bool accumulate) {
  for (int t = t0; t < t1; ++t) {
    if (M > 1)
      gemv_batch_tile<KIND>(A, t, x, M, y, ldy, accumulate);
    else
      gemv_tile<KIND>(A, t, x, y, accumulate);
  }
}

// Tiles per chunk a thread claims: about 16k multiply-adds (~1 us), so claiming costs
// little beside the work, and a chunk held by a descheduled thread is small.
inline int gemv_grain(const Mat& A, int M) {
  const int64_t per_tile = int64_t(M > 1 ? BATCH_ROWS : 2) * A.K * M;
  const int64_t g = 16384 / (per_tile > 0 ? per_tile : 1);
  return g < 1 ? 1 : int(g);
}

// All rows, shared among the team's threads (pool.h). Each row is computed by one thread,
// with the same arithmetic whoever it is, so results never depend on the split.
template <int KIND, class Team>
inline void gemv_parallel_kind(Team& team, const Mat& A, const float* x, int M, float* y,
                               int ldy, bool accumulate) {
  team.for_each(tiles<KIND>(A, M), gemv_grain(A, M), [&](int t0, int t1) {
    gemv_tiles<KIND>(A, t0, t1, x, M, y, ldy, accumulate);
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
