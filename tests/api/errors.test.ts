// Bad input, auth, Host/Origin checks, body limit, queue full and context overflow, over real
// HTTP against the composed app. Generation is SCRIPTED (tests/api/scripted-engine.ts), since
// none of these cases reaches the model; every answer must be 4xx/5xx in the API's own shape,
// never a 500 for bad input, and the server must keep serving.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { LOCAL_TENANT } from "../../shared/api/auth.ts";
import { AgentBusyError } from "../../shared/cache/index.ts";
import { scriptedServer } from "./scripted-engine.ts";

const MODEL = "SmolLM2-135M-Instruct.Q4_1";
const LIMIT = 64 * 1024;
let s: ReturnType<typeof scriptedServer>;
let keyed: ReturnType<typeof scriptedServer>;
let small: ReturnType<typeof scriptedServer>;

beforeAll(() => {
  s = scriptedServer({ bodyLimitBytes: LIMIT });
  keyed = scriptedServer({ apiKeys: ["key-one", "key-two"] });
  small = scriptedServer({}, 64);
});
afterAll(() => {
  for (const x of [s, keyed, small]) x.stop();
});

type Sent = { status: number; body: any; headers: Headers };

async function send(base: string, path: string, body: string | Uint8Array | ReadableStream | null, headers: Record<string, string> = {}, method = "POST"): Promise<Sent> {
  const r = await fetch(`${base}${path}`, { method, headers: { "content-type": "application/json", ...headers }, body });
  const text = await r.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // left as text
  }
  return { status: r.status, body: parsed, headers: r.headers };
}

function expectAnthropicError(r: Sent, status: number, type: string, message?: RegExp) {
  expect(r.status).toBe(status);
  expect(r.body).toMatchObject({ type: "error", error: { type } });
  expect(typeof r.body.error.message).toBe("string");
  expect(r.body.request_id).toMatch(/^req_/);
  if (message) expect(r.body.error.message).toMatch(message);
}

function expectOpenAIError(r: Sent, status: number, param?: string | null, message?: RegExp) {
  expect(r.status).toBe(status);
  expect(Object.keys(r.body)).toEqual(["error"]);
  expect(Object.keys(r.body.error).sort()).toEqual(["code", "message", "param", "type"]);
  if (param !== undefined) expect(r.body.error.param).toBe(param);
  if (message) expect(r.body.error.message).toMatch(message);
}

const msg = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: "claude-x", max_tokens: 5, messages: [{ role: "user", content: "hi" }], ...extra });
const chat = (extra: Record<string, unknown> = {}) => JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "hi" }], ...extra });

describe("bad input on /v1/messages: 400 invalid_request_error naming the field", () => {
  const cases: [string, string | Uint8Array, RegExp][] = [
    ["malformed JSON", '{"model": ', /^body: invalid JSON/],
    ["empty body", "", /^body: a JSON object is required/],
    ["not an object", "[1,2]", /^body: expected object/],
    ["missing max_tokens", JSON.stringify({ model: "claude-x", messages: [{ role: "user", content: "hi" }] }), /^max_tokens: required/],
    ["missing messages", JSON.stringify({ model: "claude-x", max_tokens: 5 }), /^messages: required/],
    ["empty messages", msg({ messages: [] }), /^messages: .*greater or equal to 1/],
    ["wrong type", msg({ max_tokens: "5" }), /^max_tokens: expected integer/],
    ["max_tokens 0", msg({ max_tokens: 0 }), /^max_tokens: .*greater or equal to 1/],
    ["max_tokens huge", msg({ max_tokens: 1e9 }), /^max_tokens: .*less or equal to 1048576/],
    ["unknown block type", msg({ messages: [{ role: "user", content: [{ type: "video" }] }] }), /^messages\.0\.content\.0\.type: unknown type "video"/],
    ["block missing text", msg({ messages: [{ role: "user", content: [{ type: "text" }] }] }), /^messages\.0\.content\.0\.text: required/],
    ["unknown role", msg({ messages: [{ role: "tool", content: "x" }] }), /^messages\.0\.role/],
    ["tool_result without tool_use", msg({ messages: [{ role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "x" }] }] }), /tool_use_id.*previous assistant message/],
    ["tool_use in a user message", msg({ messages: [{ role: "user", content: [{ type: "tool_use", id: "t", name: "f", input: {} }] }] }), /user message cannot contain tool_use/],
    ["image content", msg({ messages: [{ role: "user", content: [{ type: "image", source: {} }] }] }), /image content is not supported/],
    ["temperature out of range", msg({ temperature: 3 }), /^temperature: /],
    ["prefill ending in whitespace", msg({ messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "Sure " }] }), /trailing whitespace/],
    ["tool_choice naming no tool", msg({ tools: [{ name: "f", input_schema: { type: "object" } }], tool_choice: { type: "tool", name: "g" } }), /^tool_choice\.name/],
    ["negative top_k", msg({ top_k: -1 }), /^top_k: .*greater or equal to 0/],
    ["top_p 2", msg({ top_p: 2 }), /^top_p: .*less or equal to 1/],
    ["mirostat 1", msg({ mirostat: 1 }), /^mirostat: /],
    ["min_p out of range", msg({ min_p: 1.5 }), /^min_p: .*less or equal to 1/],
    ["an unknown sampler field", msg({ xtc_probability: 0.5 }), /^xtc_probability: this sampler is not supported/],
    ["a forced tool with unsupported schema keywords", msg({ tools: [{ name: "f", input_schema: { type: "object", properties: { d: { type: "string", format: "date" }, n: { type: "integer", minimum: 0 } } } }], tool_choice: { type: "tool", name: "f" } }),
      /^tools\.0\.input_schema: unsupported JSON Schema keywords: format \(at #\/properties\/d\), minimum \(at #\/properties\/n\)/],
    ["a forced tool with an invalid schema", msg({ tools: [{ name: "f", input_schema: { type: "objekt" } }], tool_choice: { type: "any" } }), /^tools\.0\.input_schema: invalid JSON Schema: #\/type "objekt"/],
    ["lone surrogate", '{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"a\\ud800"}]}', /lone surrogate/],
    ["NUL character", '{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"a\\u0000"}]}', /NUL/],
    ["invalid UTF-8", new Uint8Array([...new TextEncoder().encode('{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"a'), 0xff, 0xfe, ...new TextEncoder().encode('"}]}')]), /not valid UTF-8/],
    ["deep nesting", `{"model":"claude-x","max_tokens":5,"metadata":${"[".repeat(5000)}${"]".repeat(5000)},"messages":[{"role":"user","content":"a"}]}`, /nested deeper/],
    ["bad agent id header", msg(), /x-claude-code-session-id/],
  ];
  for (const [name, body, message] of cases) {
    test(name, async () => {
      const headers: Record<string, string> = name === "bad agent id header" ? { "x-claude-code-session-id": "../../etc/passwd" } : {};
      expectAnthropicError(await send(s.base, "/v1/messages", body, headers), 400, "invalid_request_error", message);
    });
  }

  test("unknown model -> 404 not_found_error; claude-* ids are aliases", async () => {
    expectAnthropicError(await send(s.base, "/v1/messages", msg({ model: "gpt-4o" })), 404, "not_found_error", /gpt-4o/);
    expect((await send(s.base, "/v1/messages", msg({ model: "claude-opus-4-20990101" }))).status).toBe(200);
  });

  test("the SDK surfaces the error type", async () => {
    const client = new Anthropic({ baseURL: s.base, apiKey: "x", maxRetries: 0 });
    const e = await client.messages.create({ model: "claude-x", max_tokens: 0, messages: [{ role: "user", content: "hi" }] }).catch((e) => e);
    expect(e).toBeInstanceOf(Anthropic.BadRequestError);
    expect(e.error.error.type).toBe("invalid_request_error");
  });
});

describe("bad input on the OpenAI routes: {error:{message,type,param,code}}", () => {
  const cases: [string, string, string, string | null, RegExp][] = [
    ["malformed JSON", "/v1/chat/completions", "{", "body", /invalid JSON/],
    ["missing model", "/v1/chat/completions", JSON.stringify({ messages: [{ role: "user", content: "hi" }] }), "model", /required/],
    ["empty messages", "/v1/chat/completions", chat({ messages: [] }), "messages", /greater or equal to 1/],
    ["wrong content type", "/v1/chat/completions", chat({ messages: [{ role: "user", content: 5 }] }), "messages.0.content", /expected string or array/],
    ["unknown role", "/v1/chat/completions", chat({ messages: [{ role: "function", content: "x", name: "f" }] }), "messages.0.role", /unknown role "function"/],
    ["n > 1", "/v1/chat/completions", chat({ n: 2 }), "n", /only n=1/],
    ["max_tokens 0", "/v1/chat/completions", chat({ max_tokens: 0 }), "max_tokens", /greater or equal to 1/],
    ["max_completion_tokens huge", "/v1/chat/completions", chat({ max_completion_tokens: 1e12 }), "max_completion_tokens", /less or equal/],
    ["tool message out of order", "/v1/chat/completions", chat({ messages: [{ role: "user", content: "a" }, { role: "tool", tool_call_id: "call_1", content: "x" }] }), "messages.1.tool_call_id", /preceding assistant/],
    ["bad tool arguments", "/v1/chat/completions", chat({ messages: [{ role: "assistant", content: null, tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{nope" } }] }] }), "messages.0.tool_calls.0.function.arguments", /JSON object/],
    ["image part", "/v1/chat/completions", chat({ messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }), "messages.0.content.0", /not supported/],
    ["response_format json_schema without one", "/v1/chat/completions", chat({ response_format: { type: "json_schema" } }), "response_format.json_schema", /required/],
    ["response_format of an unknown type", "/v1/chat/completions", chat({ response_format: { type: "xml" } }), "response_format.type", /unknown type "xml"/],
    ["an invalid JSON schema", "/v1/chat/completions", chat({ response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "strin" } } } }), "response_format.json_schema.schema", /invalid JSON Schema: #\/type "strin"/],
    ["unsupported schema keywords, listed", "/v1/chat/completions", chat({ response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "object", properties: { z: { type: "string", pattern: "^[0-9]+$" } }, patternProperties: {} } } } }),
      "response_format.json_schema.schema", /unsupported JSON Schema keywords: patternProperties \(at #\), pattern \(at #\/properties\/z\)/],
    ["top_logprobs without logprobs", "/v1/chat/completions", chat({ top_logprobs: 3 }), "top_logprobs", /requires logprobs: true/],
    ["top_logprobs 21", "/v1/chat/completions", chat({ logprobs: true, top_logprobs: 21 }), "top_logprobs", /less or equal to 20/],
    ["negative top_k", "/v1/chat/completions", chat({ top_k: -1 }), "top_k", /greater or equal to 0/],
    ["top_p 2", "/v1/chat/completions", chat({ top_p: 2 }), "top_p", /less or equal to 1/],
    ["logit_bias beyond 100", "/v1/chat/completions", chat({ logit_bias: { "5": 101 } }), "logit_bias.5", /less or equal to 100/],
    ["logit_bias for a token not in the vocabulary", "/v1/chat/completions", chat({ logit_bias: { "99999999": 1 } }), "logit_bias", /not in the vocabulary/],
    ["an unknown sampler field", "/v1/chat/completions", chat({ tfs_z: 0.9 }), "tfs_z", /not supported/],
    ["a required tool call with an unsupported keyword", "/v1/chat/completions", chat({ tools: [{ type: "function", function: { name: "f", parameters: { type: "object", properties: { u: { type: "string", format: "uri" } } } } }], tool_choice: "required" }),
      "tools.0.function.parameters", /unsupported JSON Schema keywords: format/],
    ["completions: logprobs with echo", "/v1/completions", JSON.stringify({ model: MODEL, prompt: "a", logprobs: 2, echo: true }), "logprobs", /echo/],
    ["completions: an unknown sampler field", "/v1/completions", JSON.stringify({ model: MODEL, prompt: "a", min_tokens: 3 }), "min_tokens", /not supported/],
    ["bad tool name", "/v1/chat/completions", chat({ tools: [{ type: "function", function: { name: "a b" } }] }), "tools.0.function.name", /1-64 characters/],
    ["bad user id", "/v1/chat/completions", chat({ user: "a/../b" }), "user", /must be/],
    ["completions: empty prompt", "/v1/completions", JSON.stringify({ model: MODEL, prompt: "" }), "prompt", /must not be empty/],
    ["completions: token id out of range", "/v1/completions", JSON.stringify({ model: MODEL, prompt: [1, 99999999] }), "prompt.1", /out of range/],
    ["completions: two prompts", "/v1/completions", JSON.stringify({ model: MODEL, prompt: ["a", "b"] }), "prompt", /only one prompt/],
  ];
  for (const [name, path, body, param, message] of cases) {
    test(name, async () => expectOpenAIError(await send(s.base, path, body), 400, param, message));
  }

  test("unknown model -> 404 model_not_found", async () => {
    const r = await send(s.base, "/v1/chat/completions", chat({ model: "gpt-4o" }));
    expectOpenAIError(r, 404, "model");
    expect(r.body.error.code).toBe("model_not_found");
    expectOpenAIError(await send(s.base, "/v1/models/gpt-4o", null, {}, "GET"), 404);
    expectAnthropicError(await send(s.base, "/v1/models/gpt-4o", null, { "anthropic-version": "2023-06-01" }, "GET"), 404, "not_found_error");
  });

  test("unknown route -> 404 in the caller's shape", async () => {
    expectOpenAIError(await send(s.base, "/v1/nope", null, {}, "GET"), 404);
    expect((await send(s.base, "/api/hello", null, {}, "HEAD")).status).toBe(404);
  });

  test("the SDK raises BadRequestError with the param", async () => {
    const client = new OpenAI({ baseURL: `${s.base}/v1`, apiKey: "x", maxRetries: 0 });
    const e = await client.chat.completions.create({ model: MODEL, messages: [{ role: "user", content: "hi" }], n: 3 }).catch((e) => e);
    expect(e).toBeInstanceOf(OpenAI.BadRequestError);
    expect(e.param).toBe("n");
  });
});

describe("body limit: 413 in the API's shape, never Bun's empty one", () => {
  test("declared length just above the limit", async () => {
    const body = msg({ system: "x".repeat(LIMIT) });
    expectAnthropicError(await send(s.base, "/v1/messages", body), 413, "request_too_large", /limit/);
    expectOpenAIError(await send(s.base, "/v1/chat/completions", chat({ user: "x".repeat(LIMIT) })), 413);
  });

  test("a chunked body without Content-Length is cut at the limit", async () => {
    const chunk = new TextEncoder().encode("x".repeat(16 * 1024));
    let sent = 0;
    const stream = new ReadableStream({
      pull(c) {
        if (sent++ < 8) c.enqueue(chunk);
        else c.close();
      },
    });
    expectAnthropicError(await send(s.base, "/v1/messages", stream), 413, "request_too_large");
  });

  test("a body within the limit is fine", async () => {
    expect((await send(s.base, "/v1/messages", msg({ padding: "x".repeat(LIMIT / 2) }))).status).toBe(200);
  });
});

describe("auth: keys as x-api-key or Bearer, tenants derived by the server", () => {
  test("no key or a wrong key -> 401 in each API's shape", async () => {
    expectAnthropicError(await send(keyed.base, "/v1/messages", msg()), 401, "authentication_error");
    expectAnthropicError(await send(keyed.base, "/v1/messages", msg(), { "x-api-key": "key-three" }), 401, "authentication_error");
    const r = await send(keyed.base, "/v1/chat/completions", chat(), { authorization: "Bearer nope" });
    expectOpenAIError(r, 401);
    expect(r.body.error.code).toBe("invalid_api_key");
    expect((await send(keyed.base, "/v1/models", null, {}, "GET")).status).toBe(401);
    expect((await send(keyed.base, "/metrics", null, {}, "GET")).status).toBe(401);
  });

  test("auth is checked before the body is parsed", async () => {
    expectAnthropicError(await send(keyed.base, "/v1/messages", "{not json"), 401, "authentication_error");
  });

  test("/health and /ready stay public", async () => {
    expect((await send(keyed.base, "/health", null, {}, "GET")).status).toBe(200);
    expect((await send(keyed.base, "/ready", null, {}, "GET")).status).toBe(200);
  });

  test("each key is its own tenant, whichever header carries it; the client cannot name one", async () => {
    const e = keyed.engine;
    await send(keyed.base, "/v1/messages", msg(), { "x-api-key": "key-one", "x-tenant": "key-two" });
    const t1 = e.requests.at(-1)!.tenant;
    await send(keyed.base, "/v1/chat/completions", chat(), { authorization: "Bearer key-one" });
    expect(e.requests.at(-1)!.tenant).toBe(t1);
    await send(keyed.base, "/v1/messages", msg(), { authorization: "Bearer key-two" });
    const t2 = e.requests.at(-1)!.tenant;
    expect(t1).not.toBe(t2);
    for (const t of [t1, t2]) {
      expect(t).toMatch(/^key-[0-9a-f]{16}$/);
      expect(t).not.toContain("one");
    }
    await send(s.base, "/v1/messages", msg());
    expect(s.engine.requests.at(-1)!.tenant).toBe(LOCAL_TENANT);
  });

  test("the SDKs authenticate with their usual headers", async () => {
    const a = new Anthropic({ baseURL: keyed.base, apiKey: "key-two", maxRetries: 0 });
    expect((await a.messages.create({ model: "claude-x", max_tokens: 3, messages: [{ role: "user", content: "hi" }] })).type).toBe("message");
    const o = new OpenAI({ baseURL: `${keyed.base}/v1`, apiKey: "key-one", maxRetries: 0 });
    expect((await o.models.list()).data[0].id).toBe(MODEL);
  });
});

describe("agent ids", () => {
  test("from x-claude-code-session-id, X-Session-ID or the user field, in that order", async () => {
    const e = s.engine;
    await send(s.base, "/v1/messages", msg({ metadata: { user_id: "user_abc" } }), { "x-claude-code-session-id": "3f2a-session", "x-session-id": "other" });
    expect(e.requests.at(-1)!.agentId).toBe("3f2a-session");
    await send(s.base, "/v1/messages", msg({ metadata: { user_id: "user_abc" } }), { "x-session-id": "sess-1" });
    expect(e.requests.at(-1)!.agentId).toBe("sess-1");
    await send(s.base, "/v1/messages", msg({ metadata: { user_id: "user_abc" } }));
    expect(e.requests.at(-1)!.agentId).toBe("user_abc");
    await send(s.base, "/v1/chat/completions", chat({ user: "alice@example.com" }));
    expect(e.requests.at(-1)!.agentId).toBe("alice@example.com");
    await send(s.base, "/v1/chat/completions", chat());
    expect(e.requests.at(-1)!.agentId).toBeNull();
  });

  test("invalid ids are refused with 400 naming where they came from", async () => {
    for (const [headers, field] of [[{ "x-session-id": "a b" }, "x-session-id"], [{ "x-claude-code-session-id": "x".repeat(300) }, "x-claude-code-session-id"]] as const) {
      expectOpenAIError(await send(s.base, "/v1/chat/completions", chat(), headers), 400, field);
    }
    expectAnthropicError(await send(s.base, "/v1/messages", msg({ metadata: { user_id: "é" } })), 400, "invalid_request_error", /^metadata\.user_id/);
  });
});

describe("Host and Origin checks (DNS rebinding, cross-site)", () => {
  test("a foreign Host is refused with 403; loopback names on any port pass", async () => {
    expectAnthropicError(await send(s.base, "/v1/messages", msg(), { host: "evil.example" }), 403, "permission_error", /host/);
    expect((await send(s.base, "/health", null, { host: "evil.example:8080" }, "GET")).status).toBe(403);
    for (const host of ["localhost:1", "127.0.0.1", "[::1]:9"]) expect((await send(s.base, "/health", null, { host }, "GET")).status).toBe(200);
  });

  test("a browser Origin that is not loopback is refused, and no CORS header is ever sent", async () => {
    expectOpenAIError(await send(s.base, "/v1/chat/completions", chat(), { origin: "https://evil.example" }), 403);
    const ok = await send(s.base, "/v1/models", null, { origin: "http://localhost:3000" }, "GET");
    expect(ok.status).toBe(200);
    expect(ok.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("engine refusals", () => {
  test("queue full -> Anthropic 529 overloaded_error / OpenAI 429, with Retry-After, at once", async () => {
    s.engine.queueFull = true;
    try {
      const t0 = performance.now();
      const a = await send(s.base, "/v1/messages", msg({ stream: true }));
      expectAnthropicError(a, 529, "overloaded_error");
      expect(a.headers.get("retry-after")).toBe("3");
      expect(a.headers.get("x-should-retry")).toBe("true");
      const o = await send(s.base, "/v1/chat/completions", chat());
      expectOpenAIError(o, 429);
      expect(o.headers.get("retry-after")).toBe("3");
      expect(performance.now() - t0).toBeLessThan(1000);
    } finally {
      s.engine.queueFull = false;
    }
  });

  test("a busy agent -> 409 in each API's shape, streaming too: the refusal comes before any SSE byte", async () => {
    const busy = () => ({ pieces: ["never"], refuseWith: new AgentBusyError("agent a1 is busy with another turn") });
    s.engine.scripts = [busy(), busy(), busy(), { pieces: ["Hello", " there"] }];
    const a = await send(s.base, "/v1/messages", msg({ stream: true }), { "x-session-id": "a1" });
    expectAnthropicError(a, 409, "invalid_request_error", /busy/);
    const o = await send(s.base, "/v1/chat/completions", chat({ stream: true }), { "x-session-id": "a1" });
    expectOpenAIError(o, 409, null, /busy/);
    expect(o.headers.get("x-should-retry")).toBe("true");
    const c = await send(s.base, "/v1/completions", JSON.stringify({ model: MODEL, prompt: "hi", stream: true }), { "x-session-id": "a1" });
    expectOpenAIError(c, 409, null, /busy/);
    // The next turn streams as usual.
    const ok = await fetch(`${s.base}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: msg({ stream: true }) });
    expect(ok.status).toBe(200);
    expect(await ok.text()).toContain("message_stop");
  });

  test("a prompt over the context -> 400 'prompt is too long: N tokens > M maximum', before any SSE byte", async () => {
    const long = "word ".repeat(200);
    const a = await send(small.base, "/v1/messages", msg({ stream: true, messages: [{ role: "user", content: long }] }));
    expectAnthropicError(a, 400, "invalid_request_error", /^prompt is too long: \d+ tokens > 64 maximum$/);
    const o = await send(small.base, "/v1/chat/completions", chat({ messages: [{ role: "user", content: long }] }));
    expectOpenAIError(o, 400);
    expect(o.body.error.code).toBe("context_length_exceeded");
    const c = await send(small.base, "/v1/messages/count_tokens", JSON.stringify({ model: "claude-x", messages: [{ role: "user", content: long }] }));
    expect(c.body.input_tokens).toBeGreaterThan(64);
  });

  test("max_tokens past the context is clamped and reported as model_context_window_exceeded", async () => {
    small.engine.scripts = [{ pieces: Array(100).fill("a") }];
    const r = await send(small.base, "/v1/messages", msg({ system: "s", max_tokens: 32000 }));
    expect(r.status).toBe(200);
    const req = small.engine.requests.at(-1)!;
    expect(req.maxTokens).toBe(64 - req.promptIds.length);
    expect(r.body.stop_reason).toBe("model_context_window_exceeded");
  });
});

test("while the model loads: /ready 503, /health 200, inference 503 with Retry-After", async () => {
  const { createApp } = await import("../../shared/server.ts");
  const { Metrics } = await import("../../shared/metrics.ts");
  const app = createApp({ mlxVersion: "x", device: "cpu", startedAt: 0, engine: () => null, pool: () => null, metrics: new Metrics() }, { bindHost: "127.0.0.1", apiKeys: [] });
  const get = (path: string, init: RequestInit = {}) => app.handle(new Request(`http://127.0.0.1${path}`, { ...init, headers: { host: "127.0.0.1", ...init.headers } }));
  expect((await get("/ready")).status).toBe(503);
  expect(await (await get("/ready")).json()).toEqual({ ready: false, model: null });
  expect((await get("/health")).status).toBe(200);
  const r = await get("/v1/messages", { method: "POST", body: msg() });
  expect(r.status).toBe(503);
  expect(r.headers.get("retry-after")).toBe("2");
  expect(((await r.json()) as any).error.type).toBe("overloaded_error");
});

test("after all of the above the server still serves", async () => {
  s.engine.scripts = [{ pieces: ["fine"] }];
  const r = await send(s.base, "/v1/messages", msg());
  expect(r.status).toBe(200);
  expect(r.body.content).toEqual([{ type: "text", text: "fine" }]);
});
