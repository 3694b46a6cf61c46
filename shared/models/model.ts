// What every architecture provides, and the small helpers they share to read their
// config and weights with clear errors.
import { astype, dequantize, type Dtype, evaluate, isFloating, keep, type MxArray, type QuantizedWeight, tidy } from "../mlx/index.ts";
import type { LayerCache } from "./cache.ts";
import type { Weight } from "./nn.ts";

/** A bad or unsupported model file or config: the message names the file and the reason. */
export class ModelLoadError extends Error {
  override name = "ModelLoadError";
}

export type LayerKind = { kind: "global" } | { kind: "sliding"; window: number };

/** The shape of a model's KV cache, for the block pool. */
export type ModelCacheSpec = {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  kvDtype: Dtype;
  layers: LayerKind[];
};

export type ForwardOptions = { lastOnly?: boolean };

/** A decoder-only language model: token ids in, logits out, K/V through the layer caches. */
export interface LanguageModel {
  readonly modelType: string;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly cacheSpec: ModelCacheSpec;
  /**
   * ids (B, L) int32 -> logits (B, L, vocab), appending L positions to every layer cache.
   * With `lastOnly`, logits only for the last position (B, 1, vocab): prefill skips the rest.
   */
  forward(ids: MxArray, caches: LayerCache[], opts?: ForwardOptions): MxArray;
  makeCache(): LayerCache[];
  /** Frees the weights. */
  free(): void;
}

/** A config.json (or the equivalent built from GGUF metadata) read with named errors. */
export class Config {
  constructor(
    readonly raw: Record<string, unknown>,
    readonly source: string,
  ) {}

  num(key: string, fallback?: number): number {
    const v = this.raw[key];
    if (typeof v === "number" && Number.isFinite(v)) return v;
    if (v === undefined || v === null) {
      if (fallback !== undefined) return fallback;
      throw new ModelLoadError(`${this.source}: missing field "${key}"`);
    }
    throw new ModelLoadError(`${this.source}: field "${key}" must be a number, got ${JSON.stringify(v)}`);
  }

  int(key: string, fallback?: number): number {
    const v = this.num(key, fallback);
    if (!Number.isInteger(v) || v < 0) throw new ModelLoadError(`${this.source}: field "${key}" must be a non-negative integer, got ${v}`);
    return v;
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.raw[key];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "boolean") throw new ModelLoadError(`${this.source}: field "${key}" must be a boolean`);
    return v;
  }

  str(key: string, fallback?: string): string {
    const v = this.raw[key];
    if (typeof v === "string") return v;
    if (v === undefined && fallback !== undefined) return fallback;
    throw new ModelLoadError(`${this.source}: missing string field "${key}"`);
  }
}

/**
 * A model's weights by Hugging Face name. A name with `.scales` beside it is an affine-
 * quantized weight whose bits follow from the packed shape. The model owns these arrays.
 */
export class Weights {
  readonly #arrays: Map<string, MxArray>;

  constructor(arrays: Map<string, MxArray>, readonly groupSizeOf: (prefix: string) => number, readonly source: string) {
    this.#arrays = arrays;
  }

  has(name: string): boolean {
    return this.#arrays.has(name) || this.#arrays.has(`${name}.weight`);
  }

  /** A dense array by exact name. */
  array(name: string): MxArray {
    const a = this.#arrays.get(name);
    if (!a) throw new ModelLoadError(`${this.source}: missing tensor "${name}"`);
    return a;
  }

  /** The weight of a Linear or Embedding module `prefix` (e.g. "model.layers.0.mlp.up_proj"). */
  weight(prefix: string): Weight {
    const w = this.array(`${prefix}.weight`);
    const scales = this.#arrays.get(`${prefix}.scales`);
    if (!scales) return w;
    const biases = this.#arrays.get(`${prefix}.biases`);
    if (!biases) throw new ModelLoadError(`${this.source}: quantized tensor "${prefix}" has scales but no biases`);
    const groupSize = this.groupSizeOf(prefix);
    // packed columns hold 32/bits values each; scales hold one per group of the same row.
    const bits = (w.shape[1] * 32) / (scales.shape[1] * groupSize);
    if (![2, 3, 4, 5, 6, 8].includes(bits)) throw new ModelLoadError(`${this.source}: "${prefix}" has an impossible quantization (group ${groupSize}, ${bits} bits)`);
    return { w, scales, biases, groupSize, bits } satisfies QuantizedWeight;
  }

  /** An optional dense array (biases, norms that some variants lack). */
  optional(name: string): MxArray | null {
    return this.#arrays.get(name) ?? null;
  }

  /** Prefixes of the quantized weights. */
  quantized(): string[] {
    return [...this.#arrays.keys()].filter((k) => k.endsWith(".scales")).map((k) => k.slice(0, -".scales".length));
  }

  /**
   * Replaces quantized weights by dense ones and casts every floating array to `dtype`,
   * for backends where dense matmuls beat quantized ones (MLX's CPU backend).
   */
  densify(dtype: Dtype): void {
    for (const prefix of this.quantized()) {
      const q = this.weight(prefix) as QuantizedWeight;
      // Widen scales and biases first: MLX dequantizes in their dtype, and float16 would round w.
      const dense = keep(tidy(() => dequantize({ ...q, scales: astype(q.scales, dtype), biases: astype(q.biases, dtype) }, dtype)));
      evaluate(dense);
      for (const s of ["weight", "scales", "biases"]) {
        this.#arrays.get(`${prefix}.${s}`)?.free();
        this.#arrays.delete(`${prefix}.${s}`);
      }
      this.#arrays.set(`${prefix}.weight`, dense);
    }
    this.castFloats(dtype);
  }

  /** Casts every floating array, quantization scales and biases included, to `dtype`. */
  castFloats(dtype: Dtype): void {
    for (const [k, a] of this.#arrays) {
      if (!isFloating(a.dtype) || a.dtype === dtype) continue;
      const cast = keep(astype(a, dtype));
      evaluate(cast);
      a.free();
      this.#arrays.set(k, cast);
    }
  }

  names(): string[] {
    return [...this.#arrays.keys()];
  }

  free(): void {
    for (const a of this.#arrays.values()) a.free();
    this.#arrays.clear();
  }
}
