// Graceful shutdown at the server level, over real HTTP with a SCRIPTED engine (scripted-engine.ts)
// so the timings are exact: while draining, new requests get a 503 in each API's own shape and
// /ready says 503; a generation that ends within the grace period finishes normally; one that
// does not is cancelled through its signal and its stream ends with an error event, not a cut.
// The real process (signal, exit code, cache on disk, warm restart) is tests/functions/shutdown.test.ts.
import Anthropic from "@anthropic-ai/sdk";
import { afterAll, beforeAll, expect, test } from "bun:test";
import OpenAI from "openai";
import { Drain, shutdown } from "../../shared/shutdown.ts";
import { scriptedServer } from "./scripted-engine.ts";

let server: ReturnType<typeof scriptedServer>;
const drain = new Drain();

beforeAll(() => {
  server = scriptedServer({}, 8192, undefined, { drain });
});
afterAll(() => server.stop());

/** Reads a stream to its end in the background: its events, and the error it ended with, if any. */
function consume<T>(stream: AsyncIterable<T>) {
  const events: T[] = [];
  let firstEvent = () => {};
  const first = new Promise<void>((resolve) => (firstEvent = resolve));
  const ended = (async () => {
    try {
      for await (const e of stream) {
        events.push(e);
        firstEvent();
      }
      return { events, error: null as unknown };
    } catch (error) {
      firstEvent();
      return { events, error };
    }
  })();
  return { first, ended };
}

test("drain: 503s for new requests, in-flight streams finish or end with an error event, then the listener closes", async () => {
  const anthropic = new Anthropic({ baseURL: server.base, apiKey: "unused", maxRetries: 0 });
  const openai = new OpenAI({ baseURL: `${server.base}/v1`, apiKey: "unused", maxRetries: 0 });
  const body = { model: "claude-x", max_tokens: 200, messages: [{ role: "user" as const, content: "hi" }] };
  // In arrival order: a short answer (done well within the grace period) and two long ones.
  server.engine.scripts = [
    { pieces: ["a", "b", "c"], delayMs: 50 },
    { pieces: Array(200).fill("x"), delayMs: 50 },
    { pieces: Array(200).fill("y"), delayMs: 50 },
  ];
  const short = consume(anthropic.messages.stream(body));
  await short.first;
  const long = consume(anthropic.messages.stream(body));
  await long.first;
  const chat = consume(await openai.chat.completions.create({ model: "claude-x", stream: true, messages: body.messages }));
  await chat.first;
  expect(drain.inFlight).toBe(3);

  let flushed = 0;
  const t0 = performance.now();
  const stopping = shutdown({ drain, server: server.app.server, flush: async () => void flushed++, graceMs: 800 }, "SIGTERM");

  const refused = await fetch(`${server.base}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  expect(refused.status).toBe(503);
  expect(refused.headers.get("retry-after")).toBe("5");
  expect(await refused.json()).toMatchObject({ type: "error", error: { type: "overloaded_error", message: expect.stringContaining("shutting down") } });
  const refusedChat = await fetch(`${server.base}/v1/chat/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ model: "claude-x", messages: body.messages }) });
  expect(refusedChat.status).toBe(503);
  expect(((await refusedChat.json()) as { error: unknown }).error).toMatchObject({ type: "server_error", code: "shutting_down" });
  const ready = await fetch(`${server.base}/ready`);
  expect(ready.status).toBe(503);
  expect(((await ready.json()) as { ready: boolean }).ready).toBe(false);

  await stopping;
  const elapsed = performance.now() - t0;
  expect(elapsed).toBeGreaterThanOrEqual(800); // the long ones had their grace period
  expect(elapsed).toBeLessThan(800 + 3000); // and were cancelled within a few decode steps of its end
  expect(flushed).toBe(1);
  expect(drain.inFlight).toBe(0);

  // The short answer is whole: its final events arrived.
  const s = await short.ended;
  expect(s.error).toBeNull();
  expect(s.events.map((e) => e.type).slice(-2)).toEqual(["message_delta", "message_stop"]);
  // The long ones end with the API's error event, which each SDK raises as an APIError (not a connection error).
  const l = await long.ended;
  expect(l.error).toBeInstanceOf(Anthropic.APIError);
  expect((l.error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({ type: "error", error: { type: "overloaded_error" } });
  expect(String((l.error as Error).message)).toContain("shutting down");
  expect(l.events.some((e) => e.type === "content_block_delta")).toBe(true);
  const c = await chat.ended;
  expect(c.error).toBeInstanceOf(OpenAI.APIError);
  expect((c.error as InstanceType<typeof OpenAI.APIError>).code).toBe("shutting_down");

  // The listener is closed: the next connection is refused.
  expect(await fetch(`${server.base}/health`).catch(() => "refused")).toBe("refused");
});

test("a second signal's cancel skips the rest of the grace period", async () => {
  const d = new Drain();
  const s = scriptedServer({}, 8192, undefined, { drain: d });
  try {
    s.engine.scripts = [{ pieces: Array(200).fill("x"), delayMs: 50 }];
    const anthropic = new Anthropic({ baseURL: s.base, apiKey: "unused", maxRetries: 0 });
    const long = consume(anthropic.messages.stream({ model: "claude-x", max_tokens: 200, messages: [{ role: "user", content: "hi" }] }));
    await long.first;
    const t0 = performance.now();
    const stopping = shutdown({ drain: d, server: s.app.server, flush: async () => {}, graceMs: 60_000 }, "SIGTERM");
    await Bun.sleep(200);
    expect(d.cancel()).toBe(1);
    await stopping;
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(String((await long.ended).error)).toContain("shutting down");
  } finally {
    s.stop();
  }
});
