// What the API translators need from the running server: the engine, the served model and its
// aliases, and the per-call identity the composition derived (never taken from the client).
import type { Engine } from "../engine/engine.ts";
import type { TurnModel, TurnObservation } from "./generation.ts";
import type { ModelResolver } from "./model-aliases.ts";
import type { PromptModel } from "./prompt.ts";

export type ServedModel = PromptModel & TurnModel & { id: string };

export type Served = { engine: Engine; model: ServedModel; aliases: ModelResolver };

export type Call = {
  tenant: string;
  agentId: string | null;
  /** Aborts when the client disconnects. */
  signal: AbortSignal;
  requestId: string;
  /** SSE keep-alive after this much silence (ms). */
  keepAliveMs: number;
  /** Sees the turn's events (tokens, usage, failure) for the request's log line and metrics. */
  observe?: (e: TurnObservation) => void;
};

/** What the composition gives every inference function. */
export type InferenceService = {
  /** The engine and model; throws a 503 while the model is still loading. */
  served(): Served;
  /**
   * The caller's identity for this request; the agent id from headers, else the body's `user`
   * field, unless `agentId` names it (the agent API's path, already checked).
   */
  call(request: Request, user: string | null | undefined, userField: string, agentId?: string | null): Call;
  /** OpenAI's system_fingerprint: changes when the weights or their handling change. */
  fingerprint(): string;
};

const ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** A random id in the API's style, e.g. newId("msg_") -> "msg_01Hx…" (24 base-62 characters). */
export function newId(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  let s = prefix;
  for (const b of bytes) s += ALPHABET[b % 62];
  return s;
}
