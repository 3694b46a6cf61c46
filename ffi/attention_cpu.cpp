// The CPU kernel behind semantic::attention (see attention_cpu.h); with many query rows on a CPU
// with AMX, attention_amx.cpp instead. The work items and the online softmax are in
// attention_rows.h.
//
// Rows go in groups of RB whose scores and outputs stay in registers, so each K and V vector
// loaded serves the whole group. With many rows, each tile of K is transposed once into a small
// buffer, so a row's TK scores come out as whole vectors. With AVX-512 and many rows, the lanes
// kernel below runs instead: 16 rows to a vector, so neither the transposes nor the softmax's
// per-row reductions are needed (one layer over 4096 keys about 15% faster, bench:attention).

#include "attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <vector>

#include "attention_amx.h"
#include "attention_rows.h"
#include "cpu_parallel.h"
#include "cpu_primitive.h"
#include "cpu_simd.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace semantic {
namespace {

using namespace cpu;
using Problem = AttentionProblem;

constexpr int ROWS_PER_ITEM = 64;  // query rows sharing one transposed tile

// Rows per item up to which scores are dot products rather than a transposed tile.
constexpr int FEW_ROWS = 4;
// Query rows computed together from one tile: their scores (RB x TK / W vectors) and their
// outputs (RB x CB vectors of columns at a time) stay in registers, so each K and V vector loaded
// serves RB rows. AVX-512 has 32 vector registers; AVX2 and NEON's 8-float pairs have fewer.
constexpr int RB = W == 16 ? 4 : 2;
constexpr int CB = 4;
static_assert(ROWS_PER_ITEM % RB == 0);

template <int D>
inline float dot(const float* a, const float* b) {
  vf acc = vf{};
  for (int d = 0; d < D; d += W) acc += loadv(a + d) * loadv(b + d);
  return hsum(acc);
}

template <int D>
void run_item(const Problem& p, int item) {
  const Item it = item_of(p, item);
  const int n = it.n;
  Row<D> rows[ROWS_PER_ITEM];
  int lo, hi;
  start_rows<D>(p, it, rows, lo, hi);
  // The last group's missing rows see no key and multiply zeros; their results are never read.
  for (int r = n; r < (n + RB - 1) / RB * RB; r++) {
    Row<D>& row = rows[r];
    for (int d = 0; d < D; d += W) storev(row.q + d, vf{}), storev(row.o + d, vf{});
    row.m = NEG_INF, row.l = 0, row.mask = nullptr, row.lo = p.S, row.hi = -1;
  }
  const float* krow[TK];
  const float* vrow[TK];
  alignas(64) float kt[D * TK];
  alignas(64) float s[RB][TK];
  float alpha[RB];
  // Rows go RB at a time. Few rows (decode) compute each score as a dot product; from a few rows
  // on, the tile is transposed once and the group's scores come out of registers. Either way a
  // score sums over d in the same order.
  const bool transpose = n > FEW_ROWS;
  size_t seg = 0;
  for (int j0 = lo >= 0 ? lo / TK * TK : 0; j0 <= hi; j0 += TK) {
    const int nk = std::min(TK, p.S - j0);
    tile_rows(p, it, j0, nk, seg, krow, vrow);
    if (transpose) {
      for (int j = 0; j < nk; j++) {
        const float* key = krow[j];
        for (int d = 0; d < D; d++) kt[d * TK + j] = key[d];
      }
      for (int j = nk; j < TK; j++)
        for (int d = 0; d < D; d++) kt[d * TK + j] = 0;
    }
    for (int g0 = 0; g0 < n; g0 += RB) {
      Row<D>* group = rows + g0;
      const int nr = std::min(RB, n - g0);
      int last = -1;
      for (int r = 0; r < nr; r++) {
        const Row<D>& row = group[r];
        if (sees_tile(row, j0)) last = std::max(last, std::min(nk - 1, row.hi - j0));
      }
      if (last < 0) continue;
      if (transpose) {
        vf acc[RB][TK / W] = {};
        for (int d = 0; d < D; d++) {
          vf kv[TK / W];
          for (int g = 0; g < TK / W; g++) kv[g] = loadv(kt + d * TK + g * W);
          for (int r = 0; r < RB; r++) {
            const vf qd = splat(group[r].q[d]);
            for (int g = 0; g < TK / W; g++) acc[r][g] += qd * kv[g];
          }
        }
        for (int r = 0; r < RB; r++)
          for (int g = 0; g < TK / W; g++) storev(s[r] + g * W, acc[r][g]);
      } else {
        for (int r = 0; r < nr; r++)
          for (int j = 0; j < nk; j++) s[r][j] = dot<D>(group[r].q, krow[j]);
      }
      for (int r = 0; r < RB; r++) softmax_tile(group[r], s[r], j0, nk, p, alpha[r]);
      // o = o * alpha + sum_j e_j V_j, CB vectors of columns at a time for every row of the group.
      for (int c0 = 0; c0 < D / W; c0 += CB) {
        vf o[RB][CB];
        for (int r = 0; r < RB; r++)
          for (int c = 0; c < CB; c++) o[r][c] = loadv(group[r].o + (c0 + c) * W) * alpha[r];
        for (int j = 0; j <= last; j++) {
          const float* val = vrow[j] + c0 * W;
          vf vv[CB];
          for (int c = 0; c < CB; c++) vv[c] = loadv(val + c * W);
          for (int r = 0; r < RB; r++) {
            const vf w = splat(s[r][j]);
            for (int c = 0; c < CB; c++) o[r][c] += w * vv[c];
          }
        }
        for (int r = 0; r < RB; r++)
          for (int c = 0; c < CB; c++) storev(group[r].o + (c0 + c) * W, o[r][c]);
      }
    }
  }
  finish_rows<D>(p, it, rows);
}

template <int D>
void run_items(void* ctx, int begin, int end) {
  for (int item = begin; item < end; item++) run_item<D>(*static_cast<const Problem*>(ctx), item);
}

#if defined(__AVX512F__)
// With AVX-512 and many rows, the rows go 16 to a vector (one lane each), as on AMX tiles
// (attention_amx.cpp): scores sT[j][lane] = sum_d k_j[d] qT[d][lane] broadcast each key value
// from the key's own row (no transposed copy of the tile), the online softmax runs lane-wise
// (no horizontal reductions, one exponential for the 16 rows' rescaling) and the output
// oT[d][lane] += sum_j v_j[d] wT[j][lane] broadcasts from the value rows the same way. Scores
// are in base 2 (the queries carry log2(e)).
constexpr int LANES = 16;
constexpr int LANES_MIN_ROWS = 16;  // rows per key/value head from which the lanes kernel runs
// Keys (scores) or head dimensions (output) whose accumulators stay in registers at once.
constexpr int BLOCK = 16;

// Scores of T row tiles at once (their queries transposed, qT[t]), so each key value broadcast
// serves T vectors. The key tile `keys` is TK rows of D, contiguous: one base address for every
// broadcast.
template <int D, int T>
void scores_lanes(const float* const* qT, const float* keys, float* const* sT) {
  constexpr int JB = BLOCK / T;
  for (int j0 = 0; j0 < TK; j0 += JB) {
    __m512 acc[T][JB];
    for (int t = 0; t < T; t++)
      for (int j = 0; j < JB; j++) acc[t][j] = _mm512_setzero_ps();
    for (int d = 0; d < D; d++) {
      __m512 q[T];
      for (int t = 0; t < T; t++) q[t] = _mm512_load_ps(qT[t] + d * LANES);
      for (int j = 0; j < JB; j++) {
        const __m512 k = _mm512_set1_ps(keys[(j0 + j) * D + d]);
        for (int t = 0; t < T; t++) acc[t][j] = _mm512_fmadd_ps(k, q[t], acc[t][j]);
      }
    }
    for (int t = 0; t < T; t++)
      for (int j = 0; j < JB; j++) _mm512_store_ps(sT[t] + (j0 + j) * LANES, acc[t][j]);
  }
}

// oT[t] = oT[t] * alpha[t] + sum_j v_j wT[t][j] over keys 0 .. nk - 1, T row tiles at once.
template <int D, int T>
void output_lanes(const float* const* wT, const float* const* vrow, int nk, const __m512* alpha, float* const* oT) {
  constexpr int DB = BLOCK / T;
  for (int d0 = 0; d0 < D; d0 += DB) {
    __m512 acc[T][DB];
    for (int t = 0; t < T; t++)
      for (int d = 0; d < DB; d++) acc[t][d] = _mm512_mul_ps(_mm512_load_ps(oT[t] + (d0 + d) * LANES), alpha[t]);
    for (int j = 0; j < nk; j++) {
      __m512 w[T];
      for (int t = 0; t < T; t++) w[t] = _mm512_load_ps(wT[t] + j * LANES);
      const float* v = vrow[j] + d0;
      for (int d = 0; d < DB; d++) {
        const __m512 vd = _mm512_set1_ps(v[d]);
        for (int t = 0; t < T; t++) acc[t][d] = _mm512_fmadd_ps(vd, w[t], acc[t][d]);
      }
    }
    for (int t = 0; t < T; t++)
      for (int d = 0; d < DB; d++) _mm512_store_ps(oT[t] + (d0 + d) * LANES, acc[t][d]);
  }
}

// The online softmax of 16 rows (lanes) over one key tile: the scores sT become the weights
// 2^(s - m) (0 where `seen` (MASKED) says a row does not see the key); m and l move on; returns
// the factor for what the rows summed so far.
template <bool MASKED>
__m512 softmax_lanes(float* sT, const __mmask16* seen, __m512& m, __m512& l) {
  __m512 m_new;
  const __m512 alpha = lanes_rescale<MASKED>(sT, seen, m, m_new);
  __m512 sum[4] = {};
  for (int j = 0; j < TK; j += 4)
    for (int u = 0; u < 4; u++) {
      const __m512 e = lanes_weight<MASKED>(sT, seen, j + u, m_new);
      _mm512_store_ps(sT + (j + u) * LANES, e);
      sum[u] = _mm512_add_ps(sum[u], e);
    }
  l = _mm512_add_ps(_mm512_mul_ps(l, alpha), _mm512_add_ps(_mm512_add_ps(sum[0], sum[1]), _mm512_add_ps(sum[2], sum[3])));
  m = m_new;
  return alpha;
}

template <int D>
void run_item_lanes(const Problem& p, int item) {
  const Item it = item_of(p, item);
  const int n = it.n, RT = (n + LANES - 1) / LANES;
  Row<D> rows[ROWS_PER_ITEM];
  int lo, hi;
  start_rows<D>(p, it, rows, lo, hi);
  alignas(64) float qT[ROWS_PER_ITEM / LANES][D * LANES];
  alignas(64) float oT[ROWS_PER_ITEM / LANES][D * LANES];
  alignas(64) float sT[2][TK * LANES];
  alignas(64) float ms[ROWS_PER_ITEM], ls[ROWS_PER_ITEM];
  for (int rt = 0; rt < RT; rt++) {
    for (int d = 0; d < D; d++)
      for (int i = 0; i < LANES; i++) qT[rt][d * LANES + i] = LANES * rt + i < n ? rows[LANES * rt + i].q[d] : 0.0f;
    std::fill(oT[rt], oT[rt] + D * LANES, 0.0f);
    _mm512_store_ps(ms + LANES * rt, _mm512_set1_ps(NEG_INF));
    _mm512_store_ps(ls + LANES * rt, _mm512_setzero_ps());
  }
  alignas(64) float keys[TK * D];
  const float* krow[TK];
  const float* vrow[TK];
  size_t seg = 0;
  for (int j0 = lo >= 0 ? lo / TK * TK : 0; j0 <= hi; j0 += TK) {
    const int nk = std::min(TK, p.S - j0);
    tile_rows(p, it, j0, nk, seg, krow, vrow);
    // Keys past the end of the sequence (a last partial tile) are zeros; their weights are 0.
    for (int j = 0; j < TK; j++)
      for (int d = 0; d < D; d += LANES) _mm512_store_ps(keys + j * D + d, j < nk ? _mm512_loadu_ps(krow[j] + d) : _mm512_setzero_ps());
    // The row tiles that see this key tile, two at a time.
    int active[ROWS_PER_ITEM / LANES], na = 0;
    for (int rt = 0; rt < RT; rt++) {
      bool any = false;
      for (int r = LANES * rt; r < std::min(n, LANES * (rt + 1)); r++) any = any || sees_tile(rows[r], j0);
      if (any) active[na++] = rt;
    }
    for (int i = 0; i < na; i += 2) {
      const int T = std::min(2, na - i);
      const float* q[2] = {qT[active[i]], qT[active[i + T - 1]]};
      float* s[2] = {sT[0], sT[1]};
      float* o[2] = {oT[active[i]], oT[active[i + T - 1]]};
      if (T == 2) scores_lanes<D, 2>(q, keys, s);
      else scores_lanes<D, 1>(q, keys, s);
      __m512 alpha[2];
      for (int t = 0; t < T; t++) {
        const int rt = active[i + t];
        const int nr = std::min(LANES, n - LANES * rt);
        __mmask16 seen[TK];
        __m512 m = _mm512_load_ps(ms + LANES * rt), l = _mm512_load_ps(ls + LANES * rt);
        alpha[t] = lanes_seeing(p, rows + LANES * rt, nr, j0, nk, seen) ? softmax_lanes<false>(sT[t], nullptr, m, l) : softmax_lanes<true>(sT[t], seen, m, l);
        _mm512_store_ps(ms + LANES * rt, m);
        _mm512_store_ps(ls + LANES * rt, l);
      }
      if (T == 2) output_lanes<D, 2>(s, vrow, nk, alpha, o);
      else output_lanes<D, 1>(s, vrow, nk, alpha, o);
    }
  }
  for (int r = 0; r < n; r++) {
    for (int d = 0; d < D; d++) rows[r].o[d] = oT[r / LANES][d * LANES + r % LANES];
    rows[r].l = ls[r];
  }
  finish_rows<D>(p, it, rows);
}

template <int D>
void run_items_lanes(void* ctx, int begin, int end) {
  for (int item = begin; item < end; item++) run_item_lanes<D>(*static_cast<const Problem*>(ctx), item);
}
#endif


// Below this many multiply-adds a call runs on the calling thread alone (decode over a short
// context): waking the pool costs more than it saves.
constexpr double SERIAL_WORK = 1 << 18;

void run(Problem& p, int D) {
  const int rows = p.L * (p.Hq / p.Hkv);
  if (attention_tiles_take(rows, D)) return attention_tiles(p, D);
  p.rowsPerItem = ROWS_PER_ITEM;
  p.itemsPerHead = (rows + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM;
  auto fn = D == 64 ? run_items<64> : D == 128 ? run_items<128> : run_items<256>;
#if defined(__AVX512F__)
  if (rows >= LANES_MIN_ROWS) {
    p.scale *= 1.44269504088896341f;  // scores in base 2
    fn = D == 64 ? run_items_lanes<64> : D == 128 ? run_items_lanes<128> : run_items_lanes<256>;
  }
#endif
  const int items = p.B * p.Hkv * p.itemsPerHead;
  const double work = 2.0 * p.B * p.Hq * p.L * static_cast<double>(p.S) * D;
  if (work < SERIAL_WORK) return fn(const_cast<Problem*>(&p), 0, items);
  parallel_for(fn, const_cast<Problem*>(&p), items, 1);
}

// Inputs q, the key segments, the value segments and, with a mask, the mask broadcast to (B, Hq, L, S).
class AttentionCpu : public mx::UnaryPrimitive {
 public:
  AttentionCpu(mx::Stream stream, float scale, bool causal, int segments)
      : mx::UnaryPrimitive(stream), scale_(scale), causal_(causal), segments_(segments) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [scale = scale_, causal = causal_, n = segments_](std::vector<mx::array>& in, mx::array& out) {
      const mx::array& q = in[0];
      // Views of strided segments may copy into these; one buffer each, never resized after.
      std::vector<std::vector<float>> scratch(2 * n + 1);
      Problem p{view4(q, scratch[0]), {}, nullptr, 0, 0, 0, 0, out.data<float>(),
                q.shape(0), q.shape(1), in[1].shape(1), q.shape(2), 0, causal, scale, 0, 0};
      p.kv.start.push_back(0);
      for (int i = 0; i < n; i++) {
        p.kv.k.push_back(view4(in[1 + i], scratch[1 + i]));
        p.kv.v.push_back(view4(in[1 + n + i], scratch[1 + n + i]));
        p.kv.start.push_back(p.S += in[1 + i].shape(2));
      }
      if (in.size() == static_cast<size_t>(2 * n + 2)) {
        const auto& m = in.back();
        p.mask = m.data<bool>();
        p.m0 = m.strides()[0], p.m1 = m.strides()[1], p.m2 = m.strides()[2], p.m3 = m.strides()[3];
      }
      run(p, q.shape(3));
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic attention] has no GPU kernel (use MLX's fast attention)");
  }

  const char* name() const override { return "SemanticAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const AttentionCpu&>(other);
    return scale_ == o.scale_ && causal_ == o.causal_ && segments_ == o.segments_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override { return {inputs[0].shape()}; }

 private:
  float scale_;
  bool causal_;
  int segments_;
};

bool takes(const mx::Stream& s, const mx::array& q, const std::vector<mx::array>& ks, const std::vector<mx::array>& vs, const std::string& mode, const std::optional<mx::array>& mask) {
  if (s.device.type != mx::Device::cpu) return false;
  if (mode != "" && mode != "causal") return false;
  if (mask && (mode == "causal" || mask->dtype() != mx::bool_ || mask->ndim() > 4)) return false;
  if (q.dtype() != mx::float32 || q.ndim() != 4 || q.shape(2) == 0) return false;
  const int D = q.shape(3);
  if (D != 64 && D != 128 && D != 256) return false;
  if (ks.empty() || ks.size() != vs.size()) return false;
  const int Hkv = ks[0].shape(1);
  if (Hkv == 0 || q.shape(1) % Hkv != 0) return false;
  int S = 0;
  for (size_t i = 0; i < ks.size(); i++) {
    const mx::array &k = ks[i], &v = vs[i];
    if (k.dtype() != mx::float32 || v.dtype() != mx::float32 || k.ndim() != 4 || k.shape() != v.shape()) return false;
    if (k.shape(0) != q.shape(0) || k.shape(1) != Hkv || k.shape(3) != D) return false;
    S += k.shape(2);
  }
  return S > 0;
}

}  // namespace

bool attention_on_tiles(int rows_per_head, int head_dim) {
  return cpu::attention_tiles_take(rows_per_head, head_dim);
}

mx::array attention(const mx::array& q, const std::vector<mx::array>& ks, const std::vector<mx::array>& vs, float scale, const std::string& mask_mode, const std::optional<mx::array>& mask) {
  auto s = mx::default_stream(mx::default_device());
  // Anything else keeps MLX's op over the joined segments, which also gives MLX's own errors
  // for inconsistent inputs.
  if (!takes(s, q, ks, vs, mask_mode, mask)) {
    auto join = [](const std::vector<mx::array>& xs) { return xs.size() == 1 ? xs[0] : mx::concatenate(xs, 2); };
    return mx::fast::scaled_dot_product_attention(q, join(ks), join(vs), scale, mask_mode, mask);
  }
  int S = 0;
  for (auto& k : ks) S += k.shape(2);
  std::vector<mx::array> inputs{q};
  inputs.insert(inputs.end(), ks.begin(), ks.end());
  inputs.insert(inputs.end(), vs.begin(), vs.end());
  if (mask) inputs.push_back(mx::broadcast_to(*mask, {q.shape(0), q.shape(1), q.shape(2), S}));
  auto primitive = std::make_shared<AttentionCpu>(s, scale, mask_mode == "causal", static_cast<int>(ks.size()));
  return mx::array(q.shape(), mx::float32, std::move(primitive), std::move(inputs));
}

}  // namespace semantic
