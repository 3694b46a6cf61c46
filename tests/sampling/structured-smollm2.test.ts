// Structured output on the real SmolLM2-135M-Instruct through the batch engine: 50 generations
// over 10 schemas (five samplers per schema, decoded together as one batch of five), each parsed
// and validated by ajv, an independent JSON Schema validator. The constraint knows the token
// limit, so an output that wanders is closed in time rather than cut off.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Ajv from "ajv";
import { BatchEngine } from "../../shared/engine/batch-engine.ts";
import type { SamplingOptions } from "../../shared/engine/sampling/index.ts";
import type { JsonFormat } from "../../shared/engine/structured/index.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import { defaultModelPath } from "../../shared/paths.ts";

const MAX_TOKENS = 40;

// One greedy row and four seeded ones, together touching every stage of the chain.
const SAMPLERS: SamplingOptions[] = [
  { temperature: 0 },
  { temperature: 0.7, top_k: 40, min_p: 0.05, seed: 1 },
  { temperature: 0.9, top_p: 0.9, repetition_penalty: 1.1, penalty_last_n: 32, seed: 2 },
  { temperature: 0.8, top_k: 50, typical_p: 0.9, dynatemp_range: 0.3, frequency_penalty: 0.2, seed: 3 },
  { temperature: 0.8, mirostat: 2, mirostat_tau: 3, seed: 4 },
];

const name = { type: "string", maxLength: 24 };
const CASES: { task: string; format: JsonFormat }[] = [
  { task: "Describe a fictional person.", format: { type: "json_schema", schema: { type: "object", properties: { name, age: { type: "integer" }, city: name }, required: ["name", "age", "city"], additionalProperties: false } } },
  { task: "Pick a color for a sports car and say whether it is bright.", format: { type: "json_schema", schema: { type: "object", properties: { color: { enum: ["red", "green", "blue", "black"] }, bright: { type: "boolean" } }, required: ["color", "bright"], additionalProperties: false } } },
  { task: "Give one to three tags for a blog post about cooking pasta.", format: { type: "json_schema", schema: { type: "object", properties: { tags: { type: "array", items: { type: "string", maxLength: 16 }, minItems: 1, maxItems: 3 } }, required: ["tags"], additionalProperties: false } } },
  { task: "Describe a famous book and its author.", format: { type: "json_schema", schema: { $defs: { author: { type: "object", properties: { name }, required: ["name"], additionalProperties: false } }, type: "object", properties: { book: { type: "object", properties: { title: { type: "string", maxLength: 40 }, year: { type: "integer" } }, required: ["title", "year"], additionalProperties: false }, author: { $ref: "#/$defs/author" } }, required: ["book", "author"], additionalProperties: false } } },
  { task: "Price a cup of coffee.", format: { type: "json_schema", schema: { type: "object", properties: { price: { type: "number" }, quantity: { type: "integer" }, currency: { const: "USD" } }, required: ["price", "quantity", "currency"], additionalProperties: false } } },
  { task: "Give a player's nickname (or null) and score (or null).", format: { type: "json_schema", schema: { type: "object", properties: { nickname: { anyOf: [{ type: "string", maxLength: 20 }, { type: "null" }] }, score: { type: ["number", "null"] } }, required: ["nickname", "score"], additionalProperties: false } } },
  { task: "Write a to-do item; the note is optional.", format: { type: "json_schema", schema: { type: "object", properties: { id: { type: "integer" }, note: { type: "string", maxLength: 40 }, done: { type: "boolean" } }, required: ["id", "done"], additionalProperties: false } } },
  { task: "List up to three fruits in a basket with how many of each.", format: { type: "json_schema", schema: { type: "object", properties: { items: { type: "array", items: { type: "object", properties: { fruit: { type: "string", maxLength: 15 }, count: { type: "integer" } }, required: ["fruit", "count"], additionalProperties: false }, minItems: 1, maxItems: 3 } }, required: ["items"], additionalProperties: false } } },
  { task: 'Quote a short famous line, with its "quotation marks", and who said it.', format: { type: "json_schema", schema: { type: "object", properties: { quote: { type: "string", minLength: 1, maxLength: 60 }, by: { oneOf: [{ type: "string", maxLength: 24 }, { type: "null" }] } }, required: ["quote", "by"], additionalProperties: false } } },
  { task: "Give a JSON object with a city's name and population.", format: { type: "json_object" } },
];

const ajv = new Ajv({ strict: false });
let m: LoadedModel;
let engine: BatchEngine;
beforeAll(async () => {
  m = await loadModel(defaultModelPath());
  engine = new BatchEngine(m, { maxBatch: SAMPLERS.length });
});
afterAll(() => m?.model.free());

/** One prompt decoded by every sampler at once (a batch of five); each row's text and how it ended. */
async function generateBatch(task: string, format: JsonFormat, samplers: SamplingOptions[]): Promise<{ texts: string[]; finished: boolean[] }> {
  const prompt = m.chatTemplate.render({
    messages: [{ role: "system", content: "You answer with a single JSON object and nothing else." }, { role: "user", content: task }],
    addGenerationPrompt: true,
  });
  const promptIds = m.tokenizer.encode(prompt, { specials: true });
  const runs = await Promise.all(samplers.map(async (sampling) => {
    let text = "";
    let reason = "";
    for await (const e of engine.submit({ tenant: "t", promptIds, maxTokens: MAX_TOKENS, sampling, format, stop: [] })) {
      if (e.type === "token" || e.type === "text") text += e.text;
      if (e.type === "done") reason = e.reason;
    }
    return { text, reason };
  }));
  // Ended on its own: the value completed (or an end of sequence), never the token limit.
  return { texts: runs.map((r) => r.text), finished: runs.map((r) => r.reason === "eos") };
}

describe("JSON-schema-constrained generation on SmolLM2-135M-Instruct", () => {
  const results: { schema: number; sampler: number; text: string; finished: boolean; valid: boolean; error: string | null }[] = [];

  CASES.forEach(({ task, format }, k) => {
    test(`schema ${k + 1}: ${task}`, async () => {
      const { texts, finished } = await generateBatch(task, format, SAMPLERS);
      const validate = ajv.compile(format.type === "json_schema" ? (format.schema as object) : { type: "object" });
      texts.forEach((text, s) => {
        let valid = false;
        let error: string | null = null;
        try {
          valid = validate(JSON.parse(text)) as boolean;
          if (!valid) error = ajv.errorsText(validate.errors);
        } catch (e) {
          error = (e as Error).message;
        }
        results.push({ schema: k, sampler: s, text, finished: finished[s], valid, error });
      });
      for (let s = 0; s < texts.length; s++) expect({ text: texts[s], finished: finished[s], valid: results.at(-texts.length + s)!.valid }).toEqual({ text: texts[s], finished: true, valid: true });
    });
  });

  test("all 50 outputs ended on their own, parsed and validated; the samplers gave different outputs", () => {
    expect(results).toHaveLength(50);
    expect(results.filter((r) => !r.valid || !r.finished)).toEqual([]);
    expect(new Set(results.map((r) => r.text)).size).toBeGreaterThan(25);
  });
});
