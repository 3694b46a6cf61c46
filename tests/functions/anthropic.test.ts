// The Anthropic routes with the real model over real HTTP, through the official
// `@anthropic-ai/sdk` client: create, the stream helper, the raw event order, count_tokens equal
// to the prompt tokens the engine used, Claude Code's ?beta=true / aliases / attribution block,
// and the context overflow error. Greedy (temperature 0) so streamed and plain answers match.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type ServerProcess, startServer } from "./server-process.ts";

let server: ServerProcess;
let client: Anthropic;

beforeAll(async () => {
  server = await startServer();
  client = new Anthropic({ baseURL: server.base, apiKey: "local", maxRetries: 0 });
});
afterAll(async () => await server?.stop());

const body = {
  model: "claude-haiku-test",
  max_tokens: 5,
  temperature: 0,
  system: [
    { type: "text" as const, text: "x-anthropic-billing-header: cc_version=2.1.200.abc; cc_entrypoint=cli; cch=1f2e3;" },
    { type: "text" as const, text: "Be brief.", cache_control: { type: "ephemeral" as const } },
  ],
  messages: [{ role: "user" as const, content: "Name a color." }],
};

test("create and the stream helper give the same message; count_tokens equals the prompt tokens used", async () => {
  const plain = await client.messages.create(body);
  expect(plain.type).toBe("message");
  expect(plain.model).toBe(body.model);
  expect(plain.content[0].type).toBe("text");
  expect(["end_turn", "max_tokens"]).toContain(plain.stop_reason!);
  const { input_tokens } = await client.messages.countTokens({ model: body.model, system: body.system, messages: body.messages });
  expect(plain.usage.input_tokens + plain.usage.cache_read_input_tokens! + plain.usage.cache_creation_input_tokens!).toBe(input_tokens);
  expect(plain.usage.output_tokens).toBeLessThanOrEqual(5);

  const streamed = await client.messages.stream(body).finalMessage();
  expect(streamed.content.map((b) => (b.type === "text" ? b.text : ""))).toEqual(plain.content.map((b) => (b.type === "text" ? b.text : "")));
  expect(streamed.stop_reason).toBe(plain.stop_reason);
  expect(streamed.usage.output_tokens).toBe(plain.usage.output_tokens);
});

test("raw stream with ?beta=true and Claude Code's headers: the exact event order", async () => {
  const r = await fetch(`${server.base}/v1/messages?beta=true`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "anthropic-version": "2023-06-01",
      "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,not-a-real-beta",
      "x-claude-code-session-id": "0b7c1e9a-5d2f-4c1b-9f0e-1234567890ab",
    },
    body: JSON.stringify({ ...body, stream: true, max_tokens: 3 }),
  });
  expect(r.status).toBe(200);
  const events = (await r.text()).split("\n\n").filter((f) => f.startsWith("event: ")).map((f) => f.split("\n")[0].slice(7));
  expect(events.slice(0, 3)).toEqual(["message_start", "ping", "content_block_start"]);
  expect(events.slice(-3)).toEqual(["content_block_stop", "message_delta", "message_stop"]);
  expect(events.slice(3, -3).every((e) => e === "content_block_delta" || e === "ping")).toBe(true);
});

test("a prompt over the context: 400 'prompt is too long: N tokens > 8192 maximum', N as count_tokens says", async () => {
  const messages = [{ role: "user" as const, content: "hello ".repeat(9000) }];
  const { input_tokens } = await client.messages.countTokens({ model: body.model, messages });
  expect(input_tokens).toBeGreaterThan(8192);
  const e = await client.messages.create({ model: body.model, max_tokens: 5, messages }).catch((e) => e);
  expect(e).toBeInstanceOf(Anthropic.BadRequestError);
  expect(e.error.error).toEqual({ type: "invalid_request_error", message: `prompt is too long: ${input_tokens} tokens > 8192 maximum` });
});

test("Claude Code's rotating attribution block does not defeat prefix reuse: the second turn reads the cache", async () => {
  // A few 16-token blocks of shared prefix (the test server's block size).
  const long = "You are a careful assistant who answers in one short sentence. ".repeat(3);
  const turn = (cch: string) =>
    client.messages.create(
      {
        model: body.model,
        max_tokens: 2,
        ...{ temperature: 0 }, // (absent from the SDK's types now; the API still takes it)
        system: [{ type: "text", text: `x-anthropic-billing-header: cc_version=2.1.200.abc; cch=${cch};` }, { type: "text", text: long }],
        messages: [{ role: "user", content: "Hi" }],
      },
      { headers: { "x-claude-code-session-id": "cache-test-session" } },
    );
  const first = await turn("aaaaa");
  const second = await turn("bbbbb");
  const total = (u: Anthropic.Usage) => u.input_tokens + u.cache_read_input_tokens! + u.cache_creation_input_tokens!;
  expect(total(second.usage)).toBe(total(first.usage));
  expect(first.usage.cache_read_input_tokens).toBe(0);
  expect(first.usage.cache_creation_input_tokens).toBeGreaterThanOrEqual(32);
  // The session's agent reuses the whole prompt but its last token (which must be recomputed for
  // its logits): Claude Code's >= 99% prefix reuse on long prompts.
  expect(second.usage.cache_read_input_tokens).toBe(total(first.usage) - 1);
});

test("tools with the real model: 200, and stop_reason tool_use exactly when a tool_use block came back", async () => {
  const m = await client.messages.create({
    ...body,
    max_tokens: 6,
    tools: [{ name: "get_color", description: "Returns a color", input_schema: { type: "object", properties: { shade: { type: "string" } } } }],
    tool_choice: { type: "tool", name: "get_color" },
  });
  const uses = m.content.filter((b) => b.type === "tool_use");
  expect(m.stop_reason === "tool_use").toBe(uses.length > 0);
  for (const u of uses) expect(typeof (u as Anthropic.ToolUseBlock).input).toBe("object");
});
