// One request at a time, in arrival order. With a block pool, each request starts from the
// longest cached prefix of its prompt (its agent's private tail included) and writes its
// K/V back after the turn. The batch engine replaces this loop behind the same interface.
import { type BlockPool, type LayerKV, Leases } from "../cache/index.ts";
import { dispose } from "../mlx/index.ts";
import { KVCache, type LayerCache } from "../models/cache.ts";
import type { LoadedModel } from "../models/load.ts";
import { ContextLengthError, type Engine, type EngineEvent, type GenerationRequest, QueueFullError } from "./engine.ts";
import { generate } from "./generate.ts";

export type SerialEngineOptions = {
  maxQueued?: number;
  pool?: BlockPool | null;
  /** How long a request waits for another turn on the same agent before AgentBusyError (409). */
  agentWaitMs?: number;
};

export class SerialEngine implements Engine {
  readonly pool: BlockPool | null;
  readonly #leases = new Leases();
  readonly #maxQueued: number;
  readonly #agentWaitMs: number;
  #queue: (() => void)[] = [];
  #running = 0;

  constructor(readonly loaded: LoadedModel, opts: SerialEngineOptions = {}) {
    this.pool = opts.pool ?? null;
    this.#maxQueued = opts.maxQueued ?? 64;
    this.#agentWaitMs = opts.agentWaitMs ?? 30_000;
  }

  load(): { queued: number; running: number } {
    return { queued: this.#queue.length, running: this.#running };
  }

  submit(req: GenerationRequest): AsyncIterable<EngineEvent> {
    const limit = this.loaded.model.contextLength;
    if (req.promptIds.length + 1 > limit) throw new ContextLengthError(req.promptIds.length, limit);
    if (this.#queue.length >= this.#maxQueued) throw new QueueFullError(`${this.#queue.length} requests are queued`, 1);
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

  /** Caches holding the longest usable cached prefix of the prompt, and its length. */
  async #startCaches(req: GenerationRequest): Promise<{ caches: LayerCache[]; cached: number }> {
    const model = this.loaded.model;
    if (!this.pool) return { caches: model.makeCache(), cached: 0 };
    const m = await this.pool.prepare(this.pool.match(req.tenant, req.promptIds, req.agentId ?? null));
    if (!m.cachedTokens) return { caches: model.makeCache(), cached: 0 };
    const kv = this.pool.gather(m);
    return { caches: kv.map(([k, v]) => KVCache.fromPrefix(k, v)), cached: m.cachedTokens };
  }

  async *#run(req: GenerationRequest, queuedAt: number): AsyncGenerator<EngineEvent> {
    const lease = req.agentId && this.pool ? await this.#leases.acquire(`${req.tenant}\0${req.agentId}`, this.#agentWaitMs) : null;
    try {
      await this.#turn();
      try {
        yield* this.#generate(req, queuedAt);
      } finally {
        this.#release();
      }
    } finally {
      lease?.release();
    }
  }

  async *#generate(req: GenerationRequest, queuedAt: number): AsyncGenerator<EngineEvent> {
    const start = performance.now();
    const { caches, cached } = await this.#startCaches(req);
    let firstToken = 0;
    let cachedIds: number[] | null = null;
    try {
      yield { type: "started", promptTokens: req.promptIds.length, cachedTokens: cached, queueMs: start - queuedAt };
      const maxTokens = Math.min(req.maxTokens, this.loaded.model.contextLength - req.promptIds.length);
      for await (const e of generate(this.loaded, { ...req, maxTokens }, caches, cached)) {
        if (e.type !== "done") {
          if (!firstToken) firstToken = performance.now() - queuedAt;
          yield e;
          continue;
        }
        cachedIds = e.cachedIds;
        const created = this.#commit(req, cachedIds, caches);
        yield {
          type: "done", reason: e.reason, stop: e.stop, promptTokens: e.promptTokens, completionTokens: e.completionTokens,
          cachedTokens: cached, cacheCreatedTokens: created,
          timeToFirstTokenMs: firstToken || performance.now() - queuedAt, totalMs: performance.now() - queuedAt,
        };
      }
    } finally {
      for (const c of caches) c.free();
    }
  }

  /** Writes this turn's K/V back to the pool; returns how many prompt tokens were newly cached. */
  #commit(req: GenerationRequest, ids: number[], caches: LayerCache[]): number {
    if (!this.pool) return 0;
    const states = caches.map((c) => (c as KVCache).state());
    if (states.some((s) => !s || s[0].shape[2] < ids.length)) {
      dispose(states);
      return 0;
    }
    try {
      const { createdTokens } = this.pool.commit(req.tenant, req.agentId ?? null, ids, states as LayerKV[], req.cacheControl);
      return Math.min(createdTokens, req.promptIds.length);
    } finally {
      dispose(states);
    }
  }
}
