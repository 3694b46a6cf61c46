// The CPU kernel behind semantic::attention (see attention_cpu.h); with many query rows on a CPU
// with AMX, attention_amx.cpp instead. The work items and the online softmax are in
// attention_rows.h.
//
// Rows go in groups of RB whose scores and outputs stay in registers, so each K and V vector
// loaded serves the whole group. With many rows, each tile of K is transposed once into a small
// buffer, so a row's TK scores come out as whole vectors.

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

// Below this many multiply-adds a call runs on the calling thread alone (decode over a short
// context): waking the pool costs more than it saves.
constexpr double SERIAL_WORK = 1 << 18;

void run(Problem& p, int D) {
  const int rows = p.L * (p.Hq / p.Hkv);
  if (attention_tiles_take(rows, D)) return attention_tiles(p, D);
  p.rowsPerItem = ROWS_PER_ITEM;
  p.itemsPerHead = (rows + ROWS_PER_ITEM - 1) / ROWS_PER_ITEM;
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
