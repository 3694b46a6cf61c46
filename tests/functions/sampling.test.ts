// Sampling and structured output with the real model over real HTTP, through the official
// `openai` and `@anthropic-ai/sdk` clients: response_format JSON that parses and validates (ajv,
// an independent validator), forced tool calls through both APIs whose arguments validate
// against the tool's schema, logprobs with top_logprobs in both OpenAI shapes, seeded sampling
// with the extra sampler fields, and bad parameters answered 400 naming the field.
import Anthropic from "@anthropic-ai/sdk";
import Ajv from "ajv";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { type ServerProcess, startServer } from "./server-process.ts";

const MODEL = "SmolLM2-135M-Instruct.Q4_1";
const ajv = new Ajv({ strict: false });
let server: ServerProcess;
let openai: OpenAI;
let anthropic: Anthropic;

beforeAll(async () => {
  server = await startServer();
  openai = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: "local", maxRetries: 0 });
  anthropic = new Anthropic({ baseURL: server.base, apiKey: "local", maxRetries: 0 });
});
afterAll(async () => await server?.stop());

const CITY = {
  type: "object",
  properties: { city: { type: "string", maxLength: 20 }, population: { type: "integer" } },
  required: ["city", "population"],
  additionalProperties: false,
};
const WEATHER = {
  type: "object",
  properties: { city: { type: "string", maxLength: 20 }, unit: { enum: ["celsius", "fahrenheit"] } },
  required: ["city", "unit"],
  additionalProperties: false,
};
const TIME = { type: "object", properties: { zone: { type: "string", maxLength: 12 } }, required: ["zone"] };
const user = (content: string) => [{ role: "user" as const, content }];

/** The value parsed from `text`, after checking it validates against `schema`. */
function validated(schema: object, text: string): unknown {
  const value = JSON.parse(text);
  const validate = ajv.compile(schema);
  expect({ text, valid: validate(value), errors: validate.errors ?? null }).toEqual({ text, valid: true, errors: null });
  return value;
}

describe("structured output (response_format)", () => {
  const body = {
    model: MODEL,
    max_tokens: 40,
    temperature: 0.7,
    seed: 3,
    messages: [{ role: "system" as const, content: "Answer with JSON." }, ...user("Give a large city and its population.")],
    response_format: { type: "json_schema" as const, json_schema: { name: "city", schema: CITY, strict: true } },
  };

  test("json_schema: the answer parses and validates, streamed (the SDK's stream helper) and not, token for token the same", async () => {
    const plain = await openai.chat.completions.create(body);
    expect(plain.choices[0].finish_reason).toBe("stop");
    validated(CITY, plain.choices[0].message.content!);
    const streamed = await openai.chat.completions.stream(body).finalChatCompletion();
    expect(streamed.choices[0].message.content).toBe(plain.choices[0].message.content);
  });

  test("json_object: any JSON object", async () => {
    const c = await openai.chat.completions.create({ ...body, seed: 5, response_format: { type: "json_object" } });
    validated({ type: "object" }, c.choices[0].message.content!);
  });
});

describe("forced tool calls always carry valid input", () => {
  const tools = [
    { type: "function" as const, function: { name: "get_weather", description: "Current weather in a city", parameters: WEATHER } },
    { type: "function" as const, function: { name: "get_time", description: "Current time in a time zone", parameters: TIME } },
  ];

  test("OpenAI: a named tool, and tool_choice required (streamed)", async () => {
    const named = await openai.chat.completions.create({
      model: MODEL, max_tokens: 40, temperature: 0.8, seed: 1, messages: user("What is the weather in Paris?"), tools, tool_choice: { type: "function", function: { name: "get_weather" } },
    });
    expect(named.choices[0].finish_reason).toBe("tool_calls");
    const call = named.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.function.name).toBe("get_weather");
    validated(WEATHER, call.function.arguments);

    const required = await openai.chat.completions
      .stream({ model: MODEL, max_tokens: 48, temperature: 0.8, seed: 2, messages: user("What time is it in Tokyo?"), tools, tool_choice: "required" })
      .finalChatCompletion();
    expect(required.choices[0].finish_reason).toBe("tool_calls");
    const any = required.choices[0].message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
    validated(any.function.name === "get_weather" ? WEATHER : TIME, any.function.arguments);
  });

  test("Anthropic: tool_choice tool, and any (the stream helper)", async () => {
    const atools = tools.map((t) => ({ name: t.function.name, description: t.function.description, input_schema: t.function.parameters as Anthropic.Tool.InputSchema }));
    const named = await anthropic.messages.create({
      model: "claude-x", max_tokens: 40, messages: user("What is the weather in Oslo?"), tools: atools, tool_choice: { type: "tool", name: "get_weather" },
      ...{ temperature: 0.8, seed: 4 }, // (temperature is absent from the SDK's types now; seed is an extra field)
    });
    expect(named.stop_reason).toBe("tool_use");
    const use = named.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use")!;
    expect(use.name).toBe("get_weather");
    validated(WEATHER, JSON.stringify(use.input));

    const any = await anthropic.messages.stream({ model: "claude-x", max_tokens: 48, messages: user("What time is it in Lima?"), tools: atools, tool_choice: { type: "any" } }).finalMessage();
    expect(any.stop_reason).toBe("tool_use");
    const block = any.content.find((b): b is Anthropic.ToolUseBlock => b.type === "tool_use")!;
    validated(block.name === "get_weather" ? WEATHER : TIME, JSON.stringify(block.input));
  });
});

describe("logprobs and top_logprobs", () => {
  const body = { model: MODEL, max_tokens: 4, temperature: 0, messages: user("Name a color."), logprobs: true, top_logprobs: 3 };

  test("chat: per token its text, logprob, bytes and 3 alternatives best first, streamed and not alike", async () => {
    const plain = await openai.chat.completions.create(body);
    const content = plain.choices[0].logprobs!.content!;
    expect(content.length).toBe(plain.usage!.completion_tokens - (plain.choices[0].finish_reason === "stop" ? 1 : 0));
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(new TextDecoder().decode(Uint8Array.from(t.bytes!))).toBe(t.token);
      expect(t.top_logprobs.length).toBe(3);
      expect({ ...t.top_logprobs[0], logprob: 0 }).toEqual({ token: t.token, logprob: 0, bytes: t.bytes }); // greedy: the most likely
      expect(t.top_logprobs[0].logprob).toBeCloseTo(t.logprob, 4);
      for (let j = 1; j < 3; j++) expect(t.top_logprobs[j].logprob).toBeLessThanOrEqual(t.top_logprobs[j - 1].logprob);
    }
    const streamed = await openai.chat.completions.stream(body).finalChatCompletion();
    expect(streamed.choices[0].logprobs!.content!.map((t) => [t.token, t.top_logprobs.map((a) => a.token)])).toEqual(content.map((t) => [t.token, t.top_logprobs.map((a) => a.token)]));
  });

  test("completions: the legacy shape (tokens, token_logprobs, top_logprobs by text, text_offset)", async () => {
    const c = await openai.completions.create({ model: MODEL, prompt: "The capital of France is", max_tokens: 3, temperature: 0, logprobs: 2 });
    const lp = c.choices[0].logprobs!;
    expect(lp.tokens!.join("")).toBe(c.choices[0].text);
    expect(lp.token_logprobs!.length).toBe(lp.tokens!.length);
    expect(lp.text_offset).toEqual(lp.tokens!.map((_, i) => lp.tokens!.slice(0, i).join("").length));
    lp.top_logprobs!.forEach((top, i) => {
      expect(Object.keys(top).length).toBe(2); // greedy: the token is among its 2 best
      expect(top[lp.tokens![i]]).toBeCloseTo(lp.token_logprobs![i], 5);
    });
  });
});

test("seeded sampling with the extra sampler fields (extra_body): the same seed gives the same answer", async () => {
  const body = {
    model: MODEL, max_tokens: 8, temperature: 1, seed: 42, messages: user("Tell me about the sea."),
    top_k: 40, min_p: 0.05, repetition_penalty: 1.1, penalty_last_n: 32, frequency_penalty: 0.2, dynatemp_range: 0.3,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming;
  const [a, b] = await Promise.all([openai.chat.completions.create(body), openai.chat.completions.create(body)]);
  expect(a.choices[0].message.content).toBe(b.choices[0].message.content);
  const m = { model: "claude-x", max_tokens: 8, messages: user("Tell me about the sea."), ...{ temperature: 1, top_k: 40, mirostat: 2, mirostat_tau: 4, seed: 42 } };
  const [x, y] = await Promise.all([anthropic.messages.create(m), anthropic.messages.create(m)]);
  expect(x.content).toEqual(y.content);
});

describe("bad parameters: 400 in each API's shape, naming the field", () => {
  const chat = { model: MODEL, max_tokens: 4, messages: user("hi") };
  const openaiError = async (extra: Record<string, unknown>) => (await openai.chat.completions.create({ ...chat, ...extra } as OpenAI.ChatCompletionCreateParamsNonStreaming).catch((e) => e)) as InstanceType<typeof OpenAI.BadRequestError>;

  test("OpenAI: top_p 2, negative top_k, an unknown sampler field, an invalid schema, unsupported keywords listed", async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ top_p: 2 }, "top_p", /less or equal to 1/],
      [{ top_k: -1 }, "top_k", /greater or equal to 0/],
      [{ xtc_probability: 0.5 }, "xtc_probability", /not supported/],
      [{ response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "objekt" } } } }, "response_format.json_schema.schema", /invalid JSON Schema/],
      [{ response_format: { type: "json_schema", json_schema: { name: "s", schema: { type: "string", format: "email", pattern: "@" } } } }, "response_format.json_schema.schema", /unsupported JSON Schema keywords: format \(at #\), pattern \(at #\)/],
    ];
    for (const [extra, param, message] of cases) {
      const e = await openaiError(extra);
      expect(e).toBeInstanceOf(OpenAI.BadRequestError);
      expect({ param: e.param, type: e.type }).toEqual({ param, type: "invalid_request_error" });
      expect(e.message).toMatch(message);
    }
  });

  test("Anthropic: negative top_k, an unknown sampler field, a forced tool whose schema has unsupported keywords", async () => {
    const m = { model: "claude-x", max_tokens: 4, messages: user("hi") };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ top_k: -1 }, /^top_k: /],
      [{ dry_multiplier: 0.8 }, /^dry_multiplier: this sampler is not supported/],
      [{ tools: [{ name: "f", input_schema: { type: "object", properties: { n: { type: "integer", maximum: 9 } } } }], tool_choice: { type: "tool", name: "f" } }, /^tools\.0\.input_schema: unsupported JSON Schema keywords: maximum \(at #\/properties\/n\)/],
    ];
    for (const [extra, message] of cases) {
      const e = await anthropic.messages.create({ ...m, ...extra } as Anthropic.MessageCreateParamsNonStreaming).catch((e) => e);
      expect(e).toBeInstanceOf(Anthropic.BadRequestError);
      expect(e.error.error.type).toBe("invalid_request_error");
      expect(e.error.error.message).toMatch(message);
    }
  });
});
