// One request at a time, in arrival order, each from a fresh cache. The reference engine the
// functions are built against until the batch engine over the block pool replaces it.
import type { LoadedModel } from "../models/load.ts";
import { ContextLengthError, type Engine, type EngineEvent, type GenerationRequest, QueueFullError } from "./engine.ts";
import { generate } from "./generate.ts";

export class SerialEngine implements Engine {
  #queue: (() => void)[] = [];
  #running = 0;

  constructor(readonly loaded: LoadedModel, readonly maxQueued = 64) {}

  load(): { queued: number; running: number } {
    return { queued: this.#queue.length, running: this.#running };
  }

  submit(req: GenerationRequest): AsyncIterable<EngineEvent> {
    const limit = this.loaded.model.contextLength;
    if (req.promptIds.length + 1 > limit) throw new ContextLengthError(req.promptIds.length, limit);
    if (this.#queue.length >= this.maxQueued) throw new QueueFullError(`${this.#queue.length} requests are queued`, 1);
    return this.#run(req, performance.now());
  }

  async #turn(): Promise<void> {
    if (this.#running === 0 && this.#queue.length === 0) {
      this.#running = 1;
      return;
    }
    await new Promise<void>((resolve) => this.#queue.push(resolve));
  }

  #release(): void {
    const next = this.#queue.shift();
    if (next) next();
    else this.#running = 0;
  }

  async *#run(req: GenerationRequest, queuedAt: number): AsyncGenerator<EngineEvent> {
    await this.#turn();
    const caches = this.loaded.model.makeCache();
    const start = performance.now();
    let firstToken = 0;
    try {
      yield { type: "started", promptTokens: req.promptIds.length, cachedTokens: 0, queueMs: start - queuedAt };
      const maxTokens = Math.min(req.maxTokens, this.loaded.model.contextLength - req.promptIds.length);
      for await (const e of generate(this.loaded, { ...req, maxTokens }, caches)) {
        if (e.type === "done") {
          yield {
            type: "done", reason: e.reason, stop: e.stop, promptTokens: e.promptTokens, completionTokens: e.completionTokens,
            cachedTokens: 0, timeToFirstTokenMs: firstToken || performance.now() - start, totalMs: performance.now() - queuedAt,
          };
        } else {
          if (!firstToken) firstToken = performance.now() - queuedAt;
          yield e;
        }
      }
    } finally {
      for (const c of caches) c.free();
      this.#release();
    }
  }
}
