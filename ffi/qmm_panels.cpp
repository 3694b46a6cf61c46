// x @ dequantize(w).T for many rows with AVX-512 VNNI, where the CPU has no AMX tiles: 16-bit
// integer products (VPDPWSSD), twice the multiply-adds per instruction of float32 FMAs.
//
// x is quantized per row and group of 32 values of k to int16 (scale = the group's largest
// magnitude / 32767, round to nearest: an error of at most 2^-16 of that magnitude per value);
// the weights' raw values q are small integers, exact in int16. Per group of 32 the integer dot
// products sum exactly in int32 (|sum| <= 32 * 32767 * 255), then one conversion scales them by
// x's scale times the weights' scale, and the weights' bias adds times the sum of the group's x
// as quantized: out = sum over groups of dx * (s * (xq . q) + b * sum(xq)), which is x as
// quantized times the dequantized weights (with x's exact sum in the bias term instead, the
// error measured twice as large: the weights' values are centred on zero, s * q is not). The
// groups add in order, so each row's result is the same whatever the number of rows.
//
// The weights are unpacked once per call, a panel of NB rows and KC values of k at a time, k-major
// in pairs (for each pair of k, the panel's NB weights side by side as int16 pairs: two vectors),
// and the slice stays in L1 while every block of MR rows of x multiplies it: per pair two vector
// loads and MR broadcasts of x's pair for 2 MR VPDPWSSD, into MR x 2 integer accumulators that
// the group's end folds into MR x 2 float32 ones.

#include "qmm_panels.h"

#include <algorithm>
#include <cstdint>

#include "amx.h"
#include "cpu_parallel.h"

namespace semantic::cpu {

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
namespace {

constexpr int NB = 32;  // weight rows (output columns) per panel: two vectors
constexpr int MR = 6;  // rows of x per block: 12 integer and 12 float accumulators
constexpr int KC = 256;  // values of k per slice of a panel
constexpr int XG = 32;  // values of k per quantization group of x (divides every weight group)
constexpr int PAIRS = XG / 2;

// x quantized, row-major: q[row * K / 2 + pair] the int16 pair (values 2 pair, 2 pair + 1),
// scale[row * K / XG + g] and sum[...] group g's scale and the sum of its values as quantized.
struct QuantizedX {
  int32_t* q;
  float* scale;
  float* sum;
};

struct QuantizeJob {
  const Problem* p;
  QuantizedX x;
};

void quantize_x(void* ctx, int r0, int r1) {
  const Problem& p = *static_cast<QuantizeJob*>(ctx)->p;
  const QuantizedX& x = static_cast<QuantizeJob*>(ctx)->x;
  const int groups = p.K / XG;
  for (int row = r0; row < r1; row++)
    for (int g = 0; g < groups; g++) {
      const float* from = p.x + static_cast<size_t>(row) * p.K + g * XG;
      const __m512 v0 = _mm512_loadu_ps(from), v1 = _mm512_loadu_ps(from + 16);
      const float top = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
      const __m512 to_int = _mm512_set1_ps(top > 0 ? 32767.0f / top : 0.0f);
      const __m256i h0 = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v0, to_int)));
      const __m256i h1 = _mm512_cvtsepi32_epi16(_mm512_cvtps_epi32(_mm512_mul_ps(v1, to_int)));
      const size_t at = static_cast<size_t>(row) * groups + g;
      _mm512_storeu_si512(x.q + at * PAIRS, _mm512_inserti64x4(_mm512_castsi256_si512(h0), h1, 1));
      x.scale[at] = top / 32767.0f;
      x.sum[at] = x.scale[at] * static_cast<float>(_mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi16_epi32(h0), _mm512_cvtepi16_epi32(h1))));
    }
}

// Raw values k .. k + 31 of a packed row as 16 int16 pairs (value 2i in the low half of lane i).
template <int BITS>
inline __m512i pairs_of(const uint32_t* row, int k) {
  const uint32_t* p = row + k * BITS / 32;
  if constexpr (BITS == 8) {
    return _mm512_cvtepu8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  } else if constexpr (BITS == 4) {
    const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi32(0xf)), _mm512_slli_epi32(_mm512_and_si512(v, _mm512_set1_epi32(0xf0)), 12));
  } else {
    // Lane i takes its 4 bits (two values) from word i / 8.
    const __m512i words = _mm512_permutexvar_epi32(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                                   _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    const __m512i nibble = _mm512_and_si512(_mm512_srlv_epi32(words, _mm512_set_epi32(28, 24, 20, 16, 12, 8, 4, 0, 28, 24, 20, 16, 12, 8, 4, 0)), _mm512_set1_epi32(0xf));
    return _mm512_or_si512(_mm512_and_si512(nibble, _mm512_set1_epi32(0x3)), _mm512_slli_epi32(_mm512_srli_epi32(nibble, 2), 16));
  }
}

// A panel's slice: q[(pair - k0 / 2) * NB + c] the int16 pair of weight row n0 + c, and
// scale/bias[(g - k0 / XG) * NB + c] its group's (zeros past N).
struct Panel {
  int32_t* q;
  float* scale;
  float* bias;
};

// Values k0 .. k1 - 1 of weight rows n0 .. n0 + NB - 1 into the panel: sixteen rows' 16 pairs
// at a time, transposed in registers.
template <int BITS, int G>
void unpack_panel(const Problem& p, int n0, int k0, int k1, const Panel& to) {
  const int groups = p.K / G, words = p.K * BITS / 32;
  for (int h = 0; h < NB; h += 16)
    for (int k = k0; k < k1; k += XG) {
      __m512i r[16];
      for (int i = 0; i < 16; i++) {
        const int n = n0 + h + i;
        const size_t at = ((k - k0) / XG) * NB + h + i;
        if (n >= p.N) {
          r[i] = _mm512_setzero_si512();
          to.scale[at] = to.bias[at] = 0;
          continue;
        }
        r[i] = pairs_of<BITS>(p.w + static_cast<size_t>(n) * words, k);
        to.scale[at] = p.scales[static_cast<size_t>(n) * groups + k / G];
        to.bias[at] = p.biases[static_cast<size_t>(n) * groups + k / G];
      }
      transpose16(r);
      for (int i = 0; i < 16; i++) _mm512_store_si512(to.q + ((k - k0) / 2 + i) * NB + h, r[i]);
    }
}

// R rows of x (from row r0, at the slice's first group g0) times `groups` groups of the panel's
// slice into out's columns n0 .. n0 + NB - 1 (the first `cols` of them exist), added to what the
// earlier slices left there unless this is the first.
template <int R>
void block(const QuantizedX& x, int r0, int g0, int K, const Panel& w, int groups, bool first, float* out, int N, int n0, int cols) {
  const __mmask16 m0 = cols >= 16 ? 0xffff : (1u << cols) - 1;
  const __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0;
  const int row_groups = K / XG;
  const int32_t* xq[R];
  const float* xscale[R];
  const float* xsum[R];
  for (int m = 0; m < R; m++) {
    const size_t at = static_cast<size_t>(r0 + m) * row_groups + g0;
    xq[m] = x.q + at * PAIRS, xscale[m] = x.scale + at, xsum[m] = x.sum + at;
  }
  __m512 acc[R][2];
  for (int m = 0; m < R; m++) {
    const float* row = out + static_cast<size_t>(m) * N + n0;
    acc[m][0] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, row);
    acc[m][1] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, row + 16);
  }
  for (int g = 0; g < groups; g++) {
    __m512i dot[R][2];
    for (int m = 0; m < R; m++) dot[m][0] = dot[m][1] = _mm512_setzero_si512();
    const int32_t* wq = w.q + g * PAIRS * NB;
    for (int i = 0; i < PAIRS; i++) {
      const __m512i w0 = _mm512_load_si512(wq + i * NB), w1 = _mm512_load_si512(wq + i * NB + 16);
      for (int m = 0; m < R; m++) {
        const __m512i xp = _mm512_set1_epi32(xq[m][g * PAIRS + i]);
        dot[m][0] = _mm512_dpwssd_epi32(dot[m][0], xp, w0);
        dot[m][1] = _mm512_dpwssd_epi32(dot[m][1], xp, w1);
      }
    }
    const __m512 s0 = _mm512_load_ps(w.scale + g * NB), s1 = _mm512_load_ps(w.scale + g * NB + 16);
    const __m512 b0 = _mm512_load_ps(w.bias + g * NB), b1 = _mm512_load_ps(w.bias + g * NB + 16);
    for (int m = 0; m < R; m++) {
      const __m512 d = _mm512_set1_ps(xscale[m][g]), sum = _mm512_set1_ps(xsum[m][g]);
      acc[m][0] = _mm512_fmadd_ps(b0, sum, _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[m][0]), _mm512_mul_ps(s0, d), acc[m][0]));
      acc[m][1] = _mm512_fmadd_ps(b1, sum, _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[m][1]), _mm512_mul_ps(s1, d), acc[m][1]));
    }
  }
  for (int m = 0; m < R; m++) {
    float* row = out + static_cast<size_t>(m) * N + n0;
    _mm512_mask_storeu_ps(row, m0, acc[m][0]);
    _mm512_mask_storeu_ps(row + 16, m1, acc[m][1]);
  }
}

// block for a number of rows known at run time (1 .. MR).
template <int R = 1>
void block_rows(int rows, const QuantizedX& x, int r0, int g0, int K, const Panel& w, int groups, bool first, float* out, int N, int n0, int cols) {
  if constexpr (R < MR) {
    if (rows > R) return block_rows<R + 1>(rows, x, r0, g0, K, w, groups, first, out, N, n0, cols);
  }
  block<R>(x, r0, g0, K, w, groups, first, out, N, n0, cols);
}

using UnpackFn = void (*)(const Problem&, int, int, int, const Panel&);

struct Job {
  const Problem* p;
  QuantizedX x;
  UnpackFn unpack;
};

// Panels [first, last), a slice of KC values of k at a time: each slice unpacked once (16 KB,
// in L1), then every block of x through it. Slices also keep x's share small: x's slices stay
// in L2 where all of it would stream from L3 for every panel at 512 rows.
void run_panels(void* ctx, int first, int last) {
  const Job& job = *static_cast<const Job*>(ctx);
  const Problem& p = *job.p;
  thread_local LineBuffer<int32_t> q;
  thread_local LineBuffer<float> scale, bias;
  const Panel panel{q.get(static_cast<size_t>(KC / 2) * NB), scale.get(static_cast<size_t>(KC / XG) * NB), bias.get(static_cast<size_t>(KC / XG) * NB)};
  for (int t = first; t < last; t++) {
    const int n0 = t * NB, cols = std::min(NB, p.N - n0);
    for (int k0 = 0; k0 < p.K; k0 += KC) {
      const int k1 = std::min(p.K, k0 + KC);
      job.unpack(p, n0, k0, k1, panel);
      for (int m0 = 0; m0 < p.M; m0 += MR)
        block_rows(std::min(MR, p.M - m0), job.x, m0, k0 / XG, p.K, panel, (k1 - k0) / XG, k0 == 0, p.out + static_cast<size_t>(m0) * p.N, p.N, n0, cols);
    }
  }
}

template <int BITS>
UnpackFn pick_group(int group_size) {
  switch (group_size) {
    case 32: return unpack_panel<BITS, 32>;
    case 64: return unpack_panel<BITS, 64>;
    case 128: return unpack_panel<BITS, 128>;
    default: return nullptr;
  }
}

UnpackFn pick(int bits, int group_size) {
  switch (bits) {
    case 2: return pick_group<2>(group_size);
    case 4: return pick_group<4>(group_size);
    case 8: return pick_group<8>(group_size);
    default: return nullptr;
  }
}

}  // namespace

bool qmm_panels_takes(int bits, int group_size) {
  return pick(bits, group_size) != nullptr;
}

void qmm_panels(const Problem& p, int bits, int group_size) {
  thread_local LineBuffer<int32_t> q;
  thread_local LineBuffer<float> scale, sum;
  const size_t groups = static_cast<size_t>(p.M) * (p.K / XG);
  QuantizeJob quantize{&p, {q.get(static_cast<size_t>(p.M) * p.K / 2), scale.get(groups), sum.get(groups)}};
  parallel_for(quantize_x, &quantize, p.M, 1);
  Job job{&p, quantize.x, pick(bits, group_size)};
  parallel_for(run_panels, &job, (p.N + NB - 1) / NB, 1);
}
#else
bool qmm_panels_takes(int, int) {
  return false;
}

void qmm_panels(const Problem&, int, int) {}
#endif

}  // namespace semantic::cpu
