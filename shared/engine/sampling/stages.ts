// The sampler chain's stages as pure functions over logits (B, n) on MLX, each as llama.cpp's
// src/llama-sampling.cpp defines it. A stage removes a token by setting its logit to -inf, so
// probabilities are always renormalized over what is left. Top-k compacts each row to its k
// best columns, most likely first (and says where they came from), so the stages after it work
// on k values instead of the vocabulary. MLX on a CPU pays ~10-25 µs per op whatever its size:
// the stages are written for few ops, not for few flops.
import {
  abs, add, argmax, argpartition, argsort, broadcastTo, categorical, concatenate, cumsum, divide, Dtype, equal, exp, full,
  greater, greaterEqual, less, lessEqual, log, logicalOr, logsumexp, max, maximum, multiply, type MxArray, negative, power,
  putAlongAxis, reshape, slice, subtract, sum, take, takeAlongAxis, where,
} from "../../mlx/index.ts";

const NEG_INF = -Infinity;
const LN2 = Math.LN2;

/** log p over the last axis (-inf for removed tokens). */
export function logProbs(x: MxArray): MxArray {
  return subtract(x, logsumexp(x, -1, true));
}

/** sum p ln p (B, 1), i.e. minus the entropy; removed tokens (p = 0, ln p = -inf) add nothing. */
function sumPLogP(logp: MxArray, probs: MxArray): MxArray {
  return sum(multiply(probs, maximum(logp, -3.0e38)), -1, true);
}

/** Removes the tokens marked in `dropSorted` (B, n), which lists them in the order `order` (B, n). */
function dropInOrder(x: MxArray, order: MxArray, dropSorted: MxArray): MxArray {
  const drop = putAlongAxis(full(x.shape, 0, Dtype.bool), order, dropSorted, -1);
  return where(drop, NEG_INF, x);
}

export type Penalties = { repeat: number; frequency: number; presence: number };

export type Adjustments = {
  /** logit_bias: token ids (m,) int32, no repeats, and the bias of each (m,) float32. */
  bias?: { ids: MxArray; values: MxArray } | null;
  /** The recent tokens (n,) int32 the penalties count. */
  history?: MxArray | null;
  penalties?: Penalties;
};

/**
 * Logit bias, then repetition / frequency / presence penalties (llama.cpp's order), gathered and
 * written back in one scatter. For a token seen c > 0 times in `history`: a logit <= 0 is
 * multiplied by `repeat`, a positive one divided by it, then c * frequency + presence is
 * subtracted. Counting is over the history (n x n), never over the vocabulary.
 * @example adjust(x, { history: array([5, 9, 5], [3], Dtype.int32), penalties: { repeat: 1.1, frequency: 0.5, presence: 0 } })
 */
export function adjust(x: MxArray, a: Adjustments): MxArray {
  const bias = a.bias ?? null;
  const history = a.penalties ? (a.history ?? null) : null;
  if (!bias && !history) return x;
  const ids = bias && history ? concatenate([bias.ids, history], 0) : (bias?.ids ?? history)!;
  const m = ids.shape[0];
  let v = take(x, ids, 1); // (B, m)
  if (bias) v = add(v, history ? sum(multiply(equal(reshape(ids, [m, 1]), reshape(bias.ids, [1, -1])), bias.values), 1) : bias.values);
  if (history) {
    const p = a.penalties!;
    const counts = sum(equal(reshape(ids, [m, 1]), reshape(history, [1, -1])), 1); // (m,)
    let penalized = p.repeat === 1 ? v : multiply(v, where(lessEqual(v, 0), p.repeat, 1 / p.repeat));
    if (p.frequency !== 0 || p.presence !== 0) penalized = subtract(penalized, add(multiply(counts, p.frequency), p.presence));
    // Bias-only ids (count 0) keep their biased value.
    v = bias ? where(greater(counts, 0), penalized, v) : penalized;
  }
  // A token listed twice is written twice, with the same value.
  const at = reshape(ids, [1, m]);
  return putAlongAxis(x, x.shape[0] === 1 ? at : broadcastTo(at, [x.shape[0], m]), v, -1);
}

/** logit_bias alone: x[:, ids[j]] += values[j]. */
export function logitBias(x: MxArray, ids: MxArray, values: MxArray): MxArray {
  return adjust(x, { bias: { ids, values } });
}

/** The penalties alone over the recent tokens `history` (n,) int32. */
export function penalize(x: MxArray, history: MxArray, penalties: Penalties): MxArray {
  return adjust(x, { history, penalties });
}

/**
 * Top-k: the k largest logits of each row, most likely first (B, k), and their columns in `x`
 * (B, k) uint32. Ties at the k-th value keep exactly k, as llama.cpp's partial sort does.
 */
export function topK(x: MxArray, k: number): { logits: MxArray; indices: MxArray } {
  const [B, n] = x.shape;
  const best = slice(argpartition(x, n - k, -1), [0, n - k], [B, n]); // the k largest, unordered
  const values = takeAlongAxis(x, best, -1);
  const order = argsort(negative(values), -1);
  return { logits: takeAlongAxis(values, order, -1), indices: takeAlongAxis(best, order, -1) };
}

/** Keeps only the largest logit of each row (llama.cpp's temperature 0). */
export function keepMax(x: MxArray): MxArray {
  return where(less(x, max(x, -1, true)), NEG_INF, x);
}

/**
 * Top-p (nucleus): in order of probability, keeps tokens up to and including the first at which
 * the running sum reaches p (`>=`); the most likely token always stays. `sorted` says each row is
 * already most likely first (as top-k leaves it), which saves the sort.
 */
export function topP(x: MxArray, p: number, sorted = false): MxArray {
  if (p >= 1) return x;
  if (p <= 0) return keepMax(x);
  if (sorted) return where(greaterEqual(cumsum(exp(logProbs(x)), -1, false, false), p), NEG_INF, x);
  const order = argsort(negative(x), -1);
  const before = cumsum(exp(logProbs(takeAlongAxis(x, order, -1))), -1, false, false); // mass strictly before each token
  return dropInOrder(x, order, greaterEqual(before, p));
}

/** Min-p: keeps tokens with p >= min_p * p_max, i.e. logit >= max logit + ln(min_p). */
export function minP(x: MxArray, p: number): MxArray {
  if (p <= 0) return x;
  return where(less(x, add(max(x, -1, true), Math.log(p))), NEG_INF, x);
}

/**
 * Locally typical sampling: orders tokens by |-ln p - H| (H the entropy) and keeps them up to
 * and including the first at which the running sum exceeds p (strictly `>`, as llama.cpp).
 */
export function typicalP(x: MxArray, p: number): MxArray {
  if (p >= 1) return x;
  const logp = logProbs(x);
  const probs = exp(logp);
  const order = argsort(abs(subtract(logp, sumPLogP(logp, probs))), -1); // |-ln p - H| = |ln p + sum p ln p|; removed tokens last
  const before = cumsum(takeAlongAxis(probs, order, -1), -1, false, false);
  return dropInOrder(x, order, greater(before, p));
}

/** Divides logits by t > 0 (t <= 0 keeps only the maximum, as llama.cpp's temperature sampler). */
export function temperature(x: MxArray, t: number): MxArray {
  if (t <= 0) return keepMax(x);
  return t === 1 ? x : divide(x, t);
}

/**
 * Dynamic temperature (llama.cpp's temp-ext): with H the entropy of the remaining candidates
 * and Hmax = ln(their count), T = lo + (hi - lo) * (H / Hmax)^exponent with lo = max(0, t - range)
 * and hi = t + range. A single candidate is left as it is; T = 0 keeps only the maximum.
 */
export function dynamicTemperature(x: MxArray, t: number, range: number, exponent: number): MxArray {
  if (range <= 0) return temperature(x, t);
  const lo = Math.max(0, t - range);
  const hi = t + range;
  const candidates = sum(greater(x, NEG_INF), -1, true);
  const logp = logProbs(x);
  const normalized = divide(sumPLogP(logp, exp(logp)), negative(log(candidates))); // H / ln(n)
  const dynT = add(multiply(power(normalized, exponent), hi - lo), lo);
  const scaled = lo > 0 ? divide(x, dynT) : where(greater(dynT, 0), divide(x, dynT), keepMax(x));
  return where(greater(candidates, 1), scaled, x);
}

/**
 * Mirostat v2 truncation: keeps tokens whose surprise -log2 p is at most mu (the most likely
 * token always). `mu` is (B, 1).
 */
export function mirostatTruncate(x: MxArray, mu: MxArray): MxArray {
  // -log2 p <= mu  <=>  ln p >= -mu ln 2
  const keepIt = logicalOr(greaterEqual(logProbs(x), multiply(mu, -LN2)), greaterEqual(x, max(x, -1, true)));
  return where(keepIt, x, NEG_INF);
}

/**
 * Mirostat v2's update after drawing column `ids` (B,) from the truncated logits: the observed
 * surprise s = -log2 p(id) under the renormalized truncated distribution; mu' = mu - eta (s - tau).
 */
export function mirostatUpdate(truncated: MxArray, ids: MxArray, mu: MxArray, tau: number, eta: number): MxArray {
  const picked = takeAlongAxis(truncated, reshape(ids, [truncated.shape[0], 1]), -1);
  const surprise = divide(subtract(logsumexp(truncated, -1, true), picked), LN2);
  return subtract(mu, multiply(subtract(surprise, tau), eta));
}

/** A seeded draw from softmax(x) for each row: (B,) uint32 columns. */
export function draw(x: MxArray, key: MxArray): MxArray {
  return categorical(x, key, -1);
}

/** The most likely column of each row: (B,) uint32. */
export function greedy(x: MxArray): MxArray {
  return argmax(x, -1);
}
