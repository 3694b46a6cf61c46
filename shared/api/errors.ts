// Errors at the HTTP edge: one class carrying a kind (and so a status), and one renderer per
// API that turns any thrown value into that API's error shape. The composition's single
// onError uses these; streaming code uses the SSE forms once a 200 has gone out.
import { AgentBusyError } from "../cache/index.ts";
import { ContextLengthError, QueueFullError } from "../engine/engine.ts";
import { SamplingOptionError } from "../engine/sampling/options.ts";
import { SchemaError } from "../engine/structured/schema.ts";

export type ErrorKind =
  | "invalid_request"
  | "authentication"
  | "permission"
  | "not_found"
  | "conflict"
  | "request_too_large"
  | "queue_full"
  | "unavailable"
  | "internal";

export type ApiFlavor = "anthropic" | "openai";

type KindInfo = { status: number; anthropicStatus?: number; anthropic: string; openai: string; openaiCode: string | null };

// One map from kind to status and each API's error type (Anthropic's and OpenAI's documented names).
const KINDS: Record<ErrorKind, KindInfo> = {
  invalid_request: { status: 400, anthropic: "invalid_request_error", openai: "invalid_request_error", openaiCode: null },
  authentication: { status: 401, anthropic: "authentication_error", openai: "invalid_request_error", openaiCode: "invalid_api_key" },
  permission: { status: 403, anthropic: "permission_error", openai: "invalid_request_error", openaiCode: "forbidden" },
  not_found: { status: 404, anthropic: "not_found_error", openai: "invalid_request_error", openaiCode: "not_found" },
  // Another turn of the same agent is running; the SDKs retry 409 by default.
  conflict: { status: 409, anthropic: "invalid_request_error", openai: "invalid_request_error", openaiCode: "agent_busy" },
  request_too_large: { status: 413, anthropic: "request_too_large", openai: "invalid_request_error", openaiCode: "request_too_large" },
  queue_full: { status: 429, anthropicStatus: 529, anthropic: "overloaded_error", openai: "rate_limit_error", openaiCode: "queue_full" },
  unavailable: { status: 503, anthropic: "overloaded_error", openai: "server_error", openaiCode: "model_loading" },
  internal: { status: 500, anthropic: "api_error", openai: "server_error", openaiCode: null },
};

export type ApiErrorOptions = {
  /** The request field at fault, dotted ("messages.0.content"). */
  param?: string | null;
  /** OpenAI's `code` (e.g. "context_length_exceeded"); defaults per kind. */
  code?: string | null;
  retryAfterSeconds?: number;
};

/**
 * A failure with a kind the client can act on. Throw it anywhere below a function; onError renders it.
 * @example throw new ApiError("invalid_request", "max_tokens: must be at least 1", { param: "max_tokens" })
 */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(readonly kind: ErrorKind, message: string, readonly options: ApiErrorOptions = {}) {
    super(message);
  }

  status(flavor: ApiFlavor): number {
    const k = KINDS[this.kind];
    return flavor === "anthropic" ? (k.anthropicStatus ?? k.status) : k.status;
  }
}

export const invalid = (param: string, message: string, code?: string) =>
  new ApiError("invalid_request", `${param}: ${message}`, { param, code });

/** Turns anything thrown (engine errors included) into an ApiError; unknown errors become "internal". */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error;
  if (error instanceof QueueFullError) {
    return new ApiError("queue_full", `overloaded: ${error.message}`, { retryAfterSeconds: Math.max(1, Math.ceil(error.retryAfterSeconds)) });
  }
  if (error instanceof ContextLengthError) {
    return new ApiError("invalid_request", error.message, { param: "messages", code: "context_length_exceeded" });
  }
  if (error instanceof AgentBusyError) return new ApiError("conflict", error.message, { retryAfterSeconds: 1 });
  // The API layer checks these first; a request that reaches the engine unchecked still gets a 400.
  if (error instanceof SamplingOptionError) return new ApiError("invalid_request", error.message, { param: error.field });
  if (error instanceof SchemaError) return new ApiError("invalid_request", error.message);
  return new ApiError("internal", "internal server error");
}

/** Anthropic's body: {"type":"error","error":{"type","message"},"request_id"}. */
export function anthropicErrorBody(e: ApiError, requestId: string) {
  return { type: "error" as const, error: { type: KINDS[e.kind].anthropic, message: e.message }, request_id: requestId };
}

/** OpenAI's body: {"error":{"message","type","param","code"}}. */
export function openaiErrorBody(e: ApiError) {
  return { error: { message: e.message, type: KINDS[e.kind].openai, param: e.options.param ?? null, code: e.options.code ?? KINDS[e.kind].openaiCode } };
}

/** The full HTTP response for an error, with Retry-After and x-should-retry where they apply. */
export function errorResponse(e: ApiError, flavor: ApiFlavor, requestId: string): Response {
  const status = e.status(flavor);
  const headers: Record<string, string> = { "content-type": "application/json", "request-id": requestId };
  if (e.options.retryAfterSeconds !== undefined) headers["retry-after"] = String(e.options.retryAfterSeconds);
  headers["x-should-retry"] = status === 409 || status === 429 || status >= 500 ? "true" : "false";
  const body = flavor === "anthropic" ? anthropicErrorBody(e, requestId) : openaiErrorBody(e);
  return new Response(JSON.stringify(body), { status, headers });
}

/** Which API's error shape a request expects: the Messages routes, or any call carrying anthropic-version. */
export function flavorOf(path: string, headers: Headers): ApiFlavor {
  if (path.startsWith("/v1/messages")) return "anthropic";
  return headers.has("anthropic-version") ? "anthropic" : "openai";
}
