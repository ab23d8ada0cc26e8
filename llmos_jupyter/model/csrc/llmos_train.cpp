// LLMOS's training kernels (model/training_ops.py, engine/loss.py):
//   - the elementwise work of RMSNorm (alone or after a residual add), SwiGLU and the
//     loss's online softmax, forward and backward, one pass over each row (training.h). Torch runs each of these as 4-6 separate elementwise kernels,
//     every one a trip through memory for tensors of 1-3 MB a layer, bigger than a core's
//     L2: at SmolLM2's shapes that was ~0.1 s of a 1.4 s LoRA step on two cores. Here a
//     row is read once and its outputs written once.
//   - causal attention with RoPE for short rows, forward and backward (train_attention.h).
//
// Threads: OpenMP, unlike llmos_native.cpp. The training step alternates these kernels
// with torch's matmuls and elementwise ops, which run on torch's OpenMP threads; a second
// set of threads (pool.h's) would wake while torch's still spin after their last loop,
// and the two would share the cores: measured, a SwiGLU pass right after a matmul took
// 0.7 ms instead of 0.36. Linked against libgomp.so.1, the library shares the runtime
// torch has already loaded (the same soname), so its loops run on those same threads.
#include <algorithm>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "train_attention.h"
#include "training.h"

namespace {

// f(m0, m1) over items [0, M) split into one contiguous range per thread, each of at
// least `grain` items (a call of fewer than two grains stays on the calling thread).
template <class F>
void parallel_items(int M, int n_threads, int grain, const F& f) {
  const int n = std::max(1, std::min(n_threads, M / grain));
#pragma omp parallel num_threads(n) if (n > 1)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
    const int t = 0, nt = 1;
#endif
    const int chunk = (M + nt - 1) / nt;
    const int m0 = std::min(M, t * chunk), m1 = std::min(M, m0 + chunk);
    if (m0 < m1) f(m0, m1);
  }
}

// Rows per thread at least: fewer would cost more in waking a thread than they save.
constexpr int ROW_GRAIN = 16;

}  // namespace

extern "C" {

int llmos_train_abi_version() { return 2; }

// The probabilities' rows are padded to a multiple of this many columns.
int llmos_attention_cols() { return attn::COLS; }

// RMSNorm of x [M, K] for training: y [M, K] and the rows' 1/rms in rstd [M].
void llmos_rms_norm_train(const float* x, const float* w, int M, int K, float eps, float* y,
                          float* rstd, int n_threads) {
  parallel_items(M, n_threads, ROW_GRAIN, [&](int m0, int m1) {
    training::rms_norm_rows(x, w, m0, m1, K, eps, y, rstd);
  });
}

// h [M, K] = x + a, then llmos_rms_norm_train of h: the residual add before a norm in
// one pass.
void llmos_add_rms_norm(const float* x, const float* a, const float* w, int M, int K,
                        float eps, float* h, float* y, float* rstd, int n_threads) {
  parallel_items(M, n_threads, ROW_GRAIN, [&](int m0, int m1) {
    training::add_rms_norm_rows(x, a, w, m0, m1, K, eps, h, y, rstd);
  });
}

// The input gradient gx [M, K] of llmos_rms_norm_train from the output's gradient gy,
// plus gres [M, K] when not null (for llmos_add_rms_norm: the gradient of h itself).
void llmos_rms_norm_backward(const float* x, const float* w, const float* rstd,
                             const float* gy, const float* gres, int M, int K, float* gx,
                             int n_threads) {
  parallel_items(M, n_threads, ROW_GRAIN, [&](int m0, int m1) {
    training::rms_norm_backward_rows(x, w, rstd, gy, gres, m0, m1, K, gx);
  });
}

// h [M, F] = silu(gate) * up, gate and up side by side in gu [M, 2F].
void llmos_swiglu(const float* gu, int M, int F, float* h, int n_threads) {
  parallel_items(M, n_threads, ROW_GRAIN, [&](int m0, int m1) {
    for (int m = m0; m < m1; ++m) {
      const float* row = gu + size_t(m) * 2 * F;
      silu_mul(row, row + F, h + size_t(m) * F, F);
    }
  });
}

// SwiGLU's backward: gin [M, 2F] = [d gate | d up] from gu [M, 2F] and gh [M, F], the
// gradient of h; h [M, F] (may be null) gets silu(gate) * up again.
void llmos_swiglu_backward(const float* gu, const float* gh, int M, int F, float* gin,
                           float* h, int n_threads) {
  parallel_items(M, n_threads, ROW_GRAIN, [&](int m0, int m1) {
    for (int m = m0; m < m1; ++m) {
      const size_t r = size_t(m);
      training::swiglu_backward_row(gu + r * 2 * F, gh + r * F, F, gin + r * 2 * F,
                                    gin + r * 2 * F + F, h ? h + r * F : nullptr);
    }
  });
}

// One logits tile x [M, N] of the fused cross-entropy's online softmax, in place, with
// the rows' running maxima m, sums s and the factor rescale (each [M]) that the earlier
// tiles' gradient sums take (training.h).
void llmos_online_softmax(float* x, int M, int N, float* m, float* s, float* rescale,
                          int n_threads) {
  parallel_items(M, n_threads, ROW_GRAIN, [&](int m0, int m1) {
    for (int r = m0; r < m1; ++r)
      training::online_softmax_row(x + size_t(r) * N, N, m[r], s[r], rescale[r]);
  });
}

// Causal attention with RoPE, forward (train_attention.h has the layouts): y from qkv,
// keeping qr, kr and the probabilities p for the backward. Work items are (sequence, kv
// head) pairs.
void llmos_attention_train(const float* qkv, const float* cos, const float* sin, int B,
                           int T, int Hq, int Hkv, int D, float scale, float* y, float* qr,
                           float* kr, float* p, int n_threads) {
  const attn::Shape s{B, T, Hq, Hkv, D, scale};
  parallel_items(B * Hkv, n_threads, 1, [&](int i0, int i1) {
    std::vector<float> kT(size_t(D) * s.TP());
    for (int i = i0; i < i1; ++i)
      attn::forward_item(s, i / Hkv, i % Hkv, qkv, cos, sin, y, qr, kr, p, kT.data());
  });
}

// Its backward: gx [B, T, (Hq + 2 Hkv) D], the gradient of qkv, from gy (of y).
void llmos_attention_train_backward(const float* qkv, const float* cos, const float* sin,
                                    int B, int T, int Hq, int Hkv, int D, float scale,
                                    const float* y, const float* qr, const float* kr,
                                    const float* p, const float* gy, float* gx,
                                    int n_threads) {
  const attn::Shape s{B, T, Hq, Hkv, D, scale};
  parallel_items(B * Hkv, n_threads, 1, [&](int i0, int i1) {
    std::vector<float> vT(size_t(D) * s.TP()), ds(size_t(s.G()) * T * s.TP()),
        dqk(size_t(T) * D);
    for (int i = i0; i < i1; ++i)
      attn::backward_item(s, i / Hkv, i % Hkv, qkv, cos, sin, y, qr, kr, p, gy, gx, vT.data(),
                          ds.data(), dqk.data());
  });
}

}  // extern "C"
