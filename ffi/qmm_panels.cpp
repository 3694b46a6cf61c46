// x @ dequantize(w).T for many rows with AVX-512 float32 FMAs, where the CPU has no AMX tiles.
//
// The weights are dequantized once per call, a panel of NB rows and KC values of k at a time,
// k-major (for each k, the panel's NB weights side by side: two vectors), and the slice stays in
// L1 while every block of MR rows of x multiplies it: MR x 2 accumulators in registers, per k two vector loads
// and MR broadcasts of x (packed k-major per block, so one base address serves them all) for
// 2 MR FMAs. Against a float32 copy of the whole matrix through BLAS (what nn.ts did above 48
// rows), nothing the size of the weights is written out and read back. The sums are float32
// throughout, over k in order: each row's result is the same whatever the number of rows.

#include "qmm_panels.h"

#include <algorithm>
#include <cstdint>

#include "amx.h"
#include "cpu_parallel.h"

namespace semantic::cpu {

#if defined(__AVX512F__)
namespace {

constexpr int NB = 32;  // weight rows (output columns) per panel: two vectors
constexpr int MR = 12;  // rows of x per block: 24 accumulators, 2 weight vectors and a broadcast
constexpr int KC = 256;  // values of k per slice of a panel

struct PackJob {
  const Problem* p;
  float* xp;
};

// Blocks [b0, b1) of x's rows, MR rows each, k-major: row m of block b, value k, at
// (b * K + k) * MR + m; rows past M are zero. Over the pool: at 136 rows and K = 1536 one
// thread takes ~120 us (measured alone), 8% of the matmul, while the other core waits.
void pack_x(void* ctx, int b0, int b1) {
  const Problem& p = *static_cast<PackJob*>(ctx)->p;
  float* xp = static_cast<PackJob*>(ctx)->xp;
  for (int b = b0; b < b1; b++) {
    float* to = xp + static_cast<size_t>(b) * p.K * MR;
    for (int m = 0; m < MR; m++) {
      const int row = b * MR + m;
      const float* from = row < p.M ? p.x + static_cast<size_t>(row) * p.K : nullptr;
      for (int k = 0; k < p.K; k++) to[k * MR + m] = from ? from[k] : 0.0f;
    }
  }
}

// Values k0 .. k1 - 1 of weight rows n0 .. n0 + NB - 1 (zeros past N) dequantized k-major into
// wp: wp[(k - k0) * NB + c]. Sixteen rows' 16 values of k at a time, transposed in registers.
template <int BITS, int G>
void dequantize_panel(const Problem& p, int n0, int k0, int k1, float* wp) {
  const int groups = p.K / G, words = p.K * BITS / 32;
  for (int h = 0; h < NB; h += 16)
    for (int k = k0; k < k1; k += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; i++) {
        const int n = n0 + h + i;
        if (n >= p.N) {
          r[i] = _mm512_setzero_si512();
          continue;
        }
        const float s = p.scales[static_cast<size_t>(n) * groups + k / G], b = p.biases[static_cast<size_t>(n) * groups + k / G];
        r[i] = (__m512i)(unpack<BITS>(p.w + static_cast<size_t>(n) * words, k) * splat(s) + splat(b));
      }
      transpose16(r);
      for (int i = 0; i < 16; i++) _mm512_store_si512(wp + (k - k0 + i) * NB + h, r[i]);
    }
}

// R rows (a block of x, packed, at the slice's first k) times a slice of `nk` values of k of the
// panel into out's columns n0 .. n0 + NB - 1 (the first `cols` of them exist), added to what the
// earlier slices left there unless this is the first.
template <int R>
void block(const float* xp, const float* wp, int nk, bool first, float* out, int N, int n0, int cols) {
  const __mmask16 m0 = cols >= 16 ? 0xffff : (1u << cols) - 1;
  const __mmask16 m1 = cols >= 32 ? 0xffff : cols > 16 ? (1u << (cols - 16)) - 1 : 0;
  __m512 acc[R][2];
  for (int m = 0; m < R; m++) {
    const float* row = out + static_cast<size_t>(m) * N + n0;
    acc[m][0] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, row);
    acc[m][1] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, row + 16);
  }
  for (int k = 0; k < nk; k++) {
    const __m512 w0 = _mm512_load_ps(wp + k * NB), w1 = _mm512_load_ps(wp + k * NB + 16);
    for (int m = 0; m < R; m++) {
      const __m512 x = _mm512_set1_ps(xp[k * MR + m]);
      acc[m][0] = _mm512_fmadd_ps(x, w0, acc[m][0]);
      acc[m][1] = _mm512_fmadd_ps(x, w1, acc[m][1]);
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
void block_rows(int rows, const float* xp, const float* wp, int nk, bool first, float* out, int N, int n0, int cols) {
  if constexpr (R < MR) {
    if (rows > R) return block_rows<R + 1>(rows, xp, wp, nk, first, out, N, n0, cols);
  }
  block<R>(xp, wp, nk, first, out, N, n0, cols);
}

using DequantizeFn = void (*)(const Problem&, int, int, int, float*);

struct Job {
  const Problem* p;
  const float* xp;
  DequantizeFn dequantize;
};

// Panels [first, last), a slice of KC values of k at a time: each slice dequantized once (32 KB,
// in L1), then every block of x through it. Slices also keep x's share small: all of x at K =
// 1536 and 512 rows (3 MB) would stream from L3 for every panel, its slices (512 KB) stay in L2.
void run_panels(void* ctx, int first, int last) {
  const Job& job = *static_cast<const Job*>(ctx);
  const Problem& p = *job.p;
  thread_local LineBuffer<float> panel;
  float* wp = panel.get(static_cast<size_t>(KC) * NB);
  for (int t = first; t < last; t++) {
    const int n0 = t * NB, cols = std::min(NB, p.N - n0);
    for (int k0 = 0; k0 < p.K; k0 += KC) {
      const int k1 = std::min(p.K, k0 + KC);
      job.dequantize(p, n0, k0, k1, wp);
      for (int m0 = 0; m0 < p.M; m0 += MR) {
        const float* xp = job.xp + (static_cast<size_t>(m0) * p.K + static_cast<size_t>(k0) * MR);
        block_rows(std::min(MR, p.M - m0), xp, wp, k1 - k0, k0 == 0, p.out + static_cast<size_t>(m0) * p.N, p.N, n0, cols);
      }
    }
  }
}

template <int BITS>
DequantizeFn pick_group(int group_size) {
  switch (group_size) {
    case 32: return dequantize_panel<BITS, 32>;
    case 64: return dequantize_panel<BITS, 64>;
    case 128: return dequantize_panel<BITS, 128>;
    default: return nullptr;
  }
}

DequantizeFn pick(int bits, int group_size) {
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
  thread_local LineBuffer<float> packed;
  const int blocks = (p.M + MR - 1) / MR;
  float* xp = packed.get(static_cast<size_t>(blocks) * MR * p.K);
  PackJob pack{&p, xp};
  parallel_for(pack_x, &pack, blocks, 1);
  Job job{&p, xp, pick(bits, group_size)};
  parallel_for(run_panels, &job, (p.N + NB - 1) / NB, 1);
}
#else
bool qmm_panels_takes(int, int) {
  return false;
}

void qmm_panels(const Problem&, int, int) {}
#endif

}  // namespace semantic::cpu
