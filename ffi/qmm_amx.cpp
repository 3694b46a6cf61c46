// x @ dequantize(w).T for many rows on AMX tiles (see amx.h), near float32 accuracy.
//
// Tiles multiply bf16 (8 significant bits), so each float32 operand v is split into
// hi = bf16(v) and lo = bf16(v - hi), and the product is hi·hi + lo·hi + hi·lo: 16 bits of each
// operand, about 2^-17 of the sum of the terms' magnitudes (float32: 2^-24). At the tiles' peak
// the three products take a tenth of the cycles of one float32 product on AVX-512; measured, the
// kernel runs about twice as fast as a float32 copy through BLAS (bench:qmm), bound by tile
// loads from L2.
//
// The output is computed transposed, out.T = w @ x.T: the weights are then the tiles' row
// operand, which takes a row-major panel as it is dequantized (no transposition of the large
// matrix); x, the small one, is repacked once per call into the pairs layout the column operand
// needs. Each panel of NB weight rows is dequantized once, a K slice at a time, and used for
// every row of x.
//
// A gated MLP's gate and up run as one call (qmm_amx_gated): each panel holds the same 16 rows of
// both, and its epilogue writes act(gate) * up, so neither product is written out.

#include "qmm_amx.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "amx.h"
#include "cpu_parallel.h"

namespace semantic::cpu {

#if defined(SEMANTIC_AMX)
namespace {

constexpr int NB = 32;  // weight rows per panel: two row tiles
constexpr int MB = 32;  // rows of x per block: two column tiles
constexpr int KT = 32;  // bf16 per tile row
// K is taken KB chunks of KT at a time: the panel's slice for them (hi and lo, 4 KB a chunk) is
// dequantized just before use and stays in L1 while every row block of x streams past it. Three
// chunks (12 KB) leave most of L1 to x's tiles: at ~150 rows a call took 5-10% less than with
// six on one thread, as long as with six at 512 rows.
constexpr int KB = 3;

// Both operands are stored tile by tile, each tile's 16 rows of 64 bytes contiguous (1 KB), so a
// tile load reads 16 consecutive cache lines (rows K or M apart map to few L1 sets; measured
// slower). Tile (t, c) covers rows 16t .. 16t + 15 and the 32 values of K from 32c.
inline size_t tile_at(int t, int c, int chunks) {
  return (static_cast<size_t>(t) * chunks + c) * 512;
}

// x's rows as the column operand: in tile (t, c), row r holds the pairs (k, k + 1) = (32c + 2r,
// 32c + 2r + 1) of x's rows 16t .. 16t + 15 side by side. Rows M .. Mp are zero; hi and lo halves.
struct PackedX {
  uint16_t* hi;
  uint16_t* lo;
  int Mp;
};

struct PackJob {
  const Problem* p;
  PackedX* x;
};

// Row tiles [t0, t1) of x into the pairs layout: the 32 values of a row in a K chunk are 16
// pairs, and 16 rows' pairs transposed are the tile's rows.
void pack_rows(void* ctx, int t0, int t1) {
  auto& job = *static_cast<PackJob*>(ctx);
  const Problem& p = *job.p;
  const int chunks = p.K / KT;
  for (int t = t0; t < t1; t++) {
    for (int c = 0; c < chunks; c++) {
      const float* rows[16];
      for (int i = 0; i < 16; i++) {
        const int m = 16 * t + i;
        rows[i] = m < p.M ? p.x + static_cast<size_t>(m) * p.K + c * KT : nullptr;
      }
      const size_t at = tile_at(t, c, chunks);
      column_operand(rows, job.x->hi + at, job.x->lo + at);
    }
  }
}

// K chunks [c0, c1) of weight rows n0 .. n0 + 15 of `p` dequantized into hi and lo halves, as
// row tile t of the panel (its tiles are KB chunks); rows past N are zero.
template <int BITS, int G>
void dequantize_slice(const Problem& p, int n0, int t, int c0, int c1, uint16_t* hi, uint16_t* lo) {
  const int groups = p.K / G, words = p.K * BITS / 32;
  for (int i = 0; i < 16; i++) {
    const int n = n0 + i;
    const uint32_t* row = p.w + static_cast<size_t>(n) * words;
    const float* s = p.scales + static_cast<size_t>(n) * groups;
    const float* b = p.biases + static_cast<size_t>(n) * groups;
    for (int c = c0; c < c1; c++) {
      const size_t at = tile_at(t, c - c0, KB) + i * KT;
      if (n >= p.N) {
        std::memset(hi + at, 0, KT * sizeof *hi);
        std::memset(lo + at, 0, KT * sizeof *lo);
        continue;
      }
      // A group holds whole tile rows (G >= 32).
      const int k = c * KT;
      const vf scale = splat(s[k / G]), bias = splat(b[k / G]);
      row_operand((__m512)(unpack<BITS>(row, k) * scale + bias), (__m512)(unpack<BITS>(row, k + 16) * scale + bias), hi, lo, at);
    }
  }
}

using DequantizeFn = void (*)(const Problem&, int, int, int, int, uint16_t*, uint16_t*);

// The 2x2 block's products with the weight tiles in 4, 5 and the x tiles in 6, 7.
inline void block_products() {
  _tile_dpbf16ps(0, 4, 6);
  _tile_dpbf16ps(1, 4, 7);
  _tile_dpbf16ps(2, 5, 6);
  _tile_dpbf16ps(3, 5, 7);
}

// One K chunk for the 2x2 block: accumulators 0..3 += hi·hi + hi·lo + lo·hi, the weight tiles
// (`wh`, `wl` and the next row tile, w_next apart) in 4, 5, x's (likewise) in 6, 7. Ordered so
// that the weights' hi tiles serve two products: ten loads, not twelve.
inline void tile_step(const uint16_t* wh, const uint16_t* wl, size_t w_next, const uint16_t* xh, const uint16_t* xl, size_t x_next) {
  _tile_loadd(4, wh, 64);
  _tile_loadd(5, wh + w_next, 64);
  _tile_loadd(6, xh, 64);
  _tile_loadd(7, xh + x_next, 64);
  block_products();
  _tile_loadd(6, xl, 64);
  _tile_loadd(7, xl + x_next, 64);
  block_products();
  _tile_loadd(4, wl, 64);
  _tile_loadd(5, wl + w_next, 64);
  _tile_loadd(6, xh, 64);
  _tile_loadd(7, xh + x_next, 64);
  block_products();
}

// A panel's two row tiles of weights: rows n[t] .. n[t] + 15 of w[t]. A plain matmul's panel is
// 32 consecutive rows of one matrix; a gated one's, the same 16 rows of gate and of up.
struct Panel {
  const Problem* w[2];
  int n[2];
};

// The 2x2 blocks' sums for every row m of x: block m0 / MB's 4 tiles wait in `sums` between K
// slices. Tile 2a + b of a block holds panel row 16a + i, x row m0 + 16b + j at [i][j].
void panel_sums(const Problem& p, const PackedX& x, DequantizeFn dequantize, const Panel& panel, uint16_t* wh, uint16_t* wl, float* sums) {
  const int chunks = p.K / KT, Mp = x.Mp;
  const size_t w_next = tile_at(1, 0, KB), x_next = tile_at(1, 0, chunks);
  for (int k0 = 0; k0 < chunks; k0 += KB) {
    const int k1 = std::min(chunks, k0 + KB);
    for (int t = 0; t < 2; t++) dequantize(*panel.w[t], panel.n[t], t, k0, k1, wh, wl);
    for (int m0 = 0; m0 < Mp; m0 += MB) {
      float* c = sums + static_cast<size_t>(m0) * 32;  // 4 tiles of 16 x 16
      if (k0 == 0) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      } else {
        _tile_loadd(0, c, 64);
        _tile_loadd(1, c + 256, 64);
        _tile_loadd(2, c + 512, 64);
        _tile_loadd(3, c + 768, 64);
      }
      for (int k = k0; k < k1; k++) {
        const size_t w = tile_at(0, k - k0, KB), xt = tile_at(m0 / 16, k, chunks);
        tile_step(wh + w, wl + w, w_next, x.hi + xt, x.lo + xt, x_next);
      }
      _tile_stored(0, c, 64);
      _tile_stored(1, c + 256, 64);
      _tile_stored(2, c + 512, 64);
      _tile_stored(3, c + 768, 64);
    }
  }
}

// Tile t of x rows m0 .. m0 + 15 transposed: r[j] is panel rows 16t .. 16t + 15 of x row m0 + j.
inline void transposed_tile(const float* sums, int m0, int t, __m512i r[16]) {
  const float* tile = sums + static_cast<size_t>(m0 / MB) * MB * 32 + (2 * t + m0 % MB / 16) * 256;
  for (int i = 0; i < 16; i++) r[i] = _mm512_load_si512(tile + i * 16);
  transpose16(r);
}

inline __mmask16 first_lanes(int n) {
  return n >= 16 ? 0xffff : static_cast<__mmask16>((1u << n) - 1);
}

// out[m, n0 .. n0 + NB) = the panel's sums (rows n0 .. n0 + 31 of one matrix).
void write_panel(const Problem& p, const float* sums, int n0) {
  for (int m0 = 0; m0 < p.M; m0 += 16) {
    for (int t = 0; t < 2 && n0 + 16 * t < p.N; t++) {
      __m512i r[16];
      transposed_tile(sums, m0, t, r);
      const __mmask16 valid = first_lanes(p.N - n0 - 16 * t);
      for (int j = 0; j < 16 && m0 + j < p.M; j++) _mm512_mask_storeu_epi32(p.out + static_cast<size_t>(m0 + j) * p.N + n0 + 16 * t, valid, r[j]);
    }
  }
}

// out[m, n0 .. n0 + 16) = act(gate sums) * up sums (tiles 0 and 1 of the panel).
template <GateActivation A>
void write_gated(const Problem& p, const float* sums, int n0) {
  const __mmask16 valid = first_lanes(p.N - n0);
  for (int m0 = 0; m0 < p.M; m0 += 16) {
    __m512i g[16], u[16];
    transposed_tile(sums, m0, 0, g);
    transposed_tile(sums, m0, 1, u);
    for (int j = 0; j < 16 && m0 + j < p.M; j++) {
      const vf y = gated<A>((vf)_mm512_castsi512_ps(g[j]), (vf)_mm512_castsi512_ps(u[j]));
      _mm512_mask_storeu_ps(p.out + static_cast<size_t>(m0 + j) * p.N + n0, valid, (__m512)y);
    }
  }
}

struct PanelJob {
  const Problem* p;
  const Problem* up;  // gated: p holds the gate's weights and the output
  GateActivation act;
  const PackedX* x;
  DequantizeFn dequantize;
};

void run_panels(void* ctx, int first, int last) {
  auto& job = *static_cast<PanelJob*>(ctx);
  const Problem& p = *job.p;
  thread_local LineBuffer<uint16_t> hi_buffer, lo_buffer;
  thread_local LineBuffer<float> sums_buffer;
  uint16_t* hi = hi_buffer.get(static_cast<size_t>(NB) * KB * KT);
  uint16_t* lo = lo_buffer.get(static_cast<size_t>(NB) * KB * KT);
  float* sums = sums_buffer.get(static_cast<size_t>(job.x->Mp) * NB);
  amx_configure_thread();
  for (int panel = first; panel < last; panel++) {
    if (!job.up) {
      const int n0 = panel * NB;
      panel_sums(p, *job.x, job.dequantize, {{&p, &p}, {n0, n0 + 16}}, hi, lo, sums);
      write_panel(p, sums, n0);
      continue;
    }
    const int n0 = panel * 16;
    panel_sums(p, *job.x, job.dequantize, {{&p, job.up}, {n0, n0}}, hi, lo, sums);
    if (job.act == GateActivation::silu) write_gated<GateActivation::silu>(p, sums, n0);
    else write_gated<GateActivation::gelu_tanh>(p, sums, n0);
  }
}

template <int BITS>
DequantizeFn pick_group(int group_size) {
  switch (group_size) {
    case 32: return dequantize_slice<BITS, 32>;
    case 64: return dequantize_slice<BITS, 64>;
    case 128: return dequantize_slice<BITS, 128>;
    default: return nullptr;
  }
}

DequantizeFn pick(int bits, int group_size) {
  switch (bits) {
    case 4: return pick_group<4>(group_size);
    case 8: return pick_group<8>(group_size);
    default: return nullptr;
  }
}

}  // namespace

bool qmm_amx_takes(int bits, int group_size, int K) {
  return amx_available() && pick(bits, group_size) && K % KT == 0 && K > 0;
}

namespace {

// x packed once, then the panels over the pool.
void run(const Problem& p, const Problem* up, GateActivation act, int bits, int group_size) {
  thread_local LineBuffer<uint16_t> hi, lo;
  const int Mp = (p.M + MB - 1) / MB * MB;
  const size_t size = static_cast<size_t>(Mp) * p.K;
  PackedX x{hi.get(size), lo.get(size), Mp};
  PackJob pack{&p, &x};
  parallel_for(pack_rows, &pack, x.Mp / 16, 1);
  PanelJob job{&p, up, act, &x, pick(bits, group_size)};
  const int columns = up ? 16 : NB;  // of the output, per panel
  parallel_for(run_panels, &job, (p.N + columns - 1) / columns, 1);
}

}  // namespace

void qmm_amx(const Problem& p, int bits, int group_size) {
  if (p.M == 0 || p.N == 0) return;
  run(p, nullptr, GateActivation::silu, bits, group_size);
}

void qmm_amx_gated(const Problem& gate, const Problem& up, GateActivation act, int bits, int group_size) {
  if (gate.M == 0 || gate.N == 0) return;
  run(gate, &up, act, bits, group_size);
}
#else
bool qmm_amx_takes(int, int, int) {
  return false;
}

void qmm_amx(const Problem&, int, int) {}

void qmm_amx_gated(const Problem&, const Problem&, GateActivation, int, int) {}
#endif

}  // namespace semantic::cpu
