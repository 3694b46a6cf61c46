// The gate of a gated MLP, act(gate) * up, on vectors: shared by its own kernel (glu_cpu.cpp)
// and the quantized matmul that computes gate and up together (qmm_amx.cpp).
#pragma once

#include <cmath>

#include "cpu_simd.h"

namespace semantic {

enum class GateActivation {
  silu,  // x * sigmoid(x)
  gelu_tanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) = x * sigmoid(2 sqrt(2/pi) (x + 0.044715 x^3))
};

namespace cpu {

// sigmoid(x) from e = exp(-|x|), which never overflows: 1 / (1 + e) for x >= 0, e / (1 + e) below.
inline vf sigmoid(vf x) {
  const vi negative = x < splat(0.0f);
  const vf a = select(negative, -x, x);  // |x|
  // exp_nonpositive stops at exp(-87); past it the sigmoid of a negative x is 0, not 1.6e-38.
  const vf e = (vf)((vi)exp_nonpositive(-a) & (a < splat(87.0f)));
  const vf num = select(negative, e, splat(1.0f));
  return num / (e + 1.0f);
}

// Both activations are g * sigmoid(z): z = g for SiLU, 2 sqrt(2/pi) (g + 0.044715 g^3) for GELU.
template <GateActivation A>
inline vf gated(vf g, vf u) {
  if constexpr (A == GateActivation::silu) return g * sigmoid(g) * u;
  const float k = static_cast<float>(2 * std::sqrt(2 / M_PI));
  return g * sigmoid(g * (k + (k * 0.044715f) * g * g)) * u;
}

}  // namespace cpu
}  // namespace semantic
