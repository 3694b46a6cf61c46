// Structured output on the real SmolLM2-135M-Instruct: 50 generations over 10 schemas (five
// samplers per schema, decoded together as one batch of five through the KV cache), each
// parsed and validated by ajv, an independent JSON Schema validator. The constraint knows the
// token limit, so an output that wanders is closed in time rather than cut off.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Ajv from "ajv";
import * as mx from "../../shared/mlx/index.ts";
import { samplerForRequest, type SamplingOptions } from "../../shared/engine/sampling/index.ts";
import type { JsonFormat } from "../../shared/engine/structured/index.ts";
import { KVCache } from "../../shared/models/cache.ts";
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
beforeAll(async () => {
  m = await loadModel(defaultModelPath(), { weights: "dense" });
});
afterAll(() => m?.model.free());

/** One prompt decoded by every sampler at once (a batch of B rows); returns each row's text. */
function generateBatch(task: string, format: JsonFormat, samplers: SamplingOptions[]): { texts: string[]; finished: boolean[] } {
  const { model, tokenizer } = m;
  const V = model.vocabSize;
  const B = samplers.length;
  const prompt = m.chatTemplate.render({
    messages: [{ role: "system", content: "You answer with a single JSON object and nothing else." }, { role: "user", content: task }],
    addGenerationPrompt: true,
  });
  const ids = tokenizer.encode(prompt, { specials: true });
  const chains = samplers.map((sampling) => samplerForRequest({ sampling, promptIds: ids, maxTokens: MAX_TOKENS, format }, V, tokenizer));
  const out: number[][] = samplers.map(() => []);
  const finished = samplers.map(() => false);
  const eos = tokenizer.eosIds[0];
  // The prompt is prefilled once; its K/V and last logits are copied to the B rows.
  const single = model.makeCache();
  let logits = mx.tidy(() => {
    const last = model.forward(mx.array(Int32Array.from(ids), [1, ids.length], mx.Dtype.int32), single, { lastOnly: true });
    return mx.broadcastTo(mx.reshape(last, [1, V]), [B, V]);
  });
  const caches = single.map((c) => {
    const [k, v] = (c as KVCache).state()!;
    const rows = mx.tidy(() => [mx.concatenate(new Array(B).fill(k), 0), mx.concatenate(new Array(B).fill(v), 0)]);
    mx.dispose([k, v]);
    c.free();
    return KVCache.fromPrefix(rows[0], rows[1]);
  });
  try {
    for (let step = 0; step < MAX_TOKENS && finished.includes(false); step++) {
      const live = chains.flatMap((_, i) => (finished[i] ? [] : [i]));
      const picked = mx.tidy(() => Array.from(mx.concatenate(live.map((i) => chains[i].sample(mx.slice(logits, [i, 0], [i + 1, V]))), 0).toFloat32()));
      logits.free();
      const next = samplers.map(() => eos); // finished rows are fed end-of-sequence, and ignored
      live.forEach((i, j) => {
        const id = picked[j];
        chains[i].accept(id);
        if (tokenizer.eosIds.includes(id)) finished[i] = true;
        else out[i].push((next[i] = id));
      });
      logits = mx.tidy(() => mx.reshape(model.forward(mx.array(Int32Array.from(next), [B, 1], mx.Dtype.int32), caches), [B, V]));
    }
    logits.free();
  } finally {
    for (const c of caches) c.free();
    for (const c of chains) c.free();
  }
  return { texts: out.map((o) => tokenizer.decode(o)), finished };
}

describe("JSON-schema-constrained generation on SmolLM2-135M-Instruct", () => {
  const results: { schema: number; sampler: number; text: string; finished: boolean; valid: boolean; error: string | null }[] = [];

  CASES.forEach(({ task, format }, k) => {
    test(`schema ${k + 1}: ${task}`, () => {
      const { texts, finished } = generateBatch(task, format, SAMPLERS);
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
