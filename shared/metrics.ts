// Prometheus metrics (prom-client): requests, latency and errors per function; the engine's TTFT,
// inter-token latency, token counts, decode speed and queue depth, gathered by wrapping its event
// stream; and the block pool's hits, misses, evictions and usage per tier, read from its stats
// when scraped. docs/metrics.md is generated from this registry (scripts/gen-docs.ts).
import { Counter, Gauge, Histogram, Registry } from "prom-client";
import type { ErrorKind } from "./api/errors.ts";
import type { PoolStats } from "./cache/index.ts";
import type { Engine, EngineEvent, GenerationRequest } from "./engine/engine.ts";

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class Metrics {
  readonly registry = new Registry();
  readonly #requests = new Counter({
    name: "semantic_http_requests_total",
    help: "HTTP requests by function (route) and status",
    labelNames: ["function", "method", "status"] as const,
    registers: [this.registry],
  });
  readonly #latency = new Histogram({
    name: "semantic_http_request_duration_seconds",
    help: "Time from request to the last byte of the response (a stream's end), by function",
    labelNames: ["function"] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #ttft = new Histogram({
    name: "semantic_time_to_first_token_seconds",
    help: "Time from submission to the first generated token, queue wait included",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #interToken = new Histogram({
    name: "semantic_inter_token_latency_seconds",
    help: "Time between consecutive generated tokens of one generation",
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly #errors = new Counter({
    name: "semantic_errors_total",
    help: "Requests that ended in an error, by type (invalid_request, authentication, queue_full, unavailable, internal, ...)",
    labelNames: ["type"] as const,
    registers: [this.registry],
  });
  readonly #queueWait = new Histogram({
    name: "semantic_queue_wait_seconds",
    help: "Time a generation waited before the engine started it",
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });
  readonly #decodeRate = new Histogram({
    name: "semantic_decode_tokens_per_second",
    help: "Per-request decode speed after the first token",
    buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
    registers: [this.registry],
  });
  readonly #promptTokens = new Counter({ name: "semantic_prompt_tokens_total", help: "Prompt tokens submitted", registers: [this.registry] });
  readonly #cachedTokens = new Counter({ name: "semantic_cached_prompt_tokens_total", help: "Prompt tokens served from cache", registers: [this.registry] });
  readonly #completionTokens = new Counter({ name: "semantic_completion_tokens_total", help: "Tokens generated", registers: [this.registry] });
  readonly #generations = new Counter({
    name: "semantic_generations_total",
    help: "Finished generations by finish reason",
    labelNames: ["reason"] as const,
    registers: [this.registry],
  });
  #engine: () => Engine | null = () => null;
  #pool: () => PoolStats | null = () => null;

  constructor() {
    const load = (pick: "queued" | "running") => () => this.#engine()?.load()[pick] ?? 0;
    const queued = load("queued");
    const running = load("running");
    new Gauge({ name: "semantic_queue_depth", help: "Generations waiting for the engine", registers: [this.registry], collect() { this.set(queued()); } });
    new Gauge({ name: "semantic_running_generations", help: "Generations the engine runs now (the batch size)", registers: [this.registry], collect() { this.set(running()); } });
    const pool = () => this.#pool();
    const perTier = (name: string, help: string, hot: keyof PoolStats, warm: keyof PoolStats) =>
      new Gauge({
        name, help, labelNames: ["tier"] as const, registers: [this.registry],
        collect() {
          const p = pool();
          if (!p) return;
          this.set({ tier: "hot" }, p[hot]);
          this.set({ tier: "warm" }, p[warm]);
        },
      });
    perTier("semantic_cache_blocks", "KV blocks held, by tier (hot: memory, warm: disk only)", "hotBlocks", "warmBlocks");
    perTier("semantic_cache_bytes", "KV bytes held, by tier (hot: memory, warm: files on disk)", "hotBytes", "diskBytes");
    perTier("semantic_cache_budget_bytes", "KV bytes allowed, by tier (memoryBudget, diskBudget)", "memoryBudget", "diskBudget");
    new Gauge({ name: "semantic_cache_agents", help: "Agents with a cached conversation", registers: [this.registry], collect() { const p = pool(); if (p) this.set(p.agents); } });
    // The pool counts since it opened; each scrape adds what it counted since the last scrape.
    const poolCounter = (name: string, help: string, series: { key: keyof PoolStats; labels?: Record<string, string> }[]) => {
      const seen = series.map(() => 0);
      new Counter({
        name, help, labelNames: Object.keys(series[0].labels ?? {}), registers: [this.registry],
        collect() {
          const p = pool();
          if (!p) return;
          series.forEach((s, i) => {
            const now = p[s.key] as number;
            this.inc(s.labels ?? {}, Math.max(0, now - seen[i])); // 0 too: every series shows from the first scrape
            seen[i] = now;
          });
        },
      });
    };
    poolCounter("semantic_cache_hits_total", "Prefix lookups that reused cached blocks", [{ key: "hits" }]);
    poolCounter("semantic_cache_misses_total", "Prefix lookups that reused nothing", [{ key: "misses" }]);
    poolCounter("semantic_cache_hit_tokens_total", "Prompt tokens served from the cache", [{ key: "hitTokens" }]);
    poolCounter("semantic_cache_evictions_total", "Blocks evicted, by the tier they left (hot: dropped from memory, file kept; warm: file deleted for the disk budget)", [
      { key: "evictions", labels: { tier: "hot" } },
      { key: "diskEvictions", labels: { tier: "warm" } },
    ]);
    poolCounter("semantic_cache_quarantined_files_total", "Cache files found truncated, corrupted or from another model: moved aside, never used", [{ key: "quarantined" }]);
    poolCounter("semantic_cache_write_errors_total", "Cache file writes that failed (those blocks stay in memory only)", [{ key: "writeErrors" }]);
  }

  /** Where the queue gauges read from (null while the model loads). */
  watch(engine: () => Engine | null): void {
    this.#engine = engine;
  }

  /** Where the cache gauges read from (null without a pool). */
  watchPool(stats: () => PoolStats | null): void {
    this.#pool = stats;
  }

  observeRequest(fn: string, method: string, status: number, seconds: number): void {
    this.#requests.inc({ function: fn, method, status: String(status) });
    this.#latency.observe({ function: fn }, seconds);
  }

  /** A request that ended in an error (before or during its stream). */
  observeError(type: ErrorKind): void {
    this.#errors.inc({ type });
  }

  observeInterToken(seconds: number): void {
    this.#interToken.observe(seconds);
  }

  /** The engine, with every generation's events counted on the way through. */
  meter(engine: Engine): Engine {
    return new MeteredEngine(engine, this);
  }

  observeEvent(e: EngineEvent): void {
    if (e.type === "started") this.#queueWait.observe(e.queueMs / 1000);
    if (e.type !== "done") return;
    this.#generations.inc({ reason: e.reason });
    this.#promptTokens.inc(e.promptTokens);
    this.#cachedTokens.inc(e.cachedTokens);
    this.#completionTokens.inc(e.completionTokens);
    if (e.completionTokens > 0) this.#ttft.observe(e.timeToFirstTokenMs / 1000);
    const decodeMs = e.totalMs - e.timeToFirstTokenMs;
    if (e.completionTokens > 1 && decodeMs > 0) this.#decodeRate.observe((e.completionTokens - 1) / (decodeMs / 1000));
  }

  observeAbandoned(tokens: number): void {
    this.#generations.inc({ reason: "cancelled" });
    this.#completionTokens.inc(tokens);
  }

  /** The Prometheus text exposition. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

class MeteredEngine implements Engine {
  constructor(readonly inner: Engine, readonly metrics: Metrics) {}

  get loaded() {
    return this.inner.loaded;
  }

  load() {
    return this.inner.load();
  }

  submit(req: GenerationRequest): AsyncIterable<EngineEvent> {
    const events = this.inner.submit(req);
    const metrics = this.metrics;
    return (async function* () {
      let tokens = 0;
      let done = false;
      let lastToken = 0;
      try {
        for await (const e of events) {
          if (e.type === "token") {
            const now = performance.now();
            if (tokens > 0) metrics.observeInterToken((now - lastToken) / 1000);
            lastToken = now;
            tokens++;
          }
          done ||= e.type === "done";
          metrics.observeEvent(e);
          yield e;
        }
      } finally {
        // Closed before "done": the client went away and the generation was abandoned.
        if (!done) metrics.observeAbandoned(tokens);
      }
    })();
  }
}
