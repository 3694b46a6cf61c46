// SwiGLU's gate on the CPU as one MLX primitive: silu(gate) * up. MLX's CPU backend computes
// sigmoid with a scalar exp, ~2.3 ms for one layer of a 120-token prefill on SmolLM2 (a quarter
// of the layer); this is one vectorized pass.
#pragma once

#include "mlx/mlx.h"

namespace semantic {

/**
 * gate * sigmoid(gate) * up, elementwise, for gate and up of one shape. The CPU kernel takes
 * float32; anything else (other dtypes, other devices, broadcasting) is MLX's own ops.
 */
mlx::core::array swiglu(const mlx::core::array& gate, const mlx::core::array& up);

}  // namespace semantic
