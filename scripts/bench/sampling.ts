// bun run bench:sampling — what choosing a token costs at SmolLM2's 49,152-token vocabulary:
// the sampler chain per token by configuration (every stage on is the target, < 1 ms), and the
// structured-output constraint per token (mask lookup or computation, its application, accept).
import * as mx from "../../shared/mlx/index.ts";
import { SamplerChain, type SamplingOptions, type TokenConstraint } from "../../shared/engine/sampling/index.ts";
import { createJsonConstraint, type JsonFormat, TokenVocabulary } from "../../shared/engine/structured/index.ts";
import { defaultModelPath } from "../../shared/paths.ts";
import { loadTokenizer } from "../../shared/tokenizer/load-tokenizer.ts";
import { loadavg } from "node:os";
import { machineLine, writeSection } from "./markdown-section.ts";

const loadBefore = loadavg()[0].toFixed(1);
const V = 49152;
const ITERS = Number(process.env.BENCH_ITERS ?? 200);
const ROUNDS = 3;

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];
const ms = (x: number) => (x < 1 ? x.toFixed(3) : x.toFixed(2));

// Logits shaped like a model's: a few high, a long tail (seeded, evaluated once).
let seed = 1;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
const logits = mx.keep(mx.array(Float32Array.from({ length: V }, () => 16 * rand() ** 4 - 4), [1, V]));
mx.evaluate(logits);
const prompt = Array.from({ length: 64 }, (_, i) => (i * 7919) % V);

const EVERY: SamplingOptions = {
  temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, typical_p: 0.95, repetition_penalty: 1.1, frequency_penalty: 0.1,
  presence_penalty: 0.1, penalty_last_n: 64, logit_bias: { 11: 2, 13: -100 }, dynatemp_range: 0.3, dynatemp_exponent: 1, seed: 1,
};
const CONFIGS: [string, SamplingOptions][] = [
  ["greedy (temperature 0)", { temperature: 0 }],
  ["temperature only: a draw over the whole vocabulary", { temperature: 0.8, seed: 1 }],
  ["**every stage on**: bias, penalties (64), top-k 40, top-p, min-p, typical-p, dynamic temperature, draw", EVERY],
  ["every stage on but top-k: top-p and typical-p over the whole vocabulary", { ...EVERY, top_k: 0 }],
  ["bias, penalties, mirostat v2 (over the whole vocabulary)", { ...EVERY, mirostat: 2 }],
  ["bias, penalties, top-k 40, temperature", { ...EVERY, top_p: 1, min_p: 0, typical_p: 1, dynatemp_range: 0 }],
];

/** p50 of sample + evaluation + reading the id, and of building the graph alone (ms), best of rounds; `mask` as a constraint's. */
function chainCost(options: SamplingOptions, mask: mx.MxArray | null = null): { total: number; build: number } {
  let best = { total: Infinity, build: Infinity };
  for (let r = 0; r < ROUNDS; r++) {
    const constraint: TokenConstraint | null = mask && { allowed: () => mask, accept: () => {}, done: false, free: () => {} };
    const chain = new SamplerChain(options, V, { history: prompt, constraint });
    const totals: number[] = [];
    const builds: number[] = [];
    for (let i = 0; i < ITERS + 10; i++) {
      const t0 = performance.now();
      const id = chain.sample(logits);
      const t1 = performance.now();
      id.item();
      const t2 = performance.now();
      id.free();
      if (i >= 10) {
        totals.push(t2 - t0);
        builds.push(t1 - t0);
      }
    }
    chain.free();
    const p50 = { total: pct(totals, 50), build: pct(builds, 50) };
    if (p50.total < best.total) best = p50;
  }
  return best;
}

const chainRows = CONFIGS.map(([name, o]) => {
  const c = chainCost(o);
  process.stderr.write(`chain: ${name}: ${ms(c.total)} ms\n`);
  return `| ${name} | ${ms(c.total)} ms | ${ms(c.build)} ms |`;
});

// Structured output: replay valid outputs token by token through a constraint (and the chain).
const tokenizer = loadTokenizer(defaultModelPath());
const person = { type: "object", properties: { name: { type: "string", maxLength: 40 }, age: { type: "integer" }, email: { type: "string" }, tags: { type: "array", items: { type: "string" }, maxItems: 5 } }, required: ["name", "age", "email"], additionalProperties: false };
const order = { type: "object", properties: { id: { type: "integer" }, items: { type: "array", items: { type: "object", properties: { sku: { type: "string" }, qty: { type: "integer" }, price: { type: "number" } }, required: ["sku", "qty", "price"] } }, status: { enum: ["open", "paid", "shipped"] } }, required: ["id", "items", "status"] };
const OUTPUTS: [JsonFormat, string][] = [
  [{ type: "json_schema", schema: person }, '{"name": "Ada Lovelace", "age": 36, "email": "ada@example.com", "tags": ["math", "poetry", "engines"]}'],
  [{ type: "json_schema", schema: order }, '{"id": 1042, "items": [{"sku": "A-1", "qty": 2, "price": 9.5}, {"sku": "B-7", "qty": 1, "price": 120}], "status": "paid"}'],
  [{ type: "json_object" }, '{"city": "Paris", "population": 2102650, "landmarks": ["Eiffel Tower", "Louvre"], "capital": true, "notes": "a \\"quoted\\" word"}'],
];

type Replay = { perToken: number; worst: number; tokens: number };

/** Mask + accept per token over every output; `maxTokens` turns on the budget checks near the end. */
function replay(withBudget: boolean): Replay {
  const times: number[] = [];
  for (const [format, text] of OUTPUTS) {
    const ids = tokenizer.encode(text);
    const c = createJsonConstraint(tokenizer, V, format, withBudget ? { maxTokens: ids.length + 1 } : {});
    for (const id of [...ids, tokenizer.eosIds[0]]) {
      const t0 = performance.now();
      mx.evaluate(c.allowed(V));
      c.accept(id);
      times.push(performance.now() - t0);
    }
    c.free();
  }
  return { perToken: times.reduce((a, b) => a + b, 0) / times.length, worst: Math.max(...times), tokens: times.length };
}

const t0 = performance.now();
TokenVocabulary.of(tokenizer, V);
const vocabMs = performance.now() - t0;
const cold = replay(false); // every state's mask computed once
const warm = replay(false); // same schemas again: masks from the cache
const budget = replay(true); // the limit right after the value: budget checks on every token

// The mask applied in the chain (inside its one op): every stage on with a JSON state's mask.
const json = createJsonConstraint(tokenizer, V, OUTPUTS[2][0]);
const masked = chainCost(EVERY, json.allowed(V)).total;
json.free();
process.stderr.write(`structured: cold ${ms(cold.perToken)} warm ${ms(warm.perToken)} budget ${ms(budget.perToken)} masked chain ${ms(masked)}\n`);

const body = `## Sampling (\`bun run bench:sampling\`)

${machineLine()}, MLX ${mx.mlxVersion()} (${mx.defaultDevice()}). Vocabulary 49,152 (SmolLM2), logits (1, V) float32
already evaluated, so only the chain is timed: \`sample()\` + evaluation + reading the id, p50 of ${ITERS}, best of ${ROUNDS} rounds.

| sampler chain | per token | graph building (JS + FFI) |
| --- | --- | --- |
${chainRows.join("\n")}

Target: < 1 ms per token with every stage on. The whole chain is one CPU op
(\`ffi/sampler_cpu.cpp\`): the row is copied, masked, biased and penalized once, top-k is one pass
against a k-heap and the later stages work on its k candidates; without top-k, top-p and typical-p
bucket the vocabulary by key and sort only the bucket their cut falls in; the draw is an inverse
CDF at a host-made uniform. Most of what remains is MLX's evaluation round trip to its CPU stream.

| structured output (3 outputs, ${cold.tokens} tokens) | per token | worst token |
| --- | --- | --- |
| first request of a schema: masks computed (vocabulary walk) | ${ms(cold.perToken)} ms | ${ms(cold.worst)} ms |
| later requests: masks from the cache | ${ms(warm.perToken)} ms | ${ms(warm.worst)} ms |
| with \`max_tokens\` right after the value: budget checks on every token | ${ms(budget.perToken)} ms | ${ms(budget.worst)} ms |
| the chain with every stage on and a JSON state's mask (applied inside its one op) | ${ms(masked)} ms | |

The first three rows time the host side per token: the mask of the recognizer's state (computed
by one walk over the byte-sorted vocabulary, then cached on MLX by the state's key) and
\`accept(id)\` stepping the token's bytes; the budget checks step every allowed token that is not
plain string text. The structured overhead per token is the host part plus the mask's share of
the chain (the last row against the chain's "every stage on" row). The
token index (bytes, byte-sorted list, plain-text set) is built once per tokenizer: ${vocabMs.toFixed(0)} ms.

Load average while measuring: ${loadBefore} before, ${loadavg()[0].toFixed(1)} after (2 cores): above ~0.5 these are upper bounds.`;
writeSection("sampling", body);
console.log(body);
logits.free();
