// model_type -> architecture file. The loader finds the file from config.json's model_type alone.
import type { Dtype } from "../mlx/index.ts";
import * as gemma3 from "./gemma3.ts";
import * as llama from "./llama.ts";
import { type Config, type LanguageModel, ModelLoadError, type Weights } from "./model.ts";
import * as qwen2 from "./qwen2.ts";
import * as qwen3 from "./qwen3.ts";

type Build = (config: Config, weights: Weights, activations: Dtype) => LanguageModel;

const ARCHITECTURES: Record<string, Build> = {
  llama: (c, w, d) => new llama.Model(llama.parseArgs(c), w, d),
  mistral: (c, w, d) => new llama.Model(llama.parseArgs(c), w, d),
  qwen2: (c, w, d) => new qwen2.Model(qwen2.parseArgs(c), w, d),
  qwen3: (c, w, d) => new qwen3.Model(qwen3.parseArgs(c), w, d),
  gemma3_text: (c, w, d) => new gemma3.Model(gemma3.parseArgs(c), w, d),
  // The multimodal config: text settings under text_config, the vision tower left unused.
  gemma3: (c, w, d) => new gemma3.Model(gemma3.parseArgs(gemma3.textConfig(c)), w, d, "gemma3"),
};

export function buildModel(config: Config, weights: Weights, activations: Dtype): LanguageModel {
  const type = config.str("model_type");
  const build = ARCHITECTURES[type];
  if (!build) throw new ModelLoadError(`${config.source}: unknown architecture "${type}" (supported: ${Object.keys(ARCHITECTURES).join(", ")})`);
  return build(config, weights, activations);
}
