// Intel AMX (the tile matrix unit of Xeon Sapphire Rapids and later) for the CPU kernels: one
// TDPBF16PS multiplies a 16x32 by a 32x16 bf16 tile into 16x16 float32 sums: 3.8 TFLOP/s a core
// measured here, about sixteen times AVX-512's float32 FMA peak on the same core.
#pragma once

// The kernels that use tiles compile only where the compiler targets them (-march=native on
// such a CPU); everywhere else these are stubs and the float32 paths run.
#if defined(__x86_64__) && defined(__AMX_TILE__) && defined(__AMX_BF16__) && defined(__AVX512BF16__)
#define SEMANTIC_AMX 1
#endif

#include <cstddef>
#include <cstdint>
#include <vector>

#if defined(SEMANTIC_AMX)
#include <immintrin.h>

#include "cpu_simd.h"
#endif

namespace semantic::cpu {

/**
 * Whether tiles may be used: the CPU has AMX-BF16 and Linux granted this process the tile data
 * state (arch_prctl ARCH_REQ_XCOMP_PERM, asked once; without it the first tile op is SIGILL).
 * SEMANTIC_AMX=0 in the environment turns the tile paths off.
 */
bool amx_available();

/** Configures every tile as 16 rows of 64 bytes on the calling thread (before its first tile op). */
void amx_configure_thread();

// A growable buffer whose data starts on a cache line: a tile row that straddles two lines
// loads at under half the speed.
template <typename T>
class LineBuffer {
 public:
  T* get(size_t n) {
    if (n > size_) {
      storage_.assign(n + 64 / sizeof(T), T{});
      size_ = n;
    }
    const auto at = reinterpret_cast<uintptr_t>(storage_.data());
    return reinterpret_cast<T*>((at + 63) & ~static_cast<uintptr_t>(63));
  }

 private:
  std::vector<T> storage_;
  size_t size_ = 0;
};

#if defined(SEMANTIC_AMX)
// Tiles multiply bf16 (8 significant bits), so the kernels split each float32 operand v into
// hi = bf16(v) and lo = bf16(v - hi) and sum hi·hi + lo·hi + hi·lo: 16 bits of each operand.

// 32 floats (a then b) as bf16 hi and lo halves, in order.
inline void split(__m512 a, __m512 b, __m512i& hi, __m512i& lo) {
  hi = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(b, a));
  const __m512 ha = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(hi)), 16));
  const __m512 hb = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(hi, 1)), 16));
  lo = reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_sub_ps(b, hb), _mm512_sub_ps(a, ha)));
}

// Row `at` of a row-operand tile (32 bf16 of one row, contiguous) from 32 floats a then b.
inline void row_operand(__m512 a, __m512 b, uint16_t* hi, uint16_t* lo, size_t at) {
  __m512i h, l;
  split(a, b, h, l);
  _mm512_store_si512(hi + at, h);
  _mm512_store_si512(lo + at, l);
}

// One column-operand tile from 16 rows of 32 floats (null: a zero row): tile row r holds the
// pairs (2r, 2r + 1) of the 16 rows side by side.
inline void column_operand(const float* const rows[16], uint16_t* hi, uint16_t* lo) {
  const __m512 zero = _mm512_setzero_ps();
  __m512i h[16], l[16];
  for (int i = 0; i < 16; i++) split(rows[i] ? _mm512_loadu_ps(rows[i]) : zero, rows[i] ? _mm512_loadu_ps(rows[i] + 16) : zero, h[i], l[i]);
  transpose16(h);
  transpose16(l);
  for (int r = 0; r < 16; r++) {
    _mm512_store_si512(hi + r * 32, h[r]);
    _mm512_store_si512(lo + r * 32, l[r]);
  }
}
#endif

}  // namespace semantic::cpu
