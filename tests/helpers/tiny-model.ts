// Writes tiny random models in the MLX folder layout (config.json, model.safetensors, a
// byte-level tokenizer.json + tokenizer_config.json) for the architecture tests, dense or
// affine-quantized through MLX's own quantize (weight/scales/biases + `quantization` in config).
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { array, astype, Dtype, type MxArray, quantize, saveSafetensors, tidy } from "../../shared/mlx/index.ts";
import { seeded } from "./numeric.ts";

export type TinyArch = "llama" | "qwen2" | "qwen3" | "gemma3_text" | "gemma3";

export type TinyOptions = {
  /** Quantize every projection and the embedding table (scales/biases in `scalesDtype`). */
  quantize?: { groupSize: number; bits: number; scalesDtype?: Dtype };
  /** Keys merged over the architecture's tiny config (the text config for gemma3). */
  config?: Record<string, unknown>;
  seed?: number;
};

export const VOCAB = 300;

/** The tiny config.json of each architecture: small, but each feature switched on. */
export function tinyConfig(arch: TinyArch): Record<string, unknown> {
  const base = { hidden_size: 64, intermediate_size: 128, num_attention_heads: 4, num_key_value_heads: 2, vocab_size: VOCAB, max_position_embeddings: 256 };
  switch (arch) {
    case "llama":
      return { model_type: "llama", ...base, num_hidden_layers: 2, head_dim: 16, rms_norm_eps: 1e-5, rope_theta: 10000, tie_word_embeddings: false };
    case "qwen2":
      return { model_type: "qwen2", ...base, num_hidden_layers: 2, rms_norm_eps: 1e-6, rope_theta: 1_000_000, tie_word_embeddings: true };
    case "qwen3":
      // head_dim 32 != hidden / heads: the explicit head_dim must be honoured.
      return { model_type: "qwen3", ...base, intermediate_size: 96, num_hidden_layers: 2, head_dim: 32, rms_norm_eps: 1e-6, rope_theta: 1_000_000, tie_word_embeddings: false };
    case "gemma3_text":
      // Window 4 < the tests' 11 tokens; layers [sliding, sliding, global]; scaling on the global layer only.
      return {
        model_type: "gemma3_text", ...base, num_hidden_layers: 3, head_dim: 16, rms_norm_eps: 1e-6,
        rope_theta: 1_000_000, rope_local_base_freq: 10_000, rope_scaling: { rope_type: "linear", factor: 2 },
        query_pre_attn_scalar: 24, sliding_window: 4, sliding_window_pattern: 3, final_logit_softcapping: 8,
        hidden_activation: "gelu_pytorch_tanh",
      };
    case "gemma3":
      return {
        model_type: "gemma3",
        text_config: {
          model_type: "gemma3_text", ...base, num_hidden_layers: 3, head_dim: 16, rms_norm_eps: 1e-6,
          rope_theta: 1_000_000, rope_local_base_freq: 10_000, query_pre_attn_scalar: 16, sliding_window: 4,
          layer_types: ["sliding_attention", "full_attention", "sliding_attention"],
        },
        vision_config: { model_type: "siglip_vision_model", hidden_size: 8 },
      };
  }
}

type Spec = { name: string; shape: number[]; kind: "linear" | "embedding" | "norm" | "bias" | "other" };

/** Every tensor of the tiny model, Hugging Face names and (out, in) shapes. */
function tensorSpecs(arch: TinyArch, c: Record<string, number | boolean>): Spec[] {
  const D = c.hidden_size as number;
  const H = c.num_attention_heads as number;
  const Hkv = c.num_key_value_heads as number;
  const hd = (c.head_dim as number | undefined) ?? D / H;
  const I = c.intermediate_size as number;
  const gemma = arch.startsWith("gemma3");
  const root = arch === "gemma3" ? "language_model.model" : "model";
  const specs: Spec[] = [{ name: `${root}.embed_tokens.weight`, shape: [c.vocab_size as number, D], kind: "embedding" }];
  for (let i = 0; i < (c.num_hidden_layers as number); i++) {
    const p = `${root}.layers.${i}`;
    specs.push(
      { name: `${p}.self_attn.q_proj.weight`, shape: [H * hd, D], kind: "linear" },
      { name: `${p}.self_attn.k_proj.weight`, shape: [Hkv * hd, D], kind: "linear" },
      { name: `${p}.self_attn.v_proj.weight`, shape: [Hkv * hd, D], kind: "linear" },
      { name: `${p}.self_attn.o_proj.weight`, shape: [D, H * hd], kind: "linear" },
      { name: `${p}.mlp.gate_proj.weight`, shape: [I, D], kind: "linear" },
      { name: `${p}.mlp.up_proj.weight`, shape: [I, D], kind: "linear" },
      { name: `${p}.mlp.down_proj.weight`, shape: [D, I], kind: "linear" },
      { name: `${p}.input_layernorm.weight`, shape: [D], kind: "norm" },
      { name: `${p}.post_attention_layernorm.weight`, shape: [D], kind: "norm" },
    );
    if (arch === "qwen2") {
      for (const x of ["q", "k", "v"]) specs.push({ name: `${p}.self_attn.${x}_proj.bias`, shape: [(x === "q" ? H : Hkv) * hd], kind: "bias" });
    }
    if (arch === "qwen3" || gemma) {
      specs.push({ name: `${p}.self_attn.q_norm.weight`, shape: [hd], kind: "norm" }, { name: `${p}.self_attn.k_norm.weight`, shape: [hd], kind: "norm" });
    }
    if (gemma) {
      specs.push({ name: `${p}.pre_feedforward_layernorm.weight`, shape: [D], kind: "norm" }, { name: `${p}.post_feedforward_layernorm.weight`, shape: [D], kind: "norm" });
    }
  }
  specs.push({ name: `${root}.norm.weight`, shape: [D], kind: "norm" });
  if (c.tie_word_embeddings === false) specs.push({ name: "lm_head.weight", shape: [c.vocab_size as number, D], kind: "linear" });
  // The multimodal checkpoint's other parts: present in the file, never used by the text model.
  if (arch === "gemma3") {
    specs.push(
      { name: "vision_tower.vision_model.embeddings.patch_embedding.weight", shape: [8, 3, 2, 2], kind: "other" },
      { name: "multi_modal_projector.mm_input_projection_weight", shape: [8, D], kind: "other" },
    );
  }
  return specs;
}

// Scales chosen so activations stay O(1) through the layers and every weight matters.
function randomValues(s: Spec, seed: number, gemma: boolean): Float32Array {
  const n = s.shape.reduce((a, b) => a * b, 1);
  if (s.kind === "norm") {
    const v = seeded(n, seed, -0.3, 0.3);
    return gemma ? v : v.map((x) => 1 + x); // Gemma stores the offset from 1
  }
  if (s.kind === "bias") return seeded(n, seed, -0.3, 0.3);
  if (s.kind === "linear") {
    const a = Math.sqrt(3 / s.shape[1]);
    return seeded(n, seed, -a, a);
  }
  return seeded(n, seed, -1, 1);
}

const bytesToUnicode = (): string[] => {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  let next = 256;
  return Array.from({ length: 256 }, (_, b) => String.fromCodePoint(printable(b) ? b : next++));
};

/** A byte-level BPE with the 256 byte tokens, no merges, and one special end token (id 256). */
function writeTokenizer(dir: string): void {
  const vocab: Record<string, number> = {};
  bytesToUnicode().forEach((ch, b) => (vocab[ch] = b));
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true };
  const tokenizer = {
    version: "1.0",
    added_tokens: [{ id: 256, content: "<|endoftext|>", single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: byteLevel,
    post_processor: null,
    decoder: byteLevel,
    model: { type: "BPE", dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, vocab, merges: [] },
  };
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ eos_token: "<|endoftext|>", bos_token: null, add_bos_token: false }));
}

/**
 * Writes a tiny random `arch` model into `dir` and returns its config.json.
 * @example writeTinyModel(dir, "qwen3", { quantize: { groupSize: 32, bits: 4 } })
 */
export function writeTinyModel(dir: string, arch: TinyArch, opts: TinyOptions = {}): Record<string, unknown> {
  mkdirSync(dir, { recursive: true });
  const config = tinyConfig(arch);
  const text = (arch === "gemma3" ? config.text_config : config) as Record<string, unknown>;
  Object.assign(text, opts.config ?? {});
  const q = opts.quantize;
  if (q) config.quantization = { group_size: q.groupSize, bits: q.bits };
  const gemma = arch.startsWith("gemma3");
  const specs = tensorSpecs(arch, text as Record<string, number | boolean>);
  const seed0 = opts.seed ?? 1234;
  const tensors = new Map<string, MxArray>();
  tidy(() => {
    specs.forEach((s, i) => {
      // Adjacent LCG seeds start alike: spread them over the 32-bit range.
      const w = array(randomValues(s, Math.imul(seed0 + 7919 * i, 2654435761) >>> 0, gemma), s.shape);
      if (!q) return void tensors.set(s.name, w);
      // Quantized checkpoints hold their other floats in the half dtype their scales use.
      const half = astype(w, q.scalesDtype ?? Dtype.float16);
      if (s.kind !== "linear" && s.kind !== "embedding") return void tensors.set(s.name, half);
      const qw = quantize(half, q.groupSize, q.bits);
      const prefix = s.name.slice(0, -".weight".length);
      tensors.set(`${prefix}.weight`, qw.w);
      tensors.set(`${prefix}.scales`, qw.scales);
      tensors.set(`${prefix}.biases`, qw.biases);
    });
    saveSafetensors(join(dir, "model.safetensors"), tensors, { format: "mlx" });
  }); // frees every array made here
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeTokenizer(dir);
  return config;
}

// ---- the same model as a GGUF file (llama.cpp's names and metadata, F32 tensors) --------------

const GGUF_LAYER_NAMES: Record<string, string> = {
  input_layernorm: "attn_norm", post_attention_layernorm: "ffn_norm",
  "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
  "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
  "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
};

function ggufName(hf: string): string {
  const m = hf.match(/^(.*)\.(weight|bias)$/)!;
  const layer = m[1].match(/^model\.layers\.(\d+)\.(.+)$/);
  const top: Record<string, string> = { "model.embed_tokens": "token_embd", "model.norm": "output_norm", lm_head: "output" };
  const base = layer ? `blk.${layer[1]}.${GGUF_LAYER_NAMES[layer[2]]}` : top[m[1]];
  if (!base || base.endsWith("undefined")) throw new Error(`no GGUF name for ${hf}`);
  return `${base}.${m[2]}`;
}

/**
 * Writes `tensors` (the dense tiny qwen2/qwen3 model in `dir`, as read from its safetensors) as
 * a GGUF file at `path`, the way llama.cpp's converter lays these architectures out (their Q/K
 * rows are not permuted). `arch` overrides general.architecture. No tokenizer.
 */
export function writeTinyGguf(dir: string, path: string, tensors: Map<string, { dtype: string; shape: number[]; bytes: Uint8Array }>, arch?: string): void {
  const c = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, number | string>;
  arch ??= c.model_type as string;
  const parts: Uint8Array[] = [];
  const bytes = (n: number, set: (v: DataView) => void) => {
    const b = new Uint8Array(n);
    set(new DataView(b.buffer));
    parts.push(b);
  };
  const u32 = (v: number) => bytes(4, (d) => d.setUint32(0, v, true));
  const u64 = (v: number) => bytes(8, (d) => d.setBigUint64(0, BigInt(v), true));
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    parts.push(b);
  };
  const meta: [string, "u32" | "f32" | "str", number | string][] = [
    ["general.architecture", "str", arch],
    [`${arch}.context_length`, "u32", c.max_position_embeddings],
    [`${arch}.embedding_length`, "u32", c.hidden_size],
    [`${arch}.block_count`, "u32", c.num_hidden_layers],
    [`${arch}.feed_forward_length`, "u32", c.intermediate_size],
    [`${arch}.attention.head_count`, "u32", c.num_attention_heads],
    [`${arch}.attention.head_count_kv`, "u32", c.num_key_value_heads],
    [`${arch}.attention.layer_norm_rms_epsilon`, "f32", c.rms_norm_eps],
    [`${arch}.rope.freq_base`, "f32", c.rope_theta],
    [`${arch}.vocab_size`, "u32", c.vocab_size],
  ];
  if (c.head_dim) meta.push([`${arch}.attention.key_length`, "u32", c.head_dim], [`${arch}.attention.value_length`, "u32", c.head_dim]);
  const named = [...tensors].map(([name, t]) => ({ name: ggufName(name), t }));
  u32(0x46554747); // "GGUF"
  u32(3);
  u64(named.length);
  u64(meta.length);
  for (const [key, type, value] of meta) {
    str(key);
    if (type === "str") (u32(8), str(value as string));
    else if (type === "u32") (u32(4), u32(value as number));
    else (u32(6), bytes(4, (d) => d.setFloat32(0, value as number, true)));
  }
  const align = (n: number) => Math.ceil(n / 32) * 32;
  let offset = 0;
  for (const { name, t } of named) {
    if (t.dtype !== "F32") throw new Error(`writeTinyGguf: ${name} is ${t.dtype}, write the dense model`);
    str(name);
    u32(t.shape.length);
    for (const d of [...t.shape].reverse()) u64(d); // GGUF lists the innermost dimension first
    u32(0); // F32
    u64(offset);
    offset = align(offset + t.bytes.length);
  }
  const header = parts.reduce((n, p) => n + p.length, 0);
  parts.push(new Uint8Array(align(header) - header));
  for (const { t } of named) {
    parts.push(t.bytes);
    parts.push(new Uint8Array(align(t.bytes.length) - t.bytes.length));
  }
  writeFileSync(path, Buffer.concat(parts));
}
