// Attention on the CPU as one MLX primitive. MLX's CPU backend computes scaled_dot_product_attention
// unfused (scores, mask, softmax, product), with a single-threaded scalar exp that takes most of
// the time once the context is long. This kernel streams the keys in tiles with an online softmax
// (no score matrix), a vectorized exp and the shared thread pool.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "mlx/mlx.h"

namespace semantic {

/**
 * softmax(q k^T * scale, masked) v for q (B, Hq, L, D) over keys and values given as segments
 * along the sequence, ks[i] and vs[i] (B, Hkv, S_i, D), read where they are (a request's cache
 * blocks, then its own tail: no gather); S = sum S_i. Lazily, in the graph; grouped-query heads
 * (Hq a multiple of Hkv) read their key/value head. mask_mode "causal" lets query i see keys up
 * to S - L + i; a boolean `mask` broadcastable to (B, Hq, L, S) marks the keys each query sees.
 * Runs the CPU kernel when the default stream is the CPU's, everything is float32 and D is 64,
 * 128 or 256; anything else is mx::fast::scaled_dot_product_attention over the joined segments.
 */
mlx::core::array attention(
    const mlx::core::array& q,
    const std::vector<mlx::core::array>& ks,
    const std::vector<mlx::core::array>& vs,
    float scale,
    const std::string& mask_mode,
    const std::optional<mlx::core::array>& mask);

/**
 * Whether attention runs on AMX tiles (attention_amx.cpp) for this many query rows per key/value
 * head (L x Hq / Hkv) and head size: on a CPU with AMX, from 16 rows.
 */
bool attention_on_tiles(int rows_per_head, int head_dim);

}  // namespace semantic
