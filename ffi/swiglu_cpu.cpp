// The CPU kernel behind semantic::swiglu (see swiglu_cpu.h).

#include "swiglu_cpu.h"

#include <algorithm>
#include <cstdint>
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

// Elements per work item: big enough that waking the pool pays off.
constexpr int CHUNK = 1 << 14;

struct Problem {
  const float *gate, *up;
  float* out;
  int64_t n;
};

// sigmoid(g) from e = exp(-|g|), which never overflows: 1 / (1 + e) for g >= 0, e / (1 + e) below.
inline vf silu_times(vf g, vf u) {
  const vi negative = g < splat(0.0f);
  const vf a = (vf)((vi)g & ~negative) - (vf)((vi)g & negative);  // |g|
  // exp_nonpositive stops at exp(-87); past it sigmoid of a negative gate is 0 (g * 1.6e-38 is not).
  const vf e = (vf)((vi)exp_nonpositive(-a) & (a < splat(87.0f)));
  const vf num = (vf)(((vi)e & negative) | ((vi)splat(1.0f) & ~negative));
  return g * (num / (e + 1.0f)) * u;
}

void run_chunks(void* ctx, int begin, int end) {
  const auto& p = *static_cast<const Problem*>(ctx);
  const int64_t from = static_cast<int64_t>(begin) * CHUNK, to = std::min(p.n, static_cast<int64_t>(end) * CHUNK);
  int64_t i = from;
  for (; i + W <= to; i += W) storev(p.out + i, silu_times(loadv(p.gate + i), loadv(p.up + i)));
  if (i < to) {
    alignas(64) float g[W] = {}, u[W] = {}, o[W];
    std::copy(p.gate + i, p.gate + to, g);
    std::copy(p.up + i, p.up + to, u);
    storev(o, silu_times(loadv(g), loadv(u)));
    std::copy(o, o + (to - i), p.out + i);
  }
}

class SwigluCpu : public mx::UnaryPrimitive {
 public:
  explicit SwigluCpu(mx::Stream s) : mx::UnaryPrimitive(s) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [](std::vector<mx::array>& in, mx::array& out) {
      std::vector<float> gs, us;
      Problem p{row_contiguous(in[0], gs), row_contiguous(in[1], us), out.data<float>(), static_cast<int64_t>(out.size())};
      const int chunks = static_cast<int>((p.n + CHUNK - 1) / CHUNK);
      parallel_for(run_chunks, &p, chunks, 1);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic swiglu] has no GPU kernel (use MLX's ops)");
  }

  const char* name() const override { return "SemanticSwiglu"; }

  bool is_equivalent(const mx::Primitive&) const override { return true; }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override { return {inputs[0].shape()}; }
};

}  // namespace

mx::array swiglu(const mx::array& gate, const mx::array& up) {
  auto s = mx::default_stream(mx::default_device());
  const bool ours = s.device.type == mx::Device::cpu && gate.dtype() == mx::float32 && up.dtype() == mx::float32 && gate.shape() == up.shape() && gate.size() > 0;
  if (!ours) return mx::multiply(mx::multiply(gate, mx::sigmoid(gate)), up);
  return mx::array(gate.shape(), mx::float32, std::make_shared<SwigluCpu>(s), {gate, up});
}

}  // namespace semantic
