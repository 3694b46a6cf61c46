// The batch engine on the real model: every sequence of a batch produces what it produces alone
// (DESIGN invariant 2), a long prompt's prefill never stalls running streams for more than one
// chunk, cancellation frees a slot within one step, queues push back and share fairly across
// tenants, and native memory returns to its baseline after hundreds of requests.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlockPool } from "../../shared/cache/index.ts";
import { BatchEngine, type BatchEngineOptions, type StepInfo } from "../../shared/engine/batch-engine.ts";
import { type EngineEvent, type GenerationRequest, QueueFullError } from "../../shared/engine/engine.ts";
import { generate } from "../../shared/engine/generate.ts";
import { GREEDY, type SamplingOptions } from "../../shared/engine/sampling/options.ts";
import * as mx from "../../shared/mlx/index.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import { defaultModelPath } from "../../shared/paths.ts";

let m: LoadedModel;
let root: string;
beforeAll(async () => {
  m = await loadModel(defaultModelPath());
  root = mkdtempSync(join(tmpdir(), "semantic-batch-"));
});
afterAll(() => {
  m?.model.free();
  rmSync(root, { recursive: true, force: true });
});

const filler = "Agents talk to models for hours, and every turn re-sends the whole history of the conversation. ".repeat(40);
const starts = [
  "The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,", "The three primary colors are",
  "To make a cup of tea, first", "Water boils at", "In 1969, the first humans", "A list of prime numbers: 2, 3, 5,",
];
/** A prompt of some filler tokens then a distinct opening, so sequences differ in length and content. */
const promptOf = (i: number, fillerTokens: number) => [...m.tokenizer.encode(filler).slice(0, fillerTokens), ...m.tokenizer.encode(starts[i % starts.length])];
let fillerIds: number[] | null = null;
const longPrompt = (n: number) => (fillerIds ??= m.tokenizer.encode(filler.repeat(3))).slice(0, n);

type Started = Extract<EngineEvent, { type: "started" }>;
type Done = Extract<EngineEvent, { type: "done" }>;
type Run = { ids: number[]; text: string; logprobs: number[]; started: Started | null; done: Done | null; tokenSteps: number[] };
type Req = Partial<GenerationRequest> & { promptIds: number[] };

/** Consumes one request's events; `stopAfter` tokens, the consumer walks away (a client disconnect). */
async function collect(engine: BatchEngine, req: Req, stopAfter = Infinity, onEvent?: (e: EngineEvent) => void): Promise<Run> {
  const r: Run = { ids: [], text: "", logprobs: [], started: null, done: null, tokenSteps: [] };
  for await (const e of engine.submit({ tenant: "t", maxTokens: 8, sampling: GREEDY, stop: [], ...req })) {
    onEvent?.(e);
    if (e.type === "started") r.started = e;
    if (e.type === "token") {
      r.ids.push(e.id);
      r.tokenSteps.push(engine.steps);
      if (e.logprob !== undefined) r.logprobs.push(e.logprob);
    }
    if (e.type === "token" || e.type === "text") r.text += e.text;
    if (e.type === "done") r.done = e;
    if (r.ids.length >= stopAfter) break;
  }
  return r;
}

/** The same request alone: single-sequence generate() on fresh caches, same prefill chunking. */
async function alone(req: Req, prefillChunk = 256): Promise<Pick<Run, "ids" | "text" | "logprobs">> {
  const caches = m.model.makeCache();
  const r = { ids: [] as number[], text: "", logprobs: [] as number[] };
  try {
    const g = generate(m, { maxTokens: 8, sampling: GREEDY, stop: [], prefillChunk, ...req } as Parameters<typeof generate>[1], caches);
    for await (const e of g) {
      if (e.type === "token") {
        r.ids.push(e.id);
        if (e.logprob !== undefined) r.logprobs.push(e.logprob);
      }
      if (e.type === "token" || e.type === "text") r.text += e.text;
    }
  } finally {
    for (const c of caches) c.free();
  }
  return r;
}

function engine(opts: BatchEngineOptions = {}): { engine: BatchEngine; steps: StepInfo[] } {
  const steps: StepInfo[] = [];
  return { engine: new BatchEngine(m, { ...opts, onStep: (s) => steps.push(s) }), steps };
}

const idle = async (e: BatchEngine) => {
  while (e.load().queued || e.load().running) await new Promise((r) => setTimeout(r, 5));
};

describe("a batched sequence produces the same tokens as alone (DESIGN invariant 2)", () => {
  const maxTokens = 10;
  // Mixed lengths; one row samples with a seed, one stops on a string, one asks for logprobs.
  const sampled: SamplingOptions = { temperature: 0.9, top_k: 40, top_p: 0.95, seed: 7 };
  const reqs = (): Req[] => [5, 40, 12, 71, 0, 23, 9, 50].map((fill, i) => ({
    promptIds: promptOf(i, fill), maxTokens,
    ...(i === 3 ? { sampling: sampled } : {}),
    ...(i === 5 ? { logprobs: true } : {}),
  }));
  const want = new Map<number, Awaited<ReturnType<typeof alone>>>();
  const wanted = async (i: number, r: Req) => {
    if (!want.has(i)) want.set(i, await alone(r));
    return want.get(i)!;
  };

  for (const B of [1, 2, 4, 8]) {
    test(`batch of ${B}`, async () => {
      const rs = reqs().slice(0, B);
      const expected: Awaited<ReturnType<typeof alone>>[] = [];
      for (let i = 0; i < B; i++) expected.push(await wanted(i, rs[i]));
      // A stop string from the middle of a row's own output, to end it early inside the batch.
      if (B >= 2) rs[1].stop = [expected[1].text.slice(8, 14)];
      const { engine: e, steps } = engine({ maxBatch: B });
      const got = await Promise.all(rs.map((r) => collect(e, r)));
      got.forEach((g, i) => {
        if (B >= 2 && i === 1) {
          expect(g.done!.reason).toBe("stop");
          expect(g.text).toBe(expected[1].text.slice(0, expected[1].text.indexOf(rs[1].stop![0])));
          expect(g.ids).toEqual(expected[1].ids.slice(0, g.ids.length));
        } else {
          expect(g.ids).toEqual(expected[i].ids);
          expect(g.text).toBe(expected[i].text);
        }
        if (rs[i].logprobs) {
          expect(g.logprobs.length).toBe(g.ids.length);
          g.logprobs.forEach((lp, j) => expect(Math.abs(lp - expected[i].logprobs[j])).toBeLessThan(1e-3));
        }
      });
      // The rows really decoded together.
      expect(Math.max(...steps.map((s) => s.decodeRows))).toBeGreaterThanOrEqual(Math.max(1, B - 1));
    });
  }

  test("with cache hits from the pool, mixed with cold prompts", async () => {
    const pool = await BlockPool.open({ dir: join(root, "hits"), tag: m.tag, spec: m.model.cacheSpec, blockTokens: 16, memoryBudget: 1 << 30 });
    try {
      const history = [0, 1, 2, 3].map((i) => promptOf(i, 30 + 11 * i));
      const { engine: e } = engine({ pool, maxBatch: 8 });
      await Promise.all(history.map((p) => collect(e, { promptIds: p, maxTokens: 2 })));
      const next = (i: number) => [...history[i], ...m.tokenizer.encode(" And then")];
      const rs: Req[] = [0, 1, 2, 3].flatMap((i) => [{ promptIds: next(i), maxTokens: 6 }, { promptIds: promptOf(i + 4, 7 * i + 3), maxTokens: 6 }]);
      const got = await Promise.all(rs.map((r) => collect(e, r)));
      for (let i = 0; i < rs.length; i++) {
        if (i % 2 === 0) expect(got[i].started!.cachedTokens).toBeGreaterThanOrEqual(Math.floor(history[i / 2].length / 16) * 16);
        expect(got[i].ids).toEqual((await alone(rs[i])).ids);
      }
    } finally {
      await pool.flush();
      pool.close();
    }
  });
});

describe("seeded sampling through the sampler chain", () => {
  // Non-greedy rows that together touch every stage: the same seed gives the same tokens
  // whether a row decodes alone (batch 1) or inside a batch of 4, and as generate() gives them.
  const chains: SamplingOptions[] = [
    { temperature: 0.9, top_k: 40, top_p: 0.95, min_p: 0.02, repetition_penalty: 1.2, penalty_last_n: 16, seed: 11 },
    { temperature: 1.1, typical_p: 0.9, frequency_penalty: 0.5, presence_penalty: 0.3, logit_bias: { "28": -5 }, seed: 12 },
    { temperature: 0.8, dynatemp_range: 0.4, dynatemp_exponent: 1.5, top_k: 60, seed: 13 },
    { temperature: 1, mirostat: 2, mirostat_tau: 4, mirostat_eta: 0.2, seed: 14 },
  ];
  const reqs = (): Req[] => chains.map((sampling, i) => ({ promptIds: promptOf(i, 6 + 9 * i), maxTokens: 8, sampling, logprobs: i === 1, topLogprobs: i === 2 ? 3 : 0 }));

  test("same seed and request: the same tokens at batch 1 and inside a batch of 4", async () => {
    const one = engine({ maxBatch: 1 }).engine;
    const single = await Promise.all(reqs().map((r) => collect(one, r)));
    const { engine: four, steps } = engine({ maxBatch: 4 });
    const batched = await Promise.all(reqs().map((r) => collect(four, r)));
    expect(Math.max(...steps.map((s) => s.decodeRows))).toBe(4);
    for (let i = 0; i < chains.length; i++) {
      expect(batched[i].ids).toEqual(single[i].ids);
      expect(batched[i].ids).toEqual((await alone(reqs()[i])).ids);
    }
    // Sampling really happened: not the greedy continuation.
    const greedy = await Promise.all(reqs().map((r) => collect(four, { ...r, sampling: GREEDY })));
    expect(batched.filter((b, i) => b.ids.join() !== greedy[i].ids.join()).length).toBeGreaterThanOrEqual(3);
  });

  test("top logprobs: k alternatives per token, best first, the greedy token among them at its own logprob", async () => {
    const { engine: e } = engine({ maxBatch: 4 });
    const tops: { id: number; logprob?: number; top: { id: number; logprob: number }[] }[] = [];
    await collect(e, { promptIds: promptOf(0, 5), maxTokens: 5, logprobs: true, topLogprobs: 4 }, Infinity, (ev) => {
      if (ev.type === "token") tops.push({ id: ev.id, logprob: ev.logprob, top: ev.topLogprobs! });
    });
    expect(tops.length).toBe(5);
    for (const t of tops) {
      expect(t.top.length).toBe(4);
      for (let j = 1; j < 4; j++) expect(t.top[j].logprob).toBeLessThanOrEqual(t.top[j - 1].logprob);
      expect(t.top[0].id).toBe(t.id); // greedy: the chosen token is the most likely one
      expect(Math.abs(t.top[0].logprob - t.logprob!)).toBeLessThan(1e-4);
    }
  });

  test("structured output ends as soon as its JSON value is complete", async () => {
    const schema = { type: "object", properties: { ok: { type: "boolean" } }, required: ["ok"], additionalProperties: false };
    const { engine: e } = engine({ maxBatch: 2 });
    const runs = await Promise.all([0, 1].map((i) => collect(e, { promptIds: promptOf(i, 3), maxTokens: 20, format: { type: "json_schema", schema }, sampling: { temperature: 0.7, seed: i } })));
    for (const r of runs) {
      expect(JSON.parse(r.text)).toHaveProperty("ok");
      expect(r.done!.reason).toBe("eos");
      expect(r.done!.completionTokens).toBe(r.ids.length); // ended without sampling an end of sequence
    }
    const a = await alone({ promptIds: promptOf(0, 3), maxTokens: 20, format: { type: "json_schema", schema }, sampling: { temperature: 0.7, seed: 0 } });
    expect(a.ids).toEqual(runs[0].ids);
  });
});

describe("chunked prefill interleaved with decode", () => {
  test("a prompt's first token leaves with the step that prefilled it; the sequence decodes from the next step", async () => {
    const { engine: e, steps } = engine({ maxBatch: 4 });
    let second!: Promise<Run>;
    const first = collect(e, { promptIds: promptOf(0, 6), maxTokens: 12 }, Infinity, (ev) => {
      // A second prompt arrives while the first decodes.
      if (ev.type === "token" && !second) second = collect(e, { promptIds: promptOf(1, 6), maxTokens: 3 });
    });
    const [a, b] = [await first, await second];
    for (const r of [a, b]) {
      const prefilled = steps.find((s) => s.step === r.tokenSteps[0])!;
      expect(prefilled.prefills.length).toBe(1);
      // Its own row is not in that step's decode: it joins the batch at the start of the next.
      expect(steps.find((s) => s.step === r.tokenSteps[1])!.step).toBe(prefilled.step + 1);
    }
    expect(steps.find((s) => s.step === a.tokenSteps[0])!.decodeRows).toBe(0);
    expect(steps.find((s) => s.step === b.tokenSteps[0])!.decodeRows).toBe(1); // the first sequence only
    expect(steps.find((s) => s.step === b.tokenSteps[1])!.decodeRows).toBe(2);
  });

  test("a 1024-token prompt arriving while 4 streams decode: they get a token every step, at most one chunk between two", async () => {
    const chunk = 128;
    const { engine: e, steps } = engine({ maxBatch: 8, prefillChunk: chunk });
    const maxTokens = 16;
    let streaming!: () => void;
    const twoTokensEach = new Promise<void>((resolve) => (streaming = resolve));
    const counts = [0, 0, 0, 0];
    const streams = [0, 1, 2, 3].map((i) => collect(e, { promptIds: promptOf(i, 10), maxTokens }, Infinity, (ev) => {
      if (ev.type === "token" && ++counts[i] === 2 && counts.every((n) => n >= 2)) streaming();
    }));
    await twoTokensEach;
    const longStartStep = e.steps;
    const long = await collect(e, { promptIds: longPrompt(1024), maxTokens: 2 });
    const runs = await Promise.all(streams);

    const chunks = steps.filter((s) => s.prefills.length && s.step > longStartStep);
    expect(chunks.map((s) => s.prefills.map((p) => p.tokens))).toEqual(Array(1024 / chunk).fill([chunk]));
    expect(new Set(chunks.map((s) => s.prefills[0].request)).size).toBe(1);
    expect(long.done!.completionTokens).toBe(2);
    for (const s of steps) expect(s.prefills.every((p) => p.tokens <= chunk)).toBe(true);
    for (const r of runs) {
      expect(r.ids.length).toBe(maxTokens);
      // Consecutive tokens of a stream come from consecutive steps: no step left it out.
      for (let k = 2; k < r.tokenSteps.length; k++) expect(r.tokenSteps[k] - r.tokenSteps[k - 1]).toBe(1);
      // And the long prompt's chunks ran while it streamed, one per step.
      const during = chunks.filter((s) => s.step > r.tokenSteps[0] && s.step <= r.tokenSteps.at(-1)!);
      expect(during.length).toBe(chunks.length);
    }
    // Streams ran unchanged by the long prompt sharing their steps.
    for (let i = 0; i < 4; i++) expect(runs[i].ids).toEqual((await alone({ promptIds: promptOf(i, 10), maxTokens })).ids);
  });
});

describe("cancellation", () => {
  test("mid-prefill: the slot frees within one step and the queued request starts", async () => {
    const ac = new AbortController();
    let cancelStep = 0;
    const { engine: e, steps } = engine({ maxBatch: 1, prefillChunk: 64 });
    const long = collect(e, { promptIds: longPrompt(600), signal: ac.signal });
    const waiting = collect(e, { promptIds: promptOf(2, 4), maxTokens: 4 }, Infinity, (ev) => {
      if (ev.type === "started") expect(e.load().running).toBe(1);
    });
    while (!steps.length) await new Promise((r) => setTimeout(r, 1));
    cancelStep = e.steps;
    ac.abort();
    const [l, w] = await Promise.all([long, waiting]);
    expect(l.done!.reason).toBe("cancelled");
    expect(l.ids).toEqual([]);
    // The cancelled prompt ran few of its 10 chunks; the next step already served the waiting one.
    const longChunks = steps.filter((s) => s.prefills.some((p) => p.tokens === 64));
    expect(longChunks.length).toBeLessThanOrEqual(2);
    const firstOfWaiting = steps.find((s) => s.step > cancelStep && s.prefills.some((p) => p.tokens !== 64))!;
    expect(firstOfWaiting.step).toBeLessThanOrEqual(cancelStep + 2);
    expect(w.ids).toEqual((await alone({ promptIds: promptOf(2, 4), maxTokens: 4 })).ids);
    await idle(e);
    expect(e.load()).toEqual({ queued: 0, running: 0 });
  });

  test("mid-decode (the consumer walks away): the slot frees, the pool's shared blocks stay valid", async () => {
    const pool = await BlockPool.open({ dir: join(root, "cancel"), tag: m.tag, spec: m.model.cacheSpec, blockTokens: 16, memoryBudget: 1 << 30 });
    const handles = mx.handleCounts().live;
    try {
      const { engine: e, steps } = engine({ pool, maxBatch: 1 });
      const history = promptOf(1, 40);
      await collect(e, { promptIds: history, maxTokens: 2 });
      const blocks = pool.stats().hotBlocks;
      let leftAt = 0;
      const walkAway = collect(e, { promptIds: [...history, ...m.tokenizer.encode(" Yes")], maxTokens: 20 }, 3, (ev) => {
        if (ev.type === "token") leftAt = e.steps;
      });
      const waiting = collect(e, { promptIds: promptOf(5, 3), maxTokens: 3 });
      const [gone, w] = await Promise.all([walkAway, waiting]);
      expect(gone.started!.cachedTokens).toBeGreaterThanOrEqual(32);
      expect(gone.ids.length).toBe(3);
      expect(gone.done).toBeNull();
      // The waiting request's prefill ran in the step right after the walk-away was noticed.
      const next = steps.find((s) => s.step > leftAt && s.prefills.length)!;
      expect(next.step).toBeLessThanOrEqual(leftAt + 2);
      expect(w.ids).toEqual((await alone({ promptIds: promptOf(5, 3), maxTokens: 3 })).ids);
      // Shared blocks still serve a later request, with the right tokens.
      expect(pool.stats().hotBlocks).toBeGreaterThanOrEqual(blocks);
      const later = [...history, ...m.tokenizer.encode(" No")];
      const hit = await collect(e, { promptIds: later, maxTokens: 6 });
      expect(hit.started!.cachedTokens).toBeGreaterThanOrEqual(32);
      expect(hit.ids).toEqual((await alone({ promptIds: later, maxTokens: 6 })).ids);
      await idle(e);
    } finally {
      await pool.flush();
      pool.close();
    }
    // Every private cache is gone once the pool lets go of its blocks.
    expect(mx.handleCounts().live).toBe(handles);
  });
});

describe("queueing", () => {
  test("beyond max queued requests or tokens, submit throws QueueFullError with a retry hint", async () => {
    const { engine: e } = engine({ maxBatch: 1, maxQueued: 2, maxQueuedTokens: 100 });
    const ac = new AbortController();
    const req = (n: number): Req => ({ promptIds: longPrompt(n), maxTokens: 2, signal: ac.signal });
    const runs = [collect(e, req(10)), collect(e, req(10))];
    let err: unknown = null;
    try {
      e.submit({ tenant: "t", sampling: GREEDY, stop: [], ...req(10) } as GenerationRequest);
    } catch (x) {
      err = x;
    }
    expect(err).toBeInstanceOf(QueueFullError);
    expect((err as QueueFullError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    ac.abort();
    await Promise.all(runs);

    const { engine: t } = engine({ maxBatch: 1, maxQueued: 10, maxQueuedTokens: 100 });
    const ac2 = new AbortController();
    // A single prompt over the token limit still runs when nothing else waits.
    const big = collect(t, { promptIds: longPrompt(120), maxTokens: 1, signal: ac2.signal });
    expect(() => t.submit({ tenant: "t", maxTokens: 1, sampling: GREEDY, stop: [], promptIds: longPrompt(10) })).toThrow(QueueFullError);
    ac2.abort();
    await big;
    await idle(e);
    await idle(t);
  });

  test("a flood from one tenant does not delay another tenant's single request beyond its turn", async () => {
    const { engine: e } = engine({ maxBatch: 2 });
    const order: string[] = [];
    let twoRunning!: () => void;
    const started = new Promise<void>((resolve) => (twoRunning = resolve));
    const track = (label: string) => (ev: EngineEvent) => {
      if (ev.type !== "started") return;
      order.push(label);
      if (order.length === 2) twoRunning();
    };
    const flood = Array.from({ length: 12 }, (_, i) => collect(e, { tenant: "A", promptIds: promptOf(i, 2), maxTokens: 2 }, Infinity, track(`A${i + 1}`)));
    await started;
    const single = collect(e, { tenant: "B", promptIds: promptOf(3, 2), maxTokens: 2 }, Infinity, track("B"));
    await Promise.all([...flood, single]);
    // B arrived behind 10 waiting A requests and starts next: before all ten of them.
    expect(order.indexOf("B")).toBe(2);
    expect(order.filter((l) => l.startsWith("A"))).toEqual(Array.from({ length: 12 }, (_, i) => `A${i + 1}`));
  });
});

describe("load", () => {
  test("200 requests from 16 concurrent clients all complete; memory and handles return to baseline", async () => {
    mx.clearCache();
    const handles = mx.handleCounts().live;
    const active = mx.memoryStats().active;
    const { engine: e, steps } = engine({ maxBatch: 8 });
    let issued = 0;
    const done: Done[] = [];
    const client = async (c: number) => {
      while (issued < 200) {
        const i = issued++;
        // Every fifth samples with penalties and bias and reports logprobs: its chain state is freed too.
        const sampled: Partial<GenerationRequest> = i % 5 ? {} : { sampling: { temperature: 0.8, repetition_penalty: 1.1, logit_bias: { "12": 2 }, seed: i }, logprobs: true, topLogprobs: 2 };
        const r = await collect(e, { tenant: `tenant-${c % 4}`, promptIds: longPrompt(3 + (i % 6)), maxTokens: 2, ...sampled });
        done.push(r.done!);
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, c) => client(c)));
    expect(done.length).toBe(200);
    expect(done.every((d) => d.completionTokens >= 1 && d.completionTokens <= 2 && (d.reason === "length" || d.reason === "eos"))).toBe(true);
    expect(Math.max(...steps.map((s) => s.decodeRows))).toBeGreaterThan(1);
    await idle(e);
    mx.clearCache();
    expect(mx.handleCounts().live).toBe(handles);
    expect(mx.memoryStats().active).toBeLessThanOrEqual(active + (1 << 20));
    expect(mx.handleCounts().forgotten).toBe(0);
  });
});
