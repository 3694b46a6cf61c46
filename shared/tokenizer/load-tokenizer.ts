// Finds a model's tokenizer: inside a GGUF file, or in a Hugging Face folder
// (tokenizer.json + tokenizer_config.json, and chat_template.jinja when present).
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { readGgufHeader } from "../models/gguf.ts";
import { tokenizerFromGguf } from "./gguf-tokenizer.ts";
import { HfTokenizer, type TokenizerJson } from "./hf-tokenizer.ts";
import { TokenizerError, type Tokenizer } from "./tokenizer.ts";

/** tokenizer_config.json fields we use; special tokens are a string or an AddedToken object. */
export interface TokenizerConfigJson {
  bos_token?: string | { content: string } | null;
  eos_token?: string | { content: string } | null;
  add_bos_token?: boolean;
  chat_template?: string | { name: string; template: string }[];
}

function tokenText(value: TokenizerConfigJson["bos_token"]): string | undefined {
  if (typeof value === "string") return value;
  return value?.content;
}

function defaultTemplate(value: TokenizerConfigJson["chat_template"]): string | undefined {
  if (typeof value === "string" || value === undefined) return value;
  return value.find((t) => t.name === "default")?.template;
}

/** bos is added when tokenizer.json's post-processor puts a special token before the text. */
function postProcessorAddsBos(postProcessor: unknown): boolean {
  const single = (postProcessor as { single?: { SpecialToken?: unknown }[] } | null)?.single;
  return Array.isArray(single) && single[0]?.SpecialToken !== undefined;
}

export function tokenizerFromHuggingFace(
  json: TokenizerJson,
  config: TokenizerConfigJson = {},
  chatTemplate?: string,
): HfTokenizer {
  return new HfTokenizer(json, {
    bosToken: tokenText(config.bos_token),
    eosToken: tokenText(config.eos_token),
    chatTemplate: chatTemplate ?? defaultTemplate(config.chat_template),
    addBos: config.add_bos_token ?? postProcessorAddsBos(json.post_processor),
  });
}

function readJson<T>(path: string): T {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch (e) {
    throw new TokenizerError(`cannot read ${path}: ${(e as Error).message}`);
  }
}

/**
 * The tokenizer of a model given as a GGUF file or a Hugging Face / MLX folder.
 * @example const tok = loadTokenizer("SmolLM2-135M-Instruct.Q4_1.gguf")
 */
export function loadTokenizer(modelPath: string): Tokenizer {
  if (!existsSync(modelPath)) throw new TokenizerError(`model path ${modelPath} does not exist`);
  if (statSync(modelPath).isFile()) return tokenizerFromGguf(readGgufHeader(modelPath));
  const jsonPath = join(modelPath, "tokenizer.json");
  if (!existsSync(jsonPath)) throw new TokenizerError(`${modelPath} has no tokenizer.json`);
  const configPath = join(modelPath, "tokenizer_config.json");
  const templatePath = join(modelPath, "chat_template.jinja");
  return tokenizerFromHuggingFace(
    readJson<TokenizerJson>(jsonPath),
    existsSync(configPath) ? readJson<TokenizerConfigJson>(configPath) : {},
    existsSync(templatePath) ? readFileSync(templatePath, "utf8") : undefined,
  );
}
