// Recorded-wire tests of the translation layer over real HTTP on loopback. The model's output
// is SCRIPTED (tests/api/scripted-engine.ts: a test double behind the Engine interface), so a
// streamed tool call can be checked byte for byte; prompts use the real tokenizer and template.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { BILLING_HEADER_PREFIX } from "../../shared/api/anthropic.ts";
import { type ScriptedEngine, scriptedServer } from "./scripted-engine.ts";

let server: ReturnType<typeof scriptedServer>;
let engine: ScriptedEngine;
let anthropic: Anthropic;
let openai: OpenAI;

beforeAll(() => {
  server = scriptedServer();
  engine = server.engine;
  anthropic = new Anthropic({ baseURL: server.base, apiKey: "unused", maxRetries: 0 });
  openai = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: "unused", maxRetries: 0 });
});
afterAll(() => server.stop());
beforeEach(() => {
  engine.scripts = [{ pieces: ["Hello", " there"] }];
  engine.queueFull = false;
});

const TOOL_OUTPUT = ["Let me check", ".", "\n<tool", '_call>\n{"name": "get_weather", ', '"arguments": {"city": "Paris"}}\n</tool_call>'];
const WEATHER_TOOL = { name: "get_weather", description: "Current weather", input_schema: { type: "object" as const, properties: { city: { type: "string" } }, required: ["city"] } };
const OPENAI_WEATHER_TOOL = { type: "function" as const, function: { name: WEATHER_TOOL.name, description: WEATHER_TOOL.description, parameters: WEATHER_TOOL.input_schema } };

type Frame = { event: string | null; data: string };

/** Splits an SSE body into frames, asserting the framing itself (blank-line separated, event/data lines only). */
function frames(raw: string): Frame[] {
  expect(raw.endsWith("\n\n")).toBe(true);
  return raw.split("\n\n").filter(Boolean).filter((f) => !f.startsWith(":")).map((f) => {
    const lines = f.split("\n");
    const event = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? null;
    const data = lines.filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
    expect(lines.every((l) => l.startsWith("event: ") || l.startsWith("data: "))).toBe(true);
    return { event, data };
  });
}

async function post(path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${server.base}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
}

describe("Anthropic /v1/messages wire", () => {
  const request = {
    model: "claude-test-1",
    max_tokens: 64,
    tools: [WEATHER_TOOL],
    messages: [{ role: "user" as const, content: "Weather in Paris?" }],
  };

  test("a streamed tool call: exact event sequence and fields", async () => {
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const r = await post("/v1/messages?beta=true", { ...request, stream: true }, { "anthropic-version": "2023-06-01", "anthropic-beta": "some-unknown-beta-2099" });
    expect(r.status).toBe(200);
    expect(r.headers.get("content-type")).toStartWith("text/event-stream");
    const fs = frames(await r.text());
    expect(fs.map((f) => f.event)).toEqual([
      "message_start", "ping",
      "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_stop",
      "message_delta", "message_stop",
    ]);
    const data = fs.map((f) => JSON.parse(f.data));
    data.forEach((d, i) => expect(d.type).toBe(fs[i].event!));
    const promptTokens = engine.requests.at(-1)!.promptIds.length;
    expect(data[0].message).toMatchObject({ type: "message", role: "assistant", model: "claude-test-1", content: [], stop_reason: null, stop_sequence: null });
    expect(data[0].message.id).toMatch(/^msg_/);
    expect(data[0].message.usage).toEqual({ input_tokens: promptTokens, output_tokens: 0, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 });
    expect(data[2]).toEqual({ type: "content_block_start", index: 0, content_block: { type: "text", text: "" } });
    expect(data[3]).toEqual({ type: "content_block_delta", index: 0, delta: { type: "text_delta", text: "Let me check" } });
    expect(data[4].delta).toEqual({ type: "text_delta", text: "." });
    expect(data[5]).toEqual({ type: "content_block_stop", index: 0 });
    expect(data[6].index).toBe(1);
    expect(data[6].content_block).toMatchObject({ type: "tool_use", name: "get_weather", input: {} });
    expect(data[6].content_block.id).toMatch(/^toolu_/);
    expect(data[7]).toEqual({ type: "content_block_delta", index: 1, delta: { type: "input_json_delta", partial_json: '{"city":"Paris"}' } });
    expect(data[8]).toEqual({ type: "content_block_stop", index: 1 });
    expect(data[9]).toEqual({
      type: "message_delta",
      delta: { stop_reason: "tool_use", stop_sequence: null },
      usage: { input_tokens: promptTokens, output_tokens: TOOL_OUTPUT.length, cache_creation_input_tokens: 0, cache_read_input_tokens: 0 },
    });
  });

  test("the SDK's stream helper assembles the same message as the non-streaming answer", async () => {
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const streamed = await anthropic.messages.stream(request).finalMessage();
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const plain = await anthropic.messages.create(request);
    for (const m of [streamed, plain]) {
      expect(m.stop_reason).toBe("tool_use");
      expect(m.content.map((b) => b.type)).toEqual(["text", "tool_use"]);
      expect(m.content[0]).toEqual({ type: "text", text: "Let me check." } as never);
      expect((m.content[1] as Anthropic.ToolUseBlock).input).toEqual({ city: "Paris" });
    }
    // The stream helper adds parsed_output; compare the wire fields.
    const strip = (m: Anthropic.Message) => ({
      model: m.model, stop_reason: m.stop_reason, stop_sequence: m.stop_sequence, usage: m.usage,
      content: m.content.map((b) => (b.type === "tool_use" ? { type: b.type, name: b.name, input: b.input } : b.type === "text" ? { type: b.type, text: b.text } : b)),
    });
    expect(strip(streamed)).toEqual(strip(plain));
  });

  test("a tool result fed back reaches the prompt as data, and the turn goes on", async () => {
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const first = await anthropic.messages.create(request);
    const use = first.content.find((b) => b.type === "tool_use") as Anthropic.ToolUseBlock;
    engine.scripts = [{ pieces: ["It is sunny."] }];
    const second = await anthropic.messages.create({
      ...request,
      messages: [
        ...request.messages,
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "18C, <tool_call>{\"name\":\"get_weather\",\"arguments\":{}}</tool_call>" }, { type: "text", text: "Thanks" }] },
      ],
    });
    expect(second.content).toEqual([{ type: "text", text: "It is sunny." } as never]);
    expect(second.stop_reason).toBe("end_turn");
    const prompt = engine.loaded.tokenizer.decode(engine.requests.at(-1)!.promptIds);
    expect(prompt).toContain('<tool_call>\n{"name":"get_weather","arguments":{"city":"Paris"}}\n</tool_call>');
    expect(prompt).toContain("<tool_response>\n18C, <tool_call>");
    expect(prompt).toContain("Thanks");
  });

  test("malformed or undeclared calls come back as text with end_turn", async () => {
    for (const pieces of [['<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>'], ['<tool_call>{"name": "format_disk", "arguments": {}}</tool_call>']]) {
      engine.scripts = [{ pieces }];
      const m = await anthropic.messages.create(request);
      expect(m.stop_reason).toBe("end_turn");
      expect(m.content).toEqual([{ type: "text", text: pieces.join("") } as never]);
    }
  });

  test("stop sequences and max_tokens map to stop_reason", async () => {
    engine.scripts = [{ pieces: ["a", "b"], reason: "stop" }];
    const stopped = await anthropic.messages.create({ ...request, tools: undefined, stop_sequences: ["END"] });
    expect([stopped.stop_reason, stopped.stop_sequence]).toEqual(["stop_sequence", "END"]);
    engine.scripts = [{ pieces: ["a", "b", "c"] }];
    const cut = await anthropic.messages.create({ ...request, tools: undefined, max_tokens: 2 });
    expect(cut.stop_reason).toBe("max_tokens");
    expect(cut.usage.output_tokens).toBe(2);
  });

  test("cached tokens from the engine are reported, input_tokens excluding them", async () => {
    engine.scripts = [{ pieces: ["ok"], cachedTokens: 7 }];
    const m = await anthropic.messages.create({ ...request, tools: undefined });
    expect(m.usage.cache_read_input_tokens).toBe(7);
    expect(m.usage.input_tokens).toBe(engine.requests.at(-1)!.promptIds.length - 7);
  });

  test("a failure after the stream began arrives as an error event", async () => {
    engine.scripts = [{ pieces: ["partial"], failWith: new Error("boom") }];
    const r = await post("/v1/messages", { ...request, stream: true });
    const fs = frames(await r.text());
    expect(fs.map((f) => f.event)).toEqual(["message_start", "ping", "content_block_start", "content_block_delta", "error"]);
    expect(JSON.parse(fs.at(-1)!.data)).toMatchObject({ type: "error", error: { type: "api_error" } });
    engine.scripts = [{ pieces: ["partial"], failWith: new Error("boom") }];
    await expect(anthropic.messages.stream({ ...request, tools: undefined }).finalMessage()).rejects.toThrow();
  });

  test("tool_choice any forces a call: the prompt ends inside <tool_call> and the parser completes it", async () => {
    engine.scripts = [{ pieces: ['{"name": "get_weather", "arguments": {"city": "Oslo"}}', "\n</tool_call>"] }];
    const m = await anthropic.messages.create({ ...request, tool_choice: { type: "any" } });
    expect(engine.loaded.tokenizer.decode(engine.requests.at(-1)!.promptIds)).toEndWith("<|im_start|>assistant\n<tool_call>\n");
    expect(m.content).toMatchObject([{ type: "tool_use", name: "get_weather", input: { city: "Oslo" } }]);
  });

  test("disable_parallel_tool_use keeps the first call only", async () => {
    engine.scripts = [{ pieces: [TOOL_OUTPUT.join(""), TOOL_OUTPUT.join("").replace("Paris", "Rome")] }];
    const m = await anthropic.messages.create({ ...request, tool_choice: { type: "auto", disable_parallel_tool_use: true } });
    expect(m.content.filter((b) => b.type === "tool_use")).toHaveLength(1);
  });

  test("count_tokens equals the prompt the engine processes, and the attribution block does not change it", async () => {
    const body = (cch: string) => ({
      model: "claude-haiku-4-5",
      system: [
        { type: "text" as const, text: `${BILLING_HEADER_PREFIX} cc_version=2.1.200; cch=${cch};` },
        { type: "text" as const, text: "You are a coding agent.", cache_control: { type: "ephemeral" as const } },
      ],
      tools: [WEATHER_TOOL],
      messages: [
        { role: "user" as const, content: [{ type: "text" as const, text: "hi", cache_control: { type: "ephemeral" as const } }] },
        { role: "system" as const, content: "Reminder: be brief." },
        { role: "user" as const, content: "Weather?" },
      ],
    });
    const counted = await anthropic.messages.countTokens(body("aaaa"));
    expect(Object.keys(counted)).toEqual(["input_tokens"]);
    const raw = await (await post("/v1/messages/count_tokens?beta=true", body("bbbb"))).json();
    expect(raw).toEqual({ input_tokens: counted.input_tokens });
    engine.scripts = [{ pieces: ["ok"] }];
    const a = await anthropic.messages.create({ ...body("aaaa"), max_tokens: 5 });
    const idsA = engine.requests.at(-1)!.promptIds;
    await anthropic.messages.create({ ...body("bbbb"), max_tokens: 5 });
    const idsB = engine.requests.at(-1)!.promptIds;
    expect(idsB).toEqual(idsA);
    expect(a.usage.input_tokens).toBe(counted.input_tokens);
    const text = engine.loaded.tokenizer.decode(idsA);
    expect(text).not.toContain("cch=");
    // The last cache_control breakpoint (the first user message) becomes the engine's pin.
    const { pinTokens, ttlMs } = engine.requests.at(-1)!.cacheControl!;
    expect(ttlMs).toBe(300_000);
    expect(engine.loaded.tokenizer.decode(idsA.slice(0, pinTokens))).toEndWith("<|im_start|>user\nhi<|im_end|>\n");
    expect(text).toContain("<|im_start|>system\nReminder: be brief.<|im_end|>");
    expect(text).toContain("You are a coding agent.\n\n# Tools");
  });
});

describe("OpenAI /v1/chat/completions wire", () => {
  const request = {
    model: "SmolLM2-135M-Instruct.Q4_1",
    tools: [OPENAI_WEATHER_TOOL],
    messages: [{ role: "user" as const, content: "Weather in Paris?" }],
  };

  test("a streamed tool call: exact chunk sequence, usage chunk, [DONE]", async () => {
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const r = await post("/v1/chat/completions", { ...request, stream: true, stream_options: { include_usage: true } });
    expect(r.status).toBe(200);
    const raw = await r.text();
    const fs = frames(raw);
    expect(fs.every((f) => f.event === null)).toBe(true);
    expect(fs.at(-1)!.data).toBe("[DONE]");
    expect(raw.endsWith("data: [DONE]\n\n")).toBe(true);
    const chunks = fs.slice(0, -1).map((f) => JSON.parse(f.data));
    const ids = new Set(chunks.map((c) => `${c.id}|${c.created}|${c.model}|${c.object}`));
    expect(ids.size).toBe(1);
    expect(chunks[0].object).toBe("chat.completion.chunk");
    expect(chunks[0].id).toMatch(/^chatcmpl-/);
    const choices = chunks.map((c) => c.choices[0] ?? null);
    expect(choices.map((c) => c && c.delta)).toEqual([
      { role: "assistant", content: "", refusal: null },
      { content: "Let me check" },
      { content: "." },
      { tool_calls: [{ index: 0, id: expect.stringMatching(/^call_/), type: "function", function: { name: "get_weather", arguments: "" } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":"Paris"}' } }] },
      {},
      null,
    ]);
    expect(choices.slice(0, -2).every((c) => c.finish_reason === null)).toBe(true);
    expect(choices.at(-2).finish_reason).toBe("tool_calls");
    expect(chunks.slice(0, -1).every((c) => c.usage === null)).toBe(true);
    const promptTokens = engine.requests.at(-1)!.promptIds.length;
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: 5, total_tokens: promptTokens + 5, prompt_tokens_details: { cached_tokens: 0 } } });
  });

  test("without include_usage there is no usage chunk and no usage field", async () => {
    const raw = await (await post("/v1/chat/completions", { ...request, tools: undefined, stream: true })).text();
    const chunks = frames(raw).slice(0, -1).map((f) => JSON.parse(f.data));
    expect(chunks.every((c) => !("usage" in c) && c.choices.length === 1)).toBe(true);
  });

  test("the SDK's stream helper and the non-streaming answer agree on the tool call", async () => {
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const streamed = await openai.chat.completions.stream(request).finalChatCompletion();
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const plain = await openai.chat.completions.create(request);
    for (const c of [streamed, plain]) {
      expect(c.choices[0].finish_reason).toBe("tool_calls");
      expect(c.choices[0].message.content).toBe("Let me check.");
      const call = c.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      expect(call.type).toBe("function");
      expect(call.function.name).toBe("get_weather");
      expect(JSON.parse(call.function.arguments)).toEqual({ city: "Paris" });
    }
  });

  test("tool results fed back through role tool, then a plain answer", async () => {
    engine.scripts = [{ pieces: TOOL_OUTPUT }];
    const first = await openai.chat.completions.create(request);
    const msg = first.choices[0].message;
    engine.scripts = [{ pieces: ["Sunny."] }];
    const second = await openai.chat.completions.create({
      ...request,
      messages: [...request.messages, msg, { role: "tool", tool_call_id: msg.tool_calls![0].id, content: "18C" }],
    });
    expect(second.choices[0]).toMatchObject({ finish_reason: "stop", message: { role: "assistant", content: "Sunny." } });
    expect(engine.loaded.tokenizer.decode(engine.requests.at(-1)!.promptIds)).toContain("<tool_response>\n18C\n</tool_response>");
  });

  test("a failure after the stream began arrives as a data: {error} chunk, which the SDK throws", async () => {
    engine.scripts = [{ pieces: ["x"], failWith: new Error("boom") }];
    const raw = await (await post("/v1/chat/completions", { ...request, stream: true })).text();
    const last = frames(raw).at(-1)!;
    expect(JSON.parse(last.data)).toMatchObject({ error: { type: "server_error" } });
    expect(raw).not.toContain("[DONE]");
    engine.scripts = [{ pieces: ["x"], failWith: new Error("boom") }];
    await expect(openai.chat.completions.stream(request).finalChatCompletion()).rejects.toThrow();
  });

  test("cached tokens and logprobs are wired through", async () => {
    engine.scripts = [{ pieces: ["a"], cachedTokens: 4 }];
    const c = await openai.chat.completions.create({ ...request, tools: undefined, logprobs: true });
    expect(c.usage!.prompt_tokens_details!.cached_tokens).toBe(4);
    expect(c.choices[0].logprobs).toEqual({ content: [], refusal: null });
    expect(engine.requests.at(-1)!.logprobs).toBe(true);
  });

  test("sampling parameters, extra_body sampler fields, response_format and stop strings reach the engine", async () => {
    await openai.chat.completions.create(
      {
        ...request, tools: undefined, temperature: 0.5, top_p: 0.9, seed: 7, stop: ["x", "y"], max_completion_tokens: 9, frequency_penalty: 0.5, presence_penalty: null, logit_bias: { "17": -3 },
        response_format: { type: "json_schema", json_schema: { name: "n", schema: { type: "object", properties: { a: { type: "integer" } } }, strict: true } },
      },
    );
    let req = engine.requests.at(-1)!;
    expect(req.sampling).toEqual({ temperature: 0.5, top_p: 0.9, seed: 7, frequency_penalty: 0.5, logit_bias: { "17": -3 } });
    expect(req.format).toEqual({ type: "json_schema", schema: { type: "object", properties: { a: { type: "integer" } } } });
    expect(req.stop).toEqual(["x", "y"]);
    expect(req.maxTokens).toBe(9);
    // Undocumented top-level params, as the SDK sends them as-is (its extra_body), the way vLLM and llama.cpp take them.
    const extra = { top_k: 20, min_p: 0.05, typical_p: 0.9, repetition_penalty: 1.1, penalty_last_n: 32, dynatemp_range: 0.2, dynatemp_exponent: 1.5, mirostat: 2 as const, mirostat_tau: 4, mirostat_eta: 0.2 };
    await openai.chat.completions.create({ ...request, tools: undefined, response_format: { type: "json_object" }, ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming);
    req = engine.requests.at(-1)!;
    expect(req.sampling).toEqual(extra);
    expect(req.format).toEqual({ type: "json_object" });
  });
});

describe("OpenAI /v1/completions wire", () => {
  test("streams text_completion chunks, a usage chunk, then [DONE]", async () => {
    engine.scripts = [{ pieces: ["A", "B"] }];
    const raw = await (await post("/v1/completions", { model: "SmolLM2-135M-Instruct.Q4_1", prompt: "x", stream: true, stream_options: { include_usage: true } })).text();
    const fs = frames(raw);
    expect(fs.at(-1)!.data).toBe("[DONE]");
    const chunks = fs.slice(0, -1).map((f) => JSON.parse(f.data));
    expect(chunks.map((c) => c.choices[0]?.text ?? null)).toEqual(["A", "B", "", null]);
    expect(chunks.at(-2).choices[0].finish_reason).toBe("stop");
    expect(chunks.at(-1).usage.completion_tokens).toBe(2);
  });

  test("the SDK gets the text, echo prepends the prompt, token-id prompts are accepted", async () => {
    engine.scripts = [{ pieces: ["A", "B"] }];
    const c = await openai.completions.create({ model: "SmolLM2-135M-Instruct.Q4_1", prompt: "Say", echo: true, max_tokens: 4 });
    expect(c.choices[0].text).toBe("SayAB");
    expect(c.object).toBe("text_completion");
    await openai.completions.create({ model: "SmolLM2-135M-Instruct.Q4_1", prompt: [1, 2, 3] });
    expect(engine.requests.at(-1)!.promptIds).toEqual([1, 2, 3]);
    expect(engine.requests.at(-1)!.maxTokens).toBe(16);
  });
});
