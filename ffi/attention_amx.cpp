// Attention on AMX tiles for many query rows (prefill, an agent's next turn): the walk of
// attention_cpu.cpp (key tiles of TK, an online softmax per query row), with both products on
// tiles and the softmax vectorized across 16 query rows. Each operand is split into bf16 hi and
// lo halves (amx.h): three tile products per pair of tiles.
//
// For a row tile (16 query rows) and a key tile (TK keys):
//   scores, transposed: s[j][r] = k_j . q_r (tiles: keys as the row operand, q as the column
//     operand), so each vector holds one key's score for the 16 rows, and the softmax's maxima
//     and sums are lane-wise, with no reduction across a vector;
//   the weights, transposed back (16x16 transposes) into the row operand, times the values.
//
// Layouts, each tile 16 rows of 64 bytes (1 KB), contiguous:
//   k       row operand, tile (kg, dc): keys 16kg.., d 32dc..
//   q       column operand, tile (rt, dc): row i = the pairs (d 32dc + 2i, + 1) of query rows 16rt..
//   weights row operand, tile kc: the row tile's weights of keys 32kc..
//   v       column operand, tile (kc, dg): row i = the pairs (keys 32kc + 2i, + 1) at d 16dg..
// An item repacks every key tile it reads, so items are large (up to ITEM_ROWS rows).

#include "attention_amx.h"

#include <algorithm>
#include <climits>
#include <vector>

#include "amx.h"
#include "cpu_parallel.h"

namespace semantic::cpu {

#if defined(SEMANTIC_AMX)
namespace {

constexpr int MIN_ROWS = 16;
constexpr int ITEM_ROWS = 256;
constexpr int TILE = 512;  // bf16 in a tile
static_assert(TK == 64, "a key tile is four 16-key tiles of scores and two 32-key tiles of weights");

// 16 floats as bf16 hi and lo halves.
inline void split16(__m512 v, __m256i& hi, __m256i& lo) {
  hi = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v));
  const __m512 back = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
  lo = reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(_mm512_sub_ps(v, back)));
}

// exp(x) for x <= 0 as 2^t, t = x log2(e): 2^(t - n) by its Taylor polynomial on [-1/2, 1/2]
// (degree 6, ~1e-7), scaled by 2^n with VSCALEFPS, which also gives 0 below float's range: ten
// instructions where cpu_simd.h's portable exp_nonpositive takes about seventeen. Rounding t
// costs up to |t| 2^-24 of the result, below the weights' 16-bit halves.
inline __m512 exp_scalef(__m512 x) {
  const __m512 t = _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f));
  const __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(1.5403530393381609e-4f);  // ln2^6 / 720
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443e-3f));  // ln2^5 / 120
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284772e-3f));  // ln2^4 / 24
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));  // ln2^3 / 6
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));  // ln2^2 / 2
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));  // ln2
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Lane d: a[d] in the low half, b[d] in the high half (a pair of the column operand).
inline __m512i pairs(__m256i a, __m256i b) {
  return _mm512_or_si512(_mm512_cvtepu16_epi32(a), _mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

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

// Values past nk are zero: their weights are zero, and 0 * a stale NaN would not be.
template <int D>
void pack_values(const float* const* vrow, int nk, uint16_t* hi, uint16_t* lo) {
  constexpr int DG = D / 16;
  for (int kc = 0; kc < TK / 32; kc++) {
    for (int i = 0; i < 16; i++) {
      const int k0 = 32 * kc + 2 * i, k1 = k0 + 1;
      for (int dg = 0; dg < DG; dg++) {
        __m256i h0{}, l0{}, h1{}, l1{};
        if (k0 < nk) split16(_mm512_loadu_ps(vrow[k0] + 16 * dg), h0, l0);
        if (k1 < nk) split16(_mm512_loadu_ps(vrow[k1] + 16 * dg), h1, l1);
        const size_t at = static_cast<size_t>(kc * DG + dg) * TILE + i * 32;
        _mm512_store_si512(hi + at, pairs(h0, h1));
        _mm512_store_si512(lo + at, pairs(l0, l1));
      }
    }
  }
}

// GCC's tile intrinsics paste their tile numbers into the assembly text, so the four
// accumulators are spelled out with macros rather than a template parameter.
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

// Accumulator G += the row operand in tiles 4, 5 (hi, lo) times a column operand (hi, lo at
// `at`, loaded into tiles 6, 7).
#define SEMANTIC_TIMES_COLUMNS(G, hi, lo, at) \
  do {                                        \
    _tile_loadd(6, (hi) + (at), 64);          \
    _tile_dpbf16ps(G, 4, 6);                  \
    _tile_dpbf16ps(G, 5, 6);                  \
    _tile_loadd(7, (lo) + (at), 64);          \
    _tile_dpbf16ps(G, 4, 7);                  \
  } while (0)

// sT (TK x 16): the key tile's scores for the row tile (q given as its column-operand tiles).
template <int D>
void scores(const uint16_t* kh, const uint16_t* kl, const uint16_t* qh, const uint16_t* ql, float* sT) {
  constexpr int DC = D / 32;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (int dc = 0; dc < DC; dc++) {
    _tile_loadd(6, qh + static_cast<size_t>(dc) * TILE, 64);
    _tile_loadd(7, ql + static_cast<size_t>(dc) * TILE, 64);
    // Keys 16g.. into accumulator g.
    SEMANTIC_ROWS_TIMES(0, kh, kl, static_cast<size_t>(0 * DC + dc) * TILE);
    SEMANTIC_ROWS_TIMES(1, kh, kl, static_cast<size_t>(1 * DC + dc) * TILE);
    SEMANTIC_ROWS_TIMES(2, kh, kl, static_cast<size_t>(2 * DC + dc) * TILE);
    SEMANTIC_ROWS_TIMES(3, kh, kl, static_cast<size_t>(3 * DC + dc) * TILE);
  }
  _tile_stored(0, sT, 64);
  _tile_stored(1, sT + 256, 64);
  _tile_stored(2, sT + 512, 64);
  _tile_stored(3, sT + 768, 64);
}

// pv (16 x D) = the row tile's weights (wh, wl) times the value tile.
template <int D>
void weighted_values(const uint16_t* wh, const uint16_t* wl, const uint16_t* vh, const uint16_t* vl, float* pv) {
  constexpr int DG = D / 16;
  for (int dg0 = 0; dg0 < DG; dg0 += 4) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int kc = 0; kc < TK / 32; kc++) {
      _tile_loadd(4, wh + static_cast<size_t>(kc) * TILE, 64);
      _tile_loadd(5, wl + static_cast<size_t>(kc) * TILE, 64);
      // Columns 16(dg0 + g).. into accumulator g.
      const size_t at = static_cast<size_t>(kc * DG + dg0) * TILE;
      SEMANTIC_TIMES_COLUMNS(0, vh, vl, at);
      SEMANTIC_TIMES_COLUMNS(1, vh, vl, at + TILE);
      SEMANTIC_TIMES_COLUMNS(2, vh, vl, at + 2 * TILE);
      SEMANTIC_TIMES_COLUMNS(3, vh, vl, at + 3 * TILE);
    }
    _tile_stored(0, pv + 16 * dg0, D * 4);
    _tile_stored(1, pv + 16 * (dg0 + 1), D * 4);
    _tile_stored(2, pv + 16 * (dg0 + 2), D * 4);
    _tile_stored(3, pv + 16 * (dg0 + 3), D * 4);
  }
}

#undef SEMANTIC_ROWS_TIMES
#undef SEMANTIC_TIMES_COLUMNS

// The online softmax of a row tile (lane r = row r) over keys j0 .. j0 + nk - 1, whose scores
// are sT[j][r]: sT becomes the weights exp(s - m) (0 where unseen), m and l (the rows' running
// maxima and sums) move on, and alpha is the factor for what the rows summed so far. Rows past
// the item's end have lo > hi and see nothing.
template <int D>
void softmax_rows(const AttentionProblem& p, const Row<D>* group, int nr, int j0, int nk, float* sT, __m512& m, __m512& l, __m512& alpha) {
  alignas(64) int lo[16], hi[16];
  for (int r = 0; r < 16; r++) {
    lo[r] = r < nr ? group[r].lo : INT_MAX;
    hi[r] = r < nr ? group[r].hi : -1;
  }
  const __m512i vlo = _mm512_load_si512(lo), vhi = _mm512_load_si512(hi);
  const __m512 neg_inf = _mm512_set1_ps(NEG_INF);
  // Which rows see key j0 + j (none past nk; those scores are of zero keys).
  __mmask16 seen[TK];
  for (int j = 0; j < TK; j++) {
    const __m512i key = _mm512_set1_epi32(j0 + j);
    __mmask16 s = j < nk ? _mm512_cmple_epi32_mask(vlo, key) & _mm512_cmpge_epi32_mask(vhi, key) : 0;
    if (p.mask && s) {
      for (int r = 0; r < nr; r++)
        if (group[r].mask && !group[r].mask[(j0 + j) * p.m3]) s &= static_cast<__mmask16>(~(1u << r));
    }
    seen[j] = s;
  }
  // Four accumulators for the maxima and the sums: one chain of dependent adds over the 64 keys
  // would take four times as long.
  __m512 mx[4] = {neg_inf, neg_inf, neg_inf, neg_inf};
  for (int j = 0; j < TK; j += 4)
    for (int u = 0; u < 4; u++) mx[u] = _mm512_mask_max_ps(mx[u], seen[j + u], mx[u], _mm512_load_ps(sT + (j + u) * 16));
  const __m512 tile_max = _mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3]));
  // Rows that see none of these keys keep their state (alpha 1, weights 0).
  const __mmask16 any = _mm512_cmp_ps_mask(tile_max, neg_inf, _CMP_NEQ_OQ);
  const __m512 m_new = _mm512_mask_max_ps(m, any, m, tile_max);
  const __mmask16 had = _mm512_cmp_ps_mask(m, neg_inf, _CMP_NEQ_OQ);
  // exp(m - m_new) where the row had a maximum and moves on; 0 where it had none; 1 elsewhere.
  const __m512 shift = _mm512_maskz_sub_ps(had & any, m, m_new);
  alpha = _mm512_mask_blend_ps(any & ~had, exp_scalef(shift), _mm512_setzero_ps());
  __m512 sum[4] = {};
  for (int j = 0; j < TK; j += 4) {
    for (int u = 0; u < 4; u++) {
      float* s = sT + (j + u) * 16;
      const __m512 x = _mm512_maskz_sub_ps(seen[j + u], _mm512_load_ps(s), m_new);
      const __m512 e = _mm512_maskz_mov_ps(seen[j + u], exp_scalef(x));
      _mm512_store_ps(s, e);
      sum[u] = _mm512_add_ps(sum[u], e);
    }
  }
  l = _mm512_add_ps(_mm512_mul_ps(l, alpha), _mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3])));
  m = m_new;
}

// The weights sT (TK x 16) transposed into the row operand: tile kc, row r = row r's weights of
// keys 32kc...
void pack_weights(const float* sT, uint16_t* hi, uint16_t* lo) {
  for (int kc = 0; kc < TK / 32; kc++) {
    __m512i a[16], b[16];
    for (int j = 0; j < 16; j++) {
      a[j] = _mm512_load_si512(sT + (32 * kc + j) * 16);
      b[j] = _mm512_load_si512(sT + (32 * kc + 16 + j) * 16);
    }
    transpose16(a);
    transpose16(b);
    for (int r = 0; r < 16; r++) row_operand(_mm512_castsi512_ps(a[r]), _mm512_castsi512_ps(b[r]), hi, lo, static_cast<size_t>(kc) * TILE + r * 32);
  }
}

template <int D>
void run_item(const AttentionProblem& p, int item) {
  constexpr int DC = D / 32;
  const Item it = item_of(p, item);
  const int n = it.n, RT = (n + 15) / 16;
  thread_local std::vector<Row<D>> row_store(ITEM_ROWS);
  Row<D>* rows = row_store.data();
  int lo, hi;
  start_rows<D>(p, it, rows, lo, hi);

  thread_local LineBuffer<uint16_t> q_buffer, k_buffer, v_buffer, w_buffer;
  thread_local LineBuffer<float> s_buffer, pv_buffer, state_buffer;
  uint16_t* qh = q_buffer.get(2 * ITEM_ROWS / 16 * DC * TILE);
  uint16_t* ql = qh + ITEM_ROWS / 16 * DC * TILE;
  uint16_t* kh = k_buffer.get(2 * TK / 16 * DC * TILE);
  uint16_t* kl = kh + TK / 16 * DC * TILE;
  uint16_t* vh = v_buffer.get(2 * TK / 32 * (D / 16) * TILE);
  uint16_t* vl = vh + TK / 32 * (D / 16) * TILE;
  uint16_t* wh = w_buffer.get(2 * TK / 32 * TILE);
  uint16_t* wl = wh + TK / 32 * TILE;
  float* sT = s_buffer.get(TK * 16);
  float* pv = pv_buffer.get(16 * D);
  // The rows' running maxima and sums, 16 a row tile.
  float* ms = state_buffer.get(2 * ITEM_ROWS);
  float* ls = ms + ITEM_ROWS;

  for (int rt = 0; rt < RT; rt++) {
    pack_queries<D>(rows, n, rt, qh, ql);
    _mm512_store_ps(ms + 16 * rt, _mm512_set1_ps(NEG_INF));
    _mm512_store_ps(ls + 16 * rt, _mm512_setzero_ps());
  }
  amx_configure_thread();
  const float* krow[TK];
  const float* vrow[TK];
  alignas(64) float alpha[16];
  size_t seg = 0;
  for (int j0 = lo >= 0 ? lo / TK * TK : 0; j0 <= hi; j0 += TK) {
    const int nk = std::min(TK, p.S - j0);
    tile_rows(p, it, j0, nk, seg, krow, vrow);
    pack_keys<D>(krow, nk, kh, kl);
    pack_values<D>(vrow, nk, vh, vl);
    for (int rt = 0; rt < RT; rt++) {
      Row<D>* group = rows + 16 * rt;
      const int nr = std::min(16, n - 16 * rt);
      bool any = false;
      for (int r = 0; r < nr; r++) any = any || sees_tile(group[r], j0);
      if (!any) continue;
      scores<D>(kh, kl, qh + static_cast<size_t>(rt) * DC * TILE, ql + static_cast<size_t>(rt) * DC * TILE, sT);
      __m512 m = _mm512_load_ps(ms + 16 * rt), l = _mm512_load_ps(ls + 16 * rt), a;
      softmax_rows<D>(p, group, nr, j0, nk, sT, m, l, a);
      _mm512_store_ps(ms + 16 * rt, m);
      _mm512_store_ps(ls + 16 * rt, l);
      _mm512_store_ps(alpha, a);
      pack_weights(sT, wh, wl);
      weighted_values<D>(wh, wl, vh, vl, pv);
      for (int r = 0; r < nr; r++) {
        const vf scale = splat(alpha[r]);
        for (int d = 0; d < D; d += W) storev(group[r].o + d, loadv(group[r].o + d) * scale + loadv(pv + r * D + d));
      }
    }
  }
  for (int r = 0; r < n; r++) rows[r].l = ls[r];
  finish_rows<D>(p, it, rows);
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
  // At least two items per head from 32 rows, so both cores have work with few heads.
  p.rowsPerItem = std::min(ITEM_ROWS, (rows / 2 + 15) / 16 * 16);
  p.itemsPerHead = (rows + p.rowsPerItem - 1) / p.rowsPerItem;
  auto fn = D == 64 ? run_items<64> : D == 128 ? run_items<128> : run_items<256>;
  parallel_for(fn, &p, p.B * p.Hkv * p.itemsPerHead, 1);
}
#else
bool attention_tiles_take(int, int) {
  return false;
}

void attention_tiles(AttentionProblem&, int) {}
#endif

}  // namespace semantic::cpu
