// Token selection on MLX arrays: greedy, or seeded temperature / top-k / top-p sampling.
// The vocabulary never crosses into JavaScript; only the chosen id does.
import {
  argmax, argsort, astype, categorical, cumsum, divide, Dtype, expandDims, full, greaterEqual, keep, less,
  logsumexp, min, type MxArray, negative, putAlongAxis, randomKey, randomSplit, reshape, slice, softmax,
  squeeze, subtract, takeAlongAxis, topk, where,
} from "../mlx/index.ts";

export type SamplingParams = {
  /** 0 means greedy. */
  temperature: number;
  /** 0 disables. */
  topK: number;
  /** 1 disables. */
  topP: number;
  seed?: number;
};

export const GREEDY: SamplingParams = { temperature: 0, topK: 0, topP: 1 };

/** Per-request sampling state: the PRNG key advances one split per token. */
export class Sampler {
  #key: MxArray | null;

  constructor(readonly params: SamplingParams) {
    const seed = params.seed ?? Math.floor(Math.random() * 2 ** 32);
    this.#key = params.temperature > 0 ? keep(randomKey(seed)) : null;
  }

  /** logits (B, V) -> chosen ids (B,) int32, lazily. */
  sample(logits: MxArray): MxArray {
    const p = this.params;
    if (p.temperature <= 0 || !this.#key) return astype(argmax(logits, -1), Dtype.int32);
    let x = divide(astype(logits, Dtype.float32), p.temperature);
    const V = x.shape[x.ndim - 1];
    if (p.topK > 0 && p.topK < V) x = keepTopK(x, p.topK);
    if (p.topP < 1) x = keepTopP(x, p.topP);
    const keys = randomSplit(this.#key, 2);
    const next = keep(reshape(slice(keys, [0, 0], [1, 2]), [2]));
    const sub = reshape(slice(keys, [1, 0], [2, 2]), [2]);
    this.#key.free();
    this.#key = next;
    return astype(categorical(x, sub), Dtype.int32);
  }

  free(): void {
    this.#key?.free();
    this.#key = null;
  }
}

/** log-probability of `ids` (B,) under `logits` (B, V): logits[id] - logsumexp(logits). */
export function logprobOf(logits: MxArray, ids: MxArray): MxArray {
  const x = astype(logits, Dtype.float32);
  const picked = squeeze(takeAlongAxis(x, expandDims(ids, -1), -1), -1);
  return subtract(picked, logsumexp(x, -1));
}

const NEG_INF = -Infinity;

// Everything below the k-th largest logit becomes -inf.
function keepTopK(x: MxArray, k: number): MxArray {
  const kth = min(topk(x, k, -1), -1, true);
  return where(less(x, kth), NEG_INF, x);
}

// Keeps the smallest set of tokens whose probability reaches p (the top token always stays).
function keepTopP(x: MxArray, p: number): MxArray {
  const order = argsort(negative(x), -1);
  const sortedProbs = takeAlongAxis(softmax(x, -1), order, -1);
  const before = subtract(cumsum(sortedProbs, -1), sortedProbs); // mass strictly before each token
  const dropSorted = greaterEqual(before, p);
  const drop = putAlongAxis(full(x.shape, 0, Dtype.bool), order, dropSorted, -1);
  return where(drop, NEG_INF, x);
}
