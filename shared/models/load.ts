// Loads a model from a GGUF file, an MLX folder or a Hugging Face repo id, with its tokenizer,
// chat template and the tag its KV caches are made under.
import { createHash } from "node:crypto";
import { closeSync, existsSync, openSync, readSync, statSync } from "node:fs";
import { basename } from "node:path";
import { cpuKernelTakes, defaultDevice, Dtype, type QuantizedWeight } from "../mlx/index.ts";
import { ChatTemplate } from "../tokenizer/chat-template.ts";
import { loadTokenizer } from "../tokenizer/load-tokenizer.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { buildModel } from "./architectures.ts";
import { loadGgufModel } from "./gguf-model.ts";
import { downloadFromHub, isHubId } from "./hub.ts";
import { loadMlxFolder } from "./mlx-folder.ts";
import { Config, type LanguageModel, ModelLoadError, Weights } from "./model.ts";

/**
 * How linear weights are held: `quantized` as stored; `dense` dequantized to float32 at load.
 * `auto` picks quantized: on the GPU for Metal's kernels; on the CPU when the project's kernel
 * takes the packing (2, 4 or 8 bits; groups of 32, 64 or 128), which decodes faster than dense
 * float32 by reading ~5x fewer bytes and prefills as fast (see BENCHMARKS.md, bench:qmm and
 * bench:model). Other packings are dense on the CPU, where MLX's quantized matmul is slow.
 */
export type WeightMode = "auto" | "quantized" | "dense";

export type LoadOptions = { weights?: WeightMode; cacheDir?: string };

export type LoadedModel = {
  /** The name clients use for it. */
  id: string;
  source: string;
  model: LanguageModel;
  tokenizer: Tokenizer;
  chatTemplate: ChatTemplate;
  /** Model id, weights digest, quantization and KV dtype: caches are only used under the same tag. */
  tag: string;
  weightMode: Exclude<WeightMode, "auto">;
  quantization: string;
};

/** A cheap, stable digest of weight files: sizes plus their first and last MiB. */
export function weightsDigest(files: string[]): string {
  const h = createHash("sha256");
  const chunk = Buffer.alloc(1 << 20);
  for (const f of files) {
    const size = statSync(f).size;
    h.update(`${basename(f)}:${size}\n`);
    const fd = openSync(f, "r");
    try {
      for (const at of [0, Math.max(0, size - chunk.length)]) h.update(chunk.subarray(0, readSync(fd, chunk, 0, chunk.length, at)));
    } finally {
      closeSync(fd);
    }
  }
  return h.digest("hex").slice(0, 16);
}

export async function loadModel(source: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  let path = source;
  if (!existsSync(source)) {
    if (!isHubId(source)) throw new ModelLoadError(`${source}: no such file or folder (and not a Hugging Face repo id)`);
    path = await downloadFromHub(source, opts.cacheDir);
  }
  const isFile = statSync(path).isFile();
  const files = isFile ? loadGgufModel(path) : loadMlxFolder(path);
  const config = new Config(files.config, isFile ? basename(path) : `${path}/config.json`);
  const quant = files.config.quantization as { group_size?: number } & Record<string, unknown> | undefined;
  // GGUF blocks are always 32 wide; MLX folders name their group size, optionally per module.
  const groupSizeOf = (prefix: string) => {
    if (isFile) return 32;
    const own = quant?.[prefix] as { group_size?: number } | undefined;
    return own?.group_size ?? quant?.group_size ?? 64;
  };
  const weights = new Weights(files.arrays, groupSizeOf, config.source);
  const quantized = weights.quantized();
  const quantization = quantized.length ? describeQuantization(weights, quantized) : "none";
  const mode = opts.weights ?? "auto";
  const weightMode = mode === "auto" ? autoWeightMode(weights, quantized) : mode;
  // MLX's CPU kernels are fast in float32 only (float16 quantized matmul is ~50x slower there).
  // On the GPU, models trained in bfloat16 (Gemma 3) overflow float16 activations: keep their dtype.
  const gpuDtype = (files.config.torch_dtype ?? (files.config.text_config as Record<string, unknown> | undefined)?.torch_dtype) === "bfloat16" ? Dtype.bfloat16 : Dtype.float16;
  const activations = defaultDevice() === "cpu" || weightMode === "dense" ? Dtype.float32 : gpuDtype;
  if (weightMode === "dense") weights.densify(activations);
  else weights.castFloats(activations);
  let model: LanguageModel;
  try {
    model = buildModel(config, weights, activations);
  } catch (e) {
    weights.free();
    throw e;
  }
  const tokenizer = loadTokenizer(path);
  const chatTemplate = new ChatTemplate(tokenizer.chatTemplate, { bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken });
  const id = isFile ? basename(path).replace(/\.gguf$/i, "") : existsSync(source) ? basename(path) : source;
  const digest = weightsDigest(isFile ? [path] : (files as { files: string[] }).files);
  const tag = `${id}@${digest}/${quantization}/${weightMode}/${Dtype[activations]}`;
  return { id, source: path, model, tokenizer, chatTemplate, tag, weightMode, quantization };
}

function autoWeightMode(w: Weights, prefixes: string[]): Exclude<WeightMode, "auto"> {
  if (defaultDevice() !== "cpu") return "quantized";
  const takes = prefixes.every((p) => {
    const q = w.weight(p) as QuantizedWeight;
    return cpuKernelTakes(q.groupSize, q.bits);
  });
  return prefixes.length && takes ? "quantized" : "dense";
}

function describeQuantization(w: Weights, prefixes: string[]): string {
  const kinds = new Set(prefixes.map((p) => {
    const q = w.weight(p) as { bits: number; groupSize: number };
    return `q${q.bits}g${q.groupSize}`;
  }));
  return [...kinds].sort().join("+");
}
