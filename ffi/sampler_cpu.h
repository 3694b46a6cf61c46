// The sampler chain (shared/engine/sampling/chain.ts) as one CPU primitive over one row of
// logits. Composed from MLX ops it took ~60 of them per token at ~15 microseconds each on this
// CPU backend, whatever the vocabulary; this is one op, with the draw made from a host uniform.
#pragma once

#include <optional>
#include <vector>

#include "mlx/mlx.h"

namespace semantic {

/** A request's sampling parameters for one token; every stage off is temperature 1 and the rest neutral. */
struct SampleParams {
  float temperature = 1;  // <= 0: greedy
  int top_k = 0;  // 0 or >= V: off
  float top_p = 1, min_p = 0, typical_p = 1;
  float repeat = 1, frequency = 0, presence = 0;
  int penalty_last_n = 0;  // 0: no penalties and no window output
  float dynatemp_range = 0, dynatemp_exponent = 1;
  int mirostat = 0;  // 2: mirostat v2 (takes mu, outputs the new mu)
  float mirostat_tau = 5, mirostat_eta = 0.1f;
  double u = 0;  // the draw's uniform in [0, 1)
  bool probabilities = false;  // also output the final distribution (1, V), for tests
  bool operator==(const SampleParams&) const = default;
};

/**
 * One token from logits (1, V), lazily, on the CPU stream whatever the default device. Optional
 * inputs: the constraint's mask (1, V) bool, logit bias ids (m,) int32 and values (m,) float32,
 * the penalty window (n,) int32, mirostat's mu (1, 1) float32. Outputs, in this order: the id
 * (1,) int32; the new mu (1, 1) when mirostat is 2; the window slid by the id, at most
 * penalty_last_n long, when penalty_last_n > 0; the probabilities (1, V) when asked.
 */
std::vector<mlx::core::array> sample(
    const mlx::core::array& logits,
    const std::optional<mlx::core::array>& mask,
    const std::optional<mlx::core::array>& bias_ids,
    const std::optional<mlx::core::array>& bias_values,
    const std::optional<mlx::core::array>& history,
    const std::optional<mlx::core::array>& mu,
    const SampleParams& params);

}  // namespace semantic
