// The sampler chain over one row of logits as one CPU op (ffi/sampler_cpu.cpp): the stages and
// the draw of shared/engine/sampling/chain.ts, with the draw's uniform made by the caller.
import type { Pointer } from "bun:ffi";
import { MxArray } from "./array.ts";
import { check, lib } from "./native.ts";

/** One token's sampling parameters: every stage off is temperature 1, top_k 0, p's 1, min_p 0, penalties neutral. */
export type SampleParams = {
  /** <= 0: greedy. */
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  typicalP: number;
  repetitionPenalty: number;
  frequencyPenalty: number;
  presencePenalty: number;
  /** The window's longest length; 0 turns the penalties (and the window output) off. */
  penaltyLastN: number;
  dynatempRange: number;
  dynatempExponent: number;
  /** 2: mirostat v2 (needs `mu`, gives the new mu). */
  mirostat: 0 | 2;
  mirostatTau: number;
  mirostatEta: number;
  /** The draw's uniform in [0, 1): the token is the inverse CDF at u over the remaining candidates. */
  u: number;
};

export type SampleInputs = {
  /** (1, V) bool: true where a token may come next. */
  mask?: MxArray | null;
  /** logit_bias: ids (m,) int32 and their biases (m,) float32. */
  bias?: { ids: MxArray; values: MxArray } | null;
  /** The penalty window (n,) int32. */
  history?: MxArray | null;
  /** Mirostat's mu (1, 1) float32. */
  mu?: MxArray | null;
};

/** The id (1,) int32; the new mu (1, 1) with mirostat 2; the window slid by the id with penalties; the probabilities (1, V) when asked. */
export type Sampled = { id: MxArray; mu: MxArray | null; window: MxArray | null; probabilities: MxArray | null };

const outs = new BigUint64Array(4);
const params = new Float64Array(16);

/**
 * One token from `logits` (1, V), lazily, in one op on the CPU stream. `probabilities: true` also
 * returns the final distribution over the vocabulary (0 for removed tokens), for tests.
 * @example const { id } = sampleRow(logits, { ...neutral, temperature: 0.8, u: 0.42 });
 */
export function sampleRow(logits: MxArray, p: SampleParams, inputs: SampleInputs = {}, { probabilities = false } = {}): Sampled {
  params.set([
    p.temperature, p.topK, p.topP, p.minP, p.typicalP, p.repetitionPenalty, p.frequencyPenalty, p.presencePenalty, p.penaltyLastN,
    p.dynatempRange, p.dynatempExponent, p.mirostat, p.mirostatTau, p.mirostatEta, p.u, probabilities ? 1 : 0,
  ]);
  const { mask, bias, history, mu } = inputs;
  check(lib().sm_sample(outs, logits.handle, mask?.handle ?? null, bias?.ids.handle ?? null, bias?.values.handle ?? null, history?.handle ?? null, mu?.handle ?? null, params));
  const [id, newMu, window, probs] = Array.from(outs, (h) => (h ? new MxArray(Number(h) as Pointer) : null));
  return { id: id!, mu: newMu, window, probabilities: probs };
}
