// bun run generate --prompt "..." [--model path] [--max-tokens N] [--temperature T] [--seed S] [--raw]
// Streams a completion to the terminal and prints prefill and decode speed.
import { parseArgs } from "node:util";
import { generate } from "../shared/engine/generate.ts";
import type { SamplingOptions } from "../shared/engine/sampling/options.ts";
import { loadModel, type WeightMode } from "../shared/models/load.ts";
import { defaultModelPath } from "../shared/paths.ts";

const { values } = parseArgs({
  options: {
    prompt: { type: "string" },
    model: { type: "string", default: process.env.SEMANTIC_MODEL ?? defaultModelPath() },
    "max-tokens": { type: "string", default: "256" },
    temperature: { type: "string", default: "0" },
    "top-p": { type: "string", default: "1" },
    "top-k": { type: "string", default: "0" },
    seed: { type: "string" },
    weights: { type: "string", default: "auto" },
    raw: { type: "boolean", default: false },
  },
});
if (!values.prompt) {
  console.error('usage: bun run generate --prompt "..." [--model path] [--max-tokens N] [--temperature T] [--seed S] [--raw]');
  process.exit(2);
}

const t0 = performance.now();
const m = await loadModel(values.model!, { weights: values.weights as WeightMode });
const loadMs = performance.now() - t0;
// --raw feeds the text as is; otherwise it is the user turn of the model's chat template.
const text = values.raw ? values.prompt : m.chatTemplate.render({ messages: [{ role: "user", content: values.prompt }], addGenerationPrompt: true });
const promptIds = m.tokenizer.encode(text, { specials: !values.raw });
const caches = m.model.makeCache();
const sampling: SamplingOptions = { temperature: Number(values.temperature), top_p: Number(values["top-p"]), top_k: Number(values["top-k"]), ...(values.seed ? { seed: Number(values.seed) } : {}) };
for await (const e of generate(m, { promptIds, maxTokens: Number(values["max-tokens"]), sampling }, caches)) {
  if (e.type !== "done") process.stdout.write(e.text);
  else {
    process.stdout.write("\n");
    console.error(
      `[${m.id}: load ${loadMs.toFixed(0)} ms, prompt ${e.promptTokens} tokens in ${e.prefillMs.toFixed(0)} ms ` +
        `(${((e.promptTokens / e.prefillMs) * 1000).toFixed(1)} tok/s), ${e.completionTokens} tokens at ` +
        `${((Math.max(e.completionTokens - 1, 0) / e.decodeMs) * 1000).toFixed(1)} tok/s, stop: ${e.reason}]`,
    );
  }
}
for (const c of caches) c.free();
m.model.free();
