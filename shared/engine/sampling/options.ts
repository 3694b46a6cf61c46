// The sampling parameters a request may set, named as llama.cpp's server and vLLM name their
// request fields, and their neutral values (every stage off, plain sampling at temperature 1).
import type { SampleParams } from "../../mlx/index.ts";

export type SamplingOptions = {
  /** 0 means greedy (argmax after bias and penalties). */
  temperature?: number;
  /** Keep the k most likely tokens; 0 disables. */
  top_k?: number;
  /** Keep the smallest most-likely set whose mass reaches p; 1 disables. */
  top_p?: number;
  /** Keep tokens with p >= min_p * p_max; 0 disables. */
  min_p?: number;
  /** Locally typical sampling: keep the tokens nearest the entropy until their mass exceeds p; 1 disables. */
  typical_p?: number;
  /** Divides positive logits and multiplies negative ones of recent tokens; 1 disables. */
  repetition_penalty?: number;
  /** Subtracts count * frequency_penalty from recent tokens' logits. */
  frequency_penalty?: number;
  /** Subtracts presence_penalty from every recent token's logit. */
  presence_penalty?: number;
  /** How many recent tokens the penalties look at; 0 disables them. */
  penalty_last_n?: number;
  /** Added to a token's logit before anything else (token id -> bias). */
  logit_bias?: Readonly<Record<string | number, number>>;
  /** Dynamic temperature: T varies in [temperature - range, temperature + range] with the entropy; 0 disables. */
  dynatemp_range?: number;
  dynatemp_exponent?: number;
  /** 2 turns on mirostat v2, which replaces top-k, top-p, min-p, typical-p and dynamic temperature. */
  mirostat?: 0 | 2;
  /** Mirostat's target surprise in bits. */
  mirostat_tau?: number;
  /** Mirostat's learning rate. */
  mirostat_eta?: number;
  /** Same seed, same prompt, same options: same tokens. Random when absent. */
  seed?: number;
};

/** Every option with its value decided (the fused kernel's parameters but its uniform, then the bias and seed); see `resolveSampling`. */
export type ResolvedSampling = Omit<SampleParams, "u"> & {
  /** Token ids and their biases, in the same order. */
  logitBias: { ids: Int32Array; values: Float32Array };
  seed: bigint;
};

/** The most recent tokens the penalties can look at (the window is kept on MLX and sorted to count, every token). */
export const MAX_PENALTY_LAST_N = 1024;

/** The values used when a field is absent: each stage off, temperature 1, llama.cpp's defaults otherwise. */
export const NEUTRAL = {
  temperature: 1, top_k: 0, top_p: 1, min_p: 0, typical_p: 1,
  repetition_penalty: 1, frequency_penalty: 0, presence_penalty: 0, penalty_last_n: 64,
  dynatemp_range: 0, dynatemp_exponent: 1, mirostat: 0, mirostat_tau: 5, mirostat_eta: 0.1,
} as const;

/** Greedy decoding: the most likely token (after any bias and penalties) every step. */
export const GREEDY: SamplingOptions = Object.freeze({ temperature: 0 });

export class SamplingOptionError extends RangeError {
  override name = "SamplingOptionError";
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
  }
}

/**
 * Fills absent options with their neutral values and checks what a schema cannot (token ids
 * against the vocabulary). Throws SamplingOptionError naming the field.
 * @example resolveSampling({ temperature: 0.7, min_p: 0.05 }, 49152).minP // 0.05
 */
export function resolveSampling(o: SamplingOptions, vocabSize: number): ResolvedSampling {
  const num = (field: keyof typeof NEUTRAL, min: number, max: number): number => {
    const v = (o[field] as number | undefined) ?? NEUTRAL[field];
    if (typeof v !== "number" || Number.isNaN(v) || v < min || v > max) throw new SamplingOptionError(field, `must be a number in [${min}, ${max}], got ${v}`);
    return v;
  };
  const int = (field: keyof typeof NEUTRAL, min: number, max: number): number => {
    const v = num(field, min, max);
    if (!Number.isInteger(v)) throw new SamplingOptionError(field, `must be an integer, got ${v}`);
    return v;
  };
  const mirostat = int("mirostat", 0, 2);
  if (mirostat === 1) throw new SamplingOptionError("mirostat", "mirostat v1 is not supported: use 0 or 2");
  const ids: number[] = [];
  const values: number[] = [];
  for (const [key, bias] of Object.entries(o.logit_bias ?? {})) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= vocabSize) throw new SamplingOptionError("logit_bias", `token id ${JSON.stringify(key)} is not in the vocabulary (0..${vocabSize - 1})`);
    if (typeof bias !== "number" || Number.isNaN(bias)) throw new SamplingOptionError("logit_bias", `bias of token ${key} must be a number`);
    ids.push(id);
    values.push(bias);
  }
  const seed = o.seed ?? Math.floor(Math.random() * 2 ** 32);
  if (!Number.isSafeInteger(seed)) throw new SamplingOptionError("seed", `must be an integer, got ${seed}`);
  return {
    temperature: num("temperature", 0, Number.MAX_VALUE),
    topK: int("top_k", 0, Number.MAX_SAFE_INTEGER),
    topP: num("top_p", 0, 1),
    minP: num("min_p", 0, 1),
    typicalP: num("typical_p", 0, 1),
    repetitionPenalty: num("repetition_penalty", Number.MIN_VALUE, Number.MAX_VALUE),
    frequencyPenalty: num("frequency_penalty", -Number.MAX_VALUE, Number.MAX_VALUE),
    presencePenalty: num("presence_penalty", -Number.MAX_VALUE, Number.MAX_VALUE),
    penaltyLastN: int("penalty_last_n", 0, MAX_PENALTY_LAST_N),
    logitBias: { ids: Int32Array.from(ids), values: Float32Array.from(values) },
    dynatempRange: num("dynatemp_range", 0, Number.MAX_VALUE),
    dynatempExponent: num("dynatemp_exponent", 0, Number.MAX_VALUE),
    mirostat: mirostat as 0 | 2,
    mirostatTau: num("mirostat_tau", 0, Number.MAX_VALUE),
    mirostatEta: num("mirostat_eta", 0, Number.MAX_VALUE),
    seed: BigInt.asUintN(64, BigInt(seed)),
  };
}
