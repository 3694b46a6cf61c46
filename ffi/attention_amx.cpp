// Attention on AMX tiles for many query rows (prefill, an agent's next turn): the walk of
// attention_cpu.cpp (key tiles of TK, an online softmax per query row), with both products on
// tiles and the softmax vectorized across 16 query rows. Each operand is split into bf16 hi and
// lo halves (amx.h): three tile products per pair of tiles.
//
// Both products run transposed, so that a vector always holds one value for the 16 query rows
// of a row tile and the softmax needs neither reductions nor transposes:
//   scores  sT[j][r] = k_j . q_r        keys as the row operand, q as the column operand;
//   output  oT[d][r] += v[.][d] . w[r][.]  V^T as the row operand, the weights as the column
//     operand, whose pairs (keys 2i, 2i + 1 of one row) the softmax writes as it computes them.
// The output waits in oT between key tiles and goes through the tiles' accumulators as they
// load it; only a row tile whose running maxima moved rescales it. Within a key tile the row
// tiles form a pipeline (TileWork): a row tile's softmax issues the next one's scores and the
// previous one's output between its vector ops.
//
// Layouts, each tile 16 rows of 64 bytes (1 KB), contiguous:
//   k       row operand, tile (kg, dc): keys 16kg.., d 32dc..
//   q       column operand, tile (rt, dc): row i = the pairs (d 32dc + 2i, + 1) of query rows 16rt..
//   v       row operand, tile (kc, dg): row i = d 16dg + i of keys 32kc..
//   weights column operand, tile kc: row i = the pairs (keys 32kc + 2i, + 1) of the row tile
// An item repacks every key tile it reads, so items are large (up to ITEM_ROWS rows). Over many
// keys (an agent's next turn, a prefill chunk over a long cache), a head's rows go in blocks of up
// to SPLIT_ROWS and each block's keys in KEY_PARTS parts, one item each, merged after: each key
// tile is packed once per block rather than once per two row blocks of half the size.

#include "attention_amx.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "amx.h"
#include "cpu_parallel.h"

namespace semantic::cpu {

#if defined(SEMANTIC_AMX)
namespace {

constexpr int MIN_ROWS = 16;
constexpr int ITEM_ROWS = 256;
constexpr int SPLIT_ROWS = 512;
constexpr int KEY_PARTS = 2;
constexpr int MIN_SPLIT_TILES = 4 * KEY_PARTS;  // key tiles, for parts worth their merge
constexpr int TILE = 512;  // bf16 in a tile
static_assert(TK == 64, "a key tile is four 16-key tiles of scores and two 32-key tiles of weights");

// Query rows 16rt.. (scaled) as the column operand; rows past n are zero.
template <int D>
void pack_queries(const Row<D>* rows, int n, int rt, uint16_t* hi, uint16_t* lo) {
  constexpr int DC = D / 32;
  for (int dc = 0; dc < DC; dc++) {
    const float* q[16];
    for (int r = 0; r < 16; r++) q[r] = 16 * rt + r < n ? rows[16 * rt + r].q + 32 * dc : nullptr;
    const size_t at = static_cast<size_t>(rt * DC + dc) * TILE;
    column_operand(q, hi + at, lo + at);
  }
}

// Keys past nk are zero.
template <int D>
void pack_keys(const float* const* krow, int nk, uint16_t* hi, uint16_t* lo) {
  constexpr int DC = D / 32;
  const __m512 zero = _mm512_setzero_ps();
  for (int key = 0; key < TK; key++)
    for (int dc = 0; dc < DC; dc++) {
      const float* k = key < nk ? krow[key] + 32 * dc : nullptr;
      row_operand(k ? _mm512_loadu_ps(k) : zero, k ? _mm512_loadu_ps(k + 16) : zero, hi, lo, static_cast<size_t>(key / 16 * DC + dc) * TILE + key % 16 * 32);
    }
}

// V^T: 16x16 blocks of the values transposed. Values past nk are zero: their weights are zero,
// and 0 * a stale NaN would not be.
template <int D>
void pack_values(const float* const* vrow, int nk, uint16_t* hi, uint16_t* lo) {
  constexpr int DG = D / 16;
  const __m512i zero = _mm512_setzero_si512();
  for (int kc = 0; kc < TK / 32; kc++)
    for (int dg = 0; dg < DG; dg++) {
      __m512i a[16], b[16];
      for (int j = 0; j < 16; j++) {
        const int k0 = 32 * kc + j, k1 = k0 + 16;
        a[j] = k0 < nk ? _mm512_loadu_si512(vrow[k0] + 16 * dg) : zero;
        b[j] = k1 < nk ? _mm512_loadu_si512(vrow[k1] + 16 * dg) : zero;
      }
      transpose16(a);
      transpose16(b);
      const size_t at = static_cast<size_t>(kc * DG + dg) * TILE;
      for (int i = 0; i < 16; i++) row_operand(_mm512_castsi512_ps(a[i]), _mm512_castsi512_ps(b[i]), hi, lo, at + i * 32);
    }
}

// GCC's tile intrinsics paste their tile numbers into the assembly text, so the four
// accumulators are spelled out with a macro rather than a template parameter.
//
// Accumulator G += a row operand (hi, lo at `at`, loaded into tiles 4, 5) times the column
// operand in tiles 6, 7 (hi, lo): hi·hi + lo·hi + hi·lo.
#define SEMANTIC_ROWS_TIMES(G, hi, lo, at) \
  do {                                     \
    _tile_loadd(4, (hi) + (at), 64);       \
    _tile_loadd(5, (lo) + (at), 64);       \
    _tile_dpbf16ps(G, 4, 6);               \
    _tile_dpbf16ps(G, 5, 6);               \
    _tile_dpbf16ps(G, 4, 7);               \
  } while (0)

// Accumulator g (a runtime value; constant wherever the units are unrolled) += the row operand
// at `at` times the column operand.
inline void rows_times(int g, const uint16_t* hi, const uint16_t* lo, size_t at) {
  switch (g) {
    case 0: SEMANTIC_ROWS_TIMES(0, hi, lo, at); break;
    case 1: SEMANTIC_ROWS_TIMES(1, hi, lo, at); break;
    case 2: SEMANTIC_ROWS_TIMES(2, hi, lo, at); break;
    default: SEMANTIC_ROWS_TIMES(3, hi, lo, at); break;
  }
}

// The four accumulators to `to`, tile after tile.
inline void store_accumulators(float* to) {
  _tile_stored(0, to, 64);
  _tile_stored(1, to + 256, 64);
  _tile_stored(2, to + 512, 64);
  _tile_stored(3, to + 768, 64);
}

// A step's tile work for the row tiles around the one whose softmax runs: the scores of the next
// row tile (into sT, from its queries qh, ql) and the output of the one before (oT += V^T times
// its weights wh, wl, through the accumulators). It comes in UNITS units of three tile products,
// which the softmax issues between its own vector ops, so that the tile unit and the vector units
// can work at once (they overlap in part: one layer, 149 rows over 4096 keys, 2.63 -> 2.39 ms
// against the three phases one after the other; all units issued in a block before the softmax
// took 2.87). Either half may be absent (null queries or weights): the first and last row tile of
// a key tile.
template <int D>
struct TileWork {
  static constexpr int DC = D / 32, DG = D / 16;
  static constexpr int SCORE_UNITS = 4 * DC;  // 4 accumulators (16 keys each) x D / 32
  static constexpr int OUTPUT_UNITS = 2 * DG;  // DG / 4 groups of 4 accumulators x TK / 32
  static constexpr int UNITS = SCORE_UNITS + OUTPUT_UNITS;
  const uint16_t *kh, *kl, *vh, *vl;
  const uint16_t *qh, *ql;
  float* sT;
  const uint16_t *wh, *wl;
  float* oT;

  // Unit u: the scores first, so that they are stored early in the step and the next step's
  // softmax does not wait for them.
  void unit(int u) const {
    // Tile loads are asm that GCC does not know reads memory: the vector stores of the operands
    // (the weights, the packed keys) must not move past them.
    asm volatile("" ::: "memory");
    if (u < SCORE_UNITS) {
      if (!qh) return;
      const int dc = u / 4, g = u % 4;
      if (u == 0) {
        _tile_zero(0);
        _tile_zero(1);
        _tile_zero(2);
        _tile_zero(3);
      }
      if (g == 0) {
        _tile_loadd(6, qh + static_cast<size_t>(dc) * TILE, 64);
        _tile_loadd(7, ql + static_cast<size_t>(dc) * TILE, 64);
      }
      // Keys 16g.. into accumulator g.
      rows_times(g, kh, kl, static_cast<size_t>(g * DC + dc) * TILE);
      if (u == SCORE_UNITS - 1) store_accumulators(sT);
      return;
    }
    if (!wh) return;
    // Group of d 64 group.., key chunk kc, d 16(4 group + g).. into accumulator g.
    const int v = u - SCORE_UNITS, group = v / 8, kc = v / 4 % 2, g = v % 4;
    float* o = oT + group * 4 * 256;
    if (v % 8 == 0) {
      _tile_loadd(0, o, 64);
      _tile_loadd(1, o + 256, 64);
      _tile_loadd(2, o + 512, 64);
      _tile_loadd(3, o + 768, 64);
    }
    if (g == 0) {
      _tile_loadd(6, wh + static_cast<size_t>(kc) * TILE, 64);
      _tile_loadd(7, wl + static_cast<size_t>(kc) * TILE, 64);
    }
    rows_times(g, vh, vl, static_cast<size_t>(kc * DG + 4 * group + g) * TILE);
    if (v % 8 == 7) store_accumulators(o);
  }

  void all() const {
    for (int u = 0; u < UNITS; u++) unit(u);
  }
};

#undef SEMANTIC_ROWS_TIMES

// The weights of keys 2i and 2i + 1 (e0, e1, lane r = row r) as row i of the column operand: lane
// r holds the pair (e0[r], e1[r]), hi and lo halves.
inline void weight_pairs(__m512 e0, __m512 e1, uint16_t* hi, uint16_t* lo) {
  const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i h = _mm512_permutexvar_epi16(interleave, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(e1, e0)));
  const __m512 h0 = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  const __m512 h1 = _mm512_castsi512_ps(_mm512_and_si512(h, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
  const __m512i l = _mm512_permutexvar_epi16(interleave, reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(_mm512_sub_ps(e1, h1), _mm512_sub_ps(e0, h0))));
  _mm512_store_si512(hi, h);
  _mm512_store_si512(lo, l);
}

// The online softmax of a row tile (lane r = row r) over the key tile whose scores are sT[j][r]
// (in base 2), `seen` (MASKED) saying which rows see key j: the weights 2^(s - m) (0 where
// unseen) go to the column-operand tiles wh, wl; m and l (the rows' running maxima and sums) move
// on; the result is the factor for what the rows summed so far. The tile work `work` is issued in
// even shares between the exponentials.
template <bool MASKED, int D>
__m512 softmax_weights(const float* sT, const __mmask16* seen, __m512& m, __m512& l, uint16_t* wh, uint16_t* wl, const TileWork<D>& work) {
  constexpr int SHARE = TileWork<D>::UNITS / (TK / 4);
  static_assert(SHARE * (TK / 4) == TileWork<D>::UNITS, "the tile work splits evenly over the softmax's steps");
  __m512 m_new;
  const __m512 alpha = lanes_rescale<MASKED>(sT, seen, m, m_new);
  __m512 sum[4] = {};
#pragma GCC unroll 16
  for (int j = 0; j < TK; j += 4) {
#pragma GCC unroll 4
    for (int u = 0; u < SHARE; u++) work.unit(j / 4 * SHARE + u);
    __m512 e[4];
    for (int u = 0; u < 4; u++) {
      e[u] = lanes_weight<MASKED>(sT, seen, j + u, m_new);
      sum[u] = _mm512_add_ps(sum[u], e[u]);
    }
    for (int u = 0; u < 4; u += 2) {
      const int i = (j + u) / 2;  // pair row i of tile i / 16
      const size_t at = static_cast<size_t>(i / 16) * TILE + i % 16 * 32;
      weight_pairs(e[u], e[u + 1], wh + at, wl + at);
    }
  }
  l = _mm512_add_ps(_mm512_mul_ps(l, alpha), _mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3])));
  m = m_new;
  return alpha;
}

// softmax_weights for the row tile `group` (nr rows) and keys j0 .. j0 + nk - 1.
template <int D>
__m512 row_tile_softmax(const AttentionProblem& p, const Row<D>* group, int nr, int j0, int nk, const float* sT, __m512& m, __m512& l, uint16_t* wh, uint16_t* wl, const TileWork<D>& work) {
  __mmask16 seen[TK];
  if (lanes_seeing(p, group, nr, j0, nk, seen)) return softmax_weights<false>(sT, nullptr, m, l, wh, wl, work);
  return softmax_weights<true>(sT, seen, m, l, wh, wl, work);
}

// A thread's rows: an item's in run_item, then a merge's in merge_parts.
template <int D>
Row<D>* row_buffer() {
  thread_local std::vector<Row<D>> rows(SPLIT_ROWS);
  return rows.data();
}

template <int D>
void run_item(const AttentionProblem& p, int item) {
  constexpr int DC = D / 32;
  const int part = item % p.keyParts;
  const Item it = item_of(p, item / p.keyParts);
  const int n = it.n, RT = (n + 15) / 16;
  Row<D>* rows = row_buffer<D>();
  int lo, hi;
  start_rows<D>(p, it, rows, lo, hi);

  thread_local LineBuffer<uint16_t> q_buffer, k_buffer, v_buffer, w_buffer;
  thread_local LineBuffer<float> s_buffer, o_buffer, state_buffer;
  uint16_t* qh = q_buffer.get(2 * SPLIT_ROWS / 16 * DC * TILE);
  uint16_t* ql = qh + SPLIT_ROWS / 16 * DC * TILE;
  uint16_t* kh = k_buffer.get(2 * TK / 16 * DC * TILE);
  uint16_t* kl = kh + TK / 16 * DC * TILE;
  uint16_t* vh = v_buffer.get(2 * TK / 32 * (D / 16) * TILE);
  uint16_t* vl = vh + TK / 32 * (D / 16) * TILE;
  uint16_t* wh = w_buffer.get(4 * TK / 32 * TILE);  // two buffers of hi and lo
  float* sT = s_buffer.get(2 * TK * 16);
  // Each row tile's output, transposed (D x 16), and the rows' running maxima and sums.
  float* oT = o_buffer.get(static_cast<size_t>(SPLIT_ROWS) * D);
  float* ms = state_buffer.get(2 * SPLIT_ROWS);
  float* ls = ms + SPLIT_ROWS;

  for (int rt = 0; rt < RT; rt++) {
    pack_queries<D>(rows, n, rt, qh, ql);
    _mm512_store_ps(ms + 16 * rt, _mm512_set1_ps(NEG_INF));
    _mm512_store_ps(ls + 16 * rt, _mm512_setzero_ps());
  }
  std::fill(oT, oT + static_cast<size_t>(RT) * 16 * D, 0.0f);
  amx_configure_thread();
  const float* krow[TK];
  const float* vrow[TK];
  size_t seg = 0;
  int first = lo >= 0 ? lo / TK * TK : 0, last = hi;
  if (p.keyParts > 1) {
    const int per = ((hi - first) / TK / p.keyParts + 1) * TK;  // the parts' key tiles, rounded up
    first += part * per;
    last = std::min(hi, first + per - 1);
  }
  const float* knext[TK];
  const float* vnext[TK];
  for (int j0 = first; j0 <= last; j0 += TK) {
    const int nk = std::min(TK, p.S - j0);
    tile_rows(p, it, j0, nk, seg, krow, vrow);
    pack_keys<D>(krow, nk, kh, kl);
    pack_values<D>(vrow, nk, vh, vl);
    // The next key tile's rows come from memory into L2 while this tile's row tiles run, a few
    // keys per row tile: packing it then reads L2, not memory.
    int next = 0;
    if (j0 + TK <= last) {
      size_t at = seg;
      next = std::min(TK, p.S - j0 - TK);
      tile_rows(p, it, j0 + TK, next, at, knext, vnext);
    }
    // The row tiles that see this key tile, in a pipeline: while row tile active[i]'s softmax
    // runs, the tiles compute active[i + 1]'s scores and active[i - 1]'s output. Scores and
    // weights alternate between two buffers.
    int active[SPLIT_ROWS / 16], na = 0;
    for (int rt = 0; rt < RT; rt++) {
      const int nr = std::min(16, n - 16 * rt);
      bool any = false;
      for (int r = 0; r < nr; r++) any = any || sees_tile(rows[16 * rt + r], j0);
      if (any) active[na++] = rt;
    }
    const int per = (next + std::max(na, 1) - 1) / std::max(na, 1);
    const auto queries = [&](int i, int half) { return (half ? ql : qh) + static_cast<size_t>(active[i]) * DC * TILE; };
    const auto output = [&](int i) { return oT + static_cast<size_t>(active[i]) * 16 * D; };
    const auto scores = [&](int i) { return sT + (i % 2) * TK * 16; };
    const auto weights = [&](int i, int half) { return wh + (2 * (i % 2) + half) * TK / 32 * TILE; };
    if (na) TileWork<D>{kh, kl, vh, vl, queries(0, 0), queries(0, 1), scores(0), nullptr, nullptr, nullptr}.all();
    for (int i = 0; i < na; i++) {
      for (int j = i * per; j < std::min(next, (i + 1) * per); j++)
        for (int d = 0; d < D; d += 16) {
          _mm_prefetch(reinterpret_cast<const char*>(knext[j] + d), _MM_HINT_T1);
          _mm_prefetch(reinterpret_cast<const char*>(vnext[j] + d), _MM_HINT_T1);
        }
      const bool after = i + 1 < na, before = i > 0;
      const TileWork<D> work{kh, kl, vh, vl, after ? queries(i + 1, 0) : nullptr, after ? queries(i + 1, 1) : nullptr, scores(i + 1),
                             before ? weights(i - 1, 0) : nullptr, before ? weights(i - 1, 1) : nullptr, before ? output(i - 1) : nullptr};
      const int rt = active[i];
      __m512 m = _mm512_load_ps(ms + 16 * rt), l = _mm512_load_ps(ls + 16 * rt);
      const __m512 alpha = row_tile_softmax<D>(p, rows + 16 * rt, std::min(16, n - 16 * rt), j0, nk, scores(i), m, l, weights(i, 0), weights(i, 1), work);
      _mm512_store_ps(ms + 16 * rt, m);
      _mm512_store_ps(ls + 16 * rt, l);
      float* o = output(i);
      // Once the rows' maxima settle (most key tiles), alpha is exactly 1 and o stays as it is.
      if (_mm512_cmp_ps_mask(alpha, _mm512_set1_ps(1.0f), _CMP_NEQ_UQ))
        for (int d = 0; d < D; d++) _mm512_store_ps(o + d * 16, _mm512_mul_ps(_mm512_load_ps(o + d * 16), alpha));
    }
    if (na) TileWork<D>{kh, kl, vh, vl, nullptr, nullptr, nullptr, weights(na - 1, 0), weights(na - 1, 1), output(na - 1)}.all();
  }
  for (int rt = 0; rt < RT; rt++) {
    const float* o = oT + static_cast<size_t>(rt) * 16 * D;
    for (int dg = 0; dg < D / 16; dg++) {
      __m512i r[16];
      for (int i = 0; i < 16; i++) r[i] = _mm512_load_si512(o + (16 * dg + i) * 16);
      transpose16(r);
      for (int i = 0; i < 16 && 16 * rt + i < n; i++) _mm512_storeu_si512(rows[16 * rt + i].o + 16 * dg, r[i]);
    }
  }
  if (p.keyParts == 1) {
    for (int r = 0; r < n; r++) rows[r].l = ls[r];
    finish_rows<D>(p, it, rows);
    return;
  }
  for (int r = 0; r < n; r++) {
    float* to = p.partial + (static_cast<size_t>(item) * SPLIT_ROWS + r) * (D + 16);
    std::copy(rows[r].o, rows[r].o + D, to);
    to[D] = ms[r], to[D + 1] = ls[r];
  }
}

// Each row's parts (maxima in base 2) merged into one output and sum, written by finish_rows.
template <int D>
void merge_parts(void* ctx, int begin, int end) {
  const AttentionProblem& p = *static_cast<const AttentionProblem*>(ctx);
  const int rep = p.Hq / p.Hkv;
  Row<D>* rows = row_buffer<D>();
  for (int item = begin; item < end; item++) {
    const Item it = item_of(p, item);
    for (int r = 0; r < it.n; r++) {
      const float* parts[KEY_PARTS];
      float m = NEG_INF;
      for (int k = 0; k < p.keyParts; k++) {
        parts[k] = p.partial + ((static_cast<size_t>(item) * p.keyParts + k) * SPLIT_ROWS + r) * (D + 16);
        m = std::max(m, parts[k][D]);
      }
      Row<D>& row = rows[r];
      vf o[D / W] = {};
      row.l = 0;
      for (int k = 0; k < p.keyParts; k++) {
        if (parts[k][D] == NEG_INF) continue;  // this part's keys: none seen
        const float a = std::exp2(parts[k][D] - m);
        row.l += a * parts[k][D + 1];
        for (int d = 0; d < D / W; d++) o[d] += loadv(parts[k] + d * W) * a;
      }
      for (int d = 0; d < D / W; d++) storev(row.o + d * W, o[d]);
      row.i = (it.r0 + r) / rep, row.h = it.kvh * rep + (it.r0 + r) % rep;
    }
    finish_rows<D>(p, it, rows);
  }
}

template <int D>
void run_items(void* ctx, int begin, int end) {
  for (int item = begin; item < end; item++) run_item<D>(*static_cast<const AttentionProblem*>(ctx), item);
}

}  // namespace

bool attention_tiles_take(int rows_per_head, int D) {
  return amx_available() && rows_per_head >= MIN_ROWS && (D == 64 || D == 128 || D == 256);
}

void attention_tiles(AttentionProblem& p, int D) {
  const int rows = p.L * (p.Hq / p.Hkv);
  // Scores in base 2 (the softmax's exp(s) is 2^(s log2(e))): start_rows scales the queries.
  p.scale *= 1.44269504088896341f;
  auto fn = D == 64 ? run_items<64> : D == 128 ? run_items<128> : run_items<256>;
  if ((p.S + TK - 1) / TK >= MIN_SPLIT_TILES) {
    // Row blocks of up to SPLIT_ROWS, as even as whole row tiles allow.
    const int blocks = (rows + SPLIT_ROWS - 1) / SPLIT_ROWS;
    p.rowsPerItem = (rows / blocks + 15) / 16 * 16;
    p.itemsPerHead = (rows + p.rowsPerItem - 1) / p.rowsPerItem;
    p.keyParts = KEY_PARTS;
    thread_local LineBuffer<float> partial;
    const int items = p.B * p.Hkv * p.itemsPerHead;
    p.partial = partial.get(static_cast<size_t>(items) * KEY_PARTS * SPLIT_ROWS * (D + 16));
    parallel_for(fn, &p, items * KEY_PARTS, 1);
    parallel_for(D == 64 ? merge_parts<64> : D == 128 ? merge_parts<128> : merge_parts<256>, &p, items, 1);
    return;
  }
  // At least two items per head from 32 rows, so both cores have work with few heads.
  p.rowsPerItem = std::min(ITEM_ROWS, (rows / 2 + 15) / 16 * 16);
  p.itemsPerHead = (rows + p.rowsPerItem - 1) / p.rowsPerItem;
  parallel_for(fn, &p, p.B * p.Hkv * p.itemsPerHead, 1);
}
#else
bool attention_tiles_take(int, int) {
  return false;
}

void attention_tiles(AttentionProblem&, int) {}
#endif

}  // namespace semantic::cpu
