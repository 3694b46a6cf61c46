// How the project's CPU primitives run their kernels: like MLX's own CPU primitives, eval_cpu only
// records the work; the stream's thread runs it once the inputs are computed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/array.h"
#include "mlx/backend/cpu/encoder.h"

namespace semantic::cpu {

/**
 * Gives `out` fresh row-contiguous memory that starts on a cache line. MLX's CPU allocator returns
 * malloc's alignment (8 bytes past a 64-byte line here), so every 64-byte row store of a kernel
 * would straddle two lines, one of them shared with the rows the other thread writes.
 */
inline void set_line_aligned_data(mlx::core::array& out) {
  namespace mx = mlx::core;
  auto data = mx::allocator::malloc(out.nbytes() + 64);
  const auto at = reinterpret_cast<uintptr_t>(data.buffer().raw_ptr());
  const int64_t offset = static_cast<int64_t>((64 - at % 64) % 64);
  mx::Strides strides(out.ndim(), 1);
  for (int i = out.ndim() - 2; i >= 0; i--) strides[i] = strides[i + 1] * out.shape(i + 1);
  const bool column = std::count_if(out.shape().begin(), out.shape().end(), [](int d) { return d > 1; }) <= 1;
  out.set_data(std::move(data), out.size(), std::move(strides), {true, true, column}, offset);
}

/** Allocates `outputs` and runs fn(inputs, outputs) on `stream`'s thread (weak copies: no reference cycles). */
template <typename F>
void dispatch(mlx::core::Stream stream, const std::vector<mlx::core::array>& inputs, std::vector<mlx::core::array>& outputs, F&& fn) {
  namespace mx = mlx::core;
  auto& encoder = mx::cpu::get_command_encoder(stream);
  for (auto& a : inputs) encoder.set_input_array(a);
  std::vector<mx::array> in, out;
  for (auto& a : inputs) in.push_back(mx::array::unsafe_weak_copy(a));
  for (auto& o : outputs) {
    set_line_aligned_data(o);
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
