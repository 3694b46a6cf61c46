// bun run convert <model.gguf> <dir> — writes a GGUF model as an MLX-format folder (config.json,
// model.safetensors with the quantized weights as stored, tokenizer.json, tokenizer_config.json),
// so peers that read only MLX folders (mlx-lm) can run the same weights.
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { saveSafetensors } from "../shared/mlx/index.ts";
import { loadGgufModel } from "../shared/models/gguf-model.ts";
import { ModelLoadError, Weights } from "../shared/models/model.ts";
import { ggufTokenizerParts } from "../shared/tokenizer/gguf-tokenizer.ts";

export function convertGguf(ggufPath: string, outDir: string): void {
  if (existsSync(outDir) && readdirSync(outDir).length) throw new ModelLoadError(`${outDir} exists and is not empty`);
  const { header, config, arrays } = loadGgufModel(ggufPath);
  const weights = new Weights(arrays, () => 32, ggufPath);
  try {
    // mlx-lm reads a default quantization plus per-module overrides (here: 8-bit embeddings).
    const quantization: Record<string, unknown> = {};
    const kinds = weights.quantized().map((p) => [p, (weights.weight(p) as { bits: number }).bits] as const);
    if (kinds.length) {
      const counts = new Map<number, number>();
      for (const [, b] of kinds) counts.set(b, (counts.get(b) ?? 0) + 1);
      const bits = [...counts].sort((a, b) => b[1] - a[1])[0][0];
      Object.assign(quantization, { group_size: 32, bits });
      for (const [p, b] of kinds) if (b !== bits) quantization[p] = { group_size: 32, bits: b };
    }
    const { json, settings } = ggufTokenizerParts(header);
    const tokens = settings.tokens;
    if (!tokens) throw new ModelLoadError(`${ggufPath} has no tokenizer.ggml.tokens list`);
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "config.json"), JSON.stringify({
      ...config,
      architectures: [config.model_type === "llama" ? "LlamaForCausalLM" : `${config.model_type}`],
      bos_token_id: tokens.indexOf(settings.bosToken ?? ""),
      eos_token_id: tokens.indexOf(settings.eosToken ?? ""),
      ...(kinds.length ? { quantization } : {}),
    }, null, 2));
    saveSafetensors(join(outDir, "model.safetensors"), arrays, { format: "mlx" });
    // Hugging Face's tokenizers library requires every added-token field to be present.
    const addedTokens = (json.added_tokens ?? []).map((t) => ({ single_word: false, lstrip: false, rstrip: false, normalized: false, ...t }));
    writeFileSync(join(outDir, "tokenizer.json"), JSON.stringify({ version: "1.0", truncation: null, padding: null, ...json, added_tokens: addedTokens }));
    writeFileSync(join(outDir, "tokenizer_config.json"), JSON.stringify({
      tokenizer_class: "PreTrainedTokenizerFast",
      bos_token: settings.bosToken ?? null,
      eos_token: settings.eosToken ?? null,
      add_bos_token: settings.addBos,
      add_eos_token: false,
      clean_up_tokenization_spaces: false,
      model_max_length: config.max_position_embeddings,
      ...(settings.chatTemplate ? { chat_template: settings.chatTemplate } : {}),
    }, null, 2));
  } finally {
    weights.free();
  }
}

if (import.meta.main) {
  const [input, out] = process.argv.slice(2);
  if (!input || !out) {
    console.error("usage: bun run convert <model.gguf> <output folder>");
    process.exit(2);
  }
  try {
    convertGguf(input, out);
    console.log(`wrote ${out}`);
  } catch (e) {
    console.error(`convert: ${(e as Error).message}`);
    process.exit(1);
  }
}
