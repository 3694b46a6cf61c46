// Structured logs over real HTTP with a SCRIPTED engine (scripted-engine.ts): one JSON line per
// request (streamed or not, failed or not) with its id, function, hashed tenant and agent, token
// counts, TTFT, duration and status; no prompt or completion text unless logPrompts; levels
// filter. The real process's lines (startup, shutdown) are checked in tests/functions/shutdown.test.ts.
import { TEST_LOG_LEVEL } from "../preload.ts";
import { afterAll, afterEach, beforeAll, expect, test } from "bun:test";
import { Auth } from "../../shared/api/auth.ts";
import { hashId, Logger, log } from "../../shared/log.ts";
import { scriptedServer } from "./scripted-engine.ts";

let server: ReturnType<typeof scriptedServer>;
let lines: string[] = [];
const SECRET_PROMPT = "the-password-is-swordfish";
const TENANT = new Auth(["key-a"]).authenticate(new Headers({ "x-api-key": "key-a" })).tenant;

beforeAll(() => {
  server = scriptedServer({ apiKeys: ["key-a"] });
});
afterAll(() => server.stop());
afterEach(() => log.configure({ level: TEST_LOG_LEVEL, prompts: false, write: (l) => process.stderr.write(l) }));

function capture(prompts = false) {
  lines = [];
  log.configure({ level: "info", prompts, write: (l) => lines.push(l) });
}

/** The request lines written so far, parsed; every line must be one JSON object. */
function requestLines() {
  return lines.map((l) => {
    expect(l.endsWith("\n")).toBe(true);
    expect(l.slice(0, -1)).not.toContain("\n");
    return JSON.parse(l) as Record<string, any>;
  }).filter((l) => l.msg === "request");
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${server.base}${path}`, { method: "POST", headers: { "content-type": "application/json", "x-api-key": "key-a", ...headers }, body: JSON.stringify(body) });

// The record ends after the response: give the after-response hook a moment.
const settle = () => Bun.sleep(50);

test("one line per request: id, function, hashed tenant and agent, tokens, cache hits, TTFT, duration, status; no prompt text", async () => {
  capture();
  server.engine.scripts = [{ pieces: ["Hello", " there", "!"], cachedTokens: 7, delayMs: 20 }];
  const r = await post("/v1/messages", { model: "claude-x", max_tokens: 20, stream: true, messages: [{ role: "user", content: SECRET_PROMPT }] }, { "x-session-id": "agent-7" });
  const sse = await r.text();
  expect(sse).toContain("message_stop");
  const j = await post("/v1/chat/completions", { model: "claude-x", messages: [{ role: "user", content: SECRET_PROMPT }] });
  expect(j.status).toBe(200);
  await settle();

  const [stream, plain] = requestLines();
  expect(stream).toMatchObject({
    level: "info",
    requestId: r.headers.get("request-id"),
    function: "/v1/messages",
    method: "POST",
    status: 200,
    tenant: hashId(TENANT),
    agent: hashId("agent-7"),
    stream: true,
    cachedTokens: 7,
    completionTokens: 3,
    finish: "end",
  });
  expect(stream.requestId).toMatch(/^req_/);
  expect(stream.tenant).toMatch(/^[0-9a-f]{12}$/);
  expect(stream.promptTokens).toBeGreaterThan(7);
  expect(stream.ttftMs).toBeGreaterThan(0);
  // The duration runs to the stream's end (3 pieces, 20 ms apart), past the first token.
  expect(stream.durationMs).toBeGreaterThanOrEqual(stream.ttftMs + 40);
  expect(new Date(stream.time).getTime()).toBeGreaterThan(Date.now() - 60_000);
  expect(plain).toMatchObject({ function: "/v1/chat/completions", status: 200, stream: false, agent: null, completionTokens: 3 });
  // No prompt, completion or key in any line.
  const all = lines.join("");
  for (const secret of [SECRET_PROMPT, "Hello there", "key-a", TENANT, "agent-7"]) expect(all).not.toContain(secret);
});

test("failures are logged with their status and error type, and counted by type", async () => {
  capture();
  const bad = await post("/v1/messages", { model: "claude-x", max_tokens: 0, messages: [] });
  expect(bad.status).toBe(400);
  const noKey = await fetch(`${server.base}/v1/models`);
  expect(noKey.status).toBe(401);
  server.engine.scripts = [{ pieces: ["x"], failWith: new Error("boom") }];
  await (await post("/v1/chat/completions", { model: "claude-x", stream: true, messages: [{ role: "user", content: "hi" }] })).text();
  await settle();
  const [invalid, unauthorized, midStream] = requestLines();
  expect(invalid).toMatchObject({ function: "/v1/messages", status: 400, error: "invalid_request", level: "info" });
  expect(unauthorized).toMatchObject({ status: 401, error: "authentication", tenant: null });
  // A failure after the 200 went out: the status stays 200, the error and the level say what happened.
  expect(midStream).toMatchObject({ function: "/v1/chat/completions", status: 200, error: "internal", level: "error", stream: true });
  const failure = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "stream failed");
  expect(failure).toMatchObject({ level: "error", requestId: midStream.requestId, error: { name: "Error", message: "boom" } });
  const metrics = await server.metrics.text();
  expect(metrics).toMatch(/^semantic_errors_total\{type="invalid_request"\} 1$/m);
  expect(metrics).toMatch(/^semantic_errors_total\{type="authentication"\} 1$/m);
  expect(metrics).toMatch(/^semantic_errors_total\{type="internal"\} 1$/m);
});

test("a stream the client leaves is logged when it leaves, as cancelled", async () => {
  capture();
  server.engine.scripts = [{ pieces: Array(100).fill("x"), delayMs: 20 }];
  const r = await post("/v1/chat/completions", { model: "claude-x", stream: true, messages: [{ role: "user", content: "hi" }] });
  const reader = r.body!.getReader();
  await reader.read();
  await reader.cancel(); // the client goes away mid-answer
  for (let i = 0; i < 50 && requestLines().length === 0; i++) await Bun.sleep(20);
  expect(requestLines()).toMatchObject([{ function: "/v1/chat/completions", status: 200, stream: true, finish: "cancelled" }]);
  expect(requestLines()[0].durationMs).toBeLessThan(100 * 20);
});

test("logPrompts adds the prompt and the completion; probes log at debug only", async () => {
  capture(true);
  server.engine.scripts = [{ pieces: ["Hello", " there"] }];
  await (await post("/v1/messages", { model: "claude-x", max_tokens: 5, system: "Be kind.", messages: [{ role: "user", content: SECRET_PROMPT }] })).json();
  await fetch(`${server.base}/health`);
  await settle();
  const [line, ...rest] = requestLines();
  expect(line.prompt).toEqual({ system: "Be kind.", messages: [{ role: "user", content: SECRET_PROMPT }] });
  expect(line.completion).toBe("Hello there");
  expect(rest).toEqual([]); // /health: debug, below the level
});

test("levels: lines below the configured level are dropped", () => {
  const out: string[] = [];
  const l = new Logger();
  l.configure({ level: "warn", write: (s) => out.push(s) });
  l.debug("a");
  l.info("b");
  l.warn("c", { n: 1 });
  l.error("d");
  expect(out.map((s) => JSON.parse(s))).toMatchObject([{ level: "warn", msg: "c", n: 1 }, { level: "error", msg: "d" }]);
});
