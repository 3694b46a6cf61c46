// The direct agent API over real HTTP with the real model: turns reuse the agent's cache, the
// agent is listed, got and deleted within its tenant only, and it stays warm across a restart.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { type ServerProcess, startServer } from "./server-process.ts";

// The JSON bodies these tests read.
type Listed = { data: { id: string }[] };
type AgentInfo = { cached_tokens: number; tier: string };
type ApiError = { error: { code: string } };

const home = mkdtempSync(join(tmpdir(), "semantic-agents-"));
const env = { SEMANTIC_HOME: home, SEMANTIC_API_KEYS: "key-a,key-b" };
let server: ServerProcess;
let model = "";
beforeAll(async () => {
  server = await startServer(env);
  model = ((await (await fetch(`${server.base}/v1/models`, { headers: { authorization: "Bearer key-a" } })).json()) as Listed).data[0].id;
});
afterAll(async () => {
  await server?.stop();
  if (!process.env.KEEP_HOME) rmSync(home, { recursive: true, force: true });
  else console.log("home", home);
});

const client = (key: string, agent: string) => new OpenAI({ apiKey: key, baseURL: `${server.base}/v1/agents/${agent}`, maxRetries: 0 });
const get = (path: string, key: string, method = "GET") => fetch(`${server.base}${path}`, { method, headers: { authorization: `Bearer ${key}` } });

const system = { role: "system" as const, content: "You are a terse assistant. You answer in one short sentence about geography and history." };
let history: OpenAI.ChatCompletionMessageParam[] = [system, { role: "user", content: "Name one river in France." }];

test("a second turn reuses the agent's cache; the agent is listed with its cached tokens", async () => {
  const first = await client("key-a", "trip-planner").chat.completions.create({ model, messages: history, max_tokens: 6, temperature: 0 });
  history = [...history, { role: "assistant", content: first.choices[0].message.content ?? "" }, { role: "user", content: "And one in Spain?" }];
  const second = await client("key-a", "trip-planner").chat.completions.create({ model, messages: history, max_tokens: 6, temperature: 0 });
  expect(second.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(first.usage!.prompt_tokens * 0.8);
  const list = (await (await get("/v1/agents", "key-a")).json()) as Listed;
  expect(list.data.map((a) => a.id)).toEqual(["trip-planner"]);
  const one = (await (await get("/v1/agents/trip-planner", "key-a")).json()) as AgentInfo;
  expect(one.cached_tokens).toBeGreaterThanOrEqual(second.usage!.prompt_tokens);
  expect(["hot", "warm"]).toContain(one.tier);
});

test("another tenant cannot see, read or delete the agent", async () => {
  expect(((await (await get("/v1/agents", "key-b")).json()) as Listed).data).toEqual([]);
  const r = await get("/v1/agents/trip-planner", "key-b");
  expect(r.status).toBe(404);
  expect(((await r.json()) as ApiError).error.code).toBe("not_found");
  expect((await get("/v1/agents/trip-planner", "key-b", "DELETE")).status).toBe(404);
  expect((await get("/v1/agents/trip-planner", "nope")).status).toBe(401);
  expect((await get("/v1/agents/..%2F..%2Fetc", "key-a")).status).toBe(400);
});

test("after a restart the agent's next turn is served from its persisted cache", async () => {
  await server.stop();
  server = await startServer(env);
  const list = (await (await get("/v1/agents", "key-a")).json()) as Listed;
  expect(list.data.map((a) => a.id)).toEqual(["trip-planner"]);
  const again = await client("key-a", "trip-planner").chat.completions.create({ model, messages: history, max_tokens: 4, temperature: 0 });
  expect(again.usage!.prompt_tokens_details!.cached_tokens).toBe(again.usage!.prompt_tokens - 1);
});

test("delete forgets the agent", async () => {
  const r = await get("/v1/agents/trip-planner", "key-a", "DELETE");
  expect(await r.json()).toEqual({ id: "trip-planner", object: "agent.deleted", deleted: true });
  expect((await get("/v1/agents/trip-planner", "key-a")).status).toBe(404);
});
