// Request translation without HTTP: Anthropic and OpenAI bodies to one Conversation, the tool
// prompt (documented format vs a tool-aware template), and schema errors explained by field.
import { Type } from "@sinclair/typebox";
import { describe, expect, test } from "bun:test";
import { anthropicConversation } from "../../shared/api/anthropic.ts";
import { ApiError } from "../../shared/api/errors.ts";
import { openaiConversation } from "../../shared/api/openai.ts";
import { buildChatPrompt, type Conversation, TOOL_PROMPT_FOOTER, TOOL_PROMPT_HEADER, toolPromptSection } from "../../shared/api/prompt.ts";
import { explainValidation } from "../../shared/api/validation.ts";
import { ChatTemplate } from "../../shared/tokenizer/chat-template.ts";
import { scriptedModel } from "./scripted-engine.ts";

const model = scriptedModel();
const text = (conv: Conversation) => model.tokenizer.decode(buildChatPrompt(model, conv).ids);
const weather = { name: "get_weather", description: "Weather", input_schema: { type: "object", properties: { city: { type: "string" } } } };

describe("Anthropic request -> Conversation", () => {
  test("system blocks are joined, the attribution line dropped, role system entries kept in place", () => {
    const { conv } = anthropicConversation({
      model: "m",
      system: [
        { type: "text", text: "x-anthropic-billing-header: cc_version=1.0; cch=abc;" },
        { type: "text", text: "A" },
        { type: "text", text: "B" },
      ],
      messages: [
        { role: "user", content: "hi" },
        { role: "system", content: [{ type: "text", text: "mid" }] },
        { role: "user", content: "again" },
      ],
    });
    expect(conv.turns).toEqual([
      { role: "system", text: "A\n\nB" },
      { role: "user", text: "hi" },
      { role: "system", text: "mid" },
      { role: "user", text: "again" },
    ]);
  });

  test("an attribution line with more text after it keeps the rest", () => {
    const { conv } = anthropicConversation({ model: "m", system: "x-anthropic-billing-header: cch=1;\nYou are helpful.", messages: [{ role: "user", content: "hi" }] });
    expect(conv.turns[0]).toEqual({ role: "system", text: "You are helpful." });
  });

  test("tool_use / tool_result pairs become calls and tool turns; thinking is dropped; is_error marks the result", () => {
    const { conv } = anthropicConversation({
      model: "m",
      tools: [weather, { name: "web_search", type: "web_search_20250305" }],
      messages: [
        { role: "user", content: "weather?" },
        { role: "assistant", content: [{ type: "thinking", thinking: "hmm", signature: "s" }, { type: "text", text: "Checking." }, { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Oslo" } }] },
        { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "rain" }], is_error: true }, { type: "text", text: "and?" }] },
      ],
    });
    expect(conv.turns.slice(1)).toEqual([
      { role: "assistant", text: "Checking.", toolCalls: [{ id: "toolu_1", name: "get_weather", arguments: { city: "Oslo" } }] },
      { role: "tool", toolCallId: "toolu_1", name: "get_weather", text: "Error: rain" },
      { role: "user", text: "and?" },
    ]);
    expect(conv.tools.map((t) => t.name)).toEqual(["get_weather"]);
  });

  test("a final assistant message is a prefill, not a turn", () => {
    const { conv } = anthropicConversation({ model: "m", messages: [{ role: "user", content: "hi" }, { role: "assistant", content: "Sure:" }] });
    expect(conv.prefill).toBe("Sure:");
    expect(text(conv)).toEndWith("<|im_start|>assistant\nSure:");
  });

  test("tool_choice maps to auto / required / named / none, and disable_parallel_tool_use to parallel", () => {
    const base = { model: "m", tools: [weather], messages: [{ role: "user" as const, content: "x" }] };
    expect(anthropicConversation({ ...base, tool_choice: { type: "any" } }).conv.toolChoice).toEqual({ kind: "required" });
    expect(anthropicConversation({ ...base, tool_choice: { type: "tool", name: "get_weather" } }).conv.toolChoice).toEqual({ kind: "named", name: "get_weather" });
    expect(anthropicConversation({ ...base, tool_choice: { type: "none" } }).conv.toolChoice).toEqual({ kind: "none" });
    expect(anthropicConversation({ ...base, tool_choice: { type: "auto", disable_parallel_tool_use: true } }).parallel).toBe(false);
    expect(() => anthropicConversation({ ...base, tools: [], tool_choice: { type: "any" } })).toThrow(ApiError);
  });
});

describe("OpenAI request -> Conversation", () => {
  test("developer is a system turn; tool messages must answer the preceding assistant's calls", () => {
    const { conv, parallel } = openaiConversation({
      model: "m",
      parallel_tool_calls: false,
      messages: [
        { role: "developer", content: "rules" },
        { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
        { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: '{"x":1}' } }, { id: "c2", type: "function", function: { name: "g", arguments: "" } }] },
        { role: "tool", tool_call_id: "c2", content: "two" },
        { role: "tool", tool_call_id: "c1", content: "one" },
      ],
    });
    expect(parallel).toBe(false);
    expect(conv.turns).toEqual([
      { role: "system", text: "rules" },
      { role: "user", text: "a\nb" },
      { role: "assistant", text: "", toolCalls: [{ id: "c1", name: "f", arguments: { x: 1 } }, { id: "c2", name: "g", arguments: {} }] },
      { role: "tool", toolCallId: "c2", name: "g", text: "two" },
      { role: "tool", toolCallId: "c1", name: "f", text: "one" },
    ]);
  });
});

describe("prompt rendering", () => {
  const conv: Conversation = {
    turns: [
      { role: "system", text: "Sys" },
      { role: "user", text: "weather?" },
      { role: "assistant", text: "", toolCalls: [{ id: "c1", name: "get_weather", arguments: { city: "Oslo" } }] },
      { role: "tool", toolCallId: "c1", name: "get_weather", text: "rain" },
    ],
    tools: [{ name: "get_weather", description: "Weather", parameters: weather.input_schema }],
    toolChoice: { kind: "auto" },
  };

  test("without template tool support: the documented system section and <tool_call>/<tool_response> text", () => {
    expect(model.chatTemplate.supportsTools).toBe(false);
    const t = text(conv);
    expect(t).toContain(`<|im_start|>system\nSys\n\n${TOOL_PROMPT_HEADER}{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":`);
    expect(t).toContain(TOOL_PROMPT_FOOTER);
    expect(t).toContain('<|im_start|>assistant\n<tool_call>\n{"name":"get_weather","arguments":{"city":"Oslo"}}\n</tool_call><|im_end|>');
    expect(t).toContain("<|im_start|>user\n<tool_response>\nrain\n</tool_response><|im_end|>");
    expect(t).toEndWith("<|im_start|>assistant\n");
  });

  test("tool_choice none leaves tools out; required/named add the instruction and a forced prefix", () => {
    expect(text({ ...conv, toolChoice: { kind: "none" } })).not.toContain("# Tools");
    expect(toolPromptSection(conv.tools, { kind: "named", name: "get_weather" })).toEndWith('You must call the function "get_weather".');
    const p = buildChatPrompt(model, { ...conv, toolChoice: { kind: "named", name: "get_weather" } });
    expect(p.forcedPrefix).toBe('<tool_call>\n{"name": "get_weather", "arguments": ');
    expect(model.tokenizer.decode(p.ids)).toEndWith(`<|im_start|>assistant\n${p.forcedPrefix}`);
  });

  test("a template that reads tools gets them (and the history) in the OpenAI shape", () => {
    const source =
      "{% if tools %}[TOOLS]{{ tools | tojson }}[/TOOLS]{% endif %}{% for m in messages %}<{{ m.role }}>" +
      "{% if m.tool_calls %}{% for c in m.tool_calls %}CALL {{ c.function.name }} {{ c.function.arguments | tojson }}{% endfor %}" +
      "{% else %}{{ m.content }}{% endif %}</{{ m.role }}>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
    const toolModel = { tokenizer: model.tokenizer, chatTemplate: new ChatTemplate(source) };
    expect(toolModel.chatTemplate.supportsTools).toBe(true);
    const t = toolModel.tokenizer.decode(buildChatPrompt(toolModel, conv).ids);
    expect(t).toStartWith('[TOOLS][{"type": "function", "function": {"name": "get_weather"');
    expect(t).toContain('<assistant>CALL get_weather {"city": "Oslo"}</assistant><tool>rain</tool><assistant>');
    expect(t).not.toContain("# Tools");
  });

  test("user text that looks like tool-call markup stays data in the prompt", () => {
    const t = text({ turns: [{ role: "user", text: '<tool_call>{"name":"x"}</tool_call>' }], tools: [], toolChoice: { kind: "auto" } });
    expect(t).toContain('<|im_start|>user\n<tool_call>{"name":"x"}</tool_call><|im_end|>');
  });
});

describe("schema errors name the field", () => {
  const schema = Type.Object({
    max_tokens: Type.Integer({ minimum: 1 }),
    n: Type.Optional(Type.Union([Type.Integer({ minimum: 1, maximum: 1 }), Type.Null()], { error: "only n=1 is supported" })),
    limit: Type.Optional(Type.Union([Type.Integer({ maximum: 10 }), Type.Null()])),
    blocks: Type.Optional(Type.Array(Type.Union([Type.Object({ type: Type.Literal("text"), text: Type.String() }), Type.Object({ type: Type.Literal("image"), source: Type.Unknown() })]))),
  });
  const cases: [unknown, string][] = [
    [{}, "max_tokens: required"],
    [{ max_tokens: 0 }, "max_tokens: expected integer to be greater or equal to 1"],
    [{ max_tokens: 1, n: 2 }, "n: only n=1 is supported"],
    [{ max_tokens: 1, limit: 11 }, "limit: expected integer to be less or equal to 10"],
    [{ max_tokens: 1, blocks: [{ type: "text", text: "a" }, { type: "text" }] }, "blocks.1.text: required"],
    [{ max_tokens: 1, blocks: [{ type: "audio" }] }, 'blocks.0.type: unknown type "audio"; expected one of "text", "image"'],
    [{ max_tokens: 1, blocks: [{}] }, 'blocks.0.type: required; one of "text", "image"'],
    [[], "body: expected object"],
  ];
  for (const [value, message] of cases) {
    test(message, () => {
      const e = explainValidation(schema, value);
      expect(e.message).toBe(message);
      expect(e.status("openai")).toBe(400);
    });
  }
});
