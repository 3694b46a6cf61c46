// How the project's CPU primitives run their kernels: like MLX's own CPU primitives, eval_cpu only
// records the work; the stream's thread runs it once the inputs are computed.
#pragma once

#include <utility>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/array.h"
#include "mlx/backend/cpu/encoder.h"

namespace semantic::cpu {

/** Allocates `out` and runs fn(inputs, out) on `stream`'s thread (weak copies: no reference cycles). */
template <typename F>
void dispatch(mlx::core::Stream stream, const std::vector<mlx::core::array>& inputs, mlx::core::array& out, F&& fn) {
  namespace mx = mlx::core;
  out.set_data(mx::allocator::malloc(out.nbytes()));
  auto& encoder = mx::cpu::get_command_encoder(stream);
  for (auto& a : inputs) encoder.set_input_array(a);
  encoder.set_output_array(out);
  std::vector<mx::array> weak;
  for (auto& a : inputs) weak.push_back(mx::array::unsafe_weak_copy(a));
  encoder.dispatch([in = std::move(weak), out = mx::array::unsafe_weak_copy(out), fn = std::forward<F>(fn)]() mutable { fn(in, out); });
}

}  // namespace semantic::cpu
