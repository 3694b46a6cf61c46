// The gate of a gated MLP on the CPU as one MLX primitive: act(gate) * up, for SwiGLU (SiLU:
// Llama, Qwen) and GeGLU (tanh-approximated GELU: Gemma). MLX's CPU backend computes sigmoid and
// tanh with a scalar exp, ~2.3 ms for one layer of a 120-token prefill on SmolLM2 (a quarter of
// the layer); this is one vectorized pass.
#pragma once

#include "gated.h"
#include "mlx/mlx.h"

namespace semantic {

/**
 * act(gate) * up, elementwise, for gate and up of one shape. The CPU kernel takes float32;
 * anything else (other dtypes, other devices, broadcasting) is MLX's own ops.
 */
mlx::core::array gated_activation(const mlx::core::array& gate, const mlx::core::array& up, GateActivation act);

namespace cpu {

/** out[i] = act(gate[i]) * up[i] for n values, over the thread pool; out may be gate. */
void gate_values(const float* gate, const float* up, float* out, int64_t n, GateActivation act);

}  // namespace cpu

}  // namespace semantic
