// bun run bench:http — what the HTTP layer adds to a generation: for each API, the time from
// sending a request on loopback to its first content byte (streaming) or its whole body (not
// streaming), minus the engine's own time for the same request (submit to first token, or
// submit to done), measured on the same clock in one process. What remains is Elysia, body
// parsing and TypeBox validation, auth, the chat template and tokenization, the API
// translation, SSE framing and the socket. A bare GET /health is the floor of the socket alone.
//   BENCH_REQUESTS  requests per case (default 50)
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlockPool } from "../../shared/cache/index.ts";
import { BatchEngine } from "../../shared/engine/batch-engine.ts";
import type { Engine, EngineEvent, GenerationRequest } from "../../shared/engine/engine.ts";
import { log } from "../../shared/log.ts";
import { Metrics } from "../../shared/metrics.ts";
import { defaultDevice, mlxVersion } from "../../shared/mlx/index.ts";
import { loadModel } from "../../shared/models/load.ts";
import { defaultModelPath } from "../../shared/paths.ts";
import { createApp } from "../../shared/server.ts";
import { fmt, quantile } from "./harness.ts";
import { machineLine, writeSection } from "./markdown-section.ts";

const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 50);

/** The engine's own clock for the latest request: submit, first token, done. */
type EngineTimes = { submit: number; firstToken: number; done: number };

// Wraps the real engine and timestamps each request's events as the engine yields them.
class TimedEngine implements Engine {
  last: EngineTimes | null = null;
  constructor(readonly inner: Engine) {}
  get loaded() {
    return this.inner.loaded;
  }
  load() {
    return this.inner.load();
  }
  submit(req: GenerationRequest): AsyncIterable<EngineEvent> {
    const t: EngineTimes = { submit: performance.now(), firstToken: Number.NaN, done: Number.NaN };
    this.last = t;
    const events = this.inner.submit(req);
    return (async function* () {
      for await (const e of events) {
        if (e.type === "token" && Number.isNaN(t.firstToken)) t.firstToken = performance.now();
        if (e.type === "done") t.done = performance.now();
        yield e;
      }
    })();
  }
}

log.configure({ level: "warn" });
const loaded = await loadModel(defaultModelPath());
const dir = mkdtempSync(join(tmpdir(), "semantic-bench-http-"));
const pool = await BlockPool.open({ dir, tag: loaded.tag, spec: loaded.model.cacheSpec, memoryBudget: 1 << 30 });
const engine = new TimedEngine(new BatchEngine(loaded, { pool }));
const metrics = new Metrics();
const app = createApp(
  { mlxVersion: mlxVersion(), device: defaultDevice(), startedAt: Date.now(), engine: () => engine, pool: () => pool, metrics },
  { bindHost: "127.0.0.1", apiKeys: [] },
).listen({ hostname: "127.0.0.1", port: 0 });
const base = `http://127.0.0.1:${app.server!.port}`;

// One short turn, the same every time: after the first, its prompt is a full cache hit, so the
// engine's part is small and steady and the HTTP layer's share is visible.
const question = [{ role: "user", content: "Say hi." }];
type Case = { name: string; path: string; body: object; stream: boolean; firstContent: RegExp };
const cases: Case[] = [
  { name: "Anthropic /v1/messages, streaming", path: "/v1/messages", stream: true, firstContent: /text_delta/, body: { model: loaded.id, max_tokens: 1, messages: question, stream: true } },
  { name: "Anthropic /v1/messages", path: "/v1/messages", stream: false, firstContent: /./, body: { model: loaded.id, max_tokens: 1, messages: question } },
  { name: "OpenAI /v1/chat/completions, streaming", path: "/v1/chat/completions", stream: true, firstContent: /"content":"[^"]/, body: { model: loaded.id, max_tokens: 1, messages: question, stream: true } },
  { name: "OpenAI /v1/chat/completions", path: "/v1/chat/completions", stream: false, firstContent: /./, body: { model: loaded.id, max_tokens: 1, messages: question } },
];

/**
 * Client-side ms to the first content (streaming) or the whole body, the engine's ms for the same
 * span, and the overhead's part before the engine got the request (parsing to submit).
 */
async function once(c: Case): Promise<{ client: number; engine: number; before: number }> {
  const t0 = performance.now();
  const res = await fetch(base + c.path, { method: "POST", headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" }, body: JSON.stringify(c.body) });
  let client = Number.NaN;
  if (c.stream) {
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let seen = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += dec.decode(value, { stream: true });
      if (Number.isNaN(client) && c.firstContent.test(seen)) client = performance.now() - t0;
    }
  } else {
    await res.arrayBuffer();
    client = performance.now() - t0;
  }
  if (res.status !== 200 || Number.isNaN(client)) throw new Error(`${c.name}: status ${res.status}, no content seen`);
  const t = engine.last!;
  return { client, engine: c.stream ? t.firstToken - t.submit : t.done - t.submit, before: t.submit - t0 };
}

async function health(): Promise<number> {
  const t0 = performance.now();
  await (await fetch(`${base}/health`)).arrayBuffer();
  return performance.now() - t0;
}

const rows: string[] = [];
const floor: number[] = [];
for (let i = 0; i < REQUESTS + 20; i++) {
  const ms = await health();
  if (i >= 20) floor.push(ms);
}
rows.push(`| GET /health (the socket and routing alone) | ${fmt(quantile(floor, 0.5), 2)} ms | — | ${fmt(quantile(floor, 0.5), 2)} ms | — | — | ${fmt(quantile(floor, 0.99), 2)} ms |`);
for (const c of cases) {
  for (let i = 0; i < 3; i++) await once(c); // warm-up, and the prompt becomes cached
  const runs: { client: number; engine: number; before: number }[] = [];
  for (let i = 0; i < REQUESTS; i++) runs.push(await once(c));
  const overhead = runs.map((r) => r.client - r.engine);
  const p50 = (xs: number[]) => `${fmt(quantile(xs, 0.5), 2)} ms`;
  rows.push(
    `| ${c.name} | ${p50(runs.map((r) => r.client))} | ${p50(runs.map((r) => r.engine))} | **${p50(overhead)}** | ${p50(runs.map((r) => r.before))} | ${p50(runs.map((r) => r.client - r.engine - r.before))} | ${fmt(quantile(overhead, 0.99), 2)} ms |`,
  );
}
app.stop(true);
await pool.flush();
pool.close();
loaded.model.free();
rmSync(dir, { recursive: true, force: true });

const body = `## HTTP overhead (\`bun run bench:http\`)

${machineLine()}, MLX ${mlxVersion()} (${defaultDevice()}). ${REQUESTS} sequential requests per case over loopback
(\`fetch\` in the same process as the server, so client and engine share one clock), each a one-token
answer to the same short chat whose prompt is cached after the warm-up. Overhead = client time to the first
content byte (streaming) or to the whole body (not streaming) minus the engine's own time for that request
(submit to first token, or submit to done). "Before submit" is the client's send to the engine's submit
(the socket, parsing, validation, the template, tokenization); "after the engine" the rest (the
scheduler handing the event over, the API's framing, the socket back). It covers Elysia routing, body parsing and TypeBox validation,
auth, the chat template and tokenization, the API translation, SSE framing and the socket. Target (issue 5):
p50 < 2 ms.

| case | client p50 | engine p50 | overhead p50 | of which before submit p50 | of which after the engine p50 | overhead p99 |
| --- | --- | --- | --- | --- | --- | --- |
${rows.join("\n")}

No peer is put beside it: neither mlx-lm's server nor llama.cpp's exposes its engine's own time per
request, so their HTTP share cannot be separated the same way.`;
writeSection("http", body);
console.log(body);
