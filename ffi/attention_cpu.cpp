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

// The keys and values as segments along the sequence (a request's cache blocks, then its own
// tail): segment i holds positions start[i] .. start[i + 1] - 1.
struct Segments {
  std::vector<View> k, v;
  std::vector<int> start;
};

struct Problem {
  View q;
  Segments kv;
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
  for (int g = 0; g < TK / W; g++) mv = vmax(loadv(s + g * W), mv);
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
    for (int j = 0; j < nk; j++) {
      while (j0 + j >= p.kv.start[seg + 1]) seg++;
      const View &k = p.kv.k[seg], &v = p.kv.v[seg];
      const int64_t at = j0 + j - p.kv.start[seg];
      krow[j] = k.p + b * k.s0 + kvh * k.s1 + at * k.s2;
      vrow[j] = v.p + b * v.s0 + kvh * v.s1 + at * v.s2;
    }
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
                q.shape(0), q.shape(1), in[1].shape(1), q.shape(2), 0, causal, scale, 0};
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
