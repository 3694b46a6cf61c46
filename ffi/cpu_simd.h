// Vector helpers shared by the project's CPU kernels (qmm_cpu.cpp, attention_cpu.cpp, sampler_cpu.cpp).
//
// The loops are written with GCC/Clang vector extensions (W floats) rather than intrinsics, so
// the same code becomes AVX2/AVX-512 on x86 and NEON on arm64.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "mlx/array.h"

#if defined(__AVX__)
#include <immintrin.h>
#endif

namespace semantic::cpu {

// Lanes per vector: 16 where AVX-512 has the registers for them (twice the work per instruction),
// else 8 (AVX2: one register; NEON: two).
#if defined(__AVX512F__)
constexpr int W = 16;
#else
constexpr int W = 8;
#endif

typedef float vf __attribute__((vector_size(W * 4)));
typedef uint32_t vu __attribute__((vector_size(W * 4)));
typedef int32_t vi __attribute__((vector_size(W * 4)));

inline vf loadv(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void storev(float* p, vf v) {
  std::memcpy(p, &v, sizeof v);
}

// One value in every lane. `vf{} + f` would compile to a scalar add of 0 (it must turn -0 into
// +0) before the broadcast, two vector ops where the intrinsic is one broadcast load.
inline vf splat(float f) {
#if defined(__AVX512F__)
  return (vf)_mm512_set1_ps(f);
#elif defined(__AVX__)
  return (vf)_mm256_set1_ps(f);
#else
  return vf{} + f;
#endif
}

// Horizontal sum and maximum: AVX-512's reductions are a tree of four shuffles, where the lane
// loop is a chain of sixteen dependent adds (the attention's softmax runs two per row and tile).
inline float hsum(vf v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps(reinterpret_cast<__m512>(v));
#else
  float s = 0;
  for (int i = 0; i < W; i++) s += v[i];
  return s;
#endif
}

// a where the mask m (a comparison's all-ones lanes) is set, else b.
inline vf select(vi m, vf a, vf b) {
  return (vf)(((vi)a & m) | ((vi)b & ~m));
}

// The lane-wise maximum.
inline vf vmax(vf a, vf b) {
  return select(a > b, a, b);
}

inline float hmax(vf v) {
#if defined(__AVX512F__)
  return _mm512_reduce_max_ps(reinterpret_cast<__m512>(v));
#else
  float m = v[0];
  for (int i = 1; i < W; i++) m = v[i] > m ? v[i] : m;
  return m;
#endif
}

// exp(x) for x <= 0 (a value minus its row's maximum), to about 2 ulp: 2^n * p(r) with
// r = x - n ln 2 in [-ln2/2, ln2/2] and Cephes' polynomial for expf. Below -87 it returns
// exp(-87) ~ 1.6e-38 rather than 0: a weight that small changes no float32 sum it joins.
inline vf exp_nonpositive(vf x) {
  const vf lo = splat(-87.0f);
  x = select(x < lo, lo, x);
  const vi n = __builtin_convertvector(x * 1.44269504088896341f - 0.5f, vi);  // round(x / ln 2), x <= 0
  const vf nf = __builtin_convertvector(n, vf);
  const vf r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
  vf p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vf y = p * r * r + r + 1.0f;
  return y * (vf)((n + 127) << 23);
}

#if defined(__AVX512F__)
// r[i][j] becomes r[j][i] for 16 rows of 16 32-bit lanes.
inline void transpose16(__m512i r[16]) {
  __m512i t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    r[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    r[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    r[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int i = 0; i < 2; i++) {
    for (int j = 0; j < 4; j++) {
      t[8 * i + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0x88);
      t[8 * i + 4 + j] = _mm512_shuffle_i32x4(r[8 * i + j], r[8 * i + 4 + j], 0xdd);
    }
  }
  for (int j = 0; j < 8; j++) {
    r[j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0x88);
    r[8 + j] = _mm512_shuffle_i32x4(t[j], t[8 + j], 0xdd);
  }
}
#endif

// Row-contiguous data of `a`, or a gathered copy in `scratch` (views: transposes, slices,
// broadcasts), a row of the last dimension at a time: in most views that row is contiguous.
template <typename T>
const T* row_contiguous(const mlx::core::array& a, std::vector<T>& scratch) {
  if (a.flags().row_contiguous || a.ndim() == 0) return a.data<T>();
  scratch.resize(a.size());
  if (!a.size()) return scratch.data();
  const T* base = a.data<T>();
  const int outer = static_cast<int>(a.ndim()) - 1;
  const int64_t n = a.shape(outer), step = a.strides()[outer];
  std::vector<int> idx(outer, 0);
  T* dst = scratch.data();
  for (size_t row = 0; row < a.size() / n; row++, dst += n) {
    int64_t at = 0;
    for (int d = 0; d < outer; d++) at += static_cast<int64_t>(idx[d]) * a.strides()[d];
    const T* src = base + at;
    if (step == 1) std::copy(src, src + n, dst);
    else
      for (int64_t j = 0; j < n; j++) dst[j] = src[j * step];
    for (int d = outer - 1; d >= 0; d--) {
      if (++idx[d] < a.shape(d)) break;
      idx[d] = 0;
    }
  }
  return scratch.data();
}

// An evaluated (B, H, N, D) float32 array whose last dimension is contiguous: element strides
// of the first three dimensions.
struct View {
  const float* p;
  int64_t s0, s1, s2;
};

// `a` as a View, through a row-contiguous copy in `scratch` if its last dimension is strided.
inline View view4(const mlx::core::array& a, std::vector<float>& scratch) {
  if (a.strides()[3] == 1) return {a.data<float>(), a.strides()[0], a.strides()[1], a.strides()[2]};
  const float* p = row_contiguous(a, scratch);
  const int64_t n = a.shape(2), d = a.shape(3);
  return {p, a.shape(1) * n * d, n * d, d};
}

}  // namespace semantic::cpu
