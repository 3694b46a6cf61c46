// Qwen3 (dense): RMSNorm over each head's queries and keys (q_norm, k_norm) before RoPE,
// no q/k/v biases unless `attention_bias`, an explicit head_dim that need not be
// hidden_size / heads, SwiGLU MLP. Weights use Hugging Face names.
import { add, astype, type Dtype, type MxArray, reshape, rmsNorm, scaledDotProductAttention, slice, transpose } from "../mlx/index.ts";
import { KVCache, type LayerCache } from "./cache.ts";
import { type Config, type ForwardOptions, type LanguageModel, type ModelCacheSpec, ModelLoadError, type Weights } from "./model.ts";
import { embed, gatedLinear, linear, type Weight } from "./nn.ts";
import { parseRopeScaling, Rope } from "./rope.ts";

export type ModelArgs = {
  hiddenSize: number;
  numHiddenLayers: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  vocabSize: number;
  ropeTheta: number;
  ropeScaling: ReturnType<typeof parseRopeScaling>;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
};

/** Reads config.json (defaults as in transformers' Qwen3Config); unknown keys are ignored. */
export function parseArgs(c: Config): ModelArgs {
  const numAttentionHeads = c.int("num_attention_heads");
  if (c.bool("use_sliding_window", false)) throw new ModelLoadError(`${c.source}: "use_sliding_window": true is not supported for qwen3`);
  const ropeParameters = c.raw.rope_parameters as { rope_theta?: number } | undefined;
  return {
    hiddenSize: c.int("hidden_size"),
    numHiddenLayers: c.int("num_hidden_layers"),
    intermediateSize: c.int("intermediate_size"),
    numAttentionHeads,
    numKeyValueHeads: c.int("num_key_value_heads", numAttentionHeads),
    headDim: c.int("head_dim", 128),
    rmsNormEps: c.num("rms_norm_eps", 1e-6),
    vocabSize: c.int("vocab_size"),
    ropeTheta: c.num("rope_theta", ropeParameters?.rope_theta ?? 10000),
    ropeScaling: parseRopeScaling(c.raw.rope_scaling ?? c.raw.rope_parameters),
    maxPositionEmbeddings: c.int("max_position_embeddings", 32768),
    tieWordEmbeddings: c.bool("tie_word_embeddings", false),
  };
}

class Attention {
  readonly #q: Weight; readonly #k: Weight; readonly #v: Weight; readonly #o: Weight;
  readonly #qb: MxArray | null; readonly #kb: MxArray | null; readonly #vb: MxArray | null; readonly #ob: MxArray | null;
  readonly #qNorm: MxArray; readonly #kNorm: MxArray;
  readonly #scale: number;

  constructor(readonly args: ModelArgs, w: Weights, p: string, readonly rope: Rope) {
    this.#q = w.weight(`${p}.q_proj`);
    this.#k = w.weight(`${p}.k_proj`);
    this.#v = w.weight(`${p}.v_proj`);
    this.#o = w.weight(`${p}.o_proj`);
    this.#qb = w.optional(`${p}.q_proj.bias`);
    this.#kb = w.optional(`${p}.k_proj.bias`);
    this.#vb = w.optional(`${p}.v_proj.bias`);
    this.#ob = w.optional(`${p}.o_proj.bias`);
    this.#qNorm = w.array(`${p}.q_norm.weight`);
    this.#kNorm = w.array(`${p}.k_norm.weight`);
    this.#scale = args.headDim ** -0.5;
  }

  forward(x: MxArray, mask: "causal" | MxArray | null, cache: LayerCache): MxArray {
    const [B, L] = x.shape; // (B, L, D)
    const { numAttentionHeads: H, numKeyValueHeads: Hkv, headDim: hd, rmsNormEps: eps } = this.args;
    const heads = (t: MxArray, n: number) => reshape(t, [B, L, n, hd]); // (B, L, n, hd)
    const toHeadMajor = (t: MxArray) => transpose(t, [0, 2, 1, 3]); // (B, n, L, hd)
    let q = toHeadMajor(rmsNorm(heads(linear(x, this.#q, this.#qb), H), this.#qNorm, eps));
    let k = toHeadMajor(rmsNorm(heads(linear(x, this.#k, this.#kb), Hkv), this.#kNorm, eps));
    const v = toHeadMajor(heads(linear(x, this.#v, this.#vb), Hkv));
    q = this.rope.apply(q, cache.ropeOffset, L);
    k = this.rope.apply(k, cache.ropeOffset, L);
    const [keys, values] = cache.updateAndFetch(k, v);
    const o = scaledDotProductAttention(q, keys, values, this.#scale, mask); // (B, H, L, hd)
    return linear(reshape(transpose(o, [0, 2, 1, 3]), [B, L, H * hd]), this.#o, this.#ob);
  }
}

class MLP {
  readonly #gate: Weight; readonly #up: Weight; readonly #down: Weight;

  constructor(w: Weights, p: string) {
    this.#gate = w.weight(`${p}.gate_proj`);
    this.#up = w.weight(`${p}.up_proj`);
    this.#down = w.weight(`${p}.down_proj`);
  }

  forward(x: MxArray): MxArray {
    return linear(gatedLinear(x, this.#gate, this.#up, "silu"), this.#down);
  }
}

class TransformerBlock {
  readonly attention: Attention;
  readonly mlp: MLP;
  readonly #inputNorm: MxArray;
  readonly #postNorm: MxArray;

  constructor(readonly args: ModelArgs, w: Weights, p: string, rope: Rope) {
    this.attention = new Attention(args, w, `${p}.self_attn`, rope);
    this.mlp = new MLP(w, `${p}.mlp`);
    this.#inputNorm = w.array(`${p}.input_layernorm.weight`);
    this.#postNorm = w.array(`${p}.post_attention_layernorm.weight`);
  }

  forward(x: MxArray, mask: "causal" | MxArray | null, cache: LayerCache): MxArray {
    const eps = this.args.rmsNormEps;
    const h = add(x, this.attention.forward(rmsNorm(x, this.#inputNorm, eps), mask, cache));
    return add(h, this.mlp.forward(rmsNorm(h, this.#postNorm, eps)));
  }
}

export class Model implements LanguageModel {
  readonly modelType = "qwen3";
  readonly layers: TransformerBlock[];
  readonly cacheSpec: ModelCacheSpec;
  readonly #embed: Weight;
  readonly #norm: MxArray;
  readonly #head: Weight;
  readonly #rope: Rope;

  constructor(readonly args: ModelArgs, readonly weights: Weights, readonly activations: Dtype) {
    this.#rope = new Rope({
      dims: args.headDim, base: args.ropeTheta, traditional: false,
      maxPositionEmbeddings: args.maxPositionEmbeddings, scaling: args.ropeScaling,
    });
    try {
      this.layers = Array.from({ length: args.numHiddenLayers }, (_, i) => new TransformerBlock(args, weights, `model.layers.${i}`, this.#rope));
      this.#embed = weights.weight("model.embed_tokens");
      this.#norm = weights.array("model.norm.weight");
      this.#head = args.tieWordEmbeddings ? this.#embed : weights.weight("lm_head");
    } catch (e) {
      this.#rope.free();
      throw e;
    }
    this.cacheSpec = {
      nLayers: args.numHiddenLayers, nKvHeads: args.numKeyValueHeads, headDim: args.headDim,
      kvDtype: activations, layers: this.layers.map(() => ({ kind: "global" })),
    };
  }

  get vocabSize(): number {
    return this.args.vocabSize;
  }

  get contextLength(): number {
    return this.args.maxPositionEmbeddings;
  }

  forward(ids: MxArray, caches: LayerCache[], opts: ForwardOptions = {}): MxArray {
    const [B, L] = ids.shape;
    let h = embed(ids, this.#embed); // (B, L, D)
    // A quantized table dequantizes to its scales' dtype, which may differ from the activations'.
    if (h.dtype !== this.activations) h = astype(h, this.activations);
    const mask = caches[0].makeMask(L, null);
    for (let i = 0; i < this.layers.length; i++) h = this.layers[i].forward(h, mask, caches[i]);
    if (opts.lastOnly && L > 1) h = slice(h, [0, L - 1, 0], [B, L, h.shape[2]]);
    return linear(rmsNorm(h, this.#norm, this.args.rmsNormEps), this.#head);
  }

  makeCache(): LayerCache[] {
    return this.layers.map(() => new KVCache());
  }

  free(): void {
    this.#rope.free();
    this.weights.free();
  }
}
