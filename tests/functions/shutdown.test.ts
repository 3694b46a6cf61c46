// Graceful shutdown of the real server process (real model, real engine, official SDKs): SIGTERM
// during 4 streaming requests. Every stream ends with a proper final or error event (not a cut),
// the process exits 0, the agents' blocks are on disk, and the next start serves those agents warm.
// The logs of both runs are JSON lines.
// (The drain's timing rules are checked in process, with a scripted engine: tests/api/drain.test.ts.)
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import { hashId } from "../../shared/log.ts";
import { type ServerProcess, startServer } from "./server-process.ts";

const home = mkdtempSync(join(tmpdir(), "semantic-shutdown-"));
const GRACE_MS = 1500;
const env = { SEMANTIC_HOME: home, SEMANTIC_SHUTDOWN_GRACE_MS: String(GRACE_MS) };
let server: ServerProcess | null = null;
afterAll(async () => {
  await server?.stop();
  rmSync(home, { recursive: true, force: true });
});

const MODEL = "SmolLM2-135M-Instruct.Q4_1";
const SYSTEM = "You are a storyteller. You write long, detailed stories with many characters, places and events.";
// Four agents, two per API: the Anthropic ones named by X-Session-ID, the OpenAI ones by the agent API's path.
const AGENTS = [
  { id: "shutdown-anthropic-1", api: "anthropic", topic: "a lighthouse keeper" },
  { id: "shutdown-anthropic-2", api: "anthropic", topic: "a clockmaker" },
  { id: "shutdown-openai-1", api: "openai", topic: "a desert caravan" },
  { id: "shutdown-openai-2", api: "openai", topic: "a mountain village" },
] as const;
const ask = (topic: string) => `Write a very long story about ${topic}.`;
const greedy = { temperature: 0 }; // (the Anthropic SDK's types no longer list temperature; the API still takes it)

const anthropic = (base: string, agent: string) => new Anthropic({ baseURL: base, apiKey: "unused", maxRetries: 0, defaultHeaders: { "x-session-id": agent } });
const openai = (base: string, agent: string) => new OpenAI({ baseURL: `${base}/v1/agents/${agent}`, apiKey: "unused", maxRetries: 0 });

type Ending = { final: boolean; error: unknown; sawText: boolean };

/** One stream read to its end; `generating` resolves at its first text. */
function streamStory(base: string, agent: (typeof AGENTS)[number]) {
  let firstText = () => {};
  const generating = new Promise<void>((resolve) => (firstText = resolve));
  const ended = (async (): Promise<Ending> => {
    let final = false;
    let sawText = false;
    try {
      if (agent.api === "anthropic") {
        const stream = anthropic(base, agent.id).messages.stream({ model: "claude-x", max_tokens: 2000, ...greedy, system: SYSTEM, messages: [{ role: "user", content: ask(agent.topic) }] });
        for await (const e of stream) {
          if (e.type === "content_block_delta") (sawText = true), firstText();
          final = e.type === "message_stop";
        }
      } else {
        const stream = await openai(base, agent.id).chat.completions.create({
          model: MODEL, max_tokens: 2000, temperature: 0, stream: true,
          messages: [{ role: "system", content: SYSTEM }, { role: "user", content: ask(agent.topic) }],
        });
        for await (const c of stream) {
          if (c.choices[0]?.delta.content) (sawText = true), firstText();
          final = c.choices[0]?.finish_reason != null;
        }
      }
      return { final, error: null, sawText };
    } catch (error) {
      return { final: false, error, sawText };
    } finally {
      firstText();
    }
  })();
  return { generating, ended };
}

/** Every stderr line is one JSON object; returns them parsed. */
function logLines(stderr: string): Record<string, any>[] {
  return stderr.split("\n").filter(Boolean).map((line) => {
    try {
      return JSON.parse(line);
    } catch {
      throw new Error(`not a JSON log line: ${line}`);
    }
  });
}

test("SIGTERM during 4 streams: each ends with a final or error event, exit 0, blocks on disk, warm after restart", async () => {
  server = await startServer(env);
  const base = server.base;
  const streams = AGENTS.map((a) => streamStory(base, a));
  // All four are generating when the signal comes.
  await Promise.all(streams.map((s) => s.generating));

  const t0 = performance.now();
  // (New requests during the drain get a 503: tests/api/drain.test.ts. Here, on a loaded 2-core
  // machine, one engine step can outlast the grace period, so when the drain ends is not exact.)
  server.proc.kill("SIGTERM");
  const endings = await Promise.all(streams.map((s) => s.ended));
  expect(await server.proc.exited).toBe(0);
  const exitMs = performance.now() - t0;
  await Bun.sleep(100); // the last stderr bytes
  for (const [i, e] of endings.entries()) {
    expect(e.sawText).toBe(true);
    if (e.final) continue;
    // Not cut: the API's own error event, which the SDK raises as an APIError carrying its body.
    const api = AGENTS[i].api === "anthropic" ? Anthropic.APIError : OpenAI.APIError;
    expect(e.error).toBeInstanceOf(api);
    expect(String((e.error as Error).message)).toContain("shutting down");
  }
  // 2000 tokens each take far longer than the grace period: at least one was cancelled at its end.
  expect(endings.some((e) => !e.final)).toBe(true);
  expect(exitMs).toBeGreaterThanOrEqual(GRACE_MS);
  console.log(`exited ${exitMs.toFixed(0)} ms after SIGTERM (grace ${GRACE_MS} ms); ${endings.filter((e) => e.final).length} finished, ${endings.filter((e) => !e.final).length} cancelled`);

  // Every agent's manifest reached the disk, with each block of its chain and its private tail.
  const files = readdirSync(join(home, "cache"), { recursive: true }).map(String);
  const manifests = files.filter((f) => /\/agents\/[^/]+\/[^/]+\.json$/.test(f)).map((f) => ({ path: f, ...JSON.parse(readFileSync(join(home, "cache", f), "utf8")) }));
  expect(manifests.map((m) => m.agentId).sort()).toEqual(AGENTS.map((a) => a.id).sort());
  for (const m of manifests) {
    expect(m.chain.length).toBeGreaterThan(0);
    for (const key of m.chain) expect(files.some((f) => f.endsWith(`/blocks/${key.slice(0, 2)}/${key}.safetensors`))).toBe(true);
    if (m.tailTokens.length) expect(files).toContain(m.path.replace(/\.json$/, ".tail.safetensors"));
  }

  // Logs: JSON lines only; startup, one line per request (no prompt text), the drain and the stop.
  const first = logLines(server.stderr());
  expect(first.map((l) => l.msg)).toEqual(expect.arrayContaining(["starting", "ready", "shutting down", "stopped"]));
  expect(first.find((l) => l.msg === "shutting down")).toMatchObject({ level: "info", signal: "SIGTERM", inFlight: 4, graceMs: GRACE_MS });
  const requests = first.filter((l) => l.msg === "request" && l.status === 200);
  expect(requests.map((l) => l.agent).sort()).toEqual(AGENTS.map((a) => hashId(a.id)).sort());
  for (const r of requests) {
    expect(r.function).toBe(r.agent === hashId(AGENTS[0].id) || r.agent === hashId(AGENTS[1].id) ? "/v1/messages" : "/v1/agents/:agent_id/chat/completions");
    expect(r).toMatchObject({ stream: true, tenant: hashId("local") });
    expect(r.promptTokens).toBeGreaterThan(32);
    expect(r.ttftMs).toBeGreaterThan(0);
    expect(r.durationMs).toBeGreaterThan(r.ttftMs);
  }
  expect(server.stderr()).not.toContain("very long story");

  // The next start serves each agent's conversation from its persisted cache.
  await server.stop();
  server = await startServer(env);
  const list = (await (await fetch(`${server.base}/v1/agents`)).json()) as { data: { id: string }[] };
  expect(list.data.map((a) => a.id).sort()).toEqual(AGENTS.map((a) => a.id).sort());
  for (const a of AGENTS) {
    if (a.api === "anthropic") {
      const m = await anthropic(server.base, a.id).messages.create({ model: "claude-x", max_tokens: 1, ...greedy, system: SYSTEM, messages: [{ role: "user", content: ask(a.topic) }] });
      expect(m.usage.cache_read_input_tokens).toBeGreaterThan(0);
    } else {
      const c = await openai(server.base, a.id).chat.completions.create({ model: MODEL, max_tokens: 1, temperature: 0, messages: [{ role: "system", content: SYSTEM }, { role: "user", content: ask(a.topic) }] });
      expect(c.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(0);
    }
  }
  // A request's line is written just after its response: wait for the last one.
  const warmLines = () => logLines(server!.stderr()).filter((l) => l.msg === "request" && l.status === 200 && l.function !== "/v1/agents");
  for (let i = 0; i < 100 && warmLines().length < 4; i++) await Bun.sleep(20);
  const warm = warmLines();
  expect(warm).toHaveLength(4);
  for (const r of warm) expect(r.cachedTokens).toBeGreaterThan(0);
});
