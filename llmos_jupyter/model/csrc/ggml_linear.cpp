// Float32 matrix-vector products straight from GGML Q4 / Q8_0 blocks.
//
// y[m, n] = sum_k x[m, k] * w[n, k] where w is never materialized: per block g of 32
// columns,  Q4 (w = d*q + mn, q in 0..15):  d * (q . x_g) + mn * sum(x_g)
//           Q8_0 (w = d*q, q in -128..127): d * (q . x_g)
// Activations and accumulation stay float32 throughout, so results match a float32
// matmul on the dequantized weights to float32 rounding (unlike torch's int4/int8 CPU
// kernels, whose fast path rounds activations and outputs to bfloat16). Weights are
// read at 4.5-5 (Q4) or 8.5 (Q8_0) bits each, which is what makes decode fast.
// Intrinsics for AVX-512 and AVX2 (picked by -march=native at build), plain loops otherwise.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <vector>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

namespace {

constexpr int64_t QK = 32;   // weights per block
constexpr int64_t GRAIN = 64;  // rows per parallel task


// One block's partial products for 16 lanes: lane j gets q[j]*x[j] + q[j+16]*x[j+16]
// (Q4: low / high nibbles of byte j). `acc += d * that`. Three builds of the same math.
#if defined(__AVX512F__)
inline void q4_block(const uint8_t* q, const float* xg, float dg, __m512& acc) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
  __m512 b = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo)), _mm512_loadu_ps(xg));
  b = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi)), _mm512_loadu_ps(xg + 16), b);
  acc = _mm512_fmadd_ps(_mm512_set1_ps(dg), b, acc);
}
inline void q8_block(const int8_t* q, const float* xg, float dg, __m512& acc) {
  const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16));
  __m512 b = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), _mm512_loadu_ps(xg));
  b = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), _mm512_loadu_ps(xg + 16), b);
  acc = _mm512_fmadd_ps(_mm512_set1_ps(dg), b, acc);
}
struct Acc {
  __m512 v = _mm512_setzero_ps();
  float sum() const { return _mm512_reduce_add_ps(v); }
};
#define Q4_BLOCK(q, xg, dg, a) q4_block(q, xg, dg, a.v)
#define Q8_BLOCK(q, xg, dg, a) q8_block(q, xg, dg, a.v)
#elif defined(__AVX2__) && defined(__FMA__)
inline __m256 u8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
inline __m256 i8x8(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
inline void q4_block(const uint8_t* q, const float* xg, float dg, __m256& a0, __m256& a1) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i lo = _mm_and_si128(bytes, _mm_set1_epi8(0x0F));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), _mm_set1_epi8(0x0F));
  __m256 b0 = _mm256_mul_ps(u8x8(lo), _mm256_loadu_ps(xg));
  __m256 b1 = _mm256_mul_ps(u8x8(_mm_srli_si128(lo, 8)), _mm256_loadu_ps(xg + 8));
  b0 = _mm256_fmadd_ps(u8x8(hi), _mm256_loadu_ps(xg + 16), b0);
  b1 = _mm256_fmadd_ps(u8x8(_mm_srli_si128(hi, 8)), _mm256_loadu_ps(xg + 24), b1);
  const __m256 dv = _mm256_set1_ps(dg);
  a0 = _mm256_fmadd_ps(dv, b0, a0);
  a1 = _mm256_fmadd_ps(dv, b1, a1);
}
inline void q8_block(const int8_t* q, const float* xg, float dg, __m256& a0, __m256& a1) {
  const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16));
  __m256 b0 = _mm256_mul_ps(i8x8(q0), _mm256_loadu_ps(xg));
  __m256 b1 = _mm256_mul_ps(i8x8(_mm_srli_si128(q0, 8)), _mm256_loadu_ps(xg + 8));
  b0 = _mm256_fmadd_ps(i8x8(q1), _mm256_loadu_ps(xg + 16), b0);
  b1 = _mm256_fmadd_ps(i8x8(_mm_srli_si128(q1, 8)), _mm256_loadu_ps(xg + 24), b1);
  const __m256 dv = _mm256_set1_ps(dg);
  a0 = _mm256_fmadd_ps(dv, b0, a0);
  a1 = _mm256_fmadd_ps(dv, b1, a1);
}
struct Acc {
  __m256 v0 = _mm256_setzero_ps(), v1 = _mm256_setzero_ps();
  float sum() const {
    alignas(32) float t[8];
    _mm256_store_ps(t, _mm256_add_ps(v0, v1));
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
  }
};
#define Q4_BLOCK(q, xg, dg, a) q4_block(q, xg, dg, a.v0, a.v1)
#define Q8_BLOCK(q, xg, dg, a) q8_block(q, xg, dg, a.v0, a.v1)
#else
struct Acc {
  float v[16] = {0};
  float sum() const { float s = 0.f; for (int j = 0; j < 16; ++j) s += v[j]; return s; }
};
inline void q4_block(const uint8_t* q, const float* xg, float dg, Acc& a) {
  for (int j = 0; j < 16; ++j)
    a.v[j] += dg * (float(q[j] & 0x0F) * xg[j] + float(q[j] >> 4) * xg[16 + j]);
}
inline void q8_block(const int8_t* q, const float* xg, float dg, Acc& a) {
  for (int j = 0; j < 16; ++j) a.v[j] += dg * (float(q[j]) * xg[j] + float(q[16 + j]) * xg[16 + j]);
}
#define Q4_BLOCK(q, xg, dg, a) q4_block(q, xg, dg, a)
#define Q8_BLOCK(q, xg, dg, a) q8_block(q, xg, dg, a)
#endif

void q4_rows(const float* x, const float* xs, int64_t M, int64_t K, const uint8_t* qs,
             const float* d, const float* mn, float* y, int64_t N, int64_t n0, int64_t n1) {
  const int64_t G = K / QK;
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* qrow = qs + n * G * 16;
    const float* drow = d + n * G;
    const float* mrow = mn + n * G;
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * K;
      const float* xsr = xs + m * G;
      Acc acc;
      float macc = 0.f;
      for (int64_t g = 0; g < G; ++g) {
        // Byte j holds element j (low nibble) and element j + 16 (high nibble).
        Q4_BLOCK(qrow + g * 16, xr + g * QK, drow[g], acc);
        macc += mrow[g] * xsr[g];
      }
      y[m * N + n] = acc.sum() + macc;
    }
  }
}

void q8_rows(const float* x, int64_t M, int64_t K, const int8_t* qs, const float* d, float* y,
             int64_t N, int64_t n0, int64_t n1) {
  const int64_t G = K / QK;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* qrow = qs + n * K;
    const float* drow = d + n * G;
    for (int64_t m = 0; m < M; ++m) {
      const float* xr = x + m * K;
      Acc acc;
      for (int64_t g = 0; g < G; ++g) Q8_BLOCK(qrow + g * QK, xr + g * QK, drow[g], acc);
      y[m * N + n] = acc.sum();
    }
  }
}

void check(const torch::Tensor& x, int64_t K) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.is_contiguous(),
              "x must be a contiguous float32 [M, K] tensor");
  TORCH_CHECK(x.size(1) == K && K % QK == 0, "x has ", x.size(1), " columns, weight ", K);
}

}  // namespace

// x [M, K] f32, qs [N, K/32, 16] u8, d/mn [N, K/32] f32 -> y [M, N] f32
torch::Tensor q4_linear(torch::Tensor x, torch::Tensor qs, torch::Tensor d, torch::Tensor mn) {
  const int64_t N = qs.size(0), K = qs.size(1) * QK, M = x.size(0);
  check(x, K);
  const float* xp = x.data_ptr<float>();
  std::vector<float> xs(M * (K / QK));  // (M, G): sum of x per block, for the mn term
  for (int64_t i = 0; i < M * (K / QK); ++i) {
    float s = 0.f;
    for (int64_t j = 0; j < QK; ++j) s += xp[i * QK + j];
    xs[i] = s;
  }
  auto y = torch::empty({M, N}, x.options());
  const float* xsp = xs.data();
  const uint8_t* qp = qs.data_ptr<uint8_t>();
  const float* dp = d.data_ptr<float>();
  const float* mp = mn.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, N, GRAIN, [&](int64_t n0, int64_t n1) {
    q4_rows(xp, xsp, M, K, qp, dp, mp, yp, N, n0, n1);
  });
  return y;
}

// x [M, K] f32, qs [N, K] i8, d [N, K/32] f32 -> y [M, N] f32
torch::Tensor q8_linear(torch::Tensor x, torch::Tensor qs, torch::Tensor d) {
  const int64_t N = qs.size(0), K = qs.size(1), M = x.size(0);
  check(x, K);
  auto y = torch::empty({M, N}, x.options());
  const float* xp = x.data_ptr<float>();
  const int8_t* qp = qs.data_ptr<int8_t>();
  const float* dp = d.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, N, GRAIN, [&](int64_t n0, int64_t n1) {
    q8_rows(xp, M, K, qp, dp, yp, N, n0, n1);
  });
  return y;
}

// The float32 weight [N, K] of Q4 blocks (w = d*q + mn), for prefill's BLAS matmul.
torch::Tensor q4_dequantize(torch::Tensor qs, torch::Tensor d, torch::Tensor mn) {
  const int64_t N = qs.size(0), G = qs.size(1), K = G * QK;
  auto w = torch::empty({N, K}, d.options());
  const uint8_t* qp = qs.data_ptr<uint8_t>();
  const float* dp = d.data_ptr<float>();
  const float* mp = mn.data_ptr<float>();
  float* wp = w.data_ptr<float>();
  at::parallel_for(0, N * G, 256, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const uint8_t* q = qp + b * 16;
      float* out = wp + b * QK;
      for (int j = 0; j < 16; ++j) {
        out[j] = dp[b] * float(q[j] & 0x0F) + mp[b];
        out[16 + j] = dp[b] * float(q[j] >> 4) + mp[b];
      }
    }
  });
  return w;
}

// RMSNorm in one pass per row: y = x / sqrt(mean(x^2) + eps) * w (x [M, K] f32, w [K]).
// Saves the five small kernels eager torch runs per norm on the decode path.
torch::Tensor rms_norm(torch::Tensor x, torch::Tensor w, double eps) {
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "x: contiguous f32");
  const int64_t K = x.size(-1), M = x.numel() / K;
  auto y = torch::empty_like(x);
  const float* xp = x.data_ptr<float>();
  const float* wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = xp + m * K;
    float ss = 0.f;
    for (int64_t k = 0; k < K; ++k) ss += xr[k] * xr[k];
    const float r = 1.f / std::sqrt(ss / float(K) + float(eps));
    for (int64_t k = 0; k < K; ++k) yp[m * K + k] = wp[k] * (xr[k] * r);
  }
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("q4_linear", &q4_linear, "float32 x @ Q4 blocks^T");
  m.def("q8_linear", &q8_linear, "float32 x @ Q8_0 blocks^T");
  m.def("q4_dequantize", &q4_dequantize, "float32 weight of Q4 blocks");
  m.def("rms_norm", &rms_norm, "float32 RMSNorm over the last dimension");
}
