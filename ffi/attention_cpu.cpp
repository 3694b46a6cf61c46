// The CPU kernel behind semantic::attention (see attention_cpu.h).
//
// One work item is one key/value head of one sequence and a block of query rows that read it
// (the grouped query heads of a few positions). It walks the keys in tiles of TK fixed key
// indices; each row keeps a running maximum, sum and output (online softmax) and never
// materializes its scores. Rows go in groups of RB whose scores and outputs stay in registers, so
// each K and V vector loaded serves the whole group. With many rows, each tile of K is transposed
// once into a small buffer, so a row's TK scores come out as whole vectors.

#include "attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <vector>

#include "cpu_parallel.h"
#include "cpu_primitive.h"
#include "cpu_simd.h"
#include "mlx/primitives.h"

namespace mx = mlx::core;

namespace semantic {
namespace {

using namespace cpu;

constexpr int TK = 64;  // keys per tile
constexpr int ROWS_PER_ITEM = 64;  // query rows sharing one transposed tile
constexpr float NEG_INF = -std::numeric_limits<float>::infinity();

struct Problem {
  View q, k, v;
  const bool* mask;  // (B, Hq, L, S) through strides m0..m3 (broadcast dimensions have 0), or null
  int64_t m0, m1, m2, m3;
  float* out;  // (B, Hq, L, D), row-contiguous
  int B, Hq, Hkv, L, S;
  bool causal;
  float scale;
  int itemsPerHead;
};

// Rows per item up to which scores are dot products rather than a transposed tile.
constexpr int FEW_ROWS = 4;
// Query rows computed together from one tile: their scores (RB x TK / W vectors) and their
// outputs (RB x CB vectors of columns at a time) stay in registers, so each K and V vector loaded
// serves RB rows. AVX-512 has 32 vector registers; AVX2 and NEON's 8-float pairs have fewer.
constexpr int RB = W == 16 ? 4 : 2;
constexpr int CB = 4;
static_assert(ROWS_PER_ITEM % RB == 0);

// Masks the scores `s` (TK) of keys j0.. that `row` does not see, and folds them into the row's
// online softmax: s becomes the weights exp(s - m) (0 where unseen) and `alpha` the factor that
// rescales what the row summed so far.
template <typename Row>
void softmax_tile(Row& row, float* s, int j0, int nk, const Problem& p, float& alpha) {
  alpha = 1.0f;
  const int last = std::min(nk - 1, row.hi - j0);
  if (row.hi < j0 || row.lo >= j0 + TK) {
    std::fill(s, s + TK, 0.0f);
    return;
  }
  for (int j = last + 1; j < TK; j++) s[j] = NEG_INF;
  for (int j = 0; j < row.lo - j0; j++) s[j] = NEG_INF;
  if (row.mask)
    for (int j = std::max(0, row.lo - j0); j <= last; j++)
      if (!row.mask[(j0 + j) * p.m3]) s[j] = NEG_INF;
  vf mv = splat(NEG_INF);
  for (int g = 0; g < TK / W; g++) {
    const vf x = loadv(s + g * W);
    const vi gt = x > mv;
    mv = (vf)(((vi)x & gt) | ((vi)mv & ~gt));
  }
  const float tileMax = hmax(mv);
  if (tileMax == NEG_INF) {
    std::fill(s, s + TK, 0.0f);
    return;
  }
  const float m = std::max(row.m, tileMax);
  alpha = row.m == NEG_INF ? 0.0f : std::exp(row.m - m);
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

template <int D>
inline float dot(const float* a, const float* b) {
  vf acc = vf{};
  for (int d = 0; d < D; d += W) acc += loadv(a + d) * loadv(b + d);
  return hsum(acc);
}

template <int D>
struct Row {
  float q[D];
  float o[D];
  float m, l;
  int h, i, lo, hi;  // head, position, first and last key seen
  const bool* mask;  // this row's S mask entries (stride m3), or null
};

template <int D>
void run_item(const Problem& p, int item) {
  const int rep = p.Hq / p.Hkv, R = p.L * rep;
  const int b = item / (p.Hkv * p.itemsPerHead);
  const int kvh = (item / p.itemsPerHead) % p.Hkv;
  const int r0 = (item % p.itemsPerHead) * ROWS_PER_ITEM, r1 = std::min(R, r0 + ROWS_PER_ITEM);
  Row<D> rows[ROWS_PER_ITEM];
  const int n = r1 - r0;
  int lo = p.S, hi = -1;
  for (int r = 0; r < n; r++) {
    Row<D>& row = rows[r];
    row.i = (r0 + r) / rep;
    row.h = kvh * rep + (r0 + r) % rep;
    const float* q = p.q.p + b * p.q.s0 + row.h * p.q.s1 + row.i * p.q.s2;
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
      row.mask = p.mask + b * p.m0 + row.h * p.m1 + row.i * p.m2;
      row.lo = p.S, row.hi = -1;
      for (int j = 0; j < p.S; j++)
        if (row.mask[j * p.m3]) row.lo = std::min(row.lo, j), row.hi = j;
    }
    lo = std::min(lo, row.lo), hi = std::max(hi, row.hi);
  }
  // The last group's missing rows see no key and multiply zeros; their results are never read.
  for (int r = n; r < (n + RB - 1) / RB * RB; r++) {
    Row<D>& row = rows[r];
    for (int d = 0; d < D; d += W) storev(row.q + d, vf{}), storev(row.o + d, vf{});
    row.m = NEG_INF, row.l = 0, row.mask = nullptr, row.lo = p.S, row.hi = -1;
  }
  const float* K = p.k.p + b * p.k.s0 + kvh * p.k.s1;
  const float* V = p.v.p + b * p.v.s0 + kvh * p.v.s1;
  alignas(64) float kt[D * TK];
  alignas(64) float s[RB][TK];
  float alpha[RB];
  // Rows go RB at a time. Few rows (decode) compute each score as a dot product; from a few rows
  // on, the tile is transposed once and the group's scores come out of registers. Either way a
  // score sums over d in the same order.
  const bool transpose = n > FEW_ROWS;
  for (int j0 = lo >= 0 ? lo / TK * TK : 0; j0 <= hi; j0 += TK) {
    const int nk = std::min(TK, p.S - j0);
    if (transpose) {
      for (int j = 0; j < nk; j++) {
        const float* key = K + (j0 + j) * p.k.s2;
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
        if (row.hi >= j0 && row.lo < j0 + TK) last = std::max(last, std::min(nk - 1, row.hi - j0));
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
          for (int j = 0; j < nk; j++) s[r][j] = dot<D>(group[r].q, K + (j0 + j) * p.k.s2);
      }
      for (int r = 0; r < RB; r++) softmax_tile(group[r], s[r], j0, nk, p, alpha[r]);
      // o = o * alpha + sum_j e_j V_j, CB vectors of columns at a time for every row of the group.
      for (int c0 = 0; c0 < D / W; c0 += CB) {
        vf o[RB][CB];
        for (int r = 0; r < RB; r++)
          for (int c = 0; c < CB; c++) o[r][c] = loadv(group[r].o + (c0 + c) * W) * alpha[r];
        for (int j = 0; j <= last; j++) {
          const float* val = V + (j0 + j) * p.v.s2 + c0 * W;
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
  for (int r = 0; r < n; r++) {
    const Row<D>& row = rows[r];
    float* out = p.out + ((static_cast<int64_t>(b) * p.Hq + row.h) * p.L + row.i) * D;
    // A query that sees no key gets zeros (MLX's unfused path would give NaN).
    const vf inv = splat(row.l > 0 ? 1.0f / row.l : 0.0f);
    for (int d = 0; d < D; d += W) storev(out + d, loadv(row.o + d) * inv);
  }
}

template <int D>
void run_items(void* ctx, int begin, int end) {
  for (int item = begin; item < end; item++) run_item<D>(*static_cast<const Problem*>(ctx), item);
}

// Below this many multiply-adds a call runs on the calling thread alone (decode over a short
// context): waking the pool costs more than it saves.
constexpr double SERIAL_WORK = 1 << 18;

void run(const Problem& p, int D) {
  auto fn = D == 64 ? run_items<64> : D == 128 ? run_items<128> : run_items<256>;
  const int items = p.B * p.Hkv * p.itemsPerHead;
  const double work = 2.0 * p.B * p.Hq * p.L * static_cast<double>(p.S) * D;
  if (work < SERIAL_WORK) return fn(const_cast<Problem*>(&p), 0, items);
  parallel_for(fn, const_cast<Problem*>(&p), items, 1);
}

// Inputs q, k, v and, with a mask, the mask broadcast to (B, Hq, L, S).
class AttentionCpu : public mx::UnaryPrimitive {
 public:
  AttentionCpu(mx::Stream stream, float scale, bool causal) : mx::UnaryPrimitive(stream), scale_(scale), causal_(causal) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [scale = scale_, causal = causal_](std::vector<mx::array>& in, mx::array& out) {
      std::vector<float> qs, ks, vs;
      const mx::array &q = in[0], &k = in[1];
      Problem p{view4(q, qs), view4(k, ks), view4(in[2], vs), nullptr, 0, 0, 0, 0, out.data<float>(),
                q.shape(0), q.shape(1), k.shape(1), q.shape(2), k.shape(2), causal, scale, 0};
      if (in.size() == 4) {
        const auto& m = in[3];
        p.mask = m.data<bool>();
        p.m0 = m.strides()[0], p.m1 = m.strides()[1], p.m2 = m.strides()[2], p.m3 = m.strides()[3];
      }
      p.itemsPerHead = (p.L * (p.Hq / p.Hkv) + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM;
      run(p, q.shape(3));
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic attention] has no GPU kernel (use MLX's fast attention)");
  }

  const char* name() const override { return "SemanticAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const AttentionCpu&>(other);
    return scale_ == o.scale_ && causal_ == o.causal_;
  }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override { return {inputs[0].shape()}; }

 private:
  float scale_;
  bool causal_;
};

bool takes(const mx::Stream& s, const mx::array& q, const mx::array& k, const mx::array& v, const std::string& mode, const std::optional<mx::array>& mask) {
  if (s.device.type != mx::Device::cpu) return false;
  if (mode != "" && mode != "causal") return false;
  if (mask && (mode == "causal" || mask->dtype() != mx::bool_ || mask->ndim() > 4)) return false;
  for (auto* a : {&q, &k, &v})
    if (a->dtype() != mx::float32 || a->ndim() != 4) return false;
  const int D = q.shape(3);
  if (D != 64 && D != 128 && D != 256) return false;
  if (k.shape() != v.shape() || k.shape(3) != D || k.shape(0) != q.shape(0)) return false;
  return k.shape(1) > 0 && q.shape(1) % k.shape(1) == 0 && q.shape(2) > 0 && k.shape(2) > 0;
}

}  // namespace

mx::array attention(const mx::array& q, const mx::array& k, const mx::array& v, float scale, const std::string& mask_mode, const std::optional<mx::array>& mask) {
  auto s = mx::default_stream(mx::default_device());
  // Anything else keeps MLX's op, which also gives MLX's own errors for inconsistent inputs.
  if (!takes(s, q, k, v, mask_mode, mask)) return mx::fast::scaled_dot_product_attention(q, k, v, scale, mask_mode, mask);
  std::vector<mx::array> inputs{q, k, v};
  if (mask) inputs.push_back(mx::broadcast_to(*mask, {q.shape(0), q.shape(1), q.shape(2), k.shape(2)}));
  return mx::array(q.shape(), mx::float32, std::make_shared<AttentionCpu>(s, scale, mask_mode == "causal"), std::move(inputs));
}

}  // namespace semantic
