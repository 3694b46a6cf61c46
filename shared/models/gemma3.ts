// Gemma 3 (text): embeddings scaled by sqrt(hidden_size), RMSNorm with (1 + weight), four
// norms per block (sandwich), q_norm/k_norm per head, gelu-tanh gated MLP, attention scale
// from query_pre_attn_scalar, sliding-window layers interleaved with global ones, each kind
// with its own rotary base (scaling only on global layers), optional final logit softcap.
// Accepts "gemma3_text" configs and "gemma3" (multimodal) ones, whose text settings sit under
// `text_config` and text weights under `language_model.model.*`; the vision parts are unused.
import { add, astype, type Dtype, divide, evaluate, keep, type MxArray, multiply, reshape, rmsNorm, scaledDotProductAttention, slice, tanh, transpose } from "../mlx/index.ts";
import { KVCache, type LayerCache } from "./cache.ts";
import { Config, type ForwardOptions, type LanguageModel, type LayerKind, type ModelCacheSpec, ModelLoadError, type Weights } from "./model.ts";
import { embed, gatedLinear, isQuantized, linear, type Weight } from "./nn.ts";
import { parseRopeScaling, Rope } from "./rope.ts";

export type ModelArgs = {
  hiddenSize: number;
  numHiddenLayers: number;
  intermediateSize: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rmsNormEps: number;
  /** null: the embedding table's row count. */
  vocabSize: number | null;
  /** Global layers' base; sliding layers use ropeLocalBaseFreq and never scale. */
  ropeTheta: number;
  ropeLocalBaseFreq: number;
  ropeScaling: ReturnType<typeof parseRopeScaling>;
  queryPreAttnScalar: number;
  slidingWindow: number;
  layerKinds: LayerKind[];
  maxPositionEmbeddings: number;
  finalLogitSoftcapping: number | null;
  tieWordEmbeddings: boolean;
};

/** The text settings: the config itself for "gemma3_text", its `text_config` for "gemma3". */
export function textConfig(c: Config): Config {
  if (c.raw.model_type !== "gemma3") return c;
  const t = c.raw.text_config;
  if (!t || typeof t !== "object" || Array.isArray(t)) throw new ModelLoadError(`${c.source}: missing object field "text_config"`);
  return new Config(t as Record<string, unknown>, `${c.source} (text_config)`);
}

// `layer_types` when given, else every `sliding_window_pattern`-th layer is global.
function parseLayerKinds(c: Config, n: number, window: number): LayerKind[] {
  const types = c.raw.layer_types;
  if (types !== undefined && types !== null) {
    if (!Array.isArray(types) || types.length !== n || types.some((t) => t !== "sliding_attention" && t !== "full_attention")) {
      throw new ModelLoadError(`${c.source}: field "layer_types" must name "sliding_attention" or "full_attention" for each of the ${n} layers`);
    }
    return types.map((t) => (t === "sliding_attention" ? { kind: "sliding", window } : { kind: "global" }));
  }
  const pattern = c.int("sliding_window_pattern", 6);
  if (pattern < 1) throw new ModelLoadError(`${c.source}: field "sliding_window_pattern" must be at least 1`);
  return Array.from({ length: n }, (_, i) => ((i + 1) % pattern === 0 ? { kind: "global" } : { kind: "sliding", window }));
}

function optionalNum(c: Config, key: string): number | null {
  return c.raw[key] === undefined || c.raw[key] === null ? null : c.num(key);
}

/** Reads the text config (defaults as in transformers' Gemma3TextConfig); unknown keys are ignored. */
export function parseArgs(c: Config): ModelArgs {
  const numHiddenLayers = c.int("num_hidden_layers");
  const slidingWindow = c.int("sliding_window", 4096);
  const activation = c.str("hidden_activation", "gelu_pytorch_tanh");
  if (activation !== "gelu_pytorch_tanh") throw new ModelLoadError(`${c.source}: hidden_activation "${activation}" is not supported (gelu_pytorch_tanh is)`);
  if (optionalNum(c, "attn_logit_softcapping") !== null) throw new ModelLoadError(`${c.source}: attn_logit_softcapping is not supported`);
  // Newer transformers write per-layer-type `rope_parameters` instead of rope_theta/rope_scaling.
  const params = (c.raw.rope_parameters ?? {}) as Record<string, { rope_theta?: number } | undefined>;
  return {
    hiddenSize: c.int("hidden_size"),
    numHiddenLayers,
    intermediateSize: c.int("intermediate_size"),
    numAttentionHeads: c.int("num_attention_heads", 8),
    numKeyValueHeads: c.int("num_key_value_heads", 4),
    headDim: c.int("head_dim", 256),
    rmsNormEps: c.num("rms_norm_eps", 1e-6),
    vocabSize: optionalNum(c, "vocab_size"),
    ropeTheta: c.num("rope_theta", params.full_attention?.rope_theta ?? 1_000_000),
    ropeLocalBaseFreq: c.num("rope_local_base_freq", params.sliding_attention?.rope_theta ?? 10_000),
    ropeScaling: parseRopeScaling(c.raw.rope_scaling ?? params.full_attention),
    queryPreAttnScalar: c.num("query_pre_attn_scalar", 256),
    slidingWindow,
    layerKinds: parseLayerKinds(c, numHiddenLayers, slidingWindow),
    maxPositionEmbeddings: c.int("max_position_embeddings", 131_072),
    finalLogitSoftcapping: optionalNum(c, "final_logit_softcapping"),
    tieWordEmbeddings: c.bool("tie_word_embeddings", true),
  };
}

/** Gemma's norms scale by (1 + weight): the sums are made once at load and owned here. */
class NormWeights {
  readonly #owned: MxArray[] = [];

  constructor(readonly w: Weights) {}

  get(name: string): MxArray {
    const plusOne = keep(add(this.w.array(name), 1));
    evaluate(plusOne);
    this.#owned.push(plusOne);
    return plusOne;
  }

  free(): void {
    for (const a of this.#owned) a.free();
    this.#owned.length = 0;
  }
}

class Attention {
  readonly #q: Weight; readonly #k: Weight; readonly #v: Weight; readonly #o: Weight;
  readonly #qb: MxArray | null; readonly #kb: MxArray | null; readonly #vb: MxArray | null; readonly #ob: MxArray | null;
  readonly #qNorm: MxArray; readonly #kNorm: MxArray;
  readonly #scale: number;

  constructor(readonly args: ModelArgs, w: Weights, norms: NormWeights, p: string, readonly rope: Rope) {
    this.#q = w.weight(`${p}.q_proj`);
    this.#k = w.weight(`${p}.k_proj`);
    this.#v = w.weight(`${p}.v_proj`);
    this.#o = w.weight(`${p}.o_proj`);
    this.#qb = w.optional(`${p}.q_proj.bias`);
    this.#kb = w.optional(`${p}.k_proj.bias`);
    this.#vb = w.optional(`${p}.v_proj.bias`);
    this.#ob = w.optional(`${p}.o_proj.bias`);
    this.#qNorm = norms.get(`${p}.q_norm.weight`);
    this.#kNorm = norms.get(`${p}.k_norm.weight`);
    this.#scale = args.queryPreAttnScalar ** -0.5;
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
    // gelu_pytorch_tanh(gate) * up
    return linear(gatedLinear(x, this.#gate, this.#up, "gelu_tanh"), this.#down);
  }
}

class TransformerBlock {
  readonly attention: Attention;
  readonly mlp: MLP;
  readonly #inputNorm: MxArray;
  readonly #postAttentionNorm: MxArray;
  readonly #preFeedforwardNorm: MxArray;
  readonly #postFeedforwardNorm: MxArray;

  constructor(readonly args: ModelArgs, w: Weights, norms: NormWeights, p: string, rope: Rope) {
    this.attention = new Attention(args, w, norms, `${p}.self_attn`, rope);
    this.mlp = new MLP(w, `${p}.mlp`);
    this.#inputNorm = norms.get(`${p}.input_layernorm.weight`);
    this.#postAttentionNorm = norms.get(`${p}.post_attention_layernorm.weight`);
    this.#preFeedforwardNorm = norms.get(`${p}.pre_feedforward_layernorm.weight`);
    this.#postFeedforwardNorm = norms.get(`${p}.post_feedforward_layernorm.weight`);
  }

  forward(x: MxArray, mask: "causal" | MxArray | null, cache: LayerCache): MxArray {
    const eps = this.args.rmsNormEps;
    const r = this.attention.forward(rmsNorm(x, this.#inputNorm, eps), mask, cache);
    const h = add(x, rmsNorm(r, this.#postAttentionNorm, eps));
    const m = this.mlp.forward(rmsNorm(h, this.#preFeedforwardNorm, eps));
    return add(h, rmsNorm(m, this.#postFeedforwardNorm, eps));
  }
}

// Where the text weights live: text-only checkpoints, or the two multimodal layouts.
function textPrefix(w: Weights): string {
  return ["language_model.model", "model.language_model"].find((p) => w.has(`${p}.embed_tokens`)) ?? "model";
}

export class Model implements LanguageModel {
  readonly modelType: string;
  readonly layers: TransformerBlock[];
  readonly cacheSpec: ModelCacheSpec;
  readonly vocabSize: number;
  readonly #embed: Weight;
  readonly #norm: MxArray;
  readonly #head: Weight;
  readonly #localRope: Rope;
  readonly #globalRope: Rope;
  readonly #norms: NormWeights;

  constructor(readonly args: ModelArgs, readonly weights: Weights, readonly activations: Dtype, modelType = "gemma3_text") {
    this.modelType = modelType;
    const rope = (base: number, scaling: ModelArgs["ropeScaling"]) => new Rope({
      dims: args.headDim, base, traditional: false, maxPositionEmbeddings: args.maxPositionEmbeddings, scaling,
    });
    this.#localRope = rope(args.ropeLocalBaseFreq, null);
    this.#globalRope = rope(args.ropeTheta, args.ropeScaling);
    this.#norms = new NormWeights(weights);
    const root = textPrefix(weights);
    try {
      this.layers = args.layerKinds.map((kind, i) =>
        new TransformerBlock(args, weights, this.#norms, `${root}.layers.${i}`, kind.kind === "sliding" ? this.#localRope : this.#globalRope),
      );
      this.#embed = weights.weight(`${root}.embed_tokens`);
      this.#norm = this.#norms.get(`${root}.norm.weight`);
      const head = root === "language_model.model" ? "language_model.lm_head" : "lm_head";
      this.#head = !args.tieWordEmbeddings && weights.has(head) ? weights.weight(head) : this.#embed;
    } catch (e) {
      this.#freeOwned();
      throw e;
    }
    this.vocabSize = args.vocabSize ?? (isQuantized(this.#embed) ? this.#embed.w : this.#embed).shape[0];
    this.cacheSpec = {
      nLayers: args.numHiddenLayers, nKvHeads: args.numKeyValueHeads, headDim: args.headDim,
      kvDtype: activations, layers: args.layerKinds.map((k) => ({ ...k })),
    };
  }

  get contextLength(): number {
    return this.args.maxPositionEmbeddings;
  }

  forward(ids: MxArray, caches: LayerCache[], opts: ForwardOptions = {}): MxArray {
    const [B, L] = ids.shape;
    let h = embed(ids, this.#embed); // (B, L, D)
    if (h.dtype !== this.activations) h = astype(h, this.activations);
    // As transformers: the scale is rounded to the activation dtype before multiplying.
    h = multiply(h, Math.sqrt(this.args.hiddenSize));
    // One mask per layer kind, from the first cache of that kind (all caches share positions).
    const masks = new Map<number | null, "causal" | MxArray | null>();
    for (let i = 0; i < this.layers.length; i++) {
      const kind = this.args.layerKinds[i];
      const window = kind.kind === "sliding" ? kind.window : null;
      if (!masks.has(window)) masks.set(window, caches[i].makeMask(L, window));
      h = this.layers[i].forward(h, masks.get(window)!, caches[i]);
    }
    if (opts.lastOnly && L > 1) h = slice(h, [0, L - 1, 0], [B, L, h.shape[2]]);
    const logits = linear(rmsNorm(h, this.#norm, this.args.rmsNormEps), this.#head);
    const cap = this.args.finalLogitSoftcapping;
    return cap === null ? logits : multiply(tanh(divide(logits, cap)), cap);
  }

  makeCache(): LayerCache[] {
    return this.layers.map(() => new KVCache());
  }

  #freeOwned(): void {
    this.#localRope.free();
    this.#globalRope.free();
    this.#norms.free();
  }

  free(): void {
    this.#freeOwned();
    this.weights.free();
  }
}
