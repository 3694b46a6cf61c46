// Rotary position embeddings with the scaling types configs name: linear, dynamic NTK,
// yarn and llama3 (definitions as in Hugging Face transformers' rope utilities).
import { array, keep, multiply, type MxArray, rope, type RopeOptions } from "../mlx/index.ts";

export type RopeScaling = {
  type: "linear" | "dynamic" | "yarn" | "llama3" | "default";
  factor: number;
  originalMaxPositionEmbeddings?: number;
  lowFreqFactor?: number;
  highFreqFactor?: number;
  betaFast?: number;
  betaSlow?: number;
  mscale?: number;
  mscaleAllDim?: number;
  /** Yarn: an explicit attention factor, and whether the correction range is rounded outward. */
  attentionFactor?: number;
  truncate?: boolean;
};

export type RopeConfig = {
  dims: number;
  base: number;
  traditional: boolean;
  maxPositionEmbeddings: number;
  scaling: RopeScaling | null;
};

/** Parses a config.json `rope_scaling` object (either `type` or `rope_type` names it). */
export function parseRopeScaling(raw: unknown): RopeScaling | null {
  if (!raw || typeof raw !== "object") return null;
  const r = raw as Record<string, unknown>;
  const type = String(r.rope_type ?? r.type ?? "default");
  if (!["linear", "dynamic", "yarn", "llama3", "default"].includes(type)) {
    throw new Error(`unsupported rope_scaling type "${type}" (supported: linear, dynamic, yarn, llama3)`);
  }
  const num = (k: string) => (typeof r[k] === "number" ? (r[k] as number) : undefined);
  return {
    type: type as RopeScaling["type"],
    factor: num("factor") ?? 1,
    originalMaxPositionEmbeddings: num("original_max_position_embeddings"),
    lowFreqFactor: num("low_freq_factor"),
    highFreqFactor: num("high_freq_factor"),
    betaFast: num("beta_fast"),
    betaSlow: num("beta_slow"),
    mscale: num("mscale"),
    mscaleAllDim: num("mscale_all_dim"),
    attentionFactor: num("attention_factor"),
    truncate: typeof r.truncate === "boolean" ? r.truncate : undefined,
  };
}

/** Applies rotary embeddings to (B, H, L, D) at `offset`; owns its precomputed frequencies. */
export class Rope {
  readonly #c: RopeConfig;
  readonly #freqs: MxArray | null;
  readonly #mscale: number;

  constructor(c: RopeConfig) {
    this.#c = c;
    const s = c.scaling;
    this.#freqs = s?.type === "llama3" ? keep(array(llama3Periods(c, s))) : s?.type === "yarn" ? keep(array(yarnPeriods(c, s))) : null;
    this.#mscale = s?.type === "yarn" ? yarnAttentionFactor(s) : 1;
  }

  apply(x: MxArray, offset: number | MxArray, length: number): MxArray {
    const c = this.#c;
    const s = c.scaling;
    const opts: RopeOptions = { dims: c.dims, traditional: c.traditional, base: c.base, scale: 1, freqs: this.#freqs };
    if (s?.type === "linear") opts.scale = 1 / s.factor;
    if (s?.type === "dynamic" && typeof offset === "number") opts.base = dynamicNtkBase(c, s, offset + length);
    // Yarn scales the rotated part's magnitude; scaling all of x is the same when dims == D.
    const input = this.#mscale !== 1 ? multiply(x, this.#mscale) : x;
    return rope(input, opts, offset);
  }

  free(): void {
    this.#freqs?.free();
  }
}

// transformers `_compute_dynamic_ntk_parameters`: the base grows once the sequence exceeds the trained length.
function dynamicNtkBase(c: RopeConfig, s: RopeScaling, seqLen: number): number {
  const max = c.maxPositionEmbeddings;
  if (seqLen <= max) return c.base;
  return c.base * ((s.factor * seqLen) / max - (s.factor - 1)) ** (c.dims / (c.dims - 2));
}

// transformers `_compute_llama3_parameters`, returned as periods (1 / inverse frequency) for MLX.
function llama3Periods(c: RopeConfig, s: RopeScaling): number[] {
  const low = s.lowFreqFactor ?? 1;
  const high = s.highFreqFactor ?? 4;
  const old = s.originalMaxPositionEmbeddings ?? 8192;
  const lowWavelen = old / low;
  const highWavelen = old / high;
  return Array.from({ length: c.dims / 2 }, (_, i) => {
    const wavelen = c.base ** ((2 * i) / c.dims);
    const inv = 1 / wavelen;
    let scaled: number;
    if (2 * Math.PI * wavelen < highWavelen) scaled = inv;
    else if (2 * Math.PI * wavelen > lowWavelen) scaled = inv / s.factor;
    else {
      const smooth = (old / (2 * Math.PI * wavelen) - low) / (high - low);
      scaled = (1 - smooth) * (inv / s.factor) + smooth * inv;
    }
    return 1 / scaled;
  });
}

// transformers `_compute_yarn_parameters`: blend interpolated and extrapolated frequencies per dimension.
function yarnPeriods(c: RopeConfig, s: RopeScaling): number[] {
  const old = s.originalMaxPositionEmbeddings ?? c.maxPositionEmbeddings;
  const betaFast = s.betaFast ?? 32;
  const betaSlow = s.betaSlow ?? 1;
  const correctionDim = (rot: number) => (c.dims * Math.log(old / (rot * 2 * Math.PI))) / (2 * Math.log(c.base));
  const truncate = s.truncate ?? true;
  const lowDim = Math.max(truncate ? Math.floor(correctionDim(betaFast)) : correctionDim(betaFast), 0);
  const highDim = Math.min(truncate ? Math.ceil(correctionDim(betaSlow)) : correctionDim(betaSlow), c.dims - 1);
  return Array.from({ length: c.dims / 2 }, (_, i) => {
    const posFreq = c.base ** ((2 * i) / c.dims);
    const extrapolation = 1 / posFreq;
    const interpolation = 1 / (s.factor * posFreq);
    const span = highDim === lowDim ? 0.001 : highDim - lowDim;
    const ramp = Math.min(Math.max((i - lowDim) / span, 0), 1);
    const extrapolationFactor = 1 - ramp;
    return 1 / (interpolation * (1 - extrapolationFactor) + extrapolation * extrapolationFactor);
  });
}

function yarnAttentionFactor(s: RopeScaling): number {
  if (s.attentionFactor !== undefined) return s.attentionFactor;
  const get = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
  if (s.mscale !== undefined && s.mscaleAllDim !== undefined) return get(s.factor, s.mscale) / get(s.factor, s.mscaleAllDim);
  return get(s.factor);
}
