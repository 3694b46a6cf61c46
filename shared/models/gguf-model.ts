// A GGUF file as a model: its header validated by our own reader first, then tensors through
// MLX's loader, renamed to Hugging Face names, with llama.cpp's Q/K row permutation undone.
import { basename } from "node:path";
import { Dtype, keep, loadGguf, type MxArray, take, array, tidy } from "../mlx/index.ts";
import { getNumber, getString, type GgufHeader, readGgufHeader } from "./gguf.ts";
import { ModelLoadError } from "./model.ts";

// Types MLX's GGUF loader turns into MLX arrays (quantized triples with group size 32, or dense).
const LOADABLE = new Set(["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q8_0"]);

const LAYER_NAMES: Record<string, string> = {
  attn_norm: "input_layernorm",
  ffn_norm: "post_attention_layernorm",
  attn_q: "self_attn.q_proj",
  attn_k: "self_attn.k_proj",
  attn_v: "self_attn.v_proj",
  attn_output: "self_attn.o_proj",
  attn_q_norm: "self_attn.q_norm",
  attn_k_norm: "self_attn.k_norm",
  ffn_gate: "mlp.gate_proj",
  ffn_up: "mlp.up_proj",
  ffn_down: "mlp.down_proj",
};

const TOP_NAMES: Record<string, string> = {
  token_embd: "model.embed_tokens",
  output_norm: "model.norm",
  output: "lm_head",
};

/** Architectures whose GGUF conversion interleaved Q/K rows for llama.cpp's rotary layout. */
const PERMUTED_QK = new Set(["llama"]);
const SUPPORTED = new Set(["llama", "qwen2", "qwen3"]);

/** GGUF tensor name -> Hugging Face name, keeping MLX's .weight/.scales/.biases/.bias suffix. */
export function hfName(name: string): string | null {
  const m = name.match(/^(.*)\.(weight|scales|biases|bias)$/);
  if (!m) return null;
  const [, base, suffix] = m;
  const layer = base.match(/^blk\.(\d+)\.(.+)$/);
  const mapped = layer ? (LAYER_NAMES[layer[2]] && `model.layers.${layer[1]}.${LAYER_NAMES[layer[2]]}`) : TOP_NAMES[base];
  return mapped ? `${mapped}.${suffix}` : null;
}

/** A config.json-equivalent from GGUF metadata. */
export function ggufConfig(h: GgufHeader): Record<string, unknown> {
  const arch = getString(h, "general.architecture");
  if (!SUPPORTED.has(arch)) {
    throw new ModelLoadError(`${basename(h.path)}: architecture "${arch}" is not supported from GGUF (supported: ${[...SUPPORTED].join(", ")})`);
  }
  const n = (key: string, fallback?: number) => getNumber(h, `${arch}.${key}`, fallback);
  const heads = n("attention.head_count");
  const hidden = n("embedding_length");
  const scalingType = getString(h, `${arch}.rope.scaling.type`, "none");
  const tokens = h.metadata.get("tokenizer.ggml.tokens");
  return {
    model_type: arch,
    hidden_size: hidden,
    num_hidden_layers: n("block_count"),
    intermediate_size: n("feed_forward_length"),
    num_attention_heads: heads,
    num_key_value_heads: n("attention.head_count_kv", heads),
    head_dim: n("attention.key_length", hidden / heads),
    rms_norm_eps: n("attention.layer_norm_rms_epsilon", 1e-6),
    rope_theta: n("rope.freq_base", 10000),
    max_position_embeddings: n("context_length", 4096),
    vocab_size: n("vocab_size", Array.isArray(tokens) ? tokens.length : undefined),
    tie_word_embeddings: !h.tensors.some((t) => t.name === "output.weight"),
    rope_scaling: scalingType === "none" ? null : {
      type: scalingType,
      factor: n("rope.scaling.factor", 1),
      original_max_position_embeddings: n("rope.scaling.original_context_length", n("context_length", 4096)),
    },
  };
}

function checkTensors(h: GgufHeader): void {
  const file = basename(h.path);
  for (const t of h.tensors) {
    if (!LOADABLE.has(t.typeName)) {
      throw new ModelLoadError(`${file}: tensor "${t.name}" has type ${t.typeName}, which cannot be loaded (supported: ${[...LOADABLE].join(", ")})`);
    }
  }
  if (h.tensors.some((t) => t.name === "rope_freqs.weight")) {
    throw new ModelLoadError(`${file}: per-dimension rope frequency factors (rope_freqs) are not supported from GGUF; use the MLX folder of this model`);
  }
}

/** Rows (out features) of a permuted Q or K weight back to rotate-half order, per head. */
function unpermuteRows(rows: number, heads: number): MxArray {
  const hd = rows / heads;
  const idx = new Int32Array(rows);
  for (let h = 0; h < heads; h++)
    for (let j = 0; j < 2; j++)
      for (let i = 0; i < hd / 2; i++) idx[h * hd + j * (hd / 2) + i] = h * hd + 2 * i + j;
  return array(idx, [rows], Dtype.int32);
}

export type GgufModelFiles = { header: GgufHeader; config: Record<string, unknown>; arrays: Map<string, MxArray> };

/** Validates `path`, loads its tensors under Hugging Face names, and returns the config. */
export function loadGgufModel(path: string): GgufModelFiles {
  const header = readGgufHeader(path);
  const config = ggufConfig(header);
  checkTensors(header);
  const loaded = loadGguf(path);
  const arrays = new Map<string, MxArray>();
  const heads = { q_proj: config.num_attention_heads as number, k_proj: config.num_key_value_heads as number };
  const permuted = PERMUTED_QK.has(config.model_type as string);
  for (const [name, a] of loaded.arrays) {
    const hf = hfName(name);
    if (!hf) {
      a.free();
      continue;
    }
    const proj = hf.match(/self_attn\.(q_proj|k_proj)\./)?.[1] as "q_proj" | "k_proj" | undefined;
    if (permuted && proj) {
      arrays.set(hf, keep(tidy(() => take(a, unpermuteRows(a.shape[0], heads[proj]), 0))));
      a.free();
    } else {
      arrays.set(hf, a);
    }
  }
  return { header, config, arrays };
}
