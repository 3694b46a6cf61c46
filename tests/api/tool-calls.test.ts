// The tool-call parser on given model text: whole, split at every position, malformed,
// undeclared, unterminated, and adversarial input in linear time. No model needed.
import { describe, expect, test } from "bun:test";
import { parseCallBody, ToolCallParser, type ToolParseEvent } from "../../shared/api/tool-calls.ts";

const tools = new Set(["get_weather", "search"]);

/** Feeds `chunks` and merges adjacent text, as a client would see it. */
function run(chunks: string[], names: ReadonlySet<string> | null = tools): ToolParseEvent[] {
  const p = new ToolCallParser({ tools: names });
  const events = [...chunks.flatMap((c) => p.push(c)), ...p.finish()];
  const merged: ToolParseEvent[] = [];
  for (const e of events) {
    const last = merged.at(-1);
    if (e.type === "text" && last?.type === "text") last.text += e.text;
    else merged.push({ ...e });
  }
  return merged;
}

const CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>';

describe("ToolCallParser", () => {
  test("plain text passes through unchanged", () => {
    expect(run(["Hello", " world"])).toEqual([{ type: "text", text: "Hello world" }]);
  });

  test("a call between text becomes a call event", () => {
    expect(run([`Let me check.\n${CALL}\nDone.`])).toEqual([
      { type: "text", text: "Let me check.\n" },
      { type: "call", call: { name: "get_weather", arguments: '{"city":"Paris"}' } },
      { type: "text", text: "\nDone." },
    ]);
  });

  test("the same result however the text is split (every split point)", () => {
    const text = `Hi ${CALL} bye`;
    const whole = run([text]);
    for (let i = 1; i < text.length; i++) {
      expect(run([text.slice(0, i), text.slice(i)])).toEqual(whole);
    }
    expect(run([...text])).toEqual(whole);
  });

  test("text that might open a call is held back until it is clear", () => {
    const p = new ToolCallParser({ tools });
    expect(p.push("a <tool")).toEqual([{ type: "text", text: "a " }]);
    expect(p.push("s are fun")).toEqual([{ type: "text", text: "<tools are fun" }]);
    expect(p.push("<")).toEqual([]);
    expect(p.finish()).toEqual([{ type: "text", text: "<" }]);
  });

  test("a list of calls in one block, and several blocks", () => {
    const list = '<tool_call>[{"name": "search", "arguments": {"q": "a"}}, {"name": "search", "arguments": {"q": "b"}}]</tool_call>';
    expect(run([list, CALL]).map((e) => (e.type === "call" ? e.call.arguments : e.text))).toEqual(['{"q":"a"}', '{"q":"b"}', '{"city":"Paris"}']);
  });

  test("arguments given as a JSON string or as parameters are accepted", () => {
    expect(parseCallBody('{"name":"search","arguments":"{\\"q\\":1}"}', tools)).toEqual([{ name: "search", arguments: '{"q":1}' }]);
    expect(parseCallBody('{"name":"search","parameters":{"q":1}}', tools)).toEqual([{ name: "search", arguments: '{"q":1}' }]);
    expect(parseCallBody('{"name":"search"}', tools)).toEqual([{ name: "search", arguments: "{}" }]);
  });

  test("malformed JSON comes back as the original text", () => {
    const bad = '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>';
    expect(run([bad])).toEqual([{ type: "text", text: bad }]);
  });

  test("an undeclared tool name comes back as text; null accepts any name", () => {
    const other = '<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>';
    expect(run([other])).toEqual([{ type: "text", text: other }]);
    expect(run([other], null)[0].type).toBe("call");
  });

  test("arguments that are not an object come back as text", () => {
    for (const body of ['{"name":"search","arguments":[1]}', '{"name":"search","arguments":"nope"}', "[]", '"x"', '{"name":5}']) {
      expect(parseCallBody(body, tools)).toBeNull();
    }
  });

  test("an unterminated call at the end is kept when its JSON is complete, else returned as text", () => {
    expect(run(['<tool_call>\n{"name": "search", "arguments": {"q": "x"}}'])).toEqual([
      { type: "call", call: { name: "search", arguments: '{"q":"x"}' } },
    ]);
    expect(run(['<tool_call>\n{"name": "search", "argu'])).toEqual([{ type: "text", text: '<tool_call>\n{"name": "search", "argu' }]);
  });

  test("a forced prefix (tool_choice named) is completed by the model's text", () => {
    const p = new ToolCallParser({ tools });
    expect(p.push('<tool_call>\n{"name": "search", "arguments": ')).toEqual([]);
    expect([...p.push('{"q": "cats"}}\n</tool_call>'), ...p.finish()]).toEqual([{ type: "call", call: { name: "search", arguments: '{"q":"cats"}' } }]);
  });

  test("100 KB of adversarial output is parsed in linear time, one token at a time", () => {
    const nasty = `<tool_call>${"[{\"a\":\"\\\"".repeat(10_000)}`;
    const p = new ToolCallParser({ tools });
    const t0 = performance.now();
    for (let i = 0; i < nasty.length; i += 3) p.push(nasty.slice(i, i + 3));
    const out = p.finish();
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(out).toEqual([{ type: "text", text: nasty }]);
    const opens = "<tool_call>".repeat(10_000);
    expect(run([opens]).every((e) => e.type === "text")).toBe(true);
  });
});
