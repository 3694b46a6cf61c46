// What the APIs report about the model's distribution at each step (OpenAI's logprobs and
// top_logprobs): the raw model's log-probabilities, before any sampler stage. Computed on MLX;
// only the chosen token's value and the k best cross to JavaScript.
import { argpartition, astype, Dtype, expandDims, logsumexp, type MxArray, negative, slice, squeeze, subtract, takeAlongAxis } from "../../mlx/index.ts";

/** The most alternatives a request may ask for (OpenAI's top_logprobs bound). */
export const MAX_TOP_LOGPROBS = 20;

/** log-probability of `ids` (B,) under `logits` (B, V): logits[id] - logsumexp(logits), lazily. */
export function logprobOf(logits: MxArray, ids: MxArray): MxArray {
  const x = astype(logits, Dtype.float32);
  return subtract(squeeze(takeAlongAxis(x, expandDims(ids, -1), -1), -1), logsumexp(x, -1));
}

/**
 * The `k` most likely tokens of each row of `logits` (B, V), in no particular order: ids (B, k)
 * int32 and their log-probabilities (B, k), lazily.
 * @example const { ids, logprobs } = topLogprobs(logits, 5);
 */
export function topLogprobs(logits: MxArray, k: number): { ids: MxArray; logprobs: MxArray } {
  const V = logits.shape[logits.ndim - 1];
  const x = astype(logits, Dtype.float32);
  const lp = subtract(x, logsumexp(x, -1, true));
  const B = lp.shape[0];
  const ids = astype(k >= V ? argpartition(negative(lp), V - 1, -1) : slice(argpartition(negative(lp), k - 1, -1), [0, 0], [B, k]), Dtype.int32);
  return { ids, logprobs: takeAlongAxis(lp, ids, -1) };
}
