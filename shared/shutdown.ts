// Graceful shutdown, whatever the engine: the composition wraps the engine in a Drain, which
// gives every generation its own AbortController. On SIGTERM/SIGINT new requests get a 503 (in the
// API's own error shape), running generations may finish until the grace period ends, the rest
// are cancelled through their signals (their streams end with an error event, not a cut), the
// last frames are sent, the block pool's writes are flushed, and the process exits 0.
import { ApiError } from "./api/errors.ts";
import type { Engine, EngineEvent, GenerationRequest } from "./engine/engine.ts";
import { errorFields, log } from "./log.ts";

/** Cancelled generations end within one decode step or prefill chunk; past this, exit goes on anyway. */
const CANCEL_WAIT_MS = 10_000;
/** Time for the final frames of streams to reach their clients once generations have ended. */
const SEND_WAIT_MS = 5_000;

/** The answer to a request that arrives while the server drains (SDKs retry a 503 with Retry-After). */
export const shuttingDown = () => new ApiError("unavailable", "the server is shutting down; retry shortly", { retryAfterSeconds: 5, code: "shutting_down" });

const cancelledByShutdown = () =>
  new ApiError("unavailable", "the server is shutting down: this generation was cancelled at the end of the grace period; retry it", {
    retryAfterSeconds: 5,
    code: "shutting_down",
  });

/**
 * Tracks the generations of any Engine and drains them.
 * @example
 *   const drain = new Drain();
 *   const engine = drain.track(new SerialEngine(loaded));   // what the functions submit to
 *   await drain.drain(30_000);                                // on SIGTERM
 */
export class Drain {
  #draining = false;
  #cancelling = false;
  #cancelled = 0;
  readonly #running = new Set<AbortController>();
  readonly #idle = new Set<() => void>();

  /** True once shutdown began: new requests are refused. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Generations queued or running now. */
  get inFlight(): number {
    return this.#running.size;
  }

  /** `engine` with each generation registered here, and cancellable by this drain. */
  track(engine: Engine): Engine {
    return {
      get loaded() {
        return engine.loaded;
      },
      load: () => engine.load(),
      submit: (req: GenerationRequest) => {
        // A request admitted just before the drain began, reaching the engine just after it.
        if (this.#draining) throw shuttingDown();
        const ctl = new AbortController();
        const events = engine.submit({ ...req, signal: req.signal ? AbortSignal.any([req.signal, ctl.signal]) : ctl.signal });
        return this.#follow(events, ctl);
      },
    };
  }

  // Registered from the first read (an unread generation holds nothing) until its last event.
  async *#follow(events: AsyncIterable<EngineEvent>, ctl: AbortController): AsyncGenerator<EngineEvent> {
    this.#running.add(ctl);
    if (this.#cancelling) ctl.abort();
    try {
      for await (const e of events) {
        // Cancelled by us rather than by its client: the caller gets an error it can retry, not a short answer.
        if (e.type === "done" && e.reason === "cancelled" && ctl.signal.aborted) throw cancelledByShutdown();
        yield e;
      }
    } catch (err) {
      if (ctl.signal.aborted && !(err instanceof ApiError)) throw cancelledByShutdown();
      throw err;
    } finally {
      this.#running.delete(ctl);
      if (this.#running.size === 0) for (const wake of this.#idle) wake();
    }
  }

  /** Resolves true once nothing is in flight, false after `ms`. */
  #whenIdle(ms: number): Promise<boolean> {
    if (this.#running.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (idle: boolean) => {
        clearTimeout(timer);
        this.#idle.delete(wake);
        resolve(idle);
      };
      const wake = () => done(true);
      const timer = setTimeout(() => done(false), ms);
      this.#idle.add(wake);
    });
  }

  /** Cancels every generation in flight now (and any that starts later); returns how many. */
  cancel(): number {
    this.#draining = true;
    this.#cancelling = true;
    const n = this.#running.size;
    for (const ctl of this.#running) ctl.abort();
    this.#cancelled += n;
    return n;
  }

  /**
   * Stops admitting, lets generations run for up to `graceMs`, then cancels the rest and waits
   * for them to end. Returns how many were in flight at the start and how many were cancelled
   * (here or by an earlier cancel()).
   */
  async drain(graceMs: number): Promise<{ inFlight: number; cancelled: number }> {
    this.#draining = true;
    const inFlight = this.#running.size;
    if (!(await this.#whenIdle(graceMs))) {
      this.cancel();
      if (!(await this.#whenIdle(CANCEL_WAIT_MS))) log.warn("generations still running after cancellation; exiting anyway", { running: this.#running.size });
    }
    return { inFlight, cancelled: this.#cancelled };
  }
}

export type ShutdownParts = {
  drain: Drain;
  /** The listening server (Bun's): stop(false) resolves once every response body is sent. */
  server: { stop(closeActiveConnections?: boolean): Promise<void> } | null | undefined;
  /** The block pool's pending writes, awaited before exit (null while the model loads). */
  flush: () => Promise<void>;
  graceMs: number;
};

/** The whole sequence: drain, close the listener once the last frames are out, flush the cache. */
export async function shutdown(parts: ShutdownParts, signal: string): Promise<void> {
  const t0 = performance.now();
  log.info("shutting down", { signal, inFlight: parts.drain.inFlight, graceMs: parts.graceMs });
  // The listener stays open while draining: new requests get a clear 503 rather than a refused connection.
  const { inFlight, cancelled } = await parts.drain.drain(parts.graceMs);
  if (parts.server) {
    const sent = await Promise.race([parts.server.stop(false).then(() => true), Bun.sleep(SEND_WAIT_MS).then(() => false)]);
    if (!sent) await parts.server.stop(true);
  }
  await parts.flush();
  log.info("stopped", { signal, inFlight, cancelled, ms: Math.round(performance.now() - t0) });
}

/**
 * On the first SIGTERM/SIGINT: shutdown(), then exit 0 (1 if it failed). A second signal skips
 * the rest of the grace period (generations are cancelled at once); the sequence still completes.
 */
export function exitGracefullyOnSignals(parts: ShutdownParts, exit: (code: number) => void = process.exit): void {
  let stopping = false;
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      if (stopping) {
        log.info("second signal: cancelling in-flight generations now", { signal, cancelled: parts.drain.cancel() });
        return;
      }
      stopping = true;
      shutdown(parts, signal).then(
        () => exit(0),
        (e) => {
          log.error("shutdown failed", { error: errorFields(e) });
          exit(1);
        },
      );
    });
  }
}
