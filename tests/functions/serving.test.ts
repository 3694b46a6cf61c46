// Serving with the real model over real HTTP: 16 concurrent requests, a client disconnect
// freeing the engine, /metrics, /openapi.json, and the generated typed client (checked in,
// and checked here to match a fresh generation).
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import OpenAI from "openai";
import { SemanticApiError, SemanticClient } from "../../client/semantic-client.ts";
import { CLIENT_PATH, generateClient, openApiFromApp } from "../../scripts/gen-client.ts";
import { type ServerProcess, startServer } from "./server-process.ts";

const MODEL = "SmolLM2-135M-Instruct.Q4_1";
let server: ServerProcess;

// Two keys, two tenants: every client here authenticates, and caches must not cross them.
const KEY_A = "test-key-a";
const KEY_B = "test-key-b";
const auth = { "x-api-key": KEY_A };

beforeAll(async () => {
  server = await startServer({ SEMANTIC_API_KEYS: `${KEY_A},${KEY_B}` });
});
afterAll(async () => await server?.stop());

const metric = (text: string, name: string) =>
  text.split("\n").filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);

test("16 concurrent requests (both APIs, streaming and not) all complete correctly", async () => {
  const openai = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: KEY_A, maxRetries: 0 });
  const anthropic = new Anthropic({ baseURL: server.base, apiKey: KEY_B, maxRetries: 0 });
  // A short system prompt keeps each prefill small (the template's default one is longer).
  const msgs = (i: number) => [{ role: "user" as const, content: `Count to ${i}.` }];
  const chat = (i: number) => [{ role: "system" as const, content: "Be brief." }, ...msgs(i)];
  const greedy = { temperature: 0 }; // (the Anthropic SDK's types no longer list temperature; the API still takes it)
  const jobs = Array.from({ length: 16 }, (_, i) => {
    switch (i % 4) {
      case 0:
        return openai.chat.completions.create({ model: MODEL, max_tokens: 2, temperature: 0, messages: chat(i) }).then((c) => c.choices[0].message.content);
      case 1:
        return openai.chat.completions.stream({ model: MODEL, max_tokens: 2, temperature: 0, messages: chat(i) }).finalChatCompletion().then((c) => c.choices[0].message.content);
      case 2:
        return anthropic.messages.create({ model: "claude-x", max_tokens: 2, ...greedy, system: "Be brief.", messages: msgs(i) }).then((m) => (m.content[0] as Anthropic.TextBlock).text);
      default:
        return anthropic.messages.stream({ model: "claude-x", max_tokens: 2, ...greedy, system: "Be brief.", messages: msgs(i) }).finalMessage().then((m) => (m.content[0] as Anthropic.TextBlock).text);
    }
  });
  const answers = await Promise.all(jobs);
  expect(answers).toHaveLength(16);
  for (const a of answers) expect(typeof a === "string" && a.length > 0).toBe(true);
});

test("a client that disconnects mid-stream stops its generation; the next request is not delayed", async () => {
  const before = await (await fetch(`${server.base}/metrics`, { headers: auth })).text();
  const ac = new AbortController();
  const r = await fetch(`${server.base}/v1/chat/completions`, {
    method: "POST",
    signal: ac.signal,
    headers: { "content-type": "application/json", ...auth },
    body: JSON.stringify({ model: MODEL, stream: true, max_tokens: 400, temperature: 0, messages: [{ role: "user", content: "Write a very long story about a dragon." }] }),
  });
  const reader = r.body!.getReader();
  let seen = "";
  while (!/"content":"[^"]/.test(seen)) seen += new TextDecoder().decode((await reader.read()).value);
  ac.abort();
  const t0 = performance.now();
  const next = await fetch(`${server.base}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...auth },
    body: JSON.stringify({ model: MODEL, prompt: "Hi", max_tokens: 1 }),
  });
  expect(next.status).toBe(200);
  const waited = performance.now() - t0;
  const after = await (await fetch(`${server.base}/metrics`, { headers: auth })).text();
  const cancelled = metric(after, 'semantic_generations_total{reason="cancelled"}') - metric(before, 'semantic_generations_total{reason="cancelled"}');
  expect(cancelled).toBe(1);
  // The cancelled generation stopped long before its 400 tokens (it ran for one decode step past the abort).
  const generated = metric(after, "semantic_completion_tokens_total") - metric(before, "semantic_completion_tokens_total");
  expect(generated).toBeLessThan(60);
  console.log(`next request answered ${waited.toFixed(0)} ms after the disconnect; ${generated - 1} tokens were generated for the cancelled one`);
});

test("a non-streaming client that disconnects also cancels", async () => {
  const before = await (await fetch(`${server.base}/metrics`, { headers: auth })).text();
  const ac = new AbortController();
  const pending = fetch(`${server.base}/v1/messages`, {
    method: "POST",
    signal: ac.signal,
    headers: { "content-type": "application/json", ...auth },
    body: JSON.stringify({ model: "claude-x", max_tokens: 400, temperature: 0, messages: [{ role: "user", content: "Write a very long story about a dragon." }] }),
  }).catch(() => null);
  // Wait until the engine has produced a few tokens of it.
  for (let i = 0; i < 600; i++) {
    await Bun.sleep(100);
    const m = await (await fetch(`${server.base}/metrics`, { headers: auth })).text();
    if (metric(m, "semantic_running_generations") === 1 && metric(m, "semantic_queue_wait_seconds_count") > metric(before, "semantic_queue_wait_seconds_count")) break;
  }
  await Bun.sleep(500);
  ac.abort();
  await pending;
  for (let i = 0; i < 300; i++) {
    const m = await (await fetch(`${server.base}/metrics`, { headers: auth })).text();
    if (metric(m, 'semantic_generations_total{reason="cancelled"}') > metric(before, 'semantic_generations_total{reason="cancelled"}')) return;
    await Bun.sleep(100);
  }
  throw new Error("the generation was not cancelled");
});

test("the prefix cache is shared within a tenant and never across tenants", async () => {
  const long = "Answer every question with a single word, and never explain anything at all. ".repeat(3);
  const ask = (key: string) =>
    new OpenAI({ baseURL: `${server.base}/v1`, apiKey: key, maxRetries: 0 }).chat.completions.create({
      model: MODEL,
      max_tokens: 1,
      temperature: 0,
      messages: [{ role: "system", content: long }, { role: "user", content: "Color of the sky?" }],
    });
  const a1 = await ask(KEY_A);
  const b1 = await ask(KEY_B);
  const a2 = await ask(KEY_A);
  expect(a1.usage!.prompt_tokens).toBeGreaterThan(48);
  expect(b1.usage!.prompt_tokens_details!.cached_tokens).toBe(0);
  expect(a2.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(48);
});

test("/metrics: Prometheus text with requests per function, TTFT, tokens and queue depth", async () => {
  expect((await fetch(`${server.base}/metrics`)).status).toBe(401);
  const r = await fetch(`${server.base}/metrics`, { headers: auth });
  expect(r.headers.get("content-type")).toStartWith("text/plain; version=0.0.4");
  const text = await r.text();
  expect(text).toContain("# TYPE semantic_http_requests_total counter");
  expect(text).toMatch(/semantic_http_requests_total\{function="\/v1\/chat\/completions",method="POST",status="200"\} \d+/);
  expect(text).toMatch(/semantic_http_request_duration_seconds_bucket\{le="[^"]+",function="\/v1\/messages"\}/);
  expect(metric(text, "semantic_time_to_first_token_seconds_count")).toBeGreaterThanOrEqual(16);
  expect(metric(text, "semantic_completion_tokens_total")).toBeGreaterThan(0);
  expect(metric(text, "semantic_prompt_tokens_total")).toBeGreaterThan(0);
  expect(text).toMatch(/^semantic_queue_depth 0$/m);
  expect(metric(text, "semantic_cache_hits")).toBeGreaterThan(0);
  expect(text).toMatch(/^semantic_cache_blocks\{tier="hot"\} [1-9]\d*$/m);
});

test("/openapi.json describes every route from the same schemas", async () => {
  const doc = (await (await fetch(`${server.base}/openapi.json`, { headers: auth })).json()) as any;
  expect(doc.openapi).toBe("3.1.0");
  for (const p of ["/v1/messages", "/v1/messages/count_tokens", "/v1/chat/completions", "/v1/completions", "/v1/models", "/v1/models/{id}", "/metrics", "/health", "/ready"]) {
    expect(Object.keys(doc.paths)).toContain(p);
  }
  const messages = doc.paths["/v1/messages"].post;
  expect(messages.requestBody.content["application/json"].schema.required).toEqual(expect.arrayContaining(["model", "messages", "max_tokens"]));
  expect(messages.responses["200"].content["text/event-stream"]).toBeDefined();
  expect(Object.keys(messages.responses)).toEqual(expect.arrayContaining(["400", "401", "404", "413", "529"]));
  expect(messages.parameters.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(["beta", "anthropic-version", "anthropic-beta", "x-claude-code-session-id"]));
});

test("the generated client is up to date and works against the server", async () => {
  expect(readFileSync(CLIENT_PATH, "utf8")).toBe(generateClient(await openApiFromApp()));
  const client = new SemanticClient(server.base, { apiKey: KEY_A });
  expect((await client.getV1Models()).data[0].id).toBe(MODEL);
  const counted = await client.postV1MessagesCountTokens({ model: "claude-x", messages: [{ role: "user", content: "Hi" }] });
  const m = await client.postV1Messages({ model: "claude-x", max_tokens: 2, temperature: 0, messages: [{ role: "user", content: "Hi" }] });
  expect(m.usage.input_tokens + m.usage.cache_read_input_tokens + m.usage.cache_creation_input_tokens).toBe(counted.input_tokens);
  const err = await client.getV1ModelsId("gpt-4o").catch((e) => e);
  expect(err).toBeInstanceOf(SemanticApiError);
  expect(err.status).toBe(404);
  expect((await client.getReady()).ready).toBe(true);
});
