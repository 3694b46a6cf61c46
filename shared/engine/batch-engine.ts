// Continuous batching: one scheduler loop serves every request. Each step admits waiting
// requests into free slots (round-robin across tenants), runs one batched decode forward for
// every sequence past its prefill, then prefill chunks of new sequences within the step's token
// budget (each alone, into its own cache, reading the pool's cached prefix in place; at most one
// chunk per sequence per step). A sequence joins the decode batch at the start of the step after
// its prefill ends (its first token has gone out by then) and leaves it when it finishes or is
// cancelled, writing its K/V back to the pool.
import { type BlockPool, type Borrowed, type Lease, type LayerKV, Leases, type Match } from "../cache/index.ts";
import { array, dispose, Dtype, evaluate, itemSize, memoryStats, type MxArray, reshape, tidy } from "../mlx/index.ts";
import { BatchKVCache } from "../models/batch-cache.ts";
import { KVCache } from "../models/cache.ts";
import type { LoadedModel } from "../models/load.ts";
import { draw, readDraw, type RowSampler } from "./draw.ts";
import { ContextLengthError, type Engine, type EngineEvent, type GenerationRequest, QueueFullError } from "./engine.ts";
import { FairQueue } from "./fair-queue.ts";
import { prefillStep } from "./generate.ts";
import { samplerForRequest } from "./sampling/for-request.ts";
import { type TokenStats, TokenOutput } from "./token-output.ts";

type Choice = { id: number; stats: TokenStats };

export type BatchEngineOptions = {
  pool?: BlockPool | null;
  /** Sequences running at once (prefilling or decoding). */
  maxBatch?: number;
  /** Requests waiting beyond these: submit throws QueueFullError. */
  maxQueued?: number;
  maxQueuedTokens?: number;
  /** Prompt tokens per prefill forward. */
  prefillChunk?: number;
  /** Tokens one step may process: the decode rows plus the prefill chunk. */
  tokenBudgetPerStep?: number;
  /** How long a request waits for another turn on the same agent before AgentBusyError (409). */
  agentWaitMs?: number;
  /** Bytes of K/V running sequences may hold; beyond it admission pauses (running ones continue). */
  memoryBudget?: number;
  /** Called after every step: for tests and metrics. */
  onStep?: (s: StepInfo) => void;
};

export type StepInfo = {
  step: number;
  /** The prefill chunks this step ran: at most one per sequence, within the step's token budget. */
  prefills: { request: number; tokens: number }[];
  /** Sequences in this step's batched decode. */
  decodeRows: number;
  ms: number;
};

type State = "leasing" | "queued" | "preparing" | "prefilling" | "decoding" | "finished";

/** One request's life in the engine, and the channel its events go through. */
class Sequence {
  state: State = "leasing";
  lease: Lease | null = null;
  caches: KVCache[] | null = null;
  /** The pool blocks its caches read in place (released with the caches). */
  borrowed: Borrowed | null = null;
  /** Its sampler chain (seed, penalty window, mirostat's mu, JSON constraint) and what it reports. */
  sampler: RowSampler | null = null;
  /** Prompt tokens served from the pool, and prompt tokens in the caches so far. */
  cached = 0;
  prefilled = 0;
  /** The last sampled token, fed in the next decode step. */
  next = -1;
  /** Generated tokens whose K/V the cache holds. */
  readonly fed: number[] = [];
  cancelled = false;
  startedAt = 0;
  firstTokenAt = 0;
  readonly events: EngineEvent[] = [];
  error: unknown = null;
  wake: (() => void) | null = null;
  unlisten: (() => void) | null = null;

  constructor(readonly id: number, readonly req: GenerationRequest, readonly out: TokenOutput, readonly queuedAt: number) {}

  emit(e: EngineEvent): void {
    this.events.push(e);
    this.#notify();
  }

  fail(e: unknown): void {
    this.error = e;
    this.#notify();
  }

  #notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}

export class BatchEngine implements Engine {
  readonly pool: BlockPool | null;
  readonly #o: Required<Omit<BatchEngineOptions, "pool" | "onStep">> & Pick<BatchEngineOptions, "onStep">;
  readonly #leases = new Leases();
  readonly #queue = new FairQueue<Sequence>();
  readonly #leasing = new Set<Sequence>();
  readonly #preparing = new Set<Sequence>();
  #prefilling: Sequence[] = [];
  /** Prefilled, first token sent: they join the decode batch at the start of the next step. */
  #joining: Sequence[] = [];
  /** Rows of the decode batch, in order. */
  #decoding: Sequence[] = [];
  readonly #batch: BatchKVCache[];
  readonly #bytesPerToken: number;
  #queuedTokens = 0;
  #nextId = 1;
  #looping = false;
  #prepares: Promise<void> = Promise.resolve();
  /** Seconds a request takes once started (moving average), for Retry-After. */
  #serviceSeconds = 1;
  #steps = 0;

  constructor(readonly loaded: LoadedModel, opts: BatchEngineOptions = {}) {
    this.pool = opts.pool ?? null;
    const spec = loaded.model.cacheSpec;
    const maxBatch = opts.maxBatch ?? 8;
    const prefillChunk = opts.prefillChunk ?? 256;
    const mem = memoryStats();
    this.#o = {
      maxBatch,
      maxQueued: opts.maxQueued ?? 64,
      maxQueuedTokens: opts.maxQueuedTokens ?? 256 * 1024,
      prefillChunk,
      tokenBudgetPerStep: opts.tokenBudgetPerStep ?? prefillChunk + maxBatch,
      agentWaitMs: opts.agentWaitMs ?? 30_000,
      // Half of what MLX may still allocate, less what the pool may keep hot.
      memoryBudget: opts.memoryBudget ?? Math.max(256 << 20, (mem.limit - mem.active) / 2 - (this.pool?.stats().memoryBudget ?? 0)),
      onStep: opts.onStep,
    };
    this.#batch = spec.layers.map(() => new BatchKVCache());
    this.#bytesPerToken = spec.nLayers * 2 * spec.nKvHeads * spec.headDim * itemSize(spec.kvDtype);
  }

  /** Steps run so far (each: joins to the batch, one batched decode, then prefill chunks within the token budget). */
  get steps(): number {
    return this.#steps;
  }

  load(): { queued: number; running: number } {
    return {
      queued: this.#leasing.size + this.#queue.size,
      running: this.#preparing.size + this.#prefilling.length + this.#joining.length + this.#decoding.length,
    };
  }

  submit(req: GenerationRequest): AsyncIterable<EngineEvent> {
    const limit = this.loaded.model.contextLength;
    const n = req.promptIds.length;
    if (n + 1 > limit) throw new ContextLengthError(n, limit);
    if (n === 0) throw new RangeError("the prompt has no tokens");
    const { queued } = this.load();
    if (queued >= this.#o.maxQueued) throw new QueueFullError(`${queued} requests are queued`, this.#retryAfter(queued));
    if (queued > 0 && this.#queuedTokens + n > this.#o.maxQueuedTokens) {
      throw new QueueFullError(`${this.#queuedTokens} prompt tokens are queued`, this.#retryAfter(queued));
    }
    const maxTokens = Math.min(req.maxTokens, limit - n);
    const seq = new Sequence(this.#nextId++, req, new TokenOutput(this.loaded.tokenizer, { stop: req.stop, maxTokens }), performance.now());
    this.#queuedTokens += n;
    if (req.signal) {
      const onAbort = () => this.#cancel(seq);
      req.signal.addEventListener("abort", onAbort, { once: true });
      seq.unlisten = () => req.signal!.removeEventListener("abort", onAbort);
    }
    if (req.agentId && this.pool) {
      this.#leasing.add(seq);
      this.#leases.acquire(`${req.tenant}\0${req.agentId}`, this.#o.agentWaitMs).then(
        (lease) => {
          this.#leasing.delete(seq);
          seq.lease = lease;
          this.#enqueue(seq);
        },
        (e) => {
          this.#leasing.delete(seq);
          this.#queuedTokens -= n;
          this.#close(seq);
          seq.fail(e);
        },
      );
    } else this.#enqueue(seq);
    if (req.signal?.aborted) this.#cancel(seq);
    return this.#stream(seq);
  }

  #retryAfter(queued: number): number {
    return Math.min(60, Math.max(1, Math.ceil((this.#serviceSeconds * (queued + 1)) / this.#o.maxBatch)));
  }

  async *#stream(seq: Sequence): AsyncGenerator<EngineEvent> {
    let read = 0;
    try {
      for (;;) {
        if (read < seq.events.length) {
          const e = seq.events[read++];
          yield e;
          if (e.type === "done") return;
          continue;
        }
        if (seq.error) throw seq.error;
        await new Promise<void>((resolve) => (seq.wake = resolve));
      }
    } finally {
      // The consumer stopped listening: free the slot within a step.
      if (seq.state !== "finished") this.#cancel(seq);
    }
  }

  #enqueue(seq: Sequence): void {
    if (seq.cancelled) {
      this.#queuedTokens -= seq.req.promptIds.length;
      this.#finish(seq, "cancelled");
      return;
    }
    seq.state = "queued";
    seq.emit({ type: "queued" });
    this.#queue.push(seq.req.tenant, seq);
    this.#kick();
  }

  #cancel(seq: Sequence): void {
    if (seq.cancelled || seq.state === "finished") return;
    seq.cancelled = true;
    if (seq.state === "queued" && this.#queue.remove(seq.req.tenant, seq)) {
      this.#queuedTokens -= seq.req.promptIds.length;
      this.#finish(seq, "cancelled");
    }
    // Leasing and preparing sequences finish when that completes; running ones at the next step.
    this.#kick();
  }

  // ---- the loop ----

  // The loop starts on a macrotask, never inside submit(): requests submitted together queue together.
  #kick(): void {
    if (this.#looping) return;
    this.#looping = true;
    setImmediate(() => void this.#loop());
  }

  async #loop(): Promise<void> {
    for (;;) {
      this.#reap();
      this.#admit();
      if (!this.#prefilling.length && !this.#joining.length && !this.#decoding.length) {
        // Nothing to compute: the loop restarts when a request arrives or a prepare completes.
        this.#looping = false;
        return;
      }
      try {
        this.#step();
      } catch (e) {
        // A bug, not a request's fault: end what is running rather than the process.
        console.error("batch engine step failed:", e);
        this.#failBatch(e);
        for (const s of [...this.#prefilling.splice(0), ...this.#joining.splice(0)]) {
          this.#close(s);
          s.fail(e);
        }
      }
      // A macrotask between steps: HTTP I/O, consumers and cancellations run here.
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  #reap(): void {
    for (const list of [this.#prefilling, this.#joining]) {
      for (const seq of list.filter((s) => s.cancelled)) {
        list.splice(list.indexOf(seq), 1);
        this.#finish(seq, "cancelled");
      }
    }
    const rows = this.#decoding.flatMap((s, i) => (s.cancelled ? [i] : []));
    if (rows.length) this.#leave(rows, "cancelled");
  }

  #admit(): void {
    const { maxBatch } = this.#o;
    while (this.load().running < maxBatch) {
      const seq = this.#queue.peek();
      if (!seq || !this.#fits(seq)) return;
      this.#queue.take();
      this.#queuedTokens -= seq.req.promptIds.length;
      seq.state = "preparing";
      this.#preparing.add(seq);
      seq.startedAt = performance.now();
      if (this.pool) this.#prepares = this.#prepares.then(() => this.#prepare(seq)).catch((e) => console.error("batch engine prepare failed:", e));
      else this.#startPrefill(seq, this.#freshCaches(), 0);
    }
  }

  // Memory pressure pauses admission, never a running sequence; with nothing running, one always starts.
  #fits(seq: Sequence): boolean {
    const running = this.load().running;
    if (!running) return true;
    const prefilling = [...this.#preparing, ...this.#prefilling, ...this.#joining].reduce((n, s) => n + s.req.promptIds.length, 0);
    let bytes = this.#batch[0].rows ? this.#batch.reduce((n, c) => n + c.nbytes, 0) : 0;
    bytes += (prefilling + seq.req.promptIds.length) * this.#bytesPerToken;
    if (this.pool) {
      const s = this.pool.stats();
      bytes += Math.max(0, s.hotBytes - s.memoryBudget); // blocks the pool has not managed to evict yet
    }
    return bytes <= this.#o.memoryBudget;
  }

  #freshCaches(): KVCache[] {
    return this.loaded.model.cacheSpec.layers.map(() => new KVCache());
  }

  // One at a time, and gather right after prepare: a later prepare may evict an earlier match's blocks.
  async #prepare(seq: Sequence): Promise<void> {
    const pool = this.pool!;
    const { tenant, agentId, promptIds } = seq.req;
    let caches: KVCache[] | null = null;
    let cached = 0;
    try {
      for (let attempt = 0; attempt < 3 && !caches; attempt++) {
        const m = await pool.prepare(pool.match(tenant, promptIds, agentId ?? null));
        if (!m.cachedTokens) break;
        if (!usable(m)) continue; // evicted while other blocks loaded: match again
        // The prefill reads the cached blocks in place; they are copied into one buffer only when
        // the sequence joins the decode batch, after its first token.
        seq.borrowed = pool.borrow(m);
        caches = seq.borrowed.layers.map((s) => KVCache.fromSegments(s.keys, s.values, m.cachedTokens));
        cached = m.cachedTokens;
      }
    } catch (e) {
      this.#preparing.delete(seq);
      this.#close(seq);
      seq.fail(e);
      this.#kick();
      return;
    }
    this.#startPrefill(seq, caches ?? this.#freshCaches(), cached);
    this.#kick();
  }

  #startPrefill(seq: Sequence, caches: KVCache[], cached: number): void {
    this.#preparing.delete(seq);
    seq.caches = caches;
    seq.cached = seq.prefilled = cached;
    if (seq.cancelled) {
      this.#finish(seq, "cancelled");
      return;
    }
    const { sampling, promptIds, format, logprobs, topLogprobs } = seq.req;
    try {
      const chain = samplerForRequest({ sampling, promptIds, maxTokens: seq.out.opts.maxTokens, format }, this.loaded.model.vocabSize, this.loaded.tokenizer);
      seq.sampler = { chain, logprobs: logprobs === true, topLogprobs: topLogprobs ?? 0 };
    } catch (e) {
      // Options the API layer did not check (a direct engine user): this request fails alone.
      this.#close(seq);
      seq.fail(e);
      return;
    }
    seq.state = "prefilling";
    this.#prefilling.push(seq);
    seq.emit({ type: "started", promptTokens: seq.req.promptIds.length, cachedTokens: cached, queueMs: seq.startedAt - seq.queuedAt });
  }

  #step(): void {
    const t0 = performance.now();
    for (const seq of this.#joining.splice(0)) this.#join(seq);
    // Short prompts start together; a long one takes one chunk per step, so running streams
    // wait at most one step's token budget between two tokens.
    let budget = this.#o.tokenBudgetPerStep - this.#decoding.length;
    // Decode first: a prompt whose prefill ends this step sends its first token when the step
    // ends, not after a decode it has no part in yet.
    const rows = this.#decoding.length ? this.#decode() : 0;
    const prefills: StepInfo["prefills"] = [];
    for (const seq of [...this.#prefilling]) {
      if (prefills.length && budget < 1) break;
      const p = this.#prefillChunk(seq, budget);
      prefills.push(p);
      budget -= p.tokens;
    }
    this.#steps++;
    this.#o.onStep?.({ step: this.#steps, prefills, decodeRows: rows, ms: performance.now() - t0 });
  }

  /** Runs the next prefill chunk of `seq`; its last chunk samples the first token and joins the batch. */
  #prefillChunk(seq: Sequence, budget: number): { request: number; tokens: number } {
    const ids = seq.req.promptIds;
    const rest = ids.length - seq.prefilled;
    const n = Math.min(rest, this.#o.prefillChunk, Math.max(budget, 1));
    const final = n === rest;
    let first: number;
    try {
      const logits = prefillStep(this.loaded.model, ids.slice(seq.prefilled, seq.prefilled + n), seq.caches!, final);
      seq.prefilled += n;
      if (!final) return { request: seq.id, tokens: n };
      this.#prefilling.splice(this.#prefilling.indexOf(seq), 1);
      try {
        if (seq.out.opts.maxTokens < 1) {
          this.#finish(seq, "length");
          return { request: seq.id, tokens: n };
        }
        const [pick] = this.#sample([seq], logits!);
        first = pick.id;
        this.#accept(seq, pick);
      } finally {
        logits!.free();
      }
    } catch (e) {
      // This sequence's own failure (a bad token id, its prefill): it ends alone.
      const i = this.#prefilling.indexOf(seq);
      if (i >= 0) this.#prefilling.splice(i, 1);
      this.#close(seq);
      seq.fail(e);
      return { request: seq.id, tokens: n };
    }
    if (seq.out.reason) this.#finish(seq, seq.out.reason);
    else {
      // The step ends here for this sequence, so its first token goes out before the copy of
      // its cache into the batch (at the start of the next step).
      seq.next = first;
      this.#joining.push(seq);
    }
    return { request: seq.id, tokens: n };
  }

  /** Each row of `logits` (B, V) drawn by its own sampler, with the stats it asked for. */
  #sample(rows: Sequence[], logits: MxArray): Choice[] {
    const samplers = rows.map((s) => s.sampler!);
    return readDraw(draw(samplers, logits), samplers);
  }

  // The chain sees every token in order (a JSON constraint's next mask depends on it); a
  // completed JSON value ends the sequence as its end of sequence would.
  #accept(seq: Sequence, pick: Choice): void {
    if (!seq.firstTokenAt) seq.firstTokenAt = performance.now();
    const chain = seq.sampler!.chain;
    chain.accept(pick.id);
    const e = seq.out.push(pick.id, pick.stats);
    if (chain.done) seq.out.complete();
    if (e) seq.emit(e);
  }

  // The first sequence of an empty batch hands its buffers over (copied into one buffer first
  // when its cache starts from pool blocks); later ones are copied in.
  #join(seq: Sequence): void {
    const caches = seq.caches!;
    seq.state = "decoding";
    this.#decoding.push(seq);
    try {
      if (this.#batch[0].rows) {
        const states = caches.map((c) => c.state()!);
        try {
          this.#batch.forEach((b, l) => b.add(states[l][0], states[l][1]));
        } finally {
          dispose(states);
        }
      } else {
        this.#batch.forEach((b, l) => {
          const own = caches[l].release()!;
          b.adopt(own.keys, own.values, own.tokens);
        });
      }
      evaluate(...this.#batch.flatMap((b) => b.arrays()));
    } catch (e) {
      this.#failBatch(e);
    } finally {
      this.#freeCaches(seq);
    }
  }

  // After a failed batch operation its state is unknown: every sequence in it ends with the error.
  #failBatch(e: unknown): void {
    for (const b of this.#batch) b.free();
    const rows = this.#decoding;
    this.#decoding = [];
    for (const s of rows) {
      this.#close(s);
      s.fail(e);
    }
  }

  /** One forward for every decoding sequence; returns how many rows it ran. */
  #decode(): number {
    const rows = this.#decoding;
    const B = rows.length;
    let picks: Choice[];
    try {
      const logits = tidy(() => {
        const input = array(Int32Array.from(rows.map((s) => s.next)), [B, 1], Dtype.int32);
        const out = this.loaded.model.forward(input, this.#batch); // (B, 1, V)
        return reshape(out, [B, out.shape[2]]);
      });
      try {
        picks = this.#sample(rows, logits);
      } finally {
        logits.free();
      }
    } catch (e) {
      this.#failBatch(e);
      return B;
    }
    const done: number[] = [];
    const failed = new Map<Sequence, unknown>();
    rows.forEach((s, i) => {
      s.fed.push(s.next);
      try {
        this.#accept(s, picks[i]);
      } catch (e) {
        failed.set(s, e); // this row's own failure (e.g. an id its tokenizer cannot decode)
      }
      if (s.out.reason || failed.has(s)) done.push(i);
      else s.next = picks[i].id;
    });
    if (done.length) this.#leave(done, "length", failed);
    return B;
  }

  /** Rows `rows` leave the batch: each one's K/V goes back to the pool, then it finishes (or fails). */
  #leave(rows: number[], reason: "length" | "cancelled", failed?: Map<Sequence, unknown>): void {
    for (const i of rows) {
      const seq = this.#decoding[i];
      if (failed?.has(seq)) {
        this.#close(seq);
        seq.fail(failed.get(seq));
        continue;
      }
      let created = 0;
      if (this.pool) {
        const kv = this.#batch.map((b) => b.extract(i));
        try {
          created = this.#commit(seq, kv);
        } finally {
          dispose(kv);
        }
      }
      this.#finish(seq, reason, created);
    }
    for (const b of this.#batch) b.remove(rows);
    evaluate(...this.#batch.flatMap((b) => b.arrays()));
    const gone = new Set(rows);
    this.#decoding = this.#decoding.filter((_, i) => !gone.has(i));
  }

  /** Writes a sequence's K/V (prompt and fed tokens) back to the pool; returns prompt tokens newly cached. */
  // Caching is best effort: a failed write-back never fails the turn that produced it.
  #commit(seq: Sequence, kv: LayerKV[]): number {
    const { tenant, agentId, promptIds, cacheControl } = seq.req;
    const ids = [...promptIds, ...seq.fed];
    try {
      if (kv.some(([k]) => k.shape[2] !== ids.length)) throw new Error(`bug: a sequence's cache holds ${kv[0][0].shape[2]} tokens, expected ${ids.length}`);
      const { createdTokens } = this.pool!.commit(tenant, agentId ?? null, ids, kv, cacheControl);
      return Math.min(createdTokens, promptIds.length);
    } catch (e) {
      console.error("batch engine: writing a sequence's cache back failed:", e);
      return 0;
    }
  }

  /** Ends a sequence: its held-back text, its done event; frees what it holds. */
  #finish(seq: Sequence, reason: "length" | "cancelled" | "eos" | "stop", created = 0): void {
    const tail = seq.out.end(seq.cancelled ? "cancelled" : reason);
    // A sequence that ends right after its prefill writes its prompt back from its own caches.
    if (!created && seq.caches && this.pool && !seq.cancelled && seq.prefilled === seq.req.promptIds.length) {
      const kv = seq.caches.map((c) => c.state()!);
      try {
        created = this.#commit(seq, kv);
      } finally {
        dispose(kv);
      }
    }
    this.#close(seq);
    if (tail) seq.emit({ type: "text", text: tail });
    const now = performance.now();
    if (seq.startedAt) this.#serviceSeconds = 0.8 * this.#serviceSeconds + 0.2 * ((now - seq.startedAt) / 1000);
    seq.emit({
      type: "done", reason: seq.out.reason!, stop: seq.out.stop, promptTokens: seq.req.promptIds.length,
      completionTokens: seq.out.count, cachedTokens: seq.cached, cacheCreatedTokens: created,
      timeToFirstTokenMs: (seq.firstTokenAt || now) - seq.queuedAt, totalMs: now - seq.queuedAt,
      queueMs: seq.startedAt ? seq.startedAt - seq.queuedAt : now - seq.queuedAt,
    });
  }

  /** Releases everything a sequence holds (caches, sampler, lease, abort listener). */
  #close(seq: Sequence): void {
    seq.state = "finished";
    this.#freeCaches(seq);
    seq.sampler?.chain.free();
    seq.sampler = null;
    seq.lease?.release();
    seq.lease = null;
    seq.unlisten?.();
    seq.unlisten = null;
  }

  #freeCaches(seq: Sequence): void {
    for (const c of seq.caches ?? []) c.free();
    seq.caches = null;
    seq.borrowed?.release();
    seq.borrowed = null;
  }
}

// Every matched block still has its data (a block evicted after prepare would gather as zeros).
function usable(m: Match): boolean {
  return m.blocks.every((b) => b.layers !== null) && (!m.tailTokens || !!m.agent?.tail.layers);
}
