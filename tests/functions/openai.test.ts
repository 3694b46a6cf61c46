// The OpenAI routes with the real model over real HTTP, through the official `openai` client:
// non-streaming, streaming (the SDK's stream helper assembles the final message), usage,
// completions, logprobs, models. Greedy (temperature 0) so streamed and plain answers must match.
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI from "openai";
import { type ServerProcess, startServer } from "./server-process.ts";

const MODEL = "SmolLM2-135M-Instruct.Q4_1";
let server: ServerProcess;
let client: OpenAI;

beforeAll(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: "local", maxRetries: 0 });
});
afterAll(async () => await server?.stop());

const chat = {
  model: MODEL,
  temperature: 0,
  max_tokens: 6,
  messages: [
    { role: "system" as const, content: "Be brief." },
    { role: "user" as const, content: "What is the capital of France?" },
  ],
};

test("chat: non-streaming and streamed answers are identical at temperature 0", async () => {
  const plain = await client.chat.completions.create(chat);
  expect(plain.object).toBe("chat.completion");
  expect(plain.model).toBe(MODEL);
  const choice = plain.choices[0];
  expect(choice.message.role).toBe("assistant");
  expect(choice.message.content!.length).toBeGreaterThan(0);
  expect(choice.message.content).not.toContain("\uFFFD");
  expect(["stop", "length"]).toContain(choice.finish_reason);
  expect(plain.usage!.completion_tokens).toBeLessThanOrEqual(6);
  expect(plain.usage!.total_tokens).toBe(plain.usage!.prompt_tokens + plain.usage!.completion_tokens);
  expect(plain.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThanOrEqual(0);

  const deltas: string[] = [];
  const stream = client.chat.completions.stream({ ...chat, stream_options: { include_usage: true } });
  stream.on("content", (d) => deltas.push(d));
  const streamed = await stream.finalChatCompletion();
  expect(streamed.choices[0].message.content).toBe(choice.message.content);
  expect(streamed.choices[0].finish_reason).toBe(choice.finish_reason);
  expect(deltas.join("")).toBe(choice.message.content!);
  expect(deltas.some((d) => d.includes("\uFFFD"))).toBe(false);
  expect(streamed.usage!.prompt_tokens).toBe(plain.usage!.prompt_tokens);
  expect(streamed.usage!.completion_tokens).toBe(plain.usage!.completion_tokens);
});

test("chat: logprobs are per generated token and never positive", async () => {
  const c = await client.chat.completions.create({ ...chat, max_tokens: 3, logprobs: true });
  const lp = c.choices[0].logprobs!.content!;
  expect(lp.length).toBeGreaterThan(0);
  expect(lp.length).toBeLessThanOrEqual(3);
  for (const t of lp) {
    expect(t.logprob).toBeLessThanOrEqual(0);
    expect(t.top_logprobs).toEqual([]);
  }
  expect(lp.map((t) => t.token).join("")).toBe(c.choices[0].message.content!);
});

test("completions: plain prompt, streamed and not, and a stop string", async () => {
  const body = { model: MODEL, prompt: "The capital of France is", max_tokens: 4, temperature: 0 };
  const plain = await client.completions.create(body);
  expect(plain.choices[0].text.length).toBeGreaterThan(0);
  let streamed = "";
  for await (const chunk of await client.completions.create({ ...body, stream: true })) streamed += chunk.choices[0]?.text ?? "";
  expect(streamed).toBe(plain.choices[0].text);
  const first = plain.choices[0].text.trim().split(/\s/)[0];
  const stopped = await client.completions.create({ ...body, stop: [first] });
  expect(stopped.choices[0].text).not.toContain(first);
  expect(stopped.choices[0].finish_reason).toBe("stop");
});

test("models: list and retrieve, aliases included", async () => {
  const list = await client.models.list();
  expect(list.data.map((m) => m.id)).toEqual([MODEL]);
  expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
  expect((await client.models.retrieve("claude-sonnet-4-6")).id).toBe("claude-sonnet-4-6");
  expect(await client.models.retrieve("gpt-4o").catch((e) => e)).toBeInstanceOf(OpenAI.NotFoundError);
});
