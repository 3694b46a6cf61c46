// A request's sampler: llama.cpp's sampler stages in one fixed order, and the state they carry
// from token to token (draw count, penalty window, mirostat's mu). All of it runs as one CPU op
// per token (ffi/sampler_cpu.cpp, through sampleRow); the window and mu stay on MLX as that op's
// outputs, so an engine may queue step t+1 before reading token t.
//
// The order is fixed (llama.cpp's stages; its own default runs typical-p before top-p):
//   [constraint mask] → logit bias → repetition / frequency / presence penalties
//   → top-k → top-p → min-p → typical-p → temperature or dynamic temperature → seeded draw
// With mirostat 2, as llama.cpp builds it: [mask] → bias → penalties → temperature → mirostat v2
// (which replaces top-k … dynamic temperature).
// Temperature 0 is greedy: the argmax after the mask, bias and penalties (and typical-p, the
// one truncation that can remove the most likely token).
// The draw is the inverse CDF at a uniform u made on the host from (seed, draw number): the first
// candidate whose running probability exceeds u, most likely first after top-k, in token order
// without it.
import { array, full, keep, type MxArray, type SampleParams, sampleRow } from "../../mlx/index.ts";
import { type ResolvedSampling, resolveSampling, type SamplingOptions } from "./options.ts";

/** Restricts which tokens may come next (structured output). The chain owns and frees it. */
export interface TokenConstraint {
  /** (1, V) bool: true where a token may come next. Owned by the constraint: do not free. */
  allowed(vocabSize: number): MxArray;
  /** Advances past the chosen token; throws if it was not allowed. */
  accept(id: number): void;
  /** True once the constrained output is complete (only an end-of-sequence token may follow). */
  readonly done: boolean;
  free(): void;
}

export type ChainOptions = {
  /** Tokens already in the context (the prompt) that the penalty window starts with, as llama.cpp's server does. */
  history?: readonly number[];
  constraint?: TokenConstraint | null;
};

/**
 * Per-request sampling state. `sample(logits (1, V))` returns the chosen id (1,) int32 lazily
 * and advances the draw count, penalty window and mu (on MLX); `accept(id)` must follow each sample
 * when a constraint is set (the next mask depends on the token), and is harmless otherwise.
 * @example
 * const chain = new SamplerChain({ temperature: 0.8, min_p: 0.05, seed: 1 }, V);
 * const id = chain.sample(logits); chain.accept(id.item()); … chain.free();
 */
export class SamplerChain {
  readonly options: ResolvedSampling;
  /** Draws so far: draw t uses the uniform of (seed, t). */
  #draws = 0;
  #history: MxArray | null = null;
  #mu: MxArray | null = null;
  #bias: { ids: MxArray; values: MxArray } | null = null;
  #constraint: TokenConstraint | null;
  readonly #params: SampleParams;

  constructor(options: SamplingOptions, readonly vocabSize: number, opts: ChainOptions = {}) {
    const o = (this.options = resolveSampling(options, vocabSize));
    this.#constraint = opts.constraint ?? null;
    const penalizes = o.penaltyLastN > 0 && (o.repetitionPenalty !== 1 || o.frequencyPenalty !== 0 || o.presencePenalty !== 0);
    this.#params = { ...o, penaltyLastN: penalizes ? o.penaltyLastN : 0, u: 0 };
    if (o.mirostat === 2) this.#mu = keep(full([1, 1], 2 * o.mirostatTau));
    if (o.logitBias.ids.length) {
      const n = o.logitBias.ids.length;
      this.#bias = { ids: keep(array(o.logitBias.ids, [n])), values: keep(array(o.logitBias.values, [n])) };
    }
    const recent = penalizes ? (opts.history ?? []).slice(-o.penaltyLastN) : [];
    if (recent.length) this.#history = keep(array(Int32Array.from(recent), [recent.length]));
  }

  /** logits (1, V) → the chosen id (1,) int32, lazily. */
  sample(logits: MxArray): MxArray {
    if (logits.ndim !== 2 || logits.shape[0] !== 1) throw new RangeError(`SamplerChain.sample takes logits (1, V), got (${logits.shape})`);
    const mask = this.#constraint?.allowed(logits.shape[1]) ?? null;
    const u = drawUniform(this.options.seed, this.#draws++);
    const r = sampleRow(logits, { ...this.#params, u }, { mask, bias: this.#bias, history: this.#history, mu: this.#mu });
    if (r.mu) this.#mu = swap(this.#mu, r.mu);
    if (r.window) this.#history = swap(this.#history, r.window);
    return r.id;
  }

  /** Feeds the chosen token to the constraint (if any). Call once per sampled token, in order. */
  accept(id: number): void {
    this.#constraint?.accept(id);
  }

  /** True when a constraint is set and its output is complete. */
  get done(): boolean {
    return this.#constraint?.done ?? false;
  }

  /** Mirostat's current mu (evaluates), or null without mirostat. */
  get mu(): number | null {
    return this.#mu ? this.#mu.item() : null;
  }

  free(): void {
    for (const a of [this.#history, this.#mu, this.#bias?.ids, this.#bias?.values]) a?.free();
    this.#history = this.#mu = this.#bias = null;
    this.#constraint?.free();
    this.#constraint = null;
  }

  [Symbol.dispose](): void {
    this.free();
  }
}

/** Draw t's uniform in [0, 1): the top 53 bits of mix(seed, t). */
export function drawUniform(seed: bigint, t: number): number {
  return Number(mix(seed, t) >> 11n) / 2 ** 53;
}

// splitmix64's finalizer over seed and counter: distinct (seed, t) give unrelated values, and
// draw t is the same whatever was batched with it.
function mix(seed: bigint, t: number): bigint {
  let z = BigInt.asUintN(64, seed + BigInt(t + 1) * 0x9e3779b97f4a7c15n);
  z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
  z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
  return z ^ (z >> 31n);
}

// State moves to its next value: the new array outlives the caller's scope, the old one is
// released (a graph built on it keeps what it needs).
function swap(old: MxArray | null, next: MxArray): MxArray {
  keep(next);
  old?.free();
  return next;
}
