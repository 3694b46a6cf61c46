// Anthropic Messages <-> engine: the request becomes one Conversation and one turn; the turn's
// events become a Message or the exact SSE sequence the SDKs and Claude Code parse
// (message_start, content_block_start/delta/stop, message_delta, message_stop; ping; error).
import { errorFields, log } from "../log.ts";
import type { ContentBlockParam, Message, PromptInput, StopReason, SystemParam, Usage } from "./anthropic-schema.ts";
import { anthropicErrorBody, invalid, toApiError } from "./errors.ts";
import { collectTurn, type Finish, startTurn, type TurnEvent, type Usage as UsageCounts } from "./generation.ts";
import { buildChatPrompt, type ChatPrompt, type Conversation, prefixTokens, type ToolChoice, type Turn } from "./prompt.ts";
import { samplingOf, toolCallFormat } from "./sampling.ts";
import { type Call, newId, type Served } from "./service.ts";
import { SSE_COMMENT_PING, sseEvent, sseResponse } from "./sse.ts";

export type MessagesInput = PromptInput & {
  max_tokens: number;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  stop_sequences?: string[];
  stream?: boolean;
  metadata?: { user_id?: string | null };
};

/** Claude Code's per-request attribution line; it changes every request, so it is dropped to keep the prefix stable. */
export const BILLING_HEADER_PREFIX = "x-anthropic-billing-header:";

function systemText(system: SystemParam | undefined): string {
  if (system === undefined) return "";
  const blocks = typeof system === "string" ? [system] : system.map((b) => b.text);
  return blocks
    .map((text) => (text.startsWith(BILLING_HEADER_PREFIX) ? stripBillingLine(text) : text))
    .filter((text) => text !== "")
    .join("\n\n");
}

// The attribution is one line; anything after it in the same block is kept.
function stripBillingLine(text: string): string {
  const nl = text.indexOf("\n");
  return nl < 0 ? "" : text.slice(nl + 1).replace(/^\n+/, "");
}

function blocksOf(content: string | ContentBlockParam[]): ContentBlockParam[] {
  return typeof content === "string" ? [{ type: "text", text: content }] : content;
}

function toolResultText(b: Extract<ContentBlockParam, { type: "tool_result" }>, field: string): string {
  if (b.content === undefined) return "";
  if (typeof b.content === "string") return b.content;
  return b.content
    .map((c, i) => {
      if (c.type !== "text") throw invalid(`${field}.content.${i}`, `${c.type} content is not supported by this model (text only)`);
      return c.text;
    })
    .join("\n");
}

type Breakpoint = { turns: number; ttlMs: number };

const ttlMs = (c: { ttl?: string }) => (c.ttl === "1h" ? 3_600_000 : 300_000);

/** The request's messages, system and tools as one Conversation, checking what the schema cannot. */
export function anthropicConversation(input: PromptInput): { conv: Conversation; parallel: boolean; breakpoint: Breakpoint | null } {
  const turns: Turn[] = [];
  const system = systemText(input.system);
  if (system) turns.push({ role: "system", text: system });
  // The last cache_control breakpoint, as the number of turns its prefix spans.
  let breakpoint: Breakpoint | null = null;
  const marked = [...(input.tools ?? []), ...(typeof input.system === "string" ? [] : (input.system ?? []))].findLast((b) => b.cache_control);
  if (marked?.cache_control) breakpoint = { turns: turns.length, ttlMs: ttlMs(marked.cache_control) };
  // tool_use ids of the previous assistant message, and the names they called.
  let openCalls = new Map<string, string>();
  let prefill: string | undefined;
  input.messages.forEach((m, mi) => {
    addMessage(m, mi);
    const mark = blocksOf(m.content).findLast((b) => "cache_control" in b && b.cache_control);
    if (mark && "cache_control" in mark && mark.cache_control) breakpoint = { turns: turns.length, ttlMs: ttlMs(mark.cache_control) };
  });
  function addMessage(m: PromptInput["messages"][number], mi: number): void {
    const field = `messages.${mi}`;
    const blocks = blocksOf(m.content);
    if (m.role === "system") {
      const text = blocks.map((b, bi) => {
        if (b.type !== "text") throw invalid(`${field}.content.${bi}`, `a system message takes text blocks only, not ${b.type}`);
        return b.text;
      }).join("\n\n");
      if (text && !text.startsWith(BILLING_HEADER_PREFIX)) turns.push({ role: "system", text });
      return;
    }
    if (m.role === "assistant") {
      let text = "";
      const toolCalls: { id: string; name: string; arguments: Record<string, unknown> }[] = [];
      blocks.forEach((b, bi) => {
        if (b.type === "text") text += b.text;
        else if (b.type === "tool_use") toolCalls.push({ id: b.id, name: b.name, arguments: b.input });
        else if (b.type !== "thinking" && b.type !== "redacted_thinking") {
          throw invalid(`${field}.content.${bi}`, `an assistant message cannot contain ${b.type} blocks`);
        }
      });
      openCalls = new Map(toolCalls.map((c) => [c.id, c.name]));
      const last = mi === input.messages.length - 1;
      if (last && toolCalls.length === 0) {
        // A final assistant message is a prefill: the answer continues it.
        if (text !== text.trimEnd()) throw invalid(`${field}.content`, "final assistant content cannot end with trailing whitespace");
        prefill = text;
        return;
      }
      turns.push({ role: "assistant", text, toolCalls });
      return;
    }
    let text = "";
    const flush = () => {
      if (text) turns.push({ role: "user", text });
      text = "";
    };
    blocks.forEach((b, bi) => {
      const bf = `${field}.content.${bi}`;
      if (b.type === "text") text += (text ? "\n" : "") + b.text;
      else if (b.type === "tool_result") {
        const name = openCalls.get(b.tool_use_id);
        if (name === undefined) {
          throw invalid(
            `${bf}.tool_use_id`,
            `unexpected tool_use_id ${JSON.stringify(b.tool_use_id)} in tool_result: each tool_result block must answer a tool_use block of the previous assistant message`,
          );
        }
        flush();
        const result = toolResultText(b, bf);
        turns.push({ role: "tool", toolCallId: b.tool_use_id, name, text: b.is_error ? `Error: ${result}` : result });
      } else if (b.type === "image" || b.type === "document") throw invalid(bf, `${b.type} content is not supported by this model (text only)`);
      else throw invalid(bf, `a user message cannot contain ${b.type} blocks`);
    });
    flush();
    openCalls = new Map();
  }
  // Server tools (web search, code execution…) run at Anthropic; only client tools apply here.
  const tools = (input.tools ?? []).flatMap((t, i) => {
    if (t.type !== undefined && t.type !== "custom") return [];
    if (!t.input_schema) throw invalid(`tools.${i}.input_schema`, "required");
    return [{ name: t.name, description: t.description, parameters: t.input_schema, field: `tools.${i}.input_schema` }];
  });
  const tc = input.tool_choice;
  let toolChoice: ToolChoice = { kind: "auto" };
  if (tc?.type === "none") toolChoice = { kind: "none" };
  else if (tc?.type === "any") toolChoice = { kind: "required" };
  else if (tc?.type === "tool") {
    if (!tools.some((t) => t.name === tc.name)) throw invalid("tool_choice.name", `no tool named ${JSON.stringify(tc.name)} in tools`);
    toolChoice = { kind: "named", name: tc.name };
  }
  if (tc && tc.type !== "auto" && tc.type !== "none" && tools.length === 0) throw invalid("tool_choice", `${tc.type} needs tools`);
  const parallel = !(tc && "disable_parallel_tool_use" in tc && tc.disable_parallel_tool_use);
  return { conv: { turns, tools, toolChoice, prefill }, parallel, breakpoint };
}

/** The prompt the engine will process for this request (count_tokens reports its length). */
export function anthropicPrompt(served: Served, input: PromptInput, tenant?: string): { prompt: ChatPrompt; conv: Conversation; parallel: boolean; breakpoint: Breakpoint | null } {
  served.aliases.resolve(input.model);
  const { conv, parallel, breakpoint } = anthropicConversation(input);
  return { prompt: buildChatPrompt(served.model, conv, tenant), conv, parallel, breakpoint };
}

const STOP_REASONS: Record<Finish, StopReason> = {
  end: "end_turn",
  stop_sequence: "stop_sequence",
  length: "max_tokens",
  context: "model_context_window_exceeded",
  tool_calls: "tool_use",
  cancelled: "end_turn",
};

// Anthropic splits the prompt three ways (Claude Code adds them back up): read from the cache,
// written to it, and the rest.
function usageOf(u: UsageCounts): Usage {
  return {
    input_tokens: u.promptTokens - u.cachedTokens - u.cacheCreatedTokens,
    output_tokens: u.completionTokens,
    cache_creation_input_tokens: u.cacheCreatedTokens,
    cache_read_input_tokens: u.cachedTokens,
  };
}

function begin(served: Served, input: MessagesInput, call: Call): Promise<AsyncIterable<TurnEvent>> {
  const { prompt, conv, parallel, breakpoint } = anthropicPrompt(served, input, call.tenant);
  // cache_control: ask the engine to keep the prefix through the last breakpoint cached.
  const pinTokens = breakpoint ? prefixTokens(served.model, conv, breakpoint.turns, prompt.ids) : 0;
  return startTurn(served.engine, served.model, {
    tenant: call.tenant,
    agentId: call.agentId,
    promptIds: prompt.ids,
    maxTokens: input.max_tokens,
    sampling: samplingOf(input, served.model.tokenizer),
    // tool_choice any / tool: the call is constrained to parse, with input valid for its schema.
    format: toolCallFormat(conv),
    stop: input.stop_sequences ?? [],
    logprobs: false,
    signal: call.signal,
    observe: call.observe,
    tools: prompt.toolsActive
      ? { names: new Set(conv.tools.map((t) => t.name)), forcedPrefix: prompt.forcedPrefix, parallel, newId: () => newId("toolu_") }
      : null,
    ...(pinTokens > 0 ? { cacheControl: { pinTokens, ttlMs: breakpoint!.ttlMs } } : {}),
  });
}

/** POST /v1/messages without streaming. */
export async function createMessage(served: Served, input: MessagesInput, call: Call): Promise<Message> {
  const { blocks, done } = await collectTurn(await begin(served, input, call));
  return {
    id: newId("msg_"),
    type: "message",
    role: "assistant",
    model: input.model,
    content: blocks.flatMap((b): Message["content"] =>
      b.type === "text" ? (b.text ? [{ type: "text", text: b.text }] : [])
      : [{ type: "tool_use", id: b.id, name: b.name, input: JSON.parse(b.arguments) as Record<string, unknown> }],
    ),
    stop_reason: STOP_REASONS[done.finish],
    stop_sequence: done.stop,
    usage: usageOf(done.usage),
  };
}

/** POST /v1/messages with stream: true. Errors before the turn starts are thrown (plain HTTP errors). */
export async function streamMessage(served: Served, input: MessagesInput, call: Call): Promise<Response> {
  const cancel = new AbortController();
  const turn = await begin(served, input, { ...call, signal: AbortSignal.any([call.signal, cancel.signal]) });
  let started = false;
  return sseResponse(
    (gone) => {
      gone.addEventListener("abort", () => cancel.abort(), { once: true });
      return messageEvents(turn, { id: newId("msg_"), model: input.model, requestId: call.requestId }, () => (started = true));
    },
    // Before message_start only comments are safe; after it, Anthropic's own ping event.
    { keepAlive: () => (started ? sseEvent("ping", { type: "ping" }) : SSE_COMMENT_PING), keepAliveMs: call.keepAliveMs, headers: { "request-id": call.requestId } },
  );
}

/** A turn's events as Anthropic's SSE frames, in the order the SDK's accumulator requires. */
export async function* messageEvents(
  turn: AsyncIterable<TurnEvent>,
  meta: { id: string; model: string; requestId: string },
  onStart: () => void = () => {},
): AsyncGenerator<string> {
  let index = -1;
  let textOpen = false;
  try {
    for await (const e of turn) {
      if (e.type === "started") {
        const usage = usageOf({ promptTokens: e.promptTokens, completionTokens: 0, cachedTokens: e.cachedTokens, cacheCreatedTokens: 0 });
        yield sseEvent("message_start", {
          type: "message_start",
          message: { id: meta.id, type: "message", role: "assistant", model: meta.model, content: [], stop_reason: null, stop_sequence: null, usage },
        });
        onStart();
        yield sseEvent("ping", { type: "ping" });
      } else if (e.type === "text") {
        if (!textOpen) {
          index++;
          textOpen = true;
          yield sseEvent("content_block_start", { type: "content_block_start", index, content_block: { type: "text", text: "" } });
        }
        yield sseEvent("content_block_delta", { type: "content_block_delta", index, delta: { type: "text_delta", text: e.text } });
      } else if (e.type === "tool_call") {
        if (textOpen) {
          yield sseEvent("content_block_stop", { type: "content_block_stop", index });
          textOpen = false;
        }
        index++;
        yield sseEvent("content_block_start", { type: "content_block_start", index, content_block: { type: "tool_use", id: e.id, name: e.name, input: {} } });
        yield sseEvent("content_block_delta", { type: "content_block_delta", index, delta: { type: "input_json_delta", partial_json: e.arguments } });
        yield sseEvent("content_block_stop", { type: "content_block_stop", index });
      } else {
        if (textOpen) yield sseEvent("content_block_stop", { type: "content_block_stop", index });
        yield sseEvent("message_delta", {
          type: "message_delta",
          delta: { stop_reason: STOP_REASONS[e.finish], stop_sequence: e.stop },
          usage: usageOf(e.usage),
        });
        yield sseEvent("message_stop", { type: "message_stop" });
      }
    }
  } catch (err) {
    const e = toApiError(err);
    if (e.kind === "internal") log.error("stream failed", { requestId: meta.requestId, error: errorFields(err) });
    yield sseEvent("error", anthropicErrorBody(e, meta.requestId));
  }
}
