// One generation turn as both APIs see it: submits to the engine, parses tool calls out of the
// text as it streams, and ends with a finish reason and usage. The API renderers (anthropic.ts,
// openai.ts) only translate these events into their own wire format.
import { ContextLengthError, type Engine, type EngineEvent, type GenerationRequest } from "../engine/engine.ts";
import type { SamplingOptions } from "../engine/sampling/options.ts";
import type { JsonFormat } from "../engine/structured/constraint.ts";
import { tokenBytesOf } from "../engine/structured/vocabulary.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { ToolCallParser, type ToolParseEvent } from "./tool-calls.ts";

export type Usage = {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens read from the cache. */
  cachedTokens: number;
  /** Prompt tokens newly written to the cache (0 on "started": only known at the end). */
  cacheCreatedTokens: number;
};

/** Why a turn ended, in API-neutral terms. */
export type Finish = "end" | "stop_sequence" | "length" | "context" | "tool_calls" | "cancelled";

export type TopLogprob = { token: string; logprob: number; bytes: number[] };

/** A generated token as OpenAI reports it: its text, log-probability, UTF-8 bytes and the most likely alternatives (when asked). */
export type TokenLogprob = TopLogprob & { top_logprobs: TopLogprob[] };

export type TurnEvent =
  | { type: "started"; promptTokens: number; cachedTokens: number }
  | { type: "text"; text: string; logprobs: TokenLogprob[] }
  | { type: "tool_call"; id: string; name: string; arguments: string }
  | { type: "done"; finish: Finish; stop: string | null; usage: Usage };

/** What an observer of a turn sees: its events, then a failure if it ends in one. */
export type TurnObservation = TurnEvent | { type: "error"; error: unknown };

export type TurnTools = {
  /** Declared tool names (calls to others stay text). */
  names: ReadonlySet<string>;
  /** Text already in the prompt that opens a call (tool_choice any/named). */
  forcedPrefix: string;
  /** false: stop after the first call (OpenAI parallel_tool_calls, Anthropic disable_parallel_tool_use). */
  parallel: boolean;
  /** Makes a call id in the API's style ("toolu_…", "call_…"). */
  newId: () => string;
};

export type TurnRequest = {
  tenant: string;
  agentId: string | null;
  promptIds: number[];
  /** Requested; clamped to what the context leaves. undefined: as much as the context leaves. */
  maxTokens: number | undefined;
  sampling: SamplingOptions;
  /** Structured output (response_format, or the arguments of a forced tool call). */
  format?: JsonFormat | null;
  stop: string[];
  logprobs: boolean;
  /** Alternatives reported per token (with logprobs). */
  topLogprobs?: number;
  signal: AbortSignal;
  tools: TurnTools | null;
  /** Explicit caching (Anthropic cache_control): keep the first pinTokens cached for ttlMs. */
  cacheControl?: { pinTokens: number; ttlMs: number };
  /** Sees every event and the failure, if any (the composition logs and meters requests with it). */
  observe?: (e: TurnObservation) => void;
};

/** What the turn runner needs of the served model. */
export type TurnModel = { tokenizer: Tokenizer; contextLength: number };

/**
 * Starts a turn. Rejects before any byte is sent when the prompt does not fit the context, the
 * engine's queue is full or the agent is busy (so each becomes an HTTP status, streaming or
 * not); the returned iterable yields the turn's events.
 */
export async function startTurn(engine: Engine, model: TurnModel, req: TurnRequest): Promise<AsyncIterable<TurnEvent>> {
  const room = model.contextLength - req.promptIds.length;
  if (room < 1) throw new ContextLengthError(req.promptIds.length, model.contextLength);
  const maxTokens = Math.min(req.maxTokens ?? room, room);
  const stopEarly = new AbortController();
  const genReq: GenerationRequest = {
    tenant: req.tenant,
    agentId: req.agentId,
    promptIds: req.promptIds,
    maxTokens,
    sampling: req.sampling,
    ...(req.format ? { format: req.format } : {}),
    stop: req.stop,
    logprobs: req.logprobs,
    ...(req.topLogprobs ? { topLogprobs: req.topLogprobs } : {}),
    signal: AbortSignal.any([req.signal, stopEarly.signal]),
    ...(req.cacheControl ? { cacheControl: req.cacheControl } : {}),
  };
  const events = await admitted(engine.submit(genReq));
  const turn = run(events, model.tokenizer, req, { maxTokens, clamped: (req.maxTokens ?? Infinity) > room, stopEarly });
  return req.observe ? observed(turn, req.observe) : turn;
}

// The engine's first event says the request is queued with its agent's lease held; waiting for
// it moves a refusal (a busy agent) ahead of the response headers.
async function admitted(events: AsyncIterable<EngineEvent>): Promise<AsyncIterable<EngineEvent>> {
  const it = events[Symbol.asyncIterator]();
  const first = await it.next();
  return (async function* () {
    if (first.done) return;
    if (first.value.type !== "queued") yield first.value;
    yield* { [Symbol.asyncIterator]: () => it };
  })();
}

async function* observed(turn: AsyncIterable<TurnEvent>, observe: (e: TurnObservation) => void): AsyncGenerator<TurnEvent> {
  try {
    for await (const e of turn) {
      observe(e);
      yield e;
    }
  } catch (error) {
    observe({ type: "error", error });
    throw error;
  }
}

async function* run(
  events: AsyncIterable<EngineEvent>,
  tokenizer: Tokenizer,
  req: TurnRequest,
  limits: { maxTokens: number; clamped: boolean; stopEarly: AbortController },
): AsyncGenerator<TurnEvent> {
  const parser = req.tools ? new ToolCallParser({ tools: req.tools.names }) : null;
  if (parser && req.tools!.forcedPrefix) parser.push(req.tools!.forcedPrefix);
  let calls = 0;
  // Whitespace-only text is held while tools are active, so none dangles around a call.
  let heldSpace = "";
  let logprobs: TokenLogprob[] = [];
  const out: TurnEvent[] = [];
  const handle = (parsed: ToolParseEvent[]) => {
    for (const p of parsed) {
      if (p.type === "call") {
        heldSpace = "";
        if (calls > 0 && !req.tools!.parallel) continue;
        calls++;
        out.push({ type: "tool_call", id: req.tools!.newId(), name: p.call.name, arguments: p.call.arguments });
        if (!req.tools!.parallel) limits.stopEarly.abort();
      } else if (parser && !p.text.trim()) {
        heldSpace += p.text;
      } else {
        if (calls > 0 && !req.tools!.parallel) continue;
        out.push({ type: "text", text: heldSpace + p.text, logprobs });
        heldSpace = "";
        logprobs = [];
      }
    }
  };
  const feed = (text: string) => {
    if (!text) return;
    if (parser) handle(parser.push(text));
    else {
      out.push({ type: "text", text, logprobs });
      logprobs = [];
    }
  };
  for await (const e of events) {
    if (e.type === "queued") continue;
    if (e.type === "started") {
      yield { type: "started", promptTokens: e.promptTokens, cachedTokens: e.cachedTokens };
    } else if (e.type === "token") {
      if (req.logprobs && e.logprob !== undefined) {
        const top = (e.topLogprobs ?? []).map((t) => ({ ...tokenInfo(tokenizer, t.id), logprob: t.logprob }));
        logprobs.push({ ...tokenInfo(tokenizer, e.id), logprob: e.logprob, top_logprobs: top });
      }
      feed(e.text);
    } else if (e.type === "text") {
      feed(e.text);
    } else {
      if (parser) handle(parser.finish());
      if (heldSpace && calls === 0) out.push({ type: "text", text: heldSpace, logprobs });
      yield* out.splice(0);
      const finish: Finish =
        calls > 0 ? "tool_calls"
        : e.reason === "stop" ? "stop_sequence"
        : e.reason === "eos" ? "end"
        : e.reason === "cancelled" ? "cancelled"
        : limits.clamped && e.completionTokens >= limits.maxTokens ? "context"
        : "length";
      yield {
        type: "done",
        finish,
        stop: finish === "stop_sequence" ? e.stop : null,
        usage: {
          promptTokens: e.promptTokens,
          completionTokens: e.completionTokens,
          cachedTokens: e.cachedTokens,
          cacheCreatedTokens: e.cacheCreatedTokens ?? 0,
        },
      };
      return;
    }
    if (out.length) yield* out.splice(0);
  }
}

const bytesOf = new WeakMap<Tokenizer, (id: number) => Uint8Array>();

/** A token's text (as the tokenizer decodes it alone) and its own UTF-8 bytes (part of a character, maybe). */
export function tokenInfo(tokenizer: Tokenizer, id: number): { token: string; bytes: number[] } {
  let of = bytesOf.get(tokenizer);
  if (!of) {
    try {
      of = tokenBytesOf(tokenizer);
    } catch {
      of = (i) => new TextEncoder().encode(tokenizer.decode([i])); // a vocabulary whose bytes cannot be told
    }
    bytesOf.set(tokenizer, of);
  }
  return { token: tokenizer.decode([id]), bytes: [...of(id)] };
}

export type AnswerBlock = { type: "text"; text: string } | { type: "tool_call"; id: string; name: string; arguments: string };

/** Runs a turn to its end: the answer's blocks in order (adjacent text merged), logprobs and the done event. */
export async function collectTurn(events: AsyncIterable<TurnEvent>) {
  const blocks: AnswerBlock[] = [];
  const logprobs: TokenLogprob[] = [];
  for await (const e of events) {
    if (e.type === "text") {
      const last = blocks.at(-1);
      if (last?.type === "text") last.text += e.text;
      else blocks.push({ type: "text", text: e.text });
      logprobs.push(...e.logprobs);
    } else if (e.type === "tool_call") blocks.push({ type: "tool_call", id: e.id, name: e.name, arguments: e.arguments });
    else if (e.type === "done") return { blocks, logprobs, done: e };
  }
  throw new Error("the engine's event stream ended without a done event (a bug in the engine)");
}
