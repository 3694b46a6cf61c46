// The SamplerChain: per-request state (draw count, and on MLX the penalty window and mirostat's
// mu), reproducible draws, the greedy path, option checks, a constraint's mask, no leaked handles.
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";
import { Value } from "@sinclair/typebox/value";
import {
  resolveSampling, SamplerChain, SamplingFields, type SamplingOptions, type TokenConstraint, unsupportedSamplingFields,
} from "../../shared/engine/sampling/index.ts";
import { drawUniform } from "../../shared/engine/sampling/chain.ts";
import * as ref from "./reference.ts";

let baseline = 0;
beforeEach(() => (baseline = mx.handleCounts().live));
afterEach(() => expect(mx.handleCounts().live).toBe(baseline));

const V = 512;
const EVERY_STAGE: SamplingOptions = {
  temperature: 0.9, top_k: 60, top_p: 0.95, min_p: 0.02, typical_p: 0.95, repetition_penalty: 1.1, frequency_penalty: 0.2,
  presence_penalty: 0.1, penalty_last_n: 16, logit_bias: { 3: 1.5, 10: -100 }, dynatemp_range: 0.3, dynatemp_exponent: 1.5,
};

/** Samples `steps` tokens, each from its own logit vector (a model's output would vary too). */
function sampleRun(options: SamplingOptions, steps: number, seedOfLogits = 1): number[] {
  const chain = new SamplerChain(options, V, { history: [1, 2, 3] });
  const out: number[] = [];
  try {
    for (let t = 0; t < steps; t++) {
      const id = mx.tidy(() => chain.sample(mx.array(ref.logitVector(V, seedOfLogits + t), [1, V])).item());
      chain.accept(id);
      out.push(id);
    }
  } finally {
    chain.free();
  }
  return out;
}

describe("SamplerChain", () => {
  test("the same seed gives the same tokens with every stage on; another seed does not", () => {
    const a = sampleRun({ ...EVERY_STAGE, seed: 42 }, 30);
    expect(sampleRun({ ...EVERY_STAGE, seed: 42 }, 30)).toEqual(a);
    expect(sampleRun({ ...EVERY_STAGE, seed: 43 }, 30)).not.toEqual(a);
    const m = sampleRun({ ...EVERY_STAGE, mirostat: 2, seed: 5 }, 20);
    expect(sampleRun({ ...EVERY_STAGE, mirostat: 2, seed: 5 }, 20)).toEqual(m);
  });

  test("a request sampled from its row of a batch gives the same tokens as alone", () => {
    const alone = sampleRun({ ...EVERY_STAGE, seed: 9 }, 12);
    const chains = [7, 9, 11].map((seed) => new SamplerChain({ ...EVERY_STAGE, seed }, V, { history: [1, 2, 3] }));
    const rows: number[] = [];
    for (let t = 0; t < 12; t++) {
      const ids = mx.tidy(() => {
        const batch = mx.stack([0, 1, 2].map((i) => mx.array(ref.logitVector(V, 1 + t + (i === 1 ? 0 : 100 * (i + 1))))), 0); // (3, V)
        return Array.from(mx.concatenate(chains.map((c, i) => c.sample(mx.slice(batch, [i, 0], [i + 1, V]))), 0).toFloat32());
      });
      chains.forEach((c, i) => c.accept(ids[i]));
      rows.push(ids[1]);
    }
    for (const c of chains) c.free();
    expect(rows).toEqual(alone);
  });

  test("greedy takes the argmax after bias and penalties, over a sliding penalty window", () => {
    const logits = [5, 4.9, 1, 0.5, ...new Array(V - 4).fill(-5)];
    const chain = new SamplerChain({ temperature: 0, presence_penalty: 1, penalty_last_n: 1 }, V);
    const ids: number[] = [];
    for (let t = 0; t < 6; t++) ids.push(mx.tidy(() => chain.sample(mx.array(logits, [1, V])).item()));
    chain.free();
    // The window holds only the last token, so the top two alternate.
    expect(ids).toEqual([0, 1, 0, 1, 0, 1]);

    const biased = new SamplerChain({ temperature: 0, logit_bias: { 2: 10 } }, V);
    expect(mx.tidy(() => biased.sample(mx.array(logits, [1, V])).item())).toBe(2);
    biased.free();
  });

  test("the prompt starts the penalty window", () => {
    const logits = [5, 4.9, ...new Array(V - 2).fill(-5)];
    const chain = new SamplerChain({ temperature: 0, repetition_penalty: 1.5, penalty_last_n: 4 }, V, { history: [7, 0, 8] });
    expect(mx.tidy(() => chain.sample(mx.array(logits, [1, V])).item())).toBe(1);
    chain.free();
  });

  test("mirostat v2: mu starts at 2 tau and follows mu - eta (surprise - tau) over 25 draws", () => {
    const tau = 3, eta = 0.2, temperature = 0.8;
    const chain = new SamplerChain({ mirostat: 2, mirostat_tau: tau, mirostat_eta: eta, temperature, seed: 123, top_k: 5 }, V);
    let mu = chain.mu!;
    expect(mu).toBe(2 * tau);
    const seen = new Set<number>();
    for (let t = 0; t < 25; t++) {
      const logits = ref.logitVector(V, 500 + t);
      const id = mx.tidy(() => chain.sample(mx.array(logits, [1, V])).item());
      // top_k is replaced by mirostat: the truncation is over the whole vocabulary.
      const truncated = ref.mirostat(ref.candidates(logits.map((x) => Math.fround(x) / temperature)), mu);
      const want = ref.inverseCdf(ref.drawOrder(truncated, false), drawUniform(chain.options.seed, t));
      if (want.margin > 1e-4) expect(id).toBe(want.id);
      expect(truncated.map((c) => c.id)).toContain(id);
      const expected = ref.mirostatUpdate(truncated, id, mu, tau, eta);
      mu = chain.mu!;
      expect(mu).toBeCloseTo(expected, 4);
      seen.add(truncated.length);
    }
    expect(seen.size).toBeGreaterThan(1); // mu moved the cut
    chain.free();
  });

  test("temperature 0 with typical-p picks the most likely token typical-p keeps", () => {
    const logits = ref.logitVector(V, 77);
    const chain = new SamplerChain({ temperature: 0, typical_p: 0.3 }, V);
    const id = mx.tidy(() => chain.sample(mx.array(logits, [1, V])).item());
    chain.free();
    const kept = ref.typical(ref.candidates(logits.map(Math.fround)), 0.3);
    expect(id).toBe([...kept].sort((a, b) => b.logit - a.logit)[0].id);
  });

  test("a constraint's mask comes before everything; accept() feeds it the chosen id", () => {
    const accepted: number[] = [];
    const allowedIds = [4, 9, 200];
    const mask = mx.keep(mx.array(Uint8Array.from({ length: V }, (_, i) => (allowedIds.includes(i) ? 1 : 0)), [1, V], mx.Dtype.bool));
    let freed = false;
    const constraint: TokenConstraint = {
      allowed: () => mask,
      accept: (id) => void accepted.push(id),
      done: false,
      free: () => void (freed = true),
    };
    const chain = new SamplerChain({ ...EVERY_STAGE, logit_bias: { 5: 100 }, seed: 1 }, V, { constraint });
    for (let t = 0; t < 20; t++) chain.accept(mx.tidy(() => chain.sample(mx.array(ref.logitVector(V, t), [1, V])).item()));
    chain.free();
    mask.free();
    expect(accepted.length).toBe(20);
    expect(accepted.every((id) => allowedIds.includes(id))).toBe(true);
    expect(freed).toBe(true);
  });

  test("options are checked with the field named", () => {
    expect(() => resolveSampling({ mirostat: 1 as 2 }, V)).toThrow(/mirostat/);
    expect(() => resolveSampling({ logit_bias: { [V]: 1 } }, V)).toThrow(/logit_bias.*not in the vocabulary/);
    expect(() => resolveSampling({ top_k: -1 }, V)).toThrow(/top_k/);
    expect(() => resolveSampling({ top_p: 2 }, V)).toThrow(/top_p/);
    expect(() => resolveSampling({ penalty_last_n: 5000 }, V)).toThrow(/penalty_last_n/);
    expect(resolveSampling({}, V)).toMatchObject({ temperature: 1, topK: 0, topP: 1, minP: 0, typicalP: 1, mirostat: 0 });
    const firstError = (v: unknown) => [...Value.Errors(SamplingFields, v)][0]?.path;
    expect(firstError({ top_k: -1 })).toBe("/top_k");
    expect(firstError({ top_p: 2 })).toBe("/top_p");
    expect(firstError({ mirostat: 1 })).toBe("/mirostat");
    expect(firstError({ logit_bias: { "5": 101 } })).toBe("/logit_bias/5");
    expect(firstError({ logit_bias: { x: 1 } })).toBe("/logit_bias/x");
    expect(Value.Check(SamplingFields, { ...EVERY_STAGE, mirostat: 2, mirostat_tau: 5, mirostat_eta: 0.1, seed: 3 })).toBe(true);
    expect(unsupportedSamplingFields({ temperature: 1, xtc_probability: 0.5, dry_multiplier: null })).toEqual(["xtc_probability"]);
    const chain = new SamplerChain({}, V);
    const two = mx.zeros([2, V]);
    expect(() => chain.sample(two)).toThrow(/\(1, V\)/);
    two.free();
    chain.free();
  });
});
