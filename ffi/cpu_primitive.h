// How the project's CPU primitives run their kernels: like MLX's own CPU primitives, eval_cpu only
// records the work; the stream's thread runs it once the inputs are computed.
#pragma once

#include <utility>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/array.h"
#include "mlx/backend/cpu/encoder.h"

namespace semantic::cpu {

/** Allocates `outputs` and runs fn(inputs, outputs) on `stream`'s thread (weak copies: no reference cycles). */
template <typename F>
void dispatch(mlx::core::Stream stream, const std::vector<mlx::core::array>& inputs, std::vector<mlx::core::array>& outputs, F&& fn) {
  namespace mx = mlx::core;
  auto& encoder = mx::cpu::get_command_encoder(stream);
  for (auto& a : inputs) encoder.set_input_array(a);
  std::vector<mx::array> in, out;
  for (auto& a : inputs) in.push_back(mx::array::unsafe_weak_copy(a));
  for (auto& o : outputs) {
    o.set_data(mx::allocator::malloc(o.nbytes()));
    encoder.set_output_array(o);
    out.push_back(mx::array::unsafe_weak_copy(o));
  }
  encoder.dispatch([in = std::move(in), out = std::move(out), fn = std::forward<F>(fn)]() mutable { fn(in, out); });
}

/** The same for a single output: fn(inputs, out). */
template <typename F>
void dispatch(mlx::core::Stream stream, const std::vector<mlx::core::array>& inputs, mlx::core::array& out, F&& fn) {
  std::vector<mlx::core::array> outputs{out};  // a handle on the same array
  dispatch(stream, inputs, outputs, [fn = std::forward<F>(fn)](std::vector<mlx::core::array>& in, std::vector<mlx::core::array>& o) mutable { fn(in, o[0]); });
}

}  // namespace semantic::cpu
