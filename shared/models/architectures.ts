// model_type -> architecture file. The loader finds the file from config.json's model_type alone.
import type { Dtype } from "../mlx/index.ts";
import * as llama from "./llama.ts";
import { type Config, type LanguageModel, ModelLoadError, type Weights } from "./model.ts";

type Build = (config: Config, weights: Weights, activations: Dtype) => LanguageModel;

const ARCHITECTURES: Record<string, Build> = {
  llama: (c, w, d) => new llama.Model(llama.parseArgs(c), w, d),
  mistral: (c, w, d) => new llama.Model(llama.parseArgs(c), w, d),
};

export function buildModel(config: Config, weights: Weights, activations: Dtype): LanguageModel {
  const type = config.str("model_type");
  const build = ARCHITECTURES[type];
  if (!build) throw new ModelLoadError(`${config.source}: unknown architecture "${type}" (supported: ${Object.keys(ARCHITECTURES).join(", ")})`);
  return build(config, weights, activations);
}
