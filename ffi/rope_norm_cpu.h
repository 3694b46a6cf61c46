// RoPE and RMS norm on the CPU as MLX primitives. MLX's CPU backend composes both from generic
// ops (a dozen for RoPE, with the angles recomputed per call): ~160 and ~60 microseconds a call
// here whatever the size, paid twice per layer at every decode step. These are one pass each.
#pragma once

#include <optional>
#include <variant>

#include "mlx/mlx.h"

namespace semantic {

/**
 * mx::fast::rope's result: rotary embedding over the first `dims` of the last axis of x
 * (B, H, L, D), position (offset + l) * scale, frequencies base^(-2i/dims) or 1 / freqs[i];
 * `traditional` rotates pairs (2i, 2i+1), else halves (i, i + dims/2). `offset` is one position
 * or int32 (B,) per sequence. The CPU kernel takes float32 4-D x; anything else is MLX's.
 */
mlx::core::array rope(
    const mlx::core::array& x,
    int dims,
    bool traditional,
    std::optional<float> base,
    float scale,
    const std::variant<int, mlx::core::array>& offset,
    const std::optional<mlx::core::array>& freqs);

/** mx::fast::rms_norm's result: x * rsqrt(mean(x^2) + eps) * weight over the last axis (float32 on the CPU kernel). */
mlx::core::array rms_norm(const mlx::core::array& x, const std::optional<mlx::core::array>& weight, float eps);

}  // namespace semantic
