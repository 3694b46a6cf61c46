// OpenAI Chat Completions <-> engine: the messages become one Conversation and one turn; the
// turn's events become a chat.completion or the chunk stream openai-node parses (role first,
// content deltas, tool_calls deltas, finish_reason, an optional usage chunk, then [DONE]).
import { errorFields, log } from "../log.ts";
import { invalid, openaiErrorBody, toApiError } from "./errors.ts";
import { type AnswerBlock, collectTurn, type Finish, startTurn, type TokenLogprob, type TurnEvent, type TurnTools, type Usage } from "./generation.ts";
import type { ChatCompletion, ChatMessageParam, ChatToolChoice, CompletionUsage, FinishReason, FunctionTool, ResponseFormat } from "./openai-schema.ts";
import { buildChatPrompt, type ChatPrompt, type Conversation, type ToolChoice, type Turn } from "./prompt.ts";
import { responseFormat, samplingOf, toolCallFormat } from "./sampling.ts";
import { type Call, newId, type Served } from "./service.ts";
import { SSE_COMMENT_PING, SSE_DONE, sseData, sseResponse } from "./sse.ts";

/** What both OpenAI routes read besides their prompt; the sampler chain's fields are read by name (shared/api/sampling.ts). */
export type Sampling = {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  seed?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  user?: string | null;
};

export type ChatInput = Sampling & {
  model: string;
  messages: ChatMessageParam[];
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  logprobs?: boolean | null;
  top_logprobs?: number | null;
  tools?: FunctionTool[];
  tool_choice?: ChatToolChoice;
  parallel_tool_calls?: boolean | null;
  response_format?: ResponseFormat | null;
};


export const FINISH: Record<Finish, FinishReason> = {
  end: "stop",
  stop_sequence: "stop",
  length: "length",
  context: "length",
  tool_calls: "tool_calls",
  cancelled: "stop",
};

export function usageOf(u: Usage): CompletionUsage {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
  };
}

function textOf(content: string | { type: string; text?: string }[] | null | undefined, field: string): string {
  if (content === null || content === undefined) return "";
  if (typeof content === "string") return content;
  return content
    .map((p, i) => {
      if (p.type === "text") return p.text ?? "";
      if (p.type === "refusal") return "";
      throw invalid(`${field}.${i}`, `${p.type} content is not supported by this model (text only)`);
    })
    .join("\n");
}

function parseArguments(args: string, field: string): Record<string, unknown> {
  try {
    const v = JSON.parse(args || "{}");
    if (v !== null && typeof v === "object" && !Array.isArray(v)) return v as Record<string, unknown>;
  } catch {
    // reported below
  }
  throw invalid(field, "must be a JSON object encoded as a string");
}

/** The chat messages and tools as one Conversation, checking the role order the schema cannot. */
export function openaiConversation(input: ChatInput): { conv: Conversation; parallel: boolean } {
  const turns: Turn[] = [];
  let openCalls = new Map<string, string>();
  input.messages.forEach((m, i) => {
    const field = `messages.${i}`;
    if (m.role === "tool") {
      const name = openCalls.get(m.tool_call_id);
      if (name === undefined) {
        throw invalid(`${field}.tool_call_id`, `no tool call ${JSON.stringify(m.tool_call_id)} in the preceding assistant message: a tool message must answer one of its tool_calls`);
      }
      turns.push({ role: "tool", toolCallId: m.tool_call_id, name, text: textOf(m.content, `${field}.content`) });
      return;
    }
    openCalls = new Map();
    if (m.role === "assistant") {
      const toolCalls = (m.tool_calls ?? []).map((c, j) => ({
        id: c.id,
        name: c.function.name,
        arguments: parseArguments(c.function.arguments, `${field}.tool_calls.${j}.function.arguments`),
      }));
      openCalls = new Map(toolCalls.map((c) => [c.id, c.name]));
      turns.push({ role: "assistant", text: textOf(m.content, `${field}.content`), toolCalls });
    } else {
      turns.push({ role: m.role === "developer" ? "system" : m.role, text: textOf(m.content, `${field}.content`) });
    }
  });
  const tools = (input.tools ?? []).map((t, i) => ({
    name: t.function.name,
    description: t.function.description,
    parameters: t.function.parameters ?? { type: "object", properties: {} },
    field: `tools.${i}.function.parameters`,
  }));
  const tc = input.tool_choice;
  let toolChoice: ToolChoice = { kind: "auto" };
  if (tc === "none") toolChoice = { kind: "none" };
  else if (tc === "required") toolChoice = { kind: "required" };
  else if (tc && typeof tc === "object") {
    if (!tools.some((t) => t.name === tc.function.name)) throw invalid("tool_choice.function.name", `no tool named ${JSON.stringify(tc.function.name)} in tools`);
    toolChoice = { kind: "named", name: tc.function.name };
  }
  if ((tc === "required" || typeof tc === "object") && tools.length === 0) throw invalid("tool_choice", "needs tools");
  return { conv: { turns, tools, toolChoice }, parallel: input.parallel_tool_calls !== false };
}

export function checkSampling(input: Sampling): void {
  if ((input.n ?? 1) !== 1) throw invalid("n", "only n=1 is supported");
}

export const stopsOf = (stop: string | string[] | null | undefined) => (stop == null ? [] : typeof stop === "string" ? [stop] : stop);

async function beginChat(served: Served, input: ChatInput, call: Call): Promise<{ turn: AsyncIterable<TurnEvent>; prompt: ChatPrompt }> {
  served.aliases.resolve(input.model);
  checkSampling(input);
  if ((input.top_logprobs ?? 0) > 0 && input.logprobs !== true) throw invalid("top_logprobs", "requires logprobs: true");
  const sampling = samplingOf(input, served.model.tokenizer);
  const { conv, parallel } = openaiConversation(input);
  const prompt = buildChatPrompt(served.model, conv, call.tenant);
  // A forced tool call is constrained to a valid call; else response_format, if any.
  const format = toolCallFormat(conv) ?? responseFormat(input.response_format);
  const tools: TurnTools | null = prompt.toolsActive
    ? { names: new Set(conv.tools.map((t) => t.name)), forcedPrefix: prompt.forcedPrefix, parallel, newId: () => newId("call_") }
    : null;
  const turn = await startTurn(served.engine, served.model, {
    tenant: call.tenant,
    agentId: call.agentId,
    promptIds: prompt.ids,
    maxTokens: input.max_completion_tokens ?? input.max_tokens ?? undefined,
    sampling,
    format,
    stop: stopsOf(input.stop),
    logprobs: input.logprobs === true,
    topLogprobs: input.logprobs === true ? (input.top_logprobs ?? 0) : 0,
    signal: call.signal,
    observe: call.observe,
    tools,
  });
  return { turn, prompt };
}

export const created = () => Math.floor(Date.now() / 1000);

const logprobsOf = (lp: TokenLogprob[]) => ({ content: lp, refusal: null });

/** POST /v1/chat/completions without streaming. */
export async function createChatCompletion(served: Served, input: ChatInput, call: Call, fingerprint: string): Promise<ChatCompletion> {
  const { turn } = await beginChat(served, input, call);
  const { blocks, logprobs, done } = await collectTurn(turn);
  const text = blocks.flatMap((b) => (b.type === "text" ? [b.text] : [])).join("");
  const calls = blocks.filter((b): b is Extract<AnswerBlock, { type: "tool_call" }> => b.type === "tool_call");
  return {
    id: newId("chatcmpl-"),
    object: "chat.completion",
    created: created(),
    model: input.model,
    system_fingerprint: fingerprint,
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: calls.length && !text ? null : text,
          refusal: null,
          ...(calls.length ? { tool_calls: calls.map((c) => ({ id: c.id, type: "function" as const, function: { name: c.name, arguments: c.arguments } })) } : {}),
        },
        logprobs: input.logprobs ? logprobsOf(logprobs) : null,
        finish_reason: FINISH[done.finish],
      },
    ],
    usage: usageOf(done.usage),
  };
}

/** POST /v1/chat/completions with stream: true. Errors before the turn starts are thrown. */
export async function streamChatCompletion(served: Served, input: ChatInput, call: Call, fingerprint: string): Promise<Response> {
  const cancel = new AbortController();
  const { turn } = await beginChat(served, input, { ...call, signal: AbortSignal.any([call.signal, cancel.signal]) });
  const meta = { id: newId("chatcmpl-"), created: created(), model: input.model, fingerprint, includeUsage: input.stream_options?.include_usage === true, logprobs: input.logprobs === true };
  return sseResponse(
    (gone) => {
      gone.addEventListener("abort", () => cancel.abort(), { once: true });
      return chatChunks(turn, meta, call.requestId);
    },
    { keepAlive: () => SSE_COMMENT_PING, keepAliveMs: call.keepAliveMs },
  );
}

/** A turn's events as chat.completion.chunk frames, then [DONE]. */
export async function* chatChunks(
  turn: AsyncIterable<TurnEvent>,
  meta: { id: string; created: number; model: string; fingerprint: string; includeUsage: boolean; logprobs: boolean },
  requestId: string,
): AsyncGenerator<string> {
  const chunk = (choice: Record<string, unknown> | null, usage?: CompletionUsage) =>
    sseData({
      id: meta.id,
      object: "chat.completion.chunk",
      created: meta.created,
      model: meta.model,
      system_fingerprint: meta.fingerprint,
      choices: choice ? [{ index: 0, logprobs: null, finish_reason: null, ...choice }] : [],
      ...(meta.includeUsage ? { usage: usage ?? null } : {}),
    });
  let calls = 0;
  try {
    for await (const e of turn) {
      if (e.type === "started") yield chunk({ delta: { role: "assistant", content: "", refusal: null } });
      else if (e.type === "text") yield chunk({ delta: { content: e.text }, logprobs: meta.logprobs ? logprobsOf(e.logprobs) : null });
      else if (e.type === "tool_call") {
        const index = calls++;
        yield chunk({ delta: { tool_calls: [{ index, id: e.id, type: "function", function: { name: e.name, arguments: "" } }] } });
        yield chunk({ delta: { tool_calls: [{ index, function: { arguments: e.arguments } }] } });
      } else {
        yield chunk({ delta: {}, finish_reason: FINISH[e.finish] });
        if (meta.includeUsage) yield chunk(null, usageOf(e.usage));
        yield SSE_DONE;
      }
    }
  } catch (err) {
    const e = toApiError(err);
    if (e.kind === "internal") log.error("stream failed", { requestId, error: errorFields(err) });
    yield sseData(openaiErrorBody(e));
  }
}
