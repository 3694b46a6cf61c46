// Long prefills and queue waits must not kill the connection: generation requests disable
// Bun's idle timeout, and SSE streams send keep-alives while quiet (a comment before
// message_start, Anthropic's ping event after it). The wait is SCRIPTED (scripted-engine.ts);
// the server's idle timeout is 1 s (not Bun's 10 s) and keep-alives every 250 ms, to stay quick.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type ScriptedEngine, scriptedServer } from "./scripted-engine.ts";

let server: ReturnType<typeof scriptedServer>;
let engine: ScriptedEngine;

beforeAll(() => {
  server = scriptedServer({ keepAliveMs: 250 }, 8192, 1);
  engine = server.engine;
});
afterAll(() => server.stop());

const post = (path: string, body: unknown) =>
  fetch(`${server.base}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

test("a non-streaming answer after 2.5 s of silence arrives (idle timeout 1 s)", async () => {
  engine.scripts = [{ pieces: ["late"], startDelayMs: 2500 }];
  const r = await post("/v1/chat/completions", { model: "claude-x", messages: [{ role: "user", content: "hi" }] }).catch((e) => e);
  expect(r).toBeInstanceOf(Response);
  expect((await r.json()).choices[0].message.content).toBe("late");
});

test("a stream silent before starting and mid-way gets keep-alives and completes", async () => {
  engine.scripts = [{ pieces: ["a", "b"], startDelayMs: 1500 }];
  const first = await (await post("/v1/messages", { model: "claude-x", max_tokens: 5, stream: true, messages: [{ role: "user", content: "hi" }] })).text();
  expect(first.indexOf(": ping\n\n")).toBeGreaterThanOrEqual(0);
  expect(first.indexOf(": ping\n\n")).toBeLessThan(first.indexOf("event: message_start"));
  expect(first).toContain("event: message_stop");
  engine.scripts = [{ pieces: ["a"], delayMs: 1500 }];
  const mid = await (await post("/v1/messages", { model: "claude-x", max_tokens: 5, stream: true, messages: [{ role: "user", content: "hi" }] })).text();
  const events = mid.split("\n\n").filter(Boolean).map((f) => f.split("\n")[0]);
  expect(events.filter((e) => e === "event: ping").length).toBeGreaterThanOrEqual(3);
  expect(events.at(-1)).toBe("event: message_stop");
});
