// What the two attention kernels share (attention_cpu.cpp on vector registers, attention_amx.cpp
// on AMX tiles): the problem, the work items, each query row's online-softmax state and the
// per-tile softmax.
//
// One work item is one key/value head of one sequence and a block of query rows that read it
// (the grouped query heads of a few positions). The keys go in tiles of TK fixed key indices;
// each row keeps a running maximum, sum and output (online softmax) and never materializes its
// scores.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cpu_simd.h"

namespace semantic::cpu {

constexpr int TK = 64;  // keys per tile
constexpr float NEG_INF = -std::numeric_limits<float>::infinity();

// The keys and values as segments along the sequence (a request's cache blocks, then its own
// tail): segment i holds positions start[i] .. start[i + 1] - 1.
struct Segments {
  std::vector<View> k, v;
  std::vector<int> start;
};

struct AttentionProblem {
  View q;
  Segments kv;
  const bool* mask;  // (B, Hq, L, S) through strides m0..m3 (broadcast dimensions have 0), or null
  int64_t m0, m1, m2, m3;
  float* out;  // (B, Hq, L, D), row-contiguous
  int B, Hq, Hkv, L, S;
  bool causal;
  float scale;
  int rowsPerItem, itemsPerHead;
  // The AMX kernel may split each item's keys into parts computed apart and merged after: each
  // part's rows' unnormalized output, maximum and sum wait in `partial`.
  int keyParts = 1;
  float* partial = nullptr;
};

template <int D>
struct Row {
  float q[D];  // scaled
  float o[D];
  float m, l;
  int h, i, lo, hi;  // head, position, first and last key seen
  const bool* mask;  // this row's S mask entries (stride m3), or null
};

// Work item `item`: sequence b, key/value head kvh, its query rows r0 .. r0 + n - 1 (row r is
// position r / rep of query head kvh * rep + r % rep).
struct Item {
  int b, kvh, r0, n;
};

inline Item item_of(const AttentionProblem& p, int item) {
  const int R = p.L * (p.Hq / p.Hkv);
  const int r0 = (item % p.itemsPerHead) * p.rowsPerItem;
  return {item / (p.Hkv * p.itemsPerHead), (item / p.itemsPerHead) % p.Hkv, r0, std::min(R, r0 + p.rowsPerItem) - r0};
}

// Sets up the item's rows; [lo, hi] becomes the keys any of them sees.
template <int D>
void start_rows(const AttentionProblem& p, const Item& it, Row<D>* rows, int& lo, int& hi) {
  const int rep = p.Hq / p.Hkv;
  lo = p.S, hi = -1;
  for (int r = 0; r < it.n; r++) {
    Row<D>& row = rows[r];
    row.i = (it.r0 + r) / rep;
    row.h = it.kvh * rep + (it.r0 + r) % rep;
    const float* q = p.q.p + it.b * p.q.s0 + row.h * p.q.s1 + row.i * p.q.s2;
    for (int d = 0; d < D; d += W) storev(row.q + d, loadv(q + d) * p.scale);
    for (int d = 0; d < D; d += W) storev(row.o + d, vf{});
    row.m = NEG_INF;
    row.l = 0;
    row.mask = nullptr;
    row.lo = 0;
    row.hi = p.S - 1;
    if (p.causal) {
      row.hi = std::min(p.S - 1, std::max(0, p.S - p.L) + row.i);
    } else if (p.mask) {
      row.mask = p.mask + it.b * p.m0 + row.h * p.m1 + row.i * p.m2;
      row.lo = p.S, row.hi = -1;
      for (int j = 0; j < p.S; j++)
        if (row.mask[j * p.m3]) row.lo = std::min(row.lo, j), row.hi = j;
    }
    lo = std::min(lo, row.lo), hi = std::max(hi, row.hi);
  }
}

// Whether `row` sees any of the keys j0 .. j0 + TK - 1.
template <typename Row>
inline bool sees_tile(const Row& row, int j0) {
  return row.hi >= j0 && row.lo < j0 + TK;
}

// The key and value rows of keys j0 .. j0 + nk - 1 for the item's head, walking the segments
// (`seg` carries over from the previous tile).
inline void tile_rows(const AttentionProblem& p, const Item& it, int j0, int nk, size_t& seg, const float** krow, const float** vrow) {
  for (int j = 0; j < nk; j++) {
    while (j0 + j >= p.kv.start[seg + 1]) seg++;
    const View &k = p.kv.k[seg], &v = p.kv.v[seg];
    const int64_t at = j0 + j - p.kv.start[seg];
    krow[j] = k.p + it.b * k.s0 + it.kvh * k.s1 + at * k.s2;
    vrow[j] = v.p + it.b * v.s0 + it.kvh * v.s1 + at * v.s2;
  }
}

// Masks the scores `s` (TK) of keys j0.. that `row` does not see, and folds them into the row's
// online softmax: s becomes the weights exp(s - m) (0 where unseen) and `alpha` the factor that
// rescales what the row summed so far.
template <typename Row>
void softmax_tile(Row& row, float* s, int j0, int nk, const AttentionProblem& p, float& alpha) {
  alpha = 1.0f;
  const int last = std::min(nk - 1, row.hi - j0);
  if (!sees_tile(row, j0)) {
    std::fill(s, s + TK, 0.0f);
    return;
  }
  for (int j = last + 1; j < TK; j++) s[j] = NEG_INF;
  for (int j = 0; j < row.lo - j0; j++) s[j] = NEG_INF;
  if (row.mask)
    for (int j = std::max(0, row.lo - j0); j <= last; j++)
      if (!row.mask[(j0 + j) * p.m3]) s[j] = NEG_INF;
  vf mv = splat(NEG_INF);
  for (int g = 0; g < TK / W; g++) mv = vmax(loadv(s + g * W), mv);
  const float tileMax = hmax(mv);
  if (tileMax == NEG_INF) {
    std::fill(s, s + TK, 0.0f);
    return;
  }
  const float m = std::max(row.m, tileMax);
  alpha = row.m == NEG_INF ? 0.0f : exp_nonpositive(splat(row.m - m))[0];
  vf sum = vf{};
  for (int g = 0; g < TK / W; g++) {
    const vf x = loadv(s + g * W);
    const vi seen = x > splat(NEG_INF);
    const vf e = (vf)((vi)exp_nonpositive(x - m) & seen);
    storev(s + g * W, e);
    sum += e;
  }
  row.l = row.l * alpha + hsum(sum);
  row.m = m;
}

#if defined(__AVX512F__)
// 2^t for t <= 0 (scores in base 2: the queries carry log2(e)): t rounded to n by adding and
// subtracting 1.5 * 2^23, 2^(t - n) by a degree-4 polynomial on [-1/2, 1/2] fitted for relative
// error (2.9e-6 in float32; its constant term is 1, so 2^0 is exactly 1 and an unmoved maximum
// gives alpha = 1), scaled by 2^n with VSCALEFPS, which also gives 0 below float's range: eight
// instructions where cpu_simd.h's portable exp_nonpositive takes about seventeen.
inline __m512 exp2_scalef(__m512 t) {
  const __m512 round = _mm512_set1_ps(12582912.0f);
  const __m512 n = _mm512_sub_ps(_mm512_add_ps(t, round), round);
  const __m512 f = _mm512_sub_ps(t, n);
  __m512 p = _mm512_set1_ps(9.582852944731712e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5906426161527634e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4024099111557007e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931241750717163e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Which of the 16 rows `group` (nr of them; lane r = row r) see key j0 + j, for j < TK (none
// past nk, the keys of a last partial tile). Returns true, `seen` left as it was, when every row
// sees every key of a whole tile (most tiles: no masks needed). Rows past nr (zero queries) are
// treated as seeing a whole tile: their lanes stay finite and are never read.
template <typename Row>
bool lanes_seeing(const AttentionProblem& p, const Row* group, int nr, int j0, int nk, __mmask16 seen[TK]) {
  bool all = nk == TK && !p.mask;
  for (int r = 0; r < nr && all; r++) all = group[r].lo <= j0 && group[r].hi >= j0 + TK - 1;
  if (all) return true;
  alignas(64) int lo[16], hi[16];
  for (int r = 0; r < 16; r++) {
    lo[r] = r < nr ? group[r].lo : std::numeric_limits<int>::max();
    hi[r] = r < nr ? group[r].hi : -1;
  }
  const __m512i vlo = _mm512_load_si512(lo), vhi = _mm512_load_si512(hi);
  for (int j = 0; j < TK; j++) {
    const __m512i key = _mm512_set1_epi32(j0 + j);
    __mmask16 s = j < nk ? _mm512_cmple_epi32_mask(vlo, key) & _mm512_cmpge_epi32_mask(vhi, key) : 0;
    if (p.mask && s) {
      for (int r = 0; r < nr; r++)
        if (group[r].mask && !group[r].mask[(j0 + j) * p.m3]) s &= static_cast<__mmask16>(~(1u << r));
    }
    seen[j] = s;
  }
  return false;
}

// The two halves of a lane-wise online-softmax step (lane r = row r) over a key tile whose
// scores are sT[j][lane], in base 2, `seen` (MASKED) saying which rows see key j.
//
// First: the rows' new maxima m_new, and the factor alpha = 2^(m - m_new) for what they summed
// so far. Rows that see none of these keys keep their state (alpha 1, weights 0); so do rows
// that had no maximum yet, whose sums are still 0. Four accumulators for the maxima: one chain
// of dependent ops over the 64 keys would take four times as long.
template <bool MASKED>
inline __m512 lanes_rescale(const float* sT, const __mmask16* seen, __m512 m, __m512& m_new) {
  const __m512 neg_inf = _mm512_set1_ps(NEG_INF);
  __m512 mx[4] = {neg_inf, neg_inf, neg_inf, neg_inf};
  for (int j = 0; j < TK; j += 4)
    for (int u = 0; u < 4; u++) {
      const __m512 s = _mm512_load_ps(sT + (j + u) * 16);
      mx[u] = MASKED ? _mm512_mask_max_ps(mx[u], seen[j + u], mx[u], s) : _mm512_max_ps(mx[u], s);
    }
  const __m512 tile_max = _mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3]));
  const __mmask16 any = _mm512_cmp_ps_mask(tile_max, neg_inf, _CMP_NEQ_OQ);
  m_new = _mm512_mask_max_ps(m, any, m, tile_max);
  const __mmask16 had = _mm512_cmp_ps_mask(m, neg_inf, _CMP_NEQ_OQ);
  return exp2_scalef(_mm512_maskz_sub_ps(had & any, m, m_new));
}

// Second, per key j: its weights 2^(s - m_new), 0 where unseen (the caller sums them and moves
// l = l * alpha + sum, m = m_new).
template <bool MASKED>
inline __m512 lanes_weight(const float* sT, const __mmask16* seen, int j, __m512 m_new) {
  const __m512 s = _mm512_load_ps(sT + j * 16);
  if constexpr (MASKED) return _mm512_maskz_mov_ps(seen[j], exp2_scalef(_mm512_maskz_sub_ps(seen[j], s, m_new)));
  return exp2_scalef(_mm512_sub_ps(s, m_new));
}
#endif

// Writes the rows' outputs o / l.
template <int D>
void finish_rows(const AttentionProblem& p, const Item& it, const Row<D>* rows) {
  for (int r = 0; r < it.n; r++) {
    const Row<D>& row = rows[r];
    float* out = p.out + ((static_cast<int64_t>(it.b) * p.Hq + row.h) * p.L + row.i) * D;
    // A query that sees no key gets zeros (MLX's unfused path would give NaN).
    const vf inv = splat(row.l > 0 ? 1.0f / row.l : 0.0f);
    for (int d = 0; d < D; d += W) storev(out + d, loadv(row.o + d) * inv);
  }
}

}  // namespace semantic::cpu
