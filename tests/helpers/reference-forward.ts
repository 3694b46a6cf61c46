// An independent forward pass for the tiny test models in plain TypeScript (float64, no MLX):
// it parses config.json and model.safetensors itself, dequantizes MLX's packed affine weights
// itself, and follows transformers' definitions of llama, qwen2, qwen3 and gemma3_text:
// rotate-half RoPE (with the rope_scaling variants), grouped-query attention with a causal
// mask and sliding windows, SwiGLU / gelu-tanh MLPs, Gemma's (1 + w) norms and softcapping.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { halfToNumber } from "./numeric.ts";

export type Tensor = { shape: number[]; data: Float64Array };
type Json = Record<string, unknown>;

// ---- safetensors ----------------------------------------------------------------------------

type RawTensor = { dtype: string; shape: number[]; bytes: Uint8Array };

/** Every tensor of a safetensors file, undecoded: header length (u64 LE), JSON header, data. */
export function readSafetensors(path: string): Map<string, RawTensor> {
  const file = readFileSync(path);
  const headerLen = Number(new DataView(file.buffer, file.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(file.subarray(8, 8 + headerLen).toString("utf8")) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const base = 8 + headerLen;
  const out = new Map<string, RawTensor>();
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const bytes = Uint8Array.from(file.subarray(base + t.data_offsets[0], base + t.data_offsets[1])); // aligned copy
    out.set(name, { dtype: t.dtype, shape: t.shape, bytes });
  }
  return out;
}

const scratch = new DataView(new ArrayBuffer(4));

function floats(t: RawTensor): Float64Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const v = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    if (t.dtype === "F32") out[i] = v.getFloat32(4 * i, true);
    else if (t.dtype === "F16") out[i] = halfToNumber(v.getUint16(2 * i, true));
    else if (t.dtype === "BF16") {
      scratch.setUint32(0, v.getUint16(2 * i, true) << 16, true); // bf16 is the top half of a float32
      out[i] = scratch.getFloat32(0, true);
    } else throw new Error(`reference: dtype ${t.dtype} not handled`);
  }
  return out;
}

/**
 * MLX affine dequantization, done independently: each uint32 packs 32/bits values, lowest
 * bits first, along the input dimension; w = scale * q + bias per group of `groupSize`.
 */
export function dequantize(packed: RawTensor, scales: Tensor, biases: Tensor, groupSize: number): Tensor {
  const [rows, words] = packed.shape;
  const cols = scales.shape[1] * groupSize;
  const bits = (words * 32) / cols;
  if (![2, 4, 8].includes(bits)) throw new Error(`reference: ${bits}-bit packing not handled`);
  const perWord = 32 / bits;
  const mask = (1 << bits) - 1;
  const u32 = new Uint32Array(packed.bytes.buffer, packed.bytes.byteOffset, rows * words);
  const data = new Float64Array(rows * cols);
  const groups = cols / groupSize;
  for (let r = 0; r < rows; r++)
    for (let j = 0; j < cols; j++) {
      const q = (u32[r * words + Math.floor(j / perWord)] >>> (bits * (j % perWord))) & mask;
      const g = r * groups + Math.floor(j / groupSize);
      data[r * cols + j] = scales.data[g] * q + biases.data[g];
    }
  return { shape: [rows, cols], data };
}

/** The model's tensors as float64, quantized triples dequantized, multimodal prefixes dropped. */
export function loadTensors(dir: string, groupSize: number): Map<string, Tensor> {
  const raw = readSafetensors(join(dir, "model.safetensors"));
  const out = new Map<string, Tensor>();
  const rename = (n: string) => n.replace(/^language_model\.model\./, "model.").replace(/^language_model\.lm_head\./, "lm_head.");
  for (const [name, t] of raw) {
    if (name.endsWith(".scales") || name.endsWith(".biases")) continue;
    const prefix = name.replace(/\.weight$/, "");
    const scales = raw.get(`${prefix}.scales`);
    if (scales) {
      const biases = raw.get(`${prefix}.biases`)!;
      out.set(rename(name), dequantize(t, { shape: scales.shape, data: floats(scales) }, { shape: biases.shape, data: floats(biases) }, groupSize));
    } else if (t.dtype !== "U32") {
      out.set(rename(name), { shape: t.shape, data: floats(t) });
    }
  }
  return out;
}

// ---- rotary embeddings (transformers' modeling_rope_utils, written out) ----------------------

export type RopeParams = { invFreq: Float64Array; attentionFactor: number };

/**
 * Inverse frequencies and attention factor for head size `dim`, base `base`, a config's
 * `rope_scaling` (or null) and the current sequence length (used by dynamic NTK only).
 */
export function ropeParameters(dim: number, base: number, scaling: Json | null, maxPositions: number, seqLen: number): RopeParams {
  const type = (scaling?.rope_type ?? scaling?.type ?? "default") as string;
  const factor = (scaling?.factor as number | undefined) ?? 1;
  const defaultInv = (b: number) => Float64Array.from({ length: dim / 2 }, (_, i) => 1 / b ** ((2 * i) / dim));
  if (type === "default") return { invFreq: defaultInv(base), attentionFactor: 1 };
  if (type === "linear") return { invFreq: defaultInv(base).map((f) => f / factor), attentionFactor: 1 };
  if (type === "dynamic") {
    const len = Math.max(seqLen, maxPositions);
    const b = base * ((factor * len) / maxPositions - (factor - 1)) ** (dim / (dim - 2));
    return { invFreq: defaultInv(b), attentionFactor: 1 };
  }
  if (type === "llama3") {
    const low = scaling!.low_freq_factor as number;
    const high = scaling!.high_freq_factor as number;
    const old = scaling!.original_max_position_embeddings as number;
    const invFreq = defaultInv(base).map((inv) => {
      const wavelen = (2 * Math.PI) / inv;
      if (wavelen < old / high) return inv;
      if (wavelen > old / low) return inv / factor;
      const smooth = (old / wavelen - low) / (high - low);
      return (1 - smooth) * (inv / factor) + smooth * inv;
    });
    return { invFreq, attentionFactor: 1 };
  }
  if (type === "yarn") {
    const s = scaling!;
    const original = (s.original_max_position_embeddings as number | undefined) ?? maxPositions;
    const mscale = (scale: number, m = 1) => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);
    let attentionFactor = s.attention_factor as number | undefined;
    if (attentionFactor === undefined) {
      attentionFactor = s.mscale && s.mscale_all_dim ? mscale(factor, s.mscale as number) / mscale(factor, s.mscale_all_dim as number) : mscale(factor);
    }
    const betaFast = (s.beta_fast as number | undefined) || 32;
    const betaSlow = (s.beta_slow as number | undefined) || 1;
    const truncate = (s.truncate as boolean | undefined) ?? true;
    const correctionDim = (rotations: number) => (dim * Math.log(original / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
    let low = correctionDim(betaFast);
    let high = correctionDim(betaSlow);
    if (truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
    [low, high] = [Math.max(low, 0), Math.min(high, dim - 1)];
    if (low === high) high += 0.001;
    const invFreq = Float64Array.from({ length: dim / 2 }, (_, i) => {
      const posFreq = base ** ((2 * i) / dim);
      const ramp = Math.min(Math.max((i - low) / (high - low), 0), 1);
      const extrapolationFactor = 1 - ramp;
      return (1 / (factor * posFreq)) * (1 - extrapolationFactor) + (1 / posFreq) * extrapolationFactor;
    });
    return { invFreq, attentionFactor };
  }
  throw new Error(`reference: rope type ${type} not handled`);
}

/** Rotate-half RoPE of one head vector (x[off..off+dim)) at `position`, in place. */
export function rotate(x: Float64Array, off: number, dim: number, position: number, p: RopeParams): void {
  const half = dim / 2;
  for (let i = 0; i < half; i++) {
    const angle = position * p.invFreq[i];
    const c = Math.cos(angle) * p.attentionFactor;
    const s = Math.sin(angle) * p.attentionFactor;
    const a = x[off + i];
    const b = x[off + i + half];
    x[off + i] = a * c - b * s;
    x[off + i + half] = b * c + a * s;
  }
}

// ---- the forward pass ------------------------------------------------------------------------

type Layer = { window: number | null; rope: (seqLen: number) => RopeParams };

type Arch = {
  family: "llama" | "qwen2" | "qwen3" | "gemma3";
  hidden: number; heads: number; kvHeads: number; headDim: number; eps: number;
  scale: number; embedScale: number; tied: boolean; softcap: number | null;
  layers: Layer[];
};

function archOf(config: Json): Arch {
  const c = (config.model_type === "gemma3" ? config.text_config : config) as Json;
  const type = c.model_type as string;
  const num = (k: string, fallback?: number) => (c[k] ?? fallback) as number;
  const hidden = num("hidden_size");
  const heads = num("num_attention_heads");
  const n = num("num_hidden_layers");
  const maxPos = num("max_position_embeddings", 4096);
  const scaling = (c.rope_scaling ?? null) as Json | null;
  if (type === "gemma3_text") {
    const headDim = num("head_dim", 256);
    const window = num("sliding_window", 4096);
    const types = (c.layer_types as string[] | undefined) ?? Array.from({ length: n }, (_, i) => ((i + 1) % num("sliding_window_pattern", 6) ? "sliding_attention" : "full_attention"));
    const local = ropeParameters(headDim, num("rope_local_base_freq", 10000), null, maxPos, 0);
    return {
      family: "gemma3", hidden, heads, kvHeads: num("num_key_value_heads", 4), headDim, eps: num("rms_norm_eps", 1e-6),
      scale: num("query_pre_attn_scalar", 256) ** -0.5,
      embedScale: Math.fround(Math.sqrt(hidden)), // transformers rounds it to the activation dtype (float32 here)
      tied: (c.tie_word_embeddings as boolean | undefined) ?? true,
      softcap: (c.final_logit_softcapping as number | null | undefined) ?? null,
      layers: types.map((t) => t === "sliding_attention"
        ? { window, rope: () => local }
        : { window: null, rope: (len) => ropeParameters(headDim, num("rope_theta", 1e6), scaling, maxPos, len) }),
    };
  }
  if (!["llama", "qwen2", "qwen3"].includes(type)) throw new Error(`reference: model_type ${type} not handled`);
  const headDim = type === "qwen2" ? hidden / heads : num("head_dim", type === "qwen3" ? 128 : hidden / heads);
  const base = num("rope_theta", type === "qwen2" ? 1e6 : 10000);
  return {
    family: type as Arch["family"], hidden, heads, kvHeads: num("num_key_value_heads", heads), headDim, eps: num("rms_norm_eps", 1e-6),
    scale: headDim ** -0.5, embedScale: 1, tied: (c.tie_word_embeddings as boolean | undefined) ?? false, softcap: null,
    layers: Array.from({ length: n }, () => ({ window: null, rope: (len) => ropeParameters(headDim, base, scaling, maxPos, len) })),
  };
}

/** x (n, in) @ w.T (+ bias) for w (out, in). */
function linear(x: Float64Array, n: number, w: Tensor, bias?: Tensor): Float64Array {
  const [outDim, inDim] = w.shape;
  const y = new Float64Array(n * outDim);
  for (let r = 0; r < n; r++)
    for (let o = 0; o < outDim; o++) {
      let s = bias ? bias.data[o] : 0;
      for (let i = 0; i < inDim; i++) s += x[r * inDim + i] * w.data[o * inDim + i];
      y[r * outDim + o] = s;
    }
  return y;
}

/** RMSNorm over consecutive rows of `dim`, scaled by w (or 1 + w for Gemma). */
function rmsNorm(x: Float64Array, dim: number, w: Tensor, eps: number, plusOne: boolean): Float64Array {
  const y = new Float64Array(x.length);
  for (let r = 0; r < x.length / dim; r++) {
    let ss = 0;
    for (let i = 0; i < dim; i++) ss += x[r * dim + i] ** 2;
    const inv = 1 / Math.sqrt(ss / dim + eps);
    for (let i = 0; i < dim; i++) y[r * dim + i] = x[r * dim + i] * inv * (plusOne ? 1 + w.data[i] : w.data[i]);
  }
  return y;
}

const silu = (x: number) => x / (1 + Math.exp(-x));
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

export class ReferenceModel {
  readonly arch: Arch;
  readonly #t: Map<string, Tensor>;

  constructor(readonly config: Json, tensors: Map<string, Tensor>) {
    this.arch = archOf(config);
    this.#t = tensors;
  }

  /** Reads a tiny model folder written by tiny-model.ts. */
  static load(dir: string): ReferenceModel {
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Json;
    const groupSize = ((config.quantization as Json | undefined)?.group_size as number | undefined) ?? 64;
    return new ReferenceModel(config, loadTensors(dir, groupSize));
  }

  #get(name: string): Tensor {
    const t = this.#t.get(name);
    if (!t) throw new Error(`reference: no tensor ${name}`);
    return t;
  }

  /** Logits (L * vocab, row-major) for one sequence of token ids, positions from 0. */
  forward(ids: readonly number[]): Float64Array {
    const a = this.arch;
    const gemma = a.family === "gemma3";
    const L = ids.length;
    const D = a.hidden;
    const hd = a.headDim;
    const embedding = this.#get("model.embed_tokens.weight");
    let x = new Float64Array(L * D);
    ids.forEach((id, t) => {
      for (let i = 0; i < D; i++) x[t * D + i] = embedding.data[id * D + i] * a.embedScale;
    });
    const norm = (v: Float64Array, dim: number, name: string) => rmsNorm(v, dim, this.#get(name), a.eps, gemma);
    a.layers.forEach((layer, li) => {
      const p = `model.layers.${li}`;
      const bias = (n: string) => this.#t.get(`${p}.self_attn.${n}.bias`);
      const xn = norm(x, D, `${p}.input_layernorm.weight`);
      let q = linear(xn, L, this.#get(`${p}.self_attn.q_proj.weight`), bias("q_proj"));
      let k = linear(xn, L, this.#get(`${p}.self_attn.k_proj.weight`), bias("k_proj"));
      const v = linear(xn, L, this.#get(`${p}.self_attn.v_proj.weight`), bias("v_proj"));
      if (a.family === "qwen3" || gemma) {
        q = norm(q, hd, `${p}.self_attn.q_norm.weight`);
        k = norm(k, hd, `${p}.self_attn.k_norm.weight`);
      }
      const rope = layer.rope(L);
      for (let t = 0; t < L; t++) {
        for (let h = 0; h < a.heads; h++) rotate(q, (t * a.heads + h) * hd, hd, t, rope);
        for (let h = 0; h < a.kvHeads; h++) rotate(k, (t * a.kvHeads + h) * hd, hd, t, rope);
      }
      const attn = new Float64Array(L * a.heads * hd);
      const group = a.heads / a.kvHeads;
      for (let h = 0; h < a.heads; h++) {
        const kh = Math.floor(h / group);
        for (let t = 0; t < L; t++) {
          const first = layer.window === null ? 0 : Math.max(0, t - layer.window + 1);
          const scores: number[] = [];
          for (let j = first; j <= t; j++) {
            let s = 0;
            for (let i = 0; i < hd; i++) s += q[(t * a.heads + h) * hd + i] * k[(j * a.kvHeads + kh) * hd + i];
            scores.push(s * a.scale);
          }
          const m = Math.max(...scores);
          const e = scores.map((s) => Math.exp(s - m));
          const z = e.reduce((s, v) => s + v, 0);
          for (let j = first; j <= t; j++)
            for (let i = 0; i < hd; i++) attn[(t * a.heads + h) * hd + i] += (e[j - first] / z) * v[(j * a.kvHeads + kh) * hd + i];
        }
      }
      const o = linear(attn, L, this.#get(`${p}.self_attn.o_proj.weight`), bias("o_proj"));
      const residual = (base: Float64Array, add: Float64Array) => base.map((b, i) => b + add[i]);
      x = residual(x, gemma ? norm(o, D, `${p}.post_attention_layernorm.weight`) : o);
      const mIn = norm(x, D, gemma ? `${p}.pre_feedforward_layernorm.weight` : `${p}.post_attention_layernorm.weight`);
      const gate = linear(mIn, L, this.#get(`${p}.mlp.gate_proj.weight`));
      const up = linear(mIn, L, this.#get(`${p}.mlp.up_proj.weight`));
      const act = gate.map((g, i) => (gemma ? geluTanh(g) : silu(g)) * up[i]);
      const m = linear(act, L, this.#get(`${p}.mlp.down_proj.weight`));
      x = residual(x, gemma ? norm(m, D, `${p}.post_feedforward_layernorm.weight`) : m);
    });
    const head = a.tied ? embedding : this.#get("lm_head.weight");
    const logits = linear(norm(x, D, "model.norm.weight"), L, head);
    if (a.softcap !== null) for (let i = 0; i < logits.length; i++) logits[i] = Math.tanh(logits[i] / a.softcap) * a.softcap;
    return logits;
  }
}
