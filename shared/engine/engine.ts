// The engine's contract with the functions: typed generation requests in, events out. JSON and
// HTTP stay in the functions; the engine sees token ids and typed parameters only.
import type { LoadedModel } from "../models/load.ts";
import type { SamplingOptions } from "./sampling/options.ts";
import type { JsonFormat } from "./structured/constraint.ts";

export type GenerationRequest = {
  /** The caller's tenant (its API key's identity, "local" without keys): caches never cross it. */
  tenant: string;
  /** The agent whose cache this turn continues, if any. */
  agentId?: string | null;
  promptIds: number[];
  maxTokens: number;
  /** The sampler chain's options ({ temperature: 0 } is greedy); the same seed gives the same tokens, batched or alone. */
  sampling: SamplingOptions;
  /** Structured output: the completion is this JSON and ends once the value is complete. */
  format?: JsonFormat | null;
  stop: string[];
  logprobs?: boolean;
  /** Also report this many most likely tokens at each step (0..20). */
  topLogprobs?: number;
  /** Aborting cancels the generation within one decode step. */
  signal?: AbortSignal;
  /** Explicit caching (Anthropic cache_control, the agent API's pin): keep the first `pinTokens` cached for `ttlMs`. */
  cacheControl?: { pinTokens: number; ttlMs: number };
};

/** One of the most likely tokens at a step, by the model's raw distribution. */
export type TopLogprob = { id: number; logprob: number };

export type FinishReason = "stop" | "length" | "eos" | "cancelled";

export type EngineEvent =
  /** Always first: the request waits in the queue, its agent's lease held (a busy agent fails before it). */
  | { type: "queued" }
  | { type: "started"; promptTokens: number; cachedTokens: number; queueMs: number }
  | { type: "token"; id: number; text: string; logprob?: number; topLogprobs?: TopLogprob[] }
  | { type: "text"; text: string }
  | {
      type: "done";
      reason: FinishReason;
      /** The stop string that ended generation, when reason is "stop". */
      stop: string | null;
      promptTokens: number;
      completionTokens: number;
      /** Prompt tokens served from cache instead of prefilled. */
      cachedTokens: number;
      /** Prompt tokens this turn newly wrote to the cache. */
      cacheCreatedTokens: number;
      timeToFirstTokenMs: number;
      totalMs: number;
      /** Time spent waiting for a slot before the request started (BatchEngine). */
      queueMs?: number;
    };

/** Too much work queued: the functions answer 429 (OpenAI) / 529 (Anthropic) with Retry-After. */
export class QueueFullError extends Error {
  override name = "QueueFullError";
  constructor(message: string, readonly retryAfterSeconds: number) {
    super(message);
  }
}

/** A prompt longer than the model's context (both numbers in the message). */
export class ContextLengthError extends Error {
  override name = "ContextLengthError";
  constructor(readonly promptTokens: number, readonly maxTokens: number) {
    super(`prompt is too long: ${promptTokens} tokens > ${maxTokens} maximum`);
  }
}

export interface Engine {
  readonly loaded: LoadedModel;
  /**
   * Queues a request; the iterator yields "queued", "started", tokens, then "done". Throws
   * QueueFullError or ContextLengthError; a busy agent's AgentBusyError comes before "queued".
   */
  submit(req: GenerationRequest): AsyncIterable<EngineEvent>;
  /** Requests waiting and running now. */
  load(): { queued: number; running: number };
}
