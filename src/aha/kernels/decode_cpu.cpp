// One decoder layer of one sampling step (one new token per row) for Qwen2/Llama-style models on CPU.
//
// Why a kernel: at rollout shapes (tens of rows, hidden 128–1024) a PyTorch-level decode step runs
// ~300 small ops per step (norms, RoPE, cache writes, mask, softmax, SiLU), each a dispatch and a pass
// over memory, and the attention reads whole cache buffers through batched matmuls. Here everything
// between the four matmuls is one pass: the matmuls stay ATen's (oneDNN), the rest is loops the
// compiler vectorises. Attention reads only the columns written so far, each prompt's K/V once per
// prompt (the rows of a prompt are adjacent, so its K/V stay in cache across them).
//
// Numerics: statistics, RoPE, scores, softmax and SiLU in fp32; results rounded once to the model's
// dtype (the module's forward rounds after every op, so bf16 results differ by at most an ulp or so).
// The caller folds the softmax scale 1/sqrt(D) into the q projection.
//
// Layouts (T = float or bfloat16, all contiguous; P, cap and D multiples of 16):
//   x (A, C) hidden state of the A live rows;  cos/sin (A, D) fp32 at each row's position
//   prompt_k (B, Hkv, P/16, D, 16) keys in tiles of 16 columns, each tile transposed (D, 16) and
//     contiguous: a tile's scores read 16·D keys in one stream (a plain transposed (D, P) layout made
//     them D strided reads);
//   prompt_v (B, Hkv, P, D);  prompt_bias (B, P) fp32, 0 or -inf
//   cache_k (A, Hkv, cap/16, D, 16) tiles as above; cache_v (A, Hkv, cap, D) — column `col` is written here
//   prompt_of_row (A,) int64: which prompt's K/V each row reads.
// bf16 on CPUs with AVX512-BF16 (`bf16_pairs()`): inside the same shapes, K tiles are (D/2, 16, 2)
// and V is (cap/2, D, 2) — two neighbouring elements of the summed dimension side by side, the
// operand layout of the vdpbf16ps dot-product instruction (products of bf16 pairs summed in fp32):
// no conversions, half the instructions. `aha.kernels.key_tiles` / `value_rows` build both layouts.

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/stack.h>
#include <torch/library.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace {

// Raw element access: bf16 as its bit pattern so every loop is plain integer/float code that the
// compiler vectorises (c10::BFloat16's own conversions carry a NaN branch per element).
template <typename T> struct Elem;
template <> struct Elem<float> {
  using raw = float;
  static inline float load(float v) { return v; }
  static inline float store(float v) { return v; }
};
template <> struct Elem<c10::BFloat16> {
  using raw = uint16_t;
  static inline float load(uint16_t v) {
    uint32_t bits = static_cast<uint32_t>(v) << 16;
    float out;
    std::memcpy(&out, &bits, sizeof(out));
    return out;
  }
  static inline uint16_t store(float v) {  // round to nearest even, NaN stays NaN
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof(bits));
    uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    return (v != v) ? static_cast<uint16_t>(0x7FC0u) : static_cast<uint16_t>(rounded);
  }
};

template <typename T> inline const typename Elem<T>::raw* raw_ptr(const at::Tensor& t) {
  return reinterpret_cast<const typename Elem<T>::raw*>(t.data_ptr<T>());
}
template <typename T> inline typename Elem<T>::raw* raw_mut(at::Tensor& t) {
  return reinterpret_cast<typename Elem<T>::raw*>(t.data_ptr<T>());
}

#if defined(__AVX512BF16__)
constexpr bool kBf16PairsBuilt = true;
#else
constexpr bool kBf16PairsBuilt = false;
#endif
template <typename T> constexpr bool kPairs = kBf16PairsBuilt && std::is_same<T, c10::BFloat16>::value;

// 16 fp32 lanes as a GCC/Clang vector: the compiler maps it to AVX-512, 2×AVX2, NEON… Used where
// the loop order matters (an accumulator kept in a register across the reduction), which plain loops
// do not get from auto-vectorisation.
constexpr int64_t kBlock = 16;
typedef float f32x16 __attribute__((vector_size(64)));
typedef uint16_t u16x16 __attribute__((vector_size(32)));
typedef uint32_t u32x16 __attribute__((vector_size(64)));

inline f32x16 load16(const float* p) {
  f32x16 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline f32x16 load16(const uint16_t* p) {  // 16 bf16 -> fp32: the bits shifted into the high half
  u16x16 h;
  std::memcpy(&h, p, sizeof(h));
  const u32x16 w = __builtin_convertvector(h, u32x16) << 16;
  f32x16 v;
  std::memcpy(&v, &w, sizeof(v));
  return v;
}

// exp(x) for x <= 0 (softmax after subtracting the max; SiLU on -|x|): Cody–Waite range reduction
// and a degree-6 polynomial, written so the loops around it vectorise (libm's expf does not).
// Relative error ≤ 8.1e-8 against double exp (every 64th float in [-87, 0]). Below -87 it returns
// exactly 0, so -inf scores get exactly zero weight.
inline float exp_nonpositive(float x) {
  const float clamped = x < -87.0f ? -87.0f : x;
  // round to nearest by the 1.5·2^23 trick: plain float adds, which vectorise (nearbyint does not)
  const float n = (clamped * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  const float r = (clamped - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = (p * r * r + r) + 1.0f;
  const int32_t e = static_cast<int32_t>(n) + 127;
  uint32_t bits = static_cast<uint32_t>(e) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.0f ? 0.0f : p * scale;
}

// Reductions through kLanes independent partial results: fp32 adds are not associative, so the
// compiler vectorises a plain `sum += s[i]` loop only under -ffast-math; written this way it does.
constexpr int64_t kLanes = 16;

inline float max_of(const float* s, int64_t n) {
  float lanes[kLanes];
  for (int64_t k = 0; k < kLanes; ++k) lanes[k] = -INFINITY;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) lanes[k] = s[i + k] > lanes[k] ? s[i + k] : lanes[k];
  }
  float top = -INFINITY;
  for (; i < n; ++i) top = s[i] > top ? s[i] : top;
  for (int64_t k = 0; k < kLanes; ++k) top = lanes[k] > top ? lanes[k] : top;
  return top;
}

inline float sum_of(const float* s, int64_t n) {
  float lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t k = 0; k < kLanes; ++k) lanes[k] += s[i + k];
  }
  float total = 0.0f;
  for (; i < n; ++i) total += s[i];
  for (int64_t k = 0; k < kLanes; ++k) total += lanes[k];
  return total;
}

// s <- softmax(s), in place.
inline void softmax_inplace(float* s, int64_t n) {
  const float top = max_of(s, n);
  for (int64_t l = 0; l < n; ++l) s[l] = exp_nonpositive(s[l] - top);
  const float inv = 1.0f / sum_of(s, n);
  for (int64_t l = 0; l < n; ++l) s[l] *= inv;
}

template <typename T>
void rms_rows(const at::Tensor& x, const at::Tensor& weight, at::Tensor& out, double eps) {
  using E = Elem<T>;
  const int64_t rows = x.size(0), C = x.size(1);
  const auto* xp = raw_ptr<T>(x);
  const auto* wp = raw_ptr<T>(weight);
  auto* op = raw_mut<T>(out);
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const auto* xr = xp + r * C;
      float squares[kLanes] = {};
      int64_t c = 0;
      for (; c + kLanes <= C; c += kLanes) {
        for (int64_t k = 0; k < kLanes; ++k) {
          const float v = E::load(xr[c + k]);
          squares[k] += v * v;
        }
      }
      float sum = 0.0f;
      for (; c < C; ++c) sum += E::load(xr[c]) * E::load(xr[c]);
      for (int64_t k = 0; k < kLanes; ++k) sum += squares[k];
      const float inv = 1.0f / std::sqrt(sum / static_cast<float>(C) + static_cast<float>(eps));
      auto* o = op + r * C;
      for (c = 0; c < C; ++c) o[c] = E::store(E::load(xr[c]) * inv * E::load(wp[c]));
    }
  });
}

// q (rotated, fp32) out of the fused qkv projection; rotated k and v written at column `col`.
template <typename T>
void rope_and_cache(const at::Tensor& qkv, const at::Tensor& cos, const at::Tensor& sin, at::Tensor& q,
                    at::Tensor& cache_k, at::Tensor& cache_v, int64_t col, int64_t Hq, int64_t Hkv, int64_t D) {
  using E = Elem<T>;
  const int64_t A = qkv.size(0), width = qkv.size(1), tiles = cache_k.size(2), half = D / 2;
  const int64_t cap = tiles * kBlock, tile = col / kBlock, lane = col % kBlock;
  const auto* src = raw_ptr<T>(qkv);
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  float* qp = q.data_ptr<float>();
  auto* kp = raw_mut<T>(cache_k);
  auto* vp = raw_mut<T>(cache_v);
  at::parallel_for(0, A, 8, [&](int64_t begin, int64_t end) {
    std::vector<float> rotated(D);
    for (int64_t r = begin; r < end; ++r) {
      const auto* row = src + r * width;
      const float* c = cp + r * D;
      const float* s = sp + r * D;
      for (int64_t h = 0; h < Hq + Hkv; ++h) {
        const auto* head = row + h * D;
        for (int64_t i = 0; i < half; ++i) {
          const float lo = E::load(head[i]), hi = E::load(head[i + half]);
          rotated[i] = lo * c[i] - hi * s[i];
          rotated[i + half] = hi * c[i + half] + lo * s[i + half];
        }
        if (h < Hq) {
          std::memcpy(qp + (r * Hq + h) * D, rotated.data(), D * sizeof(float));
        } else if (kPairs<T>) {  // in its tile (D/2, 16, 2): element d at ((d/2)·16 + lane)·2 + d%2
          auto* k = kp + (((r * Hkv + (h - Hq)) * tiles + tile) * D) * kBlock;
          for (int64_t d = 0; d < D; ++d) k[((d / 2) * kBlock + lane) * 2 + (d & 1)] = E::store(rotated[d]);
        } else {  // in its tile, element d of this column sits kBlock apart
          auto* k = kp + (((r * Hkv + (h - Hq)) * tiles + tile) * D) * kBlock + lane;
          for (int64_t d = 0; d < D; ++d) k[d * kBlock] = E::store(rotated[d]);
        }
      }
      const auto* v = row + (Hq + Hkv) * D;
      for (int64_t h = 0; h < Hkv; ++h) {
        if (kPairs<T>) {  // (cap/2, D, 2): element d of column col at ((col/2)·D + d)·2 + col%2
          auto* dst = vp + (r * Hkv + h) * cap * D + (col / 2) * D * 2 + (col & 1);
          for (int64_t d = 0; d < D; ++d) dst[2 * d] = v[h * D + d];
        } else {
          auto* dst = vp + ((r * Hkv + h) * cap + col) * D;
          for (int64_t d = 0; d < D; ++d) dst[d] = v[h * D + d];
        }
      }
    }
  });
}

// Partial sums per accumulator: enough independent FMA chains (≈ 4) to hide the FMA latency, one
// chain per query head and partial sum.
template <int G> constexpr int64_t kPartials = G >= 4 ? 1 : 4 / G;

// s[j][0:n) = q[j] · K[:, 0:n) for the G query heads j that share one KV head, K in tiles
// (n/16, D, 16); n a multiple of kBlock. Each key is loaded and converted once for all G heads.
template <int G, typename R>
inline void scores_tiles(const float* q, const R* k, int64_t D, int64_t n, float* s, int64_t ld) {
  constexpr int64_t NP = kPartials<G>;
  for (int64_t l0 = 0; l0 < n; l0 += kBlock) {
    f32x16 acc[G][NP] = {};
    const R* tile = k + l0 * D;
    for (int64_t d = 0; d < D; d += NP) {
      for (int64_t p = 0; p < NP; ++p) {
        const f32x16 key = load16(tile + (d + p) * kBlock);
        for (int j = 0; j < G; ++j) acc[j][p] += q[j * D + d + p] * key;
      }
    }
    for (int j = 0; j < G; ++j) {
      f32x16 total = acc[j][0];
      for (int64_t p = 1; p < NP; ++p) total += acc[j][p];
      std::memcpy(s + j * ld + l0, &total, sizeof(total));
    }
  }
}

// out[j][0:16) += Σ_l p[j][l] · V[l, 0:16) over n rows of V (D apart), for G heads at once.
template <int G, typename R>
inline void weighted_rows(const float* p, int64_t ld, const R* v, int64_t D, int64_t n, f32x16 (&out)[G]) {
  constexpr int64_t NP = kPartials<G>;
  f32x16 acc[G][NP] = {};
  int64_t l = 0;
  for (; l + NP <= n; l += NP) {
    for (int64_t i = 0; i < NP; ++i) {
      const f32x16 value = load16(v + (l + i) * D);
      for (int j = 0; j < G; ++j) acc[j][i] += p[j * ld + l + i] * value;
    }
  }
  for (; l < n; ++l) {
    const f32x16 value = load16(v + l * D);
    for (int j = 0; j < G; ++j) acc[j][0] += p[j * ld + l] * value;
  }
  for (int j = 0; j < G; ++j) {
    for (int64_t i = 0; i < NP; ++i) out[j] += acc[j][i];
  }
}

// out[j] = Σ_l p[j][l] · V[l, :] for G heads and D = DB·16: each V row read once, in memory order,
// with all G·DB accumulators in registers (the d-block loop below reads every row D/16 times).
template <int G, int DB, typename T>
inline void weigh_all(const float* p, int64_t ld, const typename Elem<T>::raw* prompt_v,
                      const typename Elem<T>::raw* own_v, int64_t P, int64_t own, typename Elem<T>::raw* out) {
  f32x16 sum[G][DB] = {};
  auto pass = [&](const typename Elem<T>::raw* v, int64_t n, int64_t first) {
    for (int64_t l = 0; l < n; ++l) {
      const auto* values = v + l * DB * kBlock;
      for (int b = 0; b < DB; ++b) {
        const f32x16 vb = load16(values + b * kBlock);
        for (int j = 0; j < G; ++j) sum[j][b] += p[j * ld + first + l] * vb;
      }
    }
  };
  pass(prompt_v, P, 0);
  pass(own_v, own, P);
  for (int j = 0; j < G; ++j) {
    for (int b = 0; b < DB; ++b) {
      float lanes[kBlock];
      std::memcpy(lanes, &sum[j][b], sizeof(lanes));
      for (int64_t i = 0; i < kBlock; ++i) out[j * DB * kBlock + b * kBlock + i] = Elem<T>::store(lanes[i]);
    }
  }
}

// G query heads (hq0 …) of one row that share KV head h: scores against the prompt's K (P columns,
// pads at -inf bias) and the row's own columns 0..col, softmax, weighted V. P, cap and D are
// multiples of kBlock: score tiles run past `col` inside the buffer; those columns are left out.
template <int G, typename T>
inline void attend_group(const float* q, const typename Elem<T>::raw* prompt_k, const typename Elem<T>::raw* prompt_v,
                         const float* bias, const typename Elem<T>::raw* own_k, const typename Elem<T>::raw* own_v,
                         int64_t P, int64_t own, int64_t D, float* scores, typename Elem<T>::raw* out) {
  using E = Elem<T>;
  const int64_t own_tiles = (own + kBlock - 1) / kBlock * kBlock, ld = P + own_tiles, L = P + own;
  scores_tiles<G>(q, prompt_k, D, P, scores, ld);
  scores_tiles<G>(q, own_k, D, own_tiles, scores + P, ld);
  for (int j = 0; j < G; ++j) {
    float* s = scores + j * ld;
    for (int64_t l = 0; l < P; ++l) s[l] += bias[l];
    softmax_inplace(s, L);
  }
  if constexpr (G <= 4) {  // one pass over V in memory order where the accumulators fit in registers
    if (D == 64) return weigh_all<G, 4, T>(scores, ld, prompt_v, own_v, P, own, out);
    if (D == 32) return weigh_all<G, 2, T>(scores, ld, prompt_v, own_v, P, own, out);
    if (D == 128 && G <= 2) return weigh_all<G, 8, T>(scores, ld, prompt_v, own_v, P, own, out);
  }
  for (int64_t d0 = 0; d0 < D; d0 += kBlock) {
    f32x16 sum[G] = {};
    weighted_rows<G>(scores, ld, prompt_v + d0, D, P, sum);
    weighted_rows<G>(scores + P, ld, own_v + d0, D, own, sum);
    for (int j = 0; j < G; ++j) {
      float lanes[kBlock];
      std::memcpy(lanes, &sum[j], sizeof(lanes));
      for (int64_t i = 0; i < kBlock; ++i) out[j * D + d0 + i] = E::store(lanes[i]);
    }
  }
}

#if defined(__AVX512BF16__)
// x[0:n) to bf16 (round to nearest even), stored as n/2 pairs: pair i = (x[2i], x[2i+1]), first in the
// low half — which is just the bf16 array read as 32-bit words. 16 at a time (vcvtneps2bf16); n is
// rounded up to 16, so x must hold that many floats (the tail's pairs are never read).
inline void to_bf16_pairs(const float* x, int64_t n, uint32_t* pairs) {
  for (int64_t i = 0; i < n; i += kBlock) {
    const __m256bh packed = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    std::memcpy(pairs + i / 2, &packed, sizeof(packed));
  }
}

inline __m512 dot_pairs(__m512 acc, uint32_t pair, __m512i values) {
  return _mm512_dpbf16_ps(acc, (__m512bh)_mm512_set1_epi32(static_cast<int>(pair)), (__m512bh)values);
}

// out[j] = Σ_l p[j][l] · V[l, :] for G heads, V in pair rows of D = DB·16 dims (DB·64 contiguous
// bytes). One pass over V in memory order, all G·DB accumulators in registers: reading a 16-dim
// slice of every row per pass (the generic loop below) read each row 64 bytes at a time four times
// over, and stalled on memory at 512 columns. Prefetched 24 pair rows ahead: each row's cache is a
// few pages long, and hardware prefetchers restart at every page.
template <int G, int DB>
inline void weigh_rows(const uint32_t* p_pairs, int64_t ld_pairs, const uint16_t* prompt_v, const uint16_t* own_v,
                       int64_t prompt_pairs, int64_t own_pairs, uint16_t* out) {
  constexpr int64_t row = DB * 2 * kBlock;  // bf16 per pair row
  __m512 sum[G][DB];
  for (int j = 0; j < G; ++j) for (int b = 0; b < DB; ++b) sum[j][b] = _mm512_setzero_ps();
  auto pass = [&](const uint16_t* v, int64_t n, int64_t first) {
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t* values = v + i * row;
      for (int b = 0; b < DB; ++b) _mm_prefetch(reinterpret_cast<const char*>(values + 24 * row + b * 32), _MM_HINT_T0);
      for (int b = 0; b < DB; ++b) {
        const __m512i vb = _mm512_loadu_si512(values + b * 2 * kBlock);
        for (int j = 0; j < G; ++j) sum[j][b] = dot_pairs(sum[j][b], p_pairs[j * ld_pairs + first + i], vb);
      }
    }
  };
  pass(prompt_v, prompt_pairs, 0);
  pass(own_v, own_pairs, prompt_pairs);
  for (int j = 0; j < G; ++j) {
    for (int b = 0; b < DB; ++b) {
      float lanes[kBlock];
      _mm512_storeu_ps(lanes, sum[j][b]);
      for (int64_t i = 0; i < kBlock; ++i) out[j * DB * kBlock + b * kBlock + i] = Elem<c10::BFloat16>::store(lanes[i]);
    }
  }
}

// attend_group for bf16 in the pair layouts: q and the probabilities are rounded to bf16 pairs (the
// plain bf16 decoder rounds them to bf16 too); every product is summed in fp32.
template <int G>
inline void attend_group_pairs(const float* q, const uint16_t* prompt_k, const uint16_t* prompt_v, const float* bias,
                               const uint16_t* own_k, const uint16_t* own_v, int64_t P, int64_t own, int64_t D,
                               float* scores, uint32_t* pairs, uint16_t* out) {
  constexpr int64_t NP = kPartials<G>;
  const int64_t own_tiles = (own + kBlock - 1) / kBlock * kBlock, ld = P + own_tiles, L = P + own, half = D / 2;
  uint32_t* q_pairs = pairs;  // G × D/2, then the probabilities' pairs
  for (int j = 0; j < G; ++j) {
    to_bf16_pairs(q + j * D, D, q_pairs + j * half);
  }
  auto score_tiles = [&](const uint16_t* k, int64_t n, int64_t offset) {
    for (int64_t l0 = 0; l0 < n; l0 += kBlock) {
      __m512 acc[G][NP];
      for (int j = 0; j < G; ++j) for (int64_t p = 0; p < NP; ++p) acc[j][p] = _mm512_setzero_ps();
      const uint16_t* tile = k + l0 * D;
      for (int64_t i = 0; i < half; i += NP) {
        for (int64_t p = 0; p < NP; ++p) {  // four tiles ahead (one tile is D·32 bytes)
          _mm_prefetch(reinterpret_cast<const char*>(tile + 4 * kBlock * D + (i + p) * 2 * kBlock), _MM_HINT_T0);
          const __m512i keys = _mm512_loadu_si512(tile + (i + p) * 2 * kBlock);
          for (int j = 0; j < G; ++j) acc[j][p] = dot_pairs(acc[j][p], q_pairs[j * half + i + p], keys);
        }
      }
      for (int j = 0; j < G; ++j) {
        __m512 total = acc[j][0];
        for (int64_t p = 1; p < NP; ++p) total = _mm512_add_ps(total, acc[j][p]);
        _mm512_storeu_ps(scores + j * ld + offset + l0, total);
      }
    }
  };
  score_tiles(prompt_k, P, 0);
  score_tiles(own_k, own_tiles, P);
  const int64_t ld_pairs = ld / 2, used_pairs = (L + 1) / 2;
  uint32_t* p_pairs = pairs + G * half;  // G × ld/2
  for (int j = 0; j < G; ++j) {
    float* s = scores + j * ld;
    for (int64_t l = 0; l < P; ++l) s[l] += bias[l];
    softmax_inplace(s, L);
    if (L % 2) s[L] = 0.0f;  // the odd column's partner: no weight (own < own_tiles, so it is in the buffer)
    to_bf16_pairs(s, used_pairs * 2, p_pairs + j * ld_pairs);
  }
  if constexpr (G <= 4) {  // D = 32, 64 or 128: every accumulator of a pair row in registers (see weigh_rows)
    if (D == 64) return weigh_rows<G, 4>(p_pairs, ld_pairs, prompt_v, own_v, P / 2, (own + 1) / 2, out);
    if (D == 32) return weigh_rows<G, 2>(p_pairs, ld_pairs, prompt_v, own_v, P / 2, (own + 1) / 2, out);
    if (D == 128 && G <= 2) return weigh_rows<G, 8>(p_pairs, ld_pairs, prompt_v, own_v, P / 2, (own + 1) / 2, out);
  }
  auto weigh = [&](const uint16_t* v, int64_t n_pairs, int64_t first_pair, int64_t d0, __m512 (&sum)[G]) {
    __m512 acc[G][NP];
    for (int j = 0; j < G; ++j) for (int64_t p = 0; p < NP; ++p) acc[j][p] = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + NP <= n_pairs; i += NP) {
      for (int64_t p = 0; p < NP; ++p) {
        const __m512i values = _mm512_loadu_si512(v + ((i + p) * D + d0) * 2);
        for (int j = 0; j < G; ++j) acc[j][p] = dot_pairs(acc[j][p], p_pairs[j * ld_pairs + first_pair + i + p], values);
      }
    }
    for (; i < n_pairs; ++i) {
      const __m512i values = _mm512_loadu_si512(v + (i * D + d0) * 2);
      for (int j = 0; j < G; ++j) acc[j][0] = dot_pairs(acc[j][0], p_pairs[j * ld_pairs + first_pair + i], values);
    }
    for (int j = 0; j < G; ++j) for (int64_t p = 0; p < NP; ++p) sum[j] = _mm512_add_ps(sum[j], acc[j][p]);
  };
  for (int64_t d0 = 0; d0 < D; d0 += kBlock) {
    __m512 sum[G];
    for (int j = 0; j < G; ++j) sum[j] = _mm512_setzero_ps();
    weigh(prompt_v, P / 2, 0, d0, sum);
    weigh(own_v, (own + 1) / 2, P / 2, d0, sum);
    for (int j = 0; j < G; ++j) {
      float lanes[kBlock];
      _mm512_storeu_ps(lanes, sum[j]);
      for (int64_t i = 0; i < kBlock; ++i) out[j * D + d0 + i] = Elem<c10::BFloat16>::store(lanes[i]);
    }
  }
}
#endif

// Every row's Hq query heads; the heads of one KV head go through together where g = Hq/Hkv is 1, 2,
// 4 or 8 (one at a time otherwise).
template <typename T>
void attend(const at::Tensor& q, const at::Tensor& prompt_k, const at::Tensor& prompt_v,
            const at::Tensor& prompt_bias, const at::Tensor& cache_k, const at::Tensor& cache_v,
            const at::Tensor& prompt_of_row, at::Tensor& out, int64_t col, int64_t Hq, int64_t Hkv, int64_t D) {
  const int64_t A = q.size(0), P = prompt_k.size(2) * kBlock, cap = cache_k.size(2) * kBlock, g = Hq / Hkv;
  const int64_t own = col + 1, own_tiles = (own + kBlock - 1) / kBlock * kBlock;
  const int group = (g == 1 || g == 2 || g == 4 || g == 8) ? static_cast<int>(g) : 1;
  const float* qp = q.data_ptr<float>();
  const auto* pk = raw_ptr<T>(prompt_k);
  const auto* pv = raw_ptr<T>(prompt_v);
  const float* pb = prompt_bias.data_ptr<float>();
  const auto* ck = raw_ptr<T>(cache_k);
  const auto* cv = raw_ptr<T>(cache_v);
  const int64_t* which = prompt_of_row.data_ptr<int64_t>();
  auto* op = raw_mut<T>(out);
  at::parallel_for(0, A, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(group * (P + own_tiles));
    std::vector<uint32_t> pairs(kPairs<T> ? group * (D / 2 + (P + own_tiles) / 2) : 0);
    for (int64_t r = begin; r < end; ++r) {
      const int64_t b = which[r];
      for (int64_t hq = 0; hq < Hq; hq += group) {
        const int64_t h = hq / g;  // the KV head of these query heads
        const float* qh = qp + (r * Hq + hq) * D;
        const auto* k_p = pk + (b * Hkv + h) * D * P;
        const auto* v_p = pv + (b * Hkv + h) * P * D;
        const auto* k_o = ck + (r * Hkv + h) * D * cap;
        const auto* v_o = cv + (r * Hkv + h) * cap * D;
        auto* o = op + (r * Hq + hq) * D;
#if defined(__AVX512BF16__)
        if constexpr (kPairs<T>) {
          float* sc = scores.data();
          uint32_t* pp = pairs.data();
          switch (group) {
            case 8: attend_group_pairs<8>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, sc, pp, o); break;
            case 4: attend_group_pairs<4>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, sc, pp, o); break;
            case 2: attend_group_pairs<2>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, sc, pp, o); break;
            default: attend_group_pairs<1>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, sc, pp, o);
          }
          continue;
        }
#endif
        switch (group) {
          case 8: attend_group<8, T>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, scores.data(), o); break;
          case 4: attend_group<4, T>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, scores.data(), o); break;
          case 2: attend_group<2, T>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, scores.data(), o); break;
          default: attend_group<1, T>(qh, k_p, v_p, pb + b * P, k_o, v_o, P, own, D, scores.data(), o);
        }
      }
    }
  });
}

template <typename T>
void silu_mul(const at::Tensor& gate_up, at::Tensor& out) {
  using E = Elem<T>;
  const int64_t A = gate_up.size(0), M = gate_up.size(1) / 2;
  const auto* gp = raw_ptr<T>(gate_up);
  auto* op = raw_mut<T>(out);
  at::parallel_for(0, A, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const auto* gate = gp + r * 2 * M;
      const auto* up = gate + M;
      auto* o = op + r * M;
      for (int64_t i = 0; i < M; ++i) {
        const float z = E::load(gate[i]);
        // sigmoid from exp(-|z|) only, so the exponent never overflows
        const float e = exp_nonpositive(-std::fabs(z));
        const float numerator = z > 0.0f ? 1.0f : e;
        o[i] = E::store(z * (numerator / (1.0f + e)) * E::load(up[i]));
      }
    }
  });
}

void check(bool ok, const char* what) { TORCH_CHECK(ok, "aha decode kernel: ", what); }

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  check(x.dim() == 2 && x.is_contiguous() && weight.is_contiguous() && x.scalar_type() == weight.scalar_type(),
        "rms_norm takes a contiguous (rows, C) tensor and a weight of its dtype");
  auto out = at::empty_like(x);
  if (x.scalar_type() == at::kBFloat16) {
    rms_rows<c10::BFloat16>(x, weight, out, eps);
  } else {
    check(x.scalar_type() == at::kFloat, "dtype must be float32 or bfloat16");
    rms_rows<float>(x, weight, out, eps);
  }
  return out;
}

// x · wᵀ + b. A weight in oneDNN's blocked layout (`torch.ops.mkldnn._reorder_linear_weight`, bf16)
// goes to oneDNN's linear directly: the same results, without re-laying out the weight every call
// (64 rows × 256 × 1536, 1 thread: 272 → 242 µs). Called boxed: the op is mkldnn's, not ours.
at::Tensor project(const at::Tensor& x, const at::Tensor& w, const c10::optional<at::Tensor>& b) {
  if (!w.is_mkldnn()) return at::linear(x, w, b);
  static const auto handle = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack;
  stack.emplace_back(x);
  stack.emplace_back(w);
  stack.emplace_back(b);
  stack.emplace_back(std::string("none"));
  stack.emplace_back(c10::List<c10::optional<c10::Scalar>>());
  stack.emplace_back(std::string(""));
  handle.callBoxed(&stack);
  return stack.back().toTensor();
}

template <typename T>
at::Tensor layer(const at::Tensor& x, const at::Tensor& norm1, const at::Tensor& w_qkv,
                 const c10::optional<at::Tensor>& b_qkv, const at::Tensor& w_o, const c10::optional<at::Tensor>& b_o,
                 const at::Tensor& norm2, const at::Tensor& w_gate_up, const c10::optional<at::Tensor>& b_gate_up,
                 const at::Tensor& w_down, const c10::optional<at::Tensor>& b_down, const at::Tensor& cos,
                 const at::Tensor& sin, const at::Tensor& prompt_k, const at::Tensor& prompt_v,
                 const at::Tensor& prompt_bias, at::Tensor& cache_k, at::Tensor& cache_v,
                 const at::Tensor& prompt_of_row, int64_t col, int64_t Hq, int64_t Hkv, double eps) {
  const int64_t A = x.size(0), D = cache_k.size(3);
  auto h = at::empty_like(x);
  rms_rows<T>(x, norm1, h, eps);
  auto qkv = project(h, w_qkv, b_qkv).contiguous();
  auto q = at::empty({A, Hq, D}, x.options().dtype(at::kFloat));
  rope_and_cache<T>(qkv, cos, sin, q, cache_k, cache_v, col, Hq, Hkv, D);
  auto attn = at::empty({A, Hq * D}, x.options());
  attend<T>(q, prompt_k, prompt_v, prompt_bias, cache_k, cache_v, prompt_of_row, attn, col, Hq, Hkv, D);
  auto hidden = x + project(attn, w_o, b_o);
  rms_rows<T>(hidden, norm2, h, eps);
  auto gate_up = project(h, w_gate_up, b_gate_up).contiguous();
  auto act = at::empty({A, gate_up.size(1) / 2}, x.options());
  silu_mul<T>(gate_up, act);
  hidden.add_(project(act, w_down, b_down));
  return hidden;
}

at::Tensor decode_layer(const at::Tensor& x, const at::Tensor& norm1, const at::Tensor& w_qkv,
                        const c10::optional<at::Tensor>& b_qkv, const at::Tensor& w_o,
                        const c10::optional<at::Tensor>& b_o, const at::Tensor& norm2, const at::Tensor& w_gate_up,
                        const c10::optional<at::Tensor>& b_gate_up, const at::Tensor& w_down,
                        const c10::optional<at::Tensor>& b_down, const at::Tensor& cos, const at::Tensor& sin,
                        const at::Tensor& prompt_k, const at::Tensor& prompt_v, const at::Tensor& prompt_bias,
                        at::Tensor& cache_k, at::Tensor& cache_v, const at::Tensor& prompt_of_row, int64_t col,
                        int64_t heads, int64_t kv_heads, double eps) {
  const auto dtype = x.scalar_type();
  check(x.device().is_cpu(), "CPU tensors only");
  check(dtype == at::kFloat || dtype == at::kBFloat16, "dtype must be float32 or bfloat16");
  for (const at::Tensor* t : std::initializer_list<const at::Tensor*>{&x, &norm1, &norm2, &prompt_k, &prompt_v, &cache_k, &cache_v}) {
    check(t->is_contiguous() && t->scalar_type() == dtype, "x, norms, prompt and cache K/V: contiguous, x's dtype");
  }
  check(x.dim() == 2 && cache_k.dim() == 5 && cache_v.dim() == 4 && prompt_k.dim() == 5 && prompt_v.dim() == 4,
        "x (A, C); K tiles 5-d, V 4-d");
  const int64_t A = x.size(0), D = cache_k.size(3);
  check(heads % kv_heads == 0, "heads a multiple of kv_heads");
  check(cache_k.size(0) == A && cache_v.size(0) == A && prompt_of_row.size(0) == A, "one cache row per row of x");
  check(cache_k.size(1) == kv_heads && prompt_k.size(1) == kv_heads && prompt_k.size(3) == D &&
            cache_k.size(4) == kBlock && prompt_k.size(4) == kBlock && cache_v.size(3) == D &&
            prompt_v.size(3) == D && cache_v.size(2) == cache_k.size(2) * kBlock &&
            prompt_v.size(2) == prompt_k.size(2) * kBlock,
        "K/V shapes (rows, kv_heads, cap/16, D, 16) and (rows, kv_heads, cap, D)");
  check(0 <= col && col < cache_v.size(2), "col inside the cache");
  check(D % kBlock == 0, "head_dim a multiple of 16");
  check(cos.scalar_type() == at::kFloat && sin.scalar_type() == at::kFloat && cos.is_contiguous() &&
            sin.is_contiguous() && cos.size(0) == A && cos.size(1) == D,
        "cos/sin: contiguous fp32 (A, D)");
  check(prompt_bias.scalar_type() == at::kFloat && prompt_bias.is_contiguous() &&
            prompt_bias.size(0) == prompt_k.size(0) && prompt_bias.size(1) == prompt_v.size(2),
        "prompt_bias: contiguous fp32 (B, P)");
  check(prompt_of_row.scalar_type() == at::kLong && prompt_of_row.is_contiguous(), "prompt_of_row: int64");
  if (dtype == at::kBFloat16) {
    return layer<c10::BFloat16>(x, norm1, w_qkv, b_qkv, w_o, b_o, norm2, w_gate_up, b_gate_up, w_down, b_down, cos,
                                sin, prompt_k, prompt_v, prompt_bias, cache_k, cache_v, prompt_of_row, col, heads,
                                kv_heads, eps);
  }
  return layer<float>(x, norm1, w_qkv, b_qkv, w_o, b_o, norm2, w_gate_up, b_gate_up, w_down, b_down, cos, sin,
                      prompt_k, prompt_v, prompt_bias, cache_k, cache_v, prompt_of_row, col, heads, kv_heads, eps);
}

}  // namespace

// The ops' namespace: `aha_decode`, or another one for a second build with other flags in the same
// process (tests load the portable variant, built without AVX512-BF16, beside the native one). The
// extra macro level lets AHA_OPS expand before TORCH_LIBRARY pastes it into names.
#ifndef AHA_OPS
#define AHA_OPS aha_decode
#endif
#define AHA_LIBRARY(ns, m) TORCH_LIBRARY(ns, m)
#define AHA_LIBRARY_IMPL(ns, key, m) TORCH_LIBRARY_IMPL(ns, key, m)

AHA_LIBRARY(AHA_OPS, m) {
  m.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  m.def("bf16_pairs() -> bool", []() { return kBf16PairsBuilt; });
  m.def(
      "decode_layer(Tensor x, Tensor norm1, Tensor w_qkv, Tensor? b_qkv, Tensor w_o, Tensor? b_o, Tensor norm2, "
      "Tensor w_gate_up, Tensor? b_gate_up, Tensor w_down, Tensor? b_down, Tensor cos, Tensor sin, "
      "Tensor prompt_k, Tensor prompt_v, Tensor prompt_bias, Tensor(a!) cache_k, Tensor(b!) cache_v, "
      "Tensor prompt_of_row, int col, int heads, int kv_heads, float eps) -> Tensor");
}

AHA_LIBRARY_IMPL(AHA_OPS, CPU, m) {
  m.impl("rms_norm", &rms_norm);
  m.impl("decode_layer", &decode_layer);
}

// Prepacked bf16 weights are oneDNN tensors, which send the call to this dispatch key.
AHA_LIBRARY_IMPL(AHA_OPS, MkldnnCPU, m) { m.impl("decode_layer", &decode_layer); }
