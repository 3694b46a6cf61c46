// The CPU kernel behind semantic::gated_activation (see glu_cpu.h).

#include "glu_cpu.h"

#include <cmath>
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

template <GateActivation A>
void run_chunks(void* ctx, int begin, int end) {
  const auto& p = *static_cast<const Problem*>(ctx);
  const int64_t from = static_cast<int64_t>(begin) * CHUNK, to = std::min(p.n, static_cast<int64_t>(end) * CHUNK);
  int64_t i = from;
  for (; i + W <= to; i += W) storev(p.out + i, gated<A>(loadv(p.gate + i), loadv(p.up + i)));
  if (i < to) {
    alignas(64) float g[W] = {}, u[W] = {}, o[W];
    std::copy(p.gate + i, p.gate + to, g);
    std::copy(p.up + i, p.up + to, u);
    storev(o, gated<A>(loadv(g), loadv(u)));
    std::copy(o, o + (to - i), p.out + i);
  }
}

}  // namespace

void cpu::gate_values(const float* gate, const float* up, float* out, int64_t n, GateActivation act) {
  Problem p{gate, up, out, n};
  const int chunks = static_cast<int>((n + CHUNK - 1) / CHUNK);
  parallel_for(act == GateActivation::silu ? run_chunks<GateActivation::silu> : run_chunks<GateActivation::gelu_tanh>, &p, chunks, 1);
}

namespace {

class GatedCpu : public mx::UnaryPrimitive {
 public:
  GatedCpu(mx::Stream s, GateActivation act) : mx::UnaryPrimitive(s), act_(act) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    dispatch(stream(), inputs, out, [act = act_](std::vector<mx::array>& in, mx::array& out) {
      std::vector<float> gs, us;
      gate_values(row_contiguous(in[0], gs), row_contiguous(in[1], us), out.data<float>(), static_cast<int64_t>(out.size()), act);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("[semantic gated activation] has no GPU kernel (use MLX's ops)");
  }

  const char* name() const override { return "SemanticGatedActivation"; }

  bool is_equivalent(const mx::Primitive& other) const override { return act_ == static_cast<const GatedCpu&>(other).act_; }

  std::vector<mx::Shape> output_shapes(const std::vector<mx::array>& inputs) override { return {inputs[0].shape()}; }

 private:
  GateActivation act_;
};

// MLX's ops for what the kernel does not take.
mx::array gated_mlx(const mx::array& g, const mx::array& up, GateActivation act) {
  if (act == GateActivation::silu) return mx::multiply(mx::multiply(g, mx::sigmoid(g)), up);
  const auto c = [&](double v) { return mx::array(static_cast<float>(v), g.dtype()); };  // scalars in the gate's dtype
  const auto inner = mx::multiply(mx::add(g, mx::multiply(mx::multiply(mx::multiply(g, g), g), c(0.044715))), c(std::sqrt(2 / M_PI)));
  return mx::multiply(mx::multiply(mx::multiply(g, c(0.5)), mx::add(mx::tanh(inner), c(1))), up);
}

}  // namespace

mx::array gated_activation(const mx::array& gate, const mx::array& up, GateActivation act) {
  auto s = mx::default_stream(mx::default_device());
  const bool ours = s.device.type == mx::Device::cpu && gate.dtype() == mx::float32 && up.dtype() == mx::float32 && gate.shape() == up.shape() && gate.size() > 0;
  if (!ours) return gated_mlx(gate, up, act);
  return mx::array(gate.shape(), mx::float32, std::make_shared<GatedCpu>(s, act), {gate, up});
}

}  // namespace semantic
