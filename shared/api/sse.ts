// Server-sent events: frame formatting, and a streaming Response that sends keep-alives while
// the producer is quiet (queue wait, long prefill) and aborts the producer when the client goes.
import { errorFields, log } from "../log.ts";

/** Anthropic's framing: a named event whose data repeats the type. */
export const sseEvent = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** OpenAI's framing: data lines only. */
export const sseData = (data: unknown) => `data: ${JSON.stringify(data)}\n\n`;

export const SSE_DONE = "data: [DONE]\n\n";

/** A comment line: every SSE parser skips it, and it keeps idle-timeout watchdogs quiet. */
export const SSE_COMMENT_PING = ": ping\n\n";

export const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  connection: "keep-alive",
  "x-accel-buffering": "no",
};

export type SseOptions = {
  /** What to send after `keepAliveMs` without a frame (may depend on what was sent so far). */
  keepAlive: () => string;
  keepAliveMs?: number;
  headers?: Record<string, string>;
};

/**
 * Streams the frames `produce` yields. `produce` gets a signal that aborts when the client
 * disconnects; it should render its own errors as frames (nothing thrown here reaches onError).
 */
export function sseResponse(produce: (signal: AbortSignal) => AsyncIterable<string>, opts: SseOptions): Response {
  const gone = new AbortController();
  const encoder = new TextEncoder();
  const interval = opts.keepAliveMs ?? 5000;
  let timer: ReturnType<typeof setInterval> | undefined;
  let closed = false;
  const body = new ReadableStream<Uint8Array>({
    async start(controller) {
      let last = performance.now();
      const write = (s: string) => {
        if (closed) return;
        try {
          controller.enqueue(encoder.encode(s));
          last = performance.now();
        } catch {
          closed = true;
        }
      };
      timer = setInterval(() => {
        if (performance.now() - last >= interval) write(opts.keepAlive());
      }, Math.max(50, interval / 4));
      try {
        for await (const frame of produce(gone.signal)) {
          if (closed) break;
          write(frame);
        }
      } catch (e) {
        log.error("stream failed", { error: errorFields(e) });
      } finally {
        clearInterval(timer);
        if (!closed) {
          closed = true;
          try {
            controller.close();
          } catch {
            // already closed by a cancel
          }
        }
      }
    },
    cancel() {
      closed = true;
      clearInterval(timer);
      gone.abort();
    },
  });
  return new Response(body, { status: 200, headers: { ...SSE_HEADERS, ...opts.headers } });
}
