// One record per HTTP request, from its arrival to the last byte of its response (a stream's
// end, not its headers): identity, the turn's token counts and timings, status and error. At the
// end it becomes one JSON log line and the request's metrics. Tenant and agent are hashed;
// prompt and completion text appear only with logPrompts.
import { type ErrorKind, toApiError } from "./api/errors.ts";
import type { TurnObservation } from "./api/generation.ts";
import { newId } from "./api/service.ts";
import { hashId, type LogLevel, log } from "./log.ts";
import type { Metrics } from "./metrics.ts";

// Probes, scrapes and the API document are fetched by machines, often: their lines are debug, not info.
const QUIET_PATHS = new Set(["/health", "/ready", "/metrics", "/openapi.json"]);

const ms = (t: number) => Math.round(t * 10) / 10;

export class RequestRecord {
  readonly id = newId("req_");
  readonly startedAt = performance.now();
  tenant: string | null = null;
  agentId: string | null = null;
  /** Set when the response is a stream: the record ends with the body, not with the headers. */
  streaming = false;
  /** The client closed the stream before its end. */
  clientClosed = false;
  status = 200;
  error: ErrorKind | null = null;
  promptTokens: number | null = null;
  cachedTokens: number | null = null;
  completionTokens: number | null = null;
  ttftMs: number | null = null;
  finish: string | null = null;
  #text = "";
  #ended = false;

  /** The turn's observer (Call.observe): first output, usage, finish, failure. */
  readonly observe = (e: TurnObservation): void => {
    if ((e.type === "text" || e.type === "tool_call") && this.ttftMs === null) this.ttftMs = performance.now() - this.startedAt;
    if (e.type === "text" && log.prompts) this.#text += e.text;
    if (e.type === "started") {
      this.promptTokens = e.promptTokens;
      this.cachedTokens = e.cachedTokens;
    } else if (e.type === "done") {
      this.promptTokens = e.usage.promptTokens;
      this.cachedTokens = e.usage.cachedTokens;
      this.completionTokens = e.usage.completionTokens;
      this.finish = e.finish;
    } else if (e.type === "error") {
      this.error = toApiError(e.error).kind;
    }
  };

  /**
   * Writes the log line and the request's metrics, once (a stream's end may be reported twice).
   * `body` is the parsed request body, logged only with logPrompts.
   */
  end(metrics: Metrics, route: string, method: string, body: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    // A stream the client closed before its end: the turn's own final counts never arrive.
    if (this.clientClosed && this.finish === null && this.error === null) this.finish = "cancelled";
    const seconds = (performance.now() - this.startedAt) / 1000;
    metrics.observeRequest(route, method, this.status, seconds);
    if (this.error) metrics.observeError(this.error);
    const level: LogLevel = this.error === "internal" ? "error" : QUIET_PATHS.has(route) ? "debug" : "info";
    if (!log.enabled(level)) return;
    log.log(level, "request", {
      requestId: this.id,
      function: route,
      method,
      status: this.status,
      ...(this.error ? { error: this.error } : {}),
      tenant: this.tenant === null ? null : hashId(this.tenant),
      agent: this.agentId === null ? null : hashId(this.agentId),
      stream: this.streaming,
      promptTokens: this.promptTokens,
      cachedTokens: this.cachedTokens,
      completionTokens: this.completionTokens,
      finish: this.finish,
      ttftMs: this.ttftMs === null ? null : ms(this.ttftMs),
      durationMs: ms(seconds * 1000),
      ...(log.prompts ? { prompt: promptOf(body), completion: this.#text } : {}),
    });
  }
}

/** The parts of a request body that carry prompt text (both APIs, and legacy completions). */
function promptOf(body: unknown): unknown {
  if (!body || typeof body !== "object") return null;
  const { system, messages, prompt } = body as Record<string, unknown>;
  return { ...(system !== undefined ? { system } : {}), ...(messages !== undefined ? { messages } : {}), ...(prompt !== undefined ? { prompt } : {}) };
}

/**
 * The same response, whose body calls `onEnd` once it has been read to the end ("sent") or
 * cancelled by the client ("cancelled"): for a stream, that is when the request is over.
 */
export function onBodyEnd(response: Response, onEnd: (how: "sent" | "cancelled") => void): Response {
  const reader = response.body!.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (done) {
          controller.close();
          onEnd("sent");
        } else controller.enqueue(value);
      } catch (e) {
        controller.error(e);
        onEnd("cancelled");
      }
    },
    cancel(reason) {
      onEnd("cancelled");
      return reader.cancel(reason);
    },
  });
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}
