// LLMOS's native CPU kernels: plain C ABI, no torch headers (builds in ~1-2 s with g++),
// loaded with ctypes by native.py and handed raw pointers of torch tensors.
//
//   llmos_gemv         y = x W^T (+ b) for dense float32 or GGML-block W (gemv.h)
//   llmos_dequantize   the float32 weight of GGML blocks (for prefill's BLAS matmul)
//   llmos_rms_norm     RMSNorm rows
//   llmos_forward_tokens  tokens of any cache rows and positions through a whole
//                      Llama-family model (prefill chunks and decode steps alike);
//   llmos_decode_step  one whole decode step of a Llama-family model for B sequences:
//                      embedding -> 30 x (rmsnorm, qkv, rope, cache write, GQA attention,
//                      o-proj + residual, rmsnorm, gate/up, silu*up, down + residual) ->
//                      rmsnorm -> LM head. Eager torch spends ~15 small ops per layer
//                      here; this spends one call per token, the calling thread driving
//                      the pool's threads through one parallel loop per dependent step.
// All math is float32, written to follow the torch reference path (transformer.py).
// Threads come from pool.h (not OpenMP: see there why); n_threads arguments are the most
// threads a call may use, the caller's included.
#include <cmath>
#include <cstring>

#include "attention.h"
#include "gemv.h"
#include "pool.h"
#include "rows.h"
#include "vmath.h"

extern "C" {

struct Layer {
  const float* attn_norm;
  const float* ffn_norm;
  Mat wqkv, wo, w_in, w_out;
  float* k_cache;  // [B_max, Hkv, S, D]
  float* v_cache;
};

struct Model {
  int32_t n_layers, dim, n_heads, n_kv_heads, head_dim, ffn_dim, vocab, cache_len;
  float eps;
  int32_t pad;
  const float* embed;     // [vocab, dim]
  const float* rope_cos;  // [max_seq_len, D]
  const float* rope_sin;  // [max_seq_len, D], first half negated (rope.rope_tables)
  const float* final_norm;
  Mat head;
  const Layer* layers;
};

int llmos_abi_version() { return 3; }

}  // extern "C"

namespace {

// Rotate one head vector in place (rotate_half layout): [x1, x2] * cos + [x2, x1] * sin.
void rope(float* x, const float* cos, const float* sin, int D) {
  float t[512];  // head_dim <= 512 (checked in Python)
  rope_row(x, cos, sin, D, t);
  std::memcpy(x, t, sizeof(float) * D);
}

}  // namespace

extern "C" {

// y [M, N] = x [M, K] W^T (+ bias), on n_threads threads.
void llmos_gemv(const Mat* A, const float* x, int M, float* y, int n_threads) {
  pool::Team team(n_threads);
  gemv_parallel(team, *A, x, M, y, A->N, false);
}

// w [N, K] = the float32 weight of A's blocks, rounded as gguf's numpy dequantizer does
// (block_weights is exact; see gemv.h). Prefill multiplies this with BLAS, so it runs
// once per prefill call and has to be quick: vectorized, ~3x the scalar loop it replaced.
void llmos_dequantize(const Mat* A, float* w, int n_threads) {
  // Items are weight rows (int: N is), each row's blocks b in [row*G, row*G + G).
  const int64_t G = A->K / 32;
  pool::Team team(n_threads);
  team.for_each(A->N, 64, [&](int r0, int r1) {
    for (int64_t b = r0 * G; b < r1 * G; ++b) {
      vec::V lo, hi;
      switch (A->kind) {
        case Q4_0: block_weights<Q4_0>(*A, b, lo, hi); break;
        case Q4_1: block_weights<Q4_1>(*A, b, lo, hi); break;
        default: block_weights<Q8_0>(*A, b, lo, hi); break;
      }
      vec::store(w + b * 32, lo);
      vec::store(w + b * 32 + 16, hi);
    }
  });
}

void llmos_rms_norm(const float* x, const float* w, int M, int K, float eps, float* y) {
  for (int m = 0; m < M; ++m) rms_norm_row(x + size_t(m) * K, w, K, eps, y + size_t(m) * K);
}

// Floats of scratch llmos_forward_tokens / llmos_decode_step need for B tokens.
int64_t llmos_decode_scratch(const Model* md, int B) {
  const int64_t qkv = int64_t(md->n_heads + 2 * md->n_kv_heads) * md->head_dim;
  return int64_t(B) * (2 * md->dim + qkv + md->n_heads * md->head_dim + 3 * md->ffn_dim +
                       int64_t(md->n_heads) * md->cache_len);
}

// B tokens through the model: tokens[b] at positions[b] of cache row rows[b] (rows null:
// row b); each token's k/v is written there and it attends to its row's cache
// [0, positions[b]]. Every layer writes all B tokens' k/v before any of them attends, so
// several tokens of one row (a prompt, positions ascending) attend causally among
// themselves: a prefill is this call over the prompt's tokens. Logits [n_out, vocab] come
// out for the tokens out_index[i], ascending (out_index null: every token, n_out = B). Each token's
// arithmetic is the same whatever else is in the call (the kernels are row-independent),
// so a sequence gets bit for bit the same cache and logits alone or beside others.
// Returns 0, or -1 (and computes nothing) when a token, position, row or index is out
// of range.
int llmos_forward_tokens(const Model* md, int B, const int64_t* tokens,
                         const int64_t* positions, const int64_t* rows, int n_out,
                         const int64_t* out_index, int n_rows, float* logits, float* scratch,
                         int n_threads) {
  for (int b = 0; b < B; ++b)
    if (tokens[b] < 0 || tokens[b] >= md->vocab || positions[b] < 0 ||
        positions[b] >= md->cache_len || (rows && (rows[b] < 0 || rows[b] >= n_rows)))
      return -1;
  if (n_out < 0 || n_out > B) return -1;
  for (int i = 0; out_index && i < n_out; ++i)
    if (out_index[i] < 0 || out_index[i] >= B || (i && out_index[i] <= out_index[i - 1]))
      return -1;
  const int dim = md->dim, Hq = md->n_heads, Hkv = md->n_kv_heads, D = md->head_dim;
  const int F = md->ffn_dim, QKV = (Hq + 2 * Hkv) * D, S = md->cache_len;
  const auto row_of = [&](int b) { return rows ? size_t(rows[b]) : size_t(b); };
  float* x = scratch;              // [B, dim] residual stream
  float* h = x + B * dim;          // [B, dim] normed
  float* qkv = h + B * dim;        // [B, QKV]
  float* att = qkv + B * QKV;      // [B, Hq*D]
  float* ff = att + B * Hq * D;    // [B, 2F] gate | up
  float* act = ff + B * 2 * F;     // [B, F]
  float* scores = act + B * F;     // [B*Hq, S]
  // Loops of fewer items than their grain run on the calling thread (at batch 1: the
  // norms, RoPE and SiLU), so a step wakes the other threads only for the products and,
  // once the context is long, attention.
  constexpr int ROW_GRAIN = 16, ROPE_GRAIN = 64, SILU_GRAIN = 16;
  int64_t longest = 1;
  for (int b = 0; b < B; ++b) longest = positions[b] + 1 > longest ? positions[b] + 1 : longest;
  // Heads per chunk: about 512 cached positions of work.
  const int attn_grain = longest >= 512 ? 1 : int(512 / longest);
  pool::Team team(n_threads);
  for (int b = 0; b < B; ++b)
    std::memcpy(x + b * dim, md->embed + size_t(tokens[b]) * dim, sizeof(float) * dim);
  const auto norm_rows = [&](const float* w, int n) {
    team.for_each(n, ROW_GRAIN, [&](int b0, int b1) {
      for (int b = b0; b < b1; ++b) rms_norm_row(x + b * dim, w, dim, md->eps, h + b * dim);
    });
  };
  for (int l = 0; l < md->n_layers; ++l) {
    const Layer& L = md->layers[l];
    norm_rows(L.attn_norm, B);
    gemv_parallel(team, L.wqkv, h, B, qkv, QKV, false);
    // RoPE on q and k heads; k and v heads go to the cache at their row's position.
    team.for_each(B * (Hq + 2 * Hkv), ROPE_GRAIN, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        const int b = t / (Hq + 2 * Hkv), head = t % (Hq + 2 * Hkv);
        const int64_t pos = positions[b];
        float* v = qkv + b * QKV + head * D;
        if (head < Hq + Hkv) rope(v, md->rope_cos + pos * D, md->rope_sin + pos * D, D);
        if (head >= Hq) {
          const int kv = head < Hq + Hkv ? head - Hq : head - Hq - Hkv;
          float* cache = head < Hq + Hkv ? L.k_cache : L.v_cache;
          std::memcpy(cache + ((row_of(b) * Hkv + kv) * S + pos) * D, v, sizeof(float) * D);
        }
      }
    });
    // GQA: query head hq reads KV head hq / (Hq / Hkv).
    team.for_each(B * Hq, attn_grain, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        const int b = t / Hq, hq = t % Hq, kv = hq / (Hq / Hkv);
        const size_t base = (row_of(b) * Hkv + kv) * S * D;
        attend_head(qkv + b * QKV + hq * D, L.k_cache + base, L.v_cache + base,
                    int(positions[b] + 1), D, scores + size_t(t) * S, att + b * Hq * D + hq * D);
      }
    });
    gemv_parallel(team, L.wo, att, B, x, dim, true);
    norm_rows(L.ffn_norm, B);
    gemv_parallel(team, L.w_in, h, B, ff, 2 * F, false);
    // silu(gate) * up in chunks of 256 (vectorized exp: a scalar expf per element was
    // ~15 ms of a 16-row step).
    const int chunks = (F + 255) / 256;
    team.for_each(B * chunks, SILU_GRAIN, [&](int t0, int t1) {
      for (int t = t0; t < t1; ++t) {
        const int b = t / chunks, j = (t % chunks) * 256, n = F - j < 256 ? F - j : 256;
        const float* g = ff + size_t(b) * 2 * F + j;
        silu_mul(g, g + F, act + size_t(b) * F + j, n);
      }
    });
    gemv_parallel(team, L.w_out, act, B, x, dim, true);
  }
  if (out_index) {  // the selected tokens' residuals to the front (ascending: no overlap)
    for (int i = 0; i < n_out; ++i)
      if (out_index[i] != i)
        std::memmove(x + size_t(i) * dim, x + size_t(out_index[i]) * dim, sizeof(float) * dim);
  }
  norm_rows(md->final_norm, n_out);
  if (n_out > 0) gemv_parallel(team, md->head, h, n_out, logits, md->vocab, false);
  return 0;
}

// One decode step: tokens[b] at positions[b] of cache row b for b < B; logits [B, vocab].
int llmos_decode_step(const Model* md, int B, const int64_t* tokens, const int64_t* positions,
                      float* logits, float* scratch, int n_threads) {
  return llmos_forward_tokens(md, B, tokens, positions, nullptr, B, nullptr, B, logits,
                              scratch, n_threads);
}

}  // extern "C"
