// The packed layout of MLX's affine-quantized weights, shared by the CPU kernels that read it
// (qmm_cpu.cpp for few rows, qmm_amx.cpp for many).
//
// Row n of w packs K values of `bits` bits, lowest bits first, 32 / bits per uint32; value k of
// row n is scales[n, k / G] * q + biases[n, k / G].
#pragma once

#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu_simd.h"

namespace semantic::cpu {

// The raw values q of elements k .. k + W - 1 of a packed row, as floats (k a multiple of W):
// each lane takes its word and shifts its own bits down. The integers go through signed int32,
// as x86 before AVX-512 has no single unsigned-to-float conversion. A few x86 intrinsics stand in
// where GCC builds the vector through memory.
template <int BITS>
inline vf unpack(const uint32_t* row, int k) {
  static_assert(BITS == 2 || BITS == 4 || BITS == 8);
  const uint32_t* p = row + k * BITS / 32;
#if defined(__AVX512F__)
  if constexpr (BITS == 8) {
    return __builtin_convertvector((vi)_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), vf);
  } else if constexpr (BITS == 4) {
    const __m512i pick = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const vu words = (vu)_mm512_permutexvar_epi32(pick, _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    const vu shifts = {0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28};
    return __builtin_convertvector((vi)((words >> shifts) & 0xfu), vf);
  } else {
    const vu shifts = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
    return __builtin_convertvector((vi)(((vu{} + p[0]) >> shifts) & 0x3u), vf);
  }
#else
  if constexpr (BITS == 4) {
    const vu shifts = {0, 4, 8, 12, 16, 20, 24, 28};
    return __builtin_convertvector((vi)(((vu{} + p[0]) >> shifts) & 0xfu), vf);
  } else if constexpr (BITS == 8) {
#if defined(__AVX2__)
    return __builtin_convertvector((vi)_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))), vf);
#else
    const uint32_t a = p[0], b = p[1];
    const vu words = {a, a, a, a, b, b, b, b};
    const vu shifts = {0, 8, 16, 24, 0, 8, 16, 24};
    return __builtin_convertvector((vi)((words >> shifts) & 0xffu), vf);
#endif
  } else {
    // Eight 2-bit values are half a word: k % 16 says which half.
    const vu shifts = {0, 2, 4, 6, 8, 10, 12, 14};
    return __builtin_convertvector((vi)(((vu{} + (p[0] >> ((k & 8) * 2))) >> shifts) & 0x3u), vf);
  }
#endif
}

struct Problem {
  const float* x;  // (M, K)
  const uint32_t* w;  // (N, K * bits / 32)
  const float* scales;  // (N, K / G)
  const float* biases;
  float* out;  // (M, N)
  int M, N, K;
};

}  // namespace semantic::cpu
