// One conversation shape for both APIs, rendered to prompt token ids through the model's own
// chat template. Tools go through the template when it reads `tools`; otherwise they are
// described in a system-prompt section (TOOL_PROMPT below, the documented format) and the
// model is asked to answer with <tool_call> blocks, which shared/api/tool-calls.ts parses.
import type { JsonFormat } from "../engine/structured/constraint.ts";
import type { ChatMessage, ChatTemplate, ToolSchema } from "../tokenizer/chat-template.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { ApiError } from "./errors.ts";
import { TOOL_CALL_CLOSE, TOOL_CALL_OPEN } from "./tool-calls.ts";

export type ToolCallTurn = { id: string; name: string; arguments: Record<string, unknown> };

export type Turn =
  | { role: "system"; text: string }
  | { role: "user"; text: string }
  | { role: "assistant"; text: string; toolCalls: ToolCallTurn[] }
  | { role: "tool"; toolCallId: string; name: string; text: string };

export type ToolDefinition = {
  name: string;
  description?: string;
  parameters: Record<string, unknown>;
  /** Where the request gave `parameters` ("tools.0.input_schema"), for errors. */
  field?: string;
};

export type ToolChoice = { kind: "auto" } | { kind: "none" } | { kind: "required" } | { kind: "named"; name: string };

export type Conversation = {
  turns: Turn[];
  tools: ToolDefinition[];
  toolChoice: ToolChoice;
  /** Text the answer must start with (Anthropic's assistant prefill); not part of the reply. */
  prefill?: string;
};

export type ChatPrompt = {
  ids: number[];
  /** Whether tool calls are parsed out of the output. */
  toolsActive: boolean;
  /** Tool-call text already in the prompt (tool_choice any/required/named), fed to the parser first. */
  forcedPrefix: string;
};

/** What the prompt builder needs of a loaded model. */
export type PromptModel = { tokenizer: Tokenizer; chatTemplate: ChatTemplate };

/** The documented tool format for templates that do not render tools themselves. */
export const TOOL_PROMPT_HEADER =
  "# Tools\n\nYou may call one or more functions to help with the user's request. The functions are described " +
  "by these JSON schemas:\n<tools>\n";

export const TOOL_PROMPT_FOOTER =
  "\n</tools>\n\nTo call functions, answer with one block per call, each holding a JSON object with the function " +
  `name and its arguments, and nothing after the last block:\n${TOOL_CALL_OPEN}\n{"name": <function-name>, "arguments": <arguments-json-object>}\n${TOOL_CALL_CLOSE}`;

function toolSchema(t: ToolDefinition): ToolSchema {
  return { type: "function", function: { name: t.name, ...(t.description ? { description: t.description } : {}), parameters: t.parameters } };
}

/** The system-prompt section listing tools, for templates without tool support. */
export function toolPromptSection(tools: ToolDefinition[], choice: ToolChoice): string {
  let s = TOOL_PROMPT_HEADER + tools.map((t) => JSON.stringify(toolSchema(t))).join("\n") + TOOL_PROMPT_FOOTER;
  if (choice.kind === "required") s += "\n\nYou must call at least one function.";
  if (choice.kind === "named") s += `\n\nYou must call the function ${JSON.stringify(choice.name)}.`;
  return s;
}

const callText = (c: ToolCallTurn) => `${TOOL_CALL_OPEN}\n${JSON.stringify({ name: c.name, arguments: c.arguments })}\n${TOOL_CALL_CLOSE}`;

// Tool history as plain text: calls in the assistant's words, results as a user turn.
function textMessages(turns: Turn[], toolSection: string | null): ChatMessage[] {
  const out: ChatMessage[] = [];
  for (const t of turns) {
    if (t.role === "assistant") {
      const parts = [t.text, ...t.toolCalls.map(callText)].filter(Boolean);
      out.push({ role: "assistant", content: parts.join("\n") });
    } else if (t.role === "tool") {
      const block = `<tool_response>\n${t.text}\n</tool_response>`;
      const last = out.at(-1);
      if (last?.role === "user" && typeof last.content === "string" && last.content.startsWith("<tool_response>")) last.content += `\n${block}`;
      else out.push({ role: "user", content: block });
    } else out.push({ role: t.role, content: t.text });
  }
  if (toolSection !== null) {
    if (out[0]?.role === "system") out[0] = { role: "system", content: `${out[0].content}\n\n${toolSection}` };
    else out.unshift({ role: "system", content: toolSection });
  }
  return out;
}

// Tool history in the OpenAI message shape that tool-aware templates read.
function nativeMessages(turns: Turn[]): ChatMessage[] {
  return turns.map((t): ChatMessage => {
    if (t.role === "assistant") {
      return {
        role: "assistant",
        content: t.text || (t.toolCalls.length ? null : ""),
        ...(t.toolCalls.length
          ? { tool_calls: t.toolCalls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })) }
          : {}),
      };
    }
    if (t.role === "tool") return { role: "tool", tool_call_id: t.toolCallId, name: t.name, content: t.text };
    return { role: t.role, content: t.text };
  });
}

/** The forced start of the answer for tool_choice any/required/named (the model continues the JSON). */
export function forcedToolPrefix(choice: ToolChoice): string {
  if (choice.kind === "required") return `${TOOL_CALL_OPEN}\n`;
  if (choice.kind === "named") return `${TOOL_CALL_OPEN}\n{"name": ${JSON.stringify(choice.name)}, "arguments": `;
  return "";
}

/**
 * What a forced call's output must be after its forced prefix, so it always parses as a call
 * with valid arguments: for a named tool its arguments then the "}" closing the call the
 * prefix opened; for "required" a whole call object naming one of the tools. Null when no
 * call is forced (or an assistant prefill replaces the prefix).
 * @example forcedToolFormat(conv) // { type: "json_schema", schema: tool.parameters, suffix: "}" }
 */
export function forcedToolFormat(conv: Conversation): JsonFormat | null {
  const choice = conv.toolChoice;
  if (conv.prefill || !conv.tools.length) return null;
  if (choice.kind === "named") {
    const tool = conv.tools.find((t) => t.name === choice.name);
    return tool ? { type: "json_schema", schema: tool.parameters, suffix: "}" } : null;
  }
  if (choice.kind !== "required") return null;
  // Each tool's schema moves under $defs, its own local references rebased there.
  const $defs = Object.fromEntries(conv.tools.map((t, i) => [`tool${i}`, rebaseRefs(t.parameters, `#/$defs/tool${i}`)]));
  const anyOf = conv.tools.map((t, i) => ({
    type: "object",
    properties: { name: { const: t.name }, arguments: { $ref: `#/$defs/tool${i}` } },
    required: ["name", "arguments"],
    additionalProperties: false,
  }));
  return { type: "json_schema", schema: { anyOf, $defs } };
}

// "#" and "#/…" references of a schema moved to `base`. Literal values (const, enum…) are left
// alone; maps of subschemas (properties, $defs…) are walked by value, whatever their keys.
const LITERALS = new Set(["const", "enum", "default", "examples"]);
const SCHEMA_MAPS = new Set(["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"]);

function rebaseRefs(schema: unknown, base: string): unknown {
  if (Array.isArray(schema)) return schema.map((s) => rebaseRefs(s, base));
  if (schema === null || typeof schema !== "object") return schema;
  return Object.fromEntries(
    Object.entries(schema).map(([k, v]) => {
      if (k === "$ref" && typeof v === "string" && (v === "#" || v.startsWith("#/"))) return [k, base + v.slice(1)];
      if (LITERALS.has(k)) return [k, v];
      if (SCHEMA_MAPS.has(k) && v !== null && typeof v === "object" && !Array.isArray(v)) {
        return [k, Object.fromEntries(Object.entries(v).map(([name, sub]) => [name, rebaseRefs(sub, base)]))];
      }
      return [k, rebaseRefs(v, base)];
    }),
  );
}

/**
 * The prompt ids the engine will process for a conversation (count_tokens reports their number).
 * With the caller's tenant, the tokenizer remembers the conversation's long sections for its next turn.
 * @example buildChatPrompt(loaded, { turns: [{ role: "user", text: "Hi" }], tools: [], toolChoice: { kind: "auto" } }).ids
 */
export function buildChatPrompt(m: PromptModel, conv: Conversation, tenant?: string): ChatPrompt {
  const toolsActive = conv.tools.length > 0 && conv.toolChoice.kind !== "none";
  const native = m.chatTemplate.supportsTools;
  const messages = native ? nativeMessages(conv.turns) : textMessages(conv.turns, toolsActive ? toolPromptSection(conv.tools, conv.toolChoice) : null);
  let text: string;
  try {
    text = m.chatTemplate.render({ messages, tools: native && toolsActive ? conv.tools.map(toolSchema) : undefined, addGenerationPrompt: true });
  } catch (e) {
    throw new ApiError("invalid_request", `messages: the model's chat template refused this conversation (${(e as Error).message})`, { param: "messages" });
  }
  const forcedPrefix = conv.prefill ? "" : toolsActive ? forcedToolPrefix(conv.toolChoice) : "";
  text += (conv.prefill ?? "") + forcedPrefix;
  return { ids: m.tokenizer.encode(text, { specials: true, remember: tenant }), toolsActive, forcedPrefix };
}

/**
 * How many leading ids of `full` are the conversation's first `turns` turns (tools included):
 * the prefix an explicit cache breakpoint covers. 0 when the template cannot render that prefix.
 */
export function prefixTokens(m: PromptModel, conv: Conversation, turns: number, full: readonly number[]): number {
  if (turns <= 0) return 0;
  const toolsActive = conv.tools.length > 0 && conv.toolChoice.kind !== "none";
  const native = m.chatTemplate.supportsTools;
  const head = conv.turns.slice(0, turns);
  let ids: number[];
  try {
    const messages = native ? nativeMessages(head) : textMessages(head, toolsActive ? toolPromptSection(conv.tools, conv.toolChoice) : null);
    ids = m.tokenizer.encode(m.chatTemplate.render({ messages, tools: native && toolsActive ? conv.tools.map(toolSchema) : undefined }), { specials: true });
  } catch {
    return 0;
  }
  let n = 0;
  while (n < ids.length && n < full.length && ids[n] === full[n]) n++;
  return n;
}

/** A plain completion prompt: the text (or ids) as given, after bos when the model wants one. */
export function buildCompletionPrompt(m: PromptModel, prompt: string | number[]): number[] {
  const tok = m.tokenizer;
  if (typeof prompt !== "string") {
    const bad = prompt.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= tok.vocabSize);
    if (bad >= 0) throw new ApiError("invalid_request", `prompt.${bad}: token id out of range 0..${tok.vocabSize - 1}`, { param: `prompt.${bad}` });
    if (prompt.length === 0) throw new ApiError("invalid_request", "prompt: must not be empty", { param: "prompt" });
    return prompt;
  }
  const ids = tok.encode(prompt);
  const withBos = tok.addBos && tok.bosId !== undefined ? [tok.bosId, ...ids] : ids;
  if (withBos.length === 0) throw new ApiError("invalid_request", "prompt: must not be empty", { param: "prompt" });
  return withBos;
}
