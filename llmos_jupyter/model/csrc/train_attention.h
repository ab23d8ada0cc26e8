// Causal attention with RoPE for the training pass (llmos_train.cpp), forward and
// backward, for rows short enough that each head's probabilities are kept (T x T floats).
//
// Torch ran it as ~25 ops a layer: RoPE on q and k, copies into a head-stacked layout,
// six batched matmuls of [384 x 64] x [64 x 128]-sized pieces (MKL ran those at 110-190
// GFLOP/s on two cores, far below its large-matrix rate), softmax and its backward, and
// transposes back. Here one (sequence, kv head) pair is one work item: its RoPE, the six
// products on register tiles that skip the blocks the causal mask zeroes (about half
// the arithmetic), softmax, and the gradients written straight into the fused qkv
// gradient with RoPE undone.
//
// Layouts (floats): qkv [B, T, (Hq + 2 Hkv) D] (the fused projection: q heads, k heads,
// v heads); y [B, T, Hq D]; cos / sin [T, D] (rope.rope_tables: sin's first half
// negated). Kept between forward and backward: qr [B, Hkv, G T, D] (RoPE'd q, the G = Hq /
// Hkv query heads of a kv head stacked), kr [B, Hkv, T, D] (RoPE'd k), p [B, Hkv, G T, TP]
// (probabilities; zero past each row's position), TP = T rounded up to COLS.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <utility>

#include "attention.h"
#include "training.h"
#include "vmath.h"

namespace attn {

using std::ptrdiff_t;

// A register tile: MR rows by NV vectors of columns, accumulators all in registers.
// AVX-512's 32 registers hold 6 x 64 (24 accumulators: 4 loads of B per k feed 24 FMAs),
// AVX2's 16 hold 6 x 16 (12 accumulators, 2 loads).
#if defined(__AVX512F__)
constexpr int LANES = 16, MR = 6, NV = 4;
#elif defined(__AVX2__)
constexpr int LANES = 8, MR = 6, NV = 2;
#else
constexpr int LANES = 4, MR = 4, NV = 2;
#endif
constexpr int NC = LANES * NV;  // columns per tile

typedef float vf __attribute__((vector_size(4 * LANES)));
inline vf loadv(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void storev(float* p, vf v) { std::memcpy(p, &v, sizeof v); }

// Keep a loaded B vector in a register (gcc would otherwise fold the load into each FMA
// as a memory operand: MR loads per vector, and the loads become the bottleneck).
#if defined(__AVX512F__)
inline void pin(vf& v) { asm("" : "+v"(v)); }
#else
inline void pin(vf& v) { asm("" : "+x"(v)); }
#endif

inline int round_up(int n, int m) { return (n + m - 1) / m * m; }

// The probabilities' rows and the score products' columns come in multiples of this.
constexpr int COLS = 16;

// C[m, 0:W LANES] (+)= sum over k in [k0, k1) of A[m ars + k acs] B[k brs + 0:W LANES],
// m < R.
template <int R, int W>
inline void tile(const float* A, ptrdiff_t ars, ptrdiff_t acs, const float* B, ptrdiff_t brs,
                 int k0, int k1, float* C, ptrdiff_t crs, bool acc) {
  vf c[R][W];
  for (int m = 0; m < R; ++m)
    for (int v = 0; v < W; ++v) c[m][v] = acc ? loadv(C + m * crs + LANES * v) : vf{};
  for (int k = k0; k < k1; ++k) {
    vf b[W];
    for (int v = 0; v < W; ++v) {
      b[v] = loadv(B + k * brs + LANES * v);
      pin(b[v]);
    }
    for (int m = 0; m < R; ++m) {
      const float a = A[m * ars + k * acs];
      for (int v = 0; v < W; ++v) c[m][v] += a * b[v];
    }
  }
  for (int m = 0; m < R; ++m)
    for (int v = 0; v < W; ++v) storev(C + m * crs + LANES * v, c[m][v]);
}

// tile<rows, width> for rows <= R, width <= W (the edges of a product).
template <int R = MR, int W = NV>
inline void tile_any(int rows, int width, const float* A, ptrdiff_t ars, ptrdiff_t acs,
                     const float* B, ptrdiff_t brs, int k0, int k1, float* C, ptrdiff_t crs,
                     bool acc) {
  if constexpr (R > 1) {
    if (rows < R)
      return tile_any<R - 1, W>(rows, width, A, ars, acs, B, brs, k0, k1, C, crs, acc);
  }
  if constexpr (W > 1) {
    if (width < W)
      return tile_any<R, W - 1>(rows, width, A, ars, acs, B, brs, k0, k1, C, crs, acc);
  }
  tile<R, W>(A, ars, acs, B, brs, k0, k1, C, crs, acc);
}

// C [M, cols] (+)= A [M, K] B [K, cols] (strides in floats; B's and C's columns
// contiguous), by blocks of MR rows: rows [m0, m1) sum over k in krange(m0, m1) and fill
// columns [0, ncols(m1)) (a multiple of COLS) - the causal mask's shape, whose skipped
// terms are zero.
template <class KRange, class NCols>
inline void gemm(int M, const float* A, ptrdiff_t ars, ptrdiff_t acs, const float* B,
                 ptrdiff_t brs, float* C, ptrdiff_t crs, bool acc, KRange krange,
                 NCols ncols) {
  for (int m0 = 0; m0 < M; m0 += MR) {
    const int rows = std::min(MR, M - m0), m1 = m0 + rows;
    const auto [k0, k1] = krange(m0, m1);
    for (int n0 = 0, n = ncols(m1); n0 < n; n0 += NC)
      tile_any(rows, std::min(NV, (n - n0) / LANES), A + m0 * ars, ars, acs, B + n0, brs, k0, k1,
               C + m0 * crs + n0, crs, acc);
  }
}

// p[0..n) = softmax(scale * p[0..n)); p[n..TP) = 0.
inline void softmax_row(float* p, int n, int TP, float scale) {
  for (int j = 0; j < n; ++j) p[j] *= scale;
  const float inv = 1.f / training::exp_shifted(p, n, training::row_max(p, n, -INFINITY));
  int j = 0;
  for (; j < n; ++j) p[j] *= inv;
  for (; j < TP; ++j) p[j] = 0.f;
}

struct Shape {
  int B, T, Hq, Hkv, D;
  float scale;
  int G() const { return Hq / Hkv; }
  int TP() const { return round_up(T, COLS); }
  ptrdiff_t L() const { return ptrdiff_t(Hq + 2 * Hkv) * D; }  // a qkv row
  ptrdiff_t Y() const { return ptrdiff_t(Hq) * D; }             // a y row
};

// Rows [m0, m1) of a causal product that sums over the keys up to each row's position.
inline std::pair<int, int> keys_to(int, int m1) { return {0, m1}; }
// Rows (keys) [m0, m1) of a product that sums over the query positions from the key on.
struct QueriesFrom {
  int T;
  std::pair<int, int> operator()(int m0, int) const { return {m0, T}; }
};
struct Cols {  // all `n` columns
  int n;
  int operator()(int) const { return n; }
};
// Score columns up to the block's last position.
inline int causal_cols(int m1) { return round_up(m1, COLS); }

// Forward of one (sequence b, kv head c): RoPE, probabilities, the G heads' outputs.
// kT: D x TP floats of scratch.
inline void forward_item(const Shape& s, int b, int c, const float* qkv, const float* cos,
                         const float* sin, float* y, float* qr, float* kr, float* p,
                         float* kT) {
  const int T = s.T, D = s.D, G = s.G(), TP = s.TP();
  const ptrdiff_t L = s.L(), item = ptrdiff_t(b) * s.Hkv + c;
  const float* x = qkv + ptrdiff_t(b) * T * L;
  float* q_bc = qr + item * G * T * D;
  float* k_bc = kr + item * T * D;
  float* p_bc = p + item * G * T * TP;
  std::fill(kT, kT + ptrdiff_t(D) * TP, 0.f);
  for (int t = 0; t < T; ++t) {
    float* k = k_bc + ptrdiff_t(t) * D;
    rope_row(x + t * L + ptrdiff_t(s.Hq + c) * D, cos + t * D, sin + t * D, D, k, false);
    for (int d = 0; d < D; ++d) kT[ptrdiff_t(d) * TP + t] = k[d];
  }
  for (int g = 0; g < G; ++g) {
    const int h = c * G + g;
    float* q = q_bc + ptrdiff_t(g) * T * D;
    float* pg = p_bc + ptrdiff_t(g) * T * TP;
    for (int t = 0; t < T; ++t)
      rope_row(x + t * L + ptrdiff_t(h) * D, cos + t * D, sin + t * D, D, q + t * D, false);
    gemm(T, q, D, 1, kT, TP, pg, TP, false, [D](int, int) { return std::pair{0, D}; },
         causal_cols);  // scores q k^T
    for (int t = 0; t < T; ++t) softmax_row(pg + ptrdiff_t(t) * TP, t + 1, TP, s.scale);
    gemm(T, pg, TP, 1, x + ptrdiff_t(s.Hq + s.Hkv + c) * D, L,
         y + ptrdiff_t(b) * T * s.Y() + ptrdiff_t(h) * D, s.Y(), false, keys_to,
         Cols{D});  // outputs p v
  }
}

// Backward of one (b, c): the q (heads c G .. c G + G - 1), k and v (head c) columns of
// gx [B, T, L] from gy, the gradient of y. Scratch: vT D x TP, ds G T x TP, dqk T x D.
inline void backward_item(const Shape& s, int b, int c, const float* qkv, const float* cos,
                          const float* sin, const float* y, const float* qr, const float* kr,
                          const float* p, const float* gy, float* gx, float* vT, float* ds,
                          float* dqk) {
  const int T = s.T, D = s.D, G = s.G(), TP = s.TP();
  const ptrdiff_t L = s.L(), Y = s.Y(), item = ptrdiff_t(b) * s.Hkv + c;
  const float* x = qkv + ptrdiff_t(b) * T * L;
  const float* v = x + ptrdiff_t(s.Hq + s.Hkv + c) * D;
  const float* q_bc = qr + item * G * T * D;
  const float* k_bc = kr + item * T * D;
  const float* p_bc = p + item * G * T * TP;
  const float* gy_b = gy + ptrdiff_t(b) * T * Y;
  const float* y_b = y + ptrdiff_t(b) * T * Y;
  float* gx_b = gx + ptrdiff_t(b) * T * L;
  std::fill(vT, vT + ptrdiff_t(D) * TP, 0.f);
  for (int t = 0; t < T; ++t)
    for (int d = 0; d < D; ++d) vT[ptrdiff_t(d) * TP + t] = v[t * L + d];
  for (int g = 0; g < G; ++g) {  // ds = p (dp - rowsum(dy y)) scale, dp = dy v^T
    const ptrdiff_t h = ptrdiff_t(c) * G + g;
    float* dsg = ds + ptrdiff_t(g) * T * TP;
    const float* pg = p_bc + ptrdiff_t(g) * T * TP;
    gemm(T, gy_b + h * D, Y, 1, vT, TP, dsg, TP, false,
         [D](int, int) { return std::pair{0, D}; }, causal_cols);
    for (int t = 0; t < T; ++t) {
      const float delta = dot(gy_b + t * Y + h * D, y_b + t * Y + h * D, D);
      float* row = dsg + ptrdiff_t(t) * TP;
      const float* pr = pg + ptrdiff_t(t) * TP;
      int j = 0;
      for (; j <= t; ++j) row[j] = pr[j] * (row[j] - delta) * s.scale;
      for (; j < TP; ++j) row[j] = 0.f;
    }
    gemm(T, dsg, TP, 1, k_bc, D, dqk, D, false, keys_to, Cols{D});  // dq = ds k
    for (int t = 0; t < T; ++t)
      rope_row(dqk + t * D, cos + t * D, sin + t * D, D, gx_b + t * L + h * D, true);
  }
  for (int g = 0; g < G; ++g)  // dk = sum over heads of ds^T q
    gemm(T, ds + ptrdiff_t(g) * T * TP, 1, TP, q_bc + ptrdiff_t(g) * T * D, D, dqk, D, g > 0,
         QueriesFrom{T}, Cols{D});
  for (int t = 0; t < T; ++t)
    rope_row(dqk + t * D, cos + t * D, sin + t * D, D, gx_b + t * L + ptrdiff_t(s.Hq + c) * D,
             true);
  for (int g = 0; g < G; ++g) {  // dv = sum over heads of p^T dy, straight into gx
    const ptrdiff_t h = ptrdiff_t(c) * G + g;
    gemm(T, p_bc + ptrdiff_t(g) * T * TP, 1, TP, gy_b + h * D, Y,
         gx_b + ptrdiff_t(s.Hq + s.Hkv + c) * D, L, g > 0, QueriesFrom{T}, Cols{D});
  }
}

}  // namespace attn
