// The block pool on the real model: cache hits give token-for-token the output of a cold run
// (aligned and unaligned prefixes, from memory, from disk, after a restart), tenants never
// share, bad files are never used, budgets hold, and an agent's next turn prefills only new tokens.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlockPool } from "../../shared/cache/index.ts";
import type { EngineEvent, GenerationRequest } from "../../shared/engine/engine.ts";
import { GREEDY } from "../../shared/engine/sampling/options.ts";
import { BatchEngine } from "../../shared/engine/batch-engine.ts";
import { handleCounts } from "../../shared/mlx/index.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import { defaultModelPath } from "../../shared/paths.ts";

const T = 16; // small blocks keep 8-block prompts short enough for a 2-core CPU
let m: LoadedModel;
let root: string;
beforeAll(async () => {
  m = await loadModel(defaultModelPath());
  root = mkdtempSync(join(tmpdir(), "semantic-pool-"));
});
afterAll(() => {
  m?.model.free();
  rmSync(root, { recursive: true, force: true });
});

const text = "The quick brown fox jumps over the lazy dog. Agents talk to models for hours, and every turn re-sends the history. ".repeat(8);
const promptOf = (n: number) => m.tokenizer.encode(text).slice(0, n);

async function openPool(dir: string, memoryBudget = 1 << 30, diskBudget?: number) {
  return BlockPool.open({ dir, tag: m.tag, spec: m.model.cacheSpec, blockTokens: T, memoryBudget, diskBudget });
}

type Run = { ids: number[]; cached: number; created: number };
async function run(engine: BatchEngine, req: Partial<GenerationRequest> & { promptIds: number[] }): Promise<Run> {
  const out: Run = { ids: [], cached: -1, created: 0 };
  for await (const e of engine.submit({ tenant: "a", maxTokens: 10, sampling: GREEDY, stop: [], ...req }) as AsyncIterable<EngineEvent>) {
    if (e.type === "started") out.cached = e.cachedTokens;
    if (e.type === "token") out.ids.push(e.id);
    if (e.type === "done") out.created = e.cacheCreatedTokens;
  }
  return out;
}

const cold = new Map<number, number[]>();
async function coldRun(n: number): Promise<number[]> {
  if (!cold.has(n)) cold.set(n, (await run(new BatchEngine(m), { promptIds: promptOf(n) })).ids);
  return cold.get(n)!;
}

describe("identical output after a cache hit (DESIGN invariant 1)", () => {
  for (const n of [T + 1, 2 * T + 1, 8 * T + 1, 3 * T + 7]) {
    test(`prompt of ${n} tokens: hot, after eviction to disk, after a restart`, async () => {
      const dir = join(root, `identical-${n}`);
      const want = await coldRun(n);
      // Extend a prefix so the request matches blocks written by an earlier, shorter turn.
      const pool = await openPool(dir);
      const engine = new BatchEngine(m, { pool });
      await run(engine, { promptIds: promptOf(n - 5) });
      const hot = await run(engine, { promptIds: promptOf(n) });
      // The first turn also cached the tokens it generated; on this repetitive text they may match the prompt.
      expect(hot.cached).toBeGreaterThanOrEqual(Math.floor((n - 5) / T) * T);
      expect(hot.ids).toEqual(want);
      // The whole prompt is now cached but its last token: it still recomputes that one.
      const again = await run(engine, { promptIds: promptOf(n) });
      expect(again.cached).toBe(Math.floor(n / T) * T === n ? n - 1 : Math.floor(n / T) * T);
      expect(again.ids).toEqual(want);
      await pool.flush();
      pool.close(); // everything leaves memory; only the files remain

      const restarted = await openPool(dir);
      expect(restarted.stats().warmBlocks).toBeGreaterThan(0);
      const warm = await run(new BatchEngine(m, { pool: restarted }), { promptIds: promptOf(n) });
      expect(warm.cached).toBe(again.cached);
      expect(warm.ids).toEqual(want);
      await restarted.flush();
      restarted.close();
    });
  }
});

describe("agents", () => {
  test("turn N+1 prefills only its new tokens (private tail included), across a restart", async () => {
    const dir = join(root, "agent");
    const pool = await openPool(dir);
    const engine = new BatchEngine(m, { pool });
    const turn1 = promptOf(2 * T + 5);
    const r1 = await run(engine, { promptIds: turn1, agentId: "agent-1" });
    const history = [...turn1, ...r1.ids];
    const turn2 = [...history, ...promptOf(9)];
    const r2 = await run(engine, { promptIds: turn2, agentId: "agent-1" });
    // Everything the first turn computed is reused: the prompt, and the generated tokens fed back.
    expect(r2.cached).toBe(history.length - 1 + (r1.ids.length === 10 ? 0 : 1));
    expect(r2.ids).toEqual((await run(new BatchEngine(m), { promptIds: turn2 })).ids);
    expect(pool.getAgent("a", "agent-1")!.tokens).toBeGreaterThanOrEqual(turn2.length);
    await pool.flush();
    pool.close();
    const restarted = await openPool(dir);
    const turn3 = [...turn2, ...r2.ids, ...promptOf(4)];
    const r3 = await run(new BatchEngine(m, { pool: restarted }), { promptIds: turn3, agentId: "agent-1" });
    expect(r3.cached).toBeGreaterThanOrEqual(turn2.length);
    expect(r3.ids).toEqual((await run(new BatchEngine(m), { promptIds: turn3 })).ids);
    await restarted.flush();
    restarted.close();
  });

  test("agent ids never become paths; tenants cannot see each other's agents", async () => {
    const dir = join(root, "ids");
    const pool = await openPool(dir);
    const engine = new BatchEngine(m, { pool });
    const weird = ["../../etc/passwd", "a".repeat(4096), "ctl\u0000\u0007\n", "/abs/path", "ünï©ødé"];
    for (const id of weird) await run(engine, { promptIds: promptOf(T + 3), agentId: id, maxTokens: 1 });
    await pool.flush();
    const files = readdirSync(dir, { recursive: true }) as string[];
    for (const f of files) expect(f).toMatch(/^[0-9a-f/.]*(blocks|agents|safetensors|json|tail)*[0-9a-f/.a-z]*$/);
    expect(files.some((f) => f.includes("passwd") || f.includes("etc"))).toBe(false);
    expect(pool.listAgents("a").map((a) => a.agentId).sort()).toEqual([...weird].sort());
    expect(pool.listAgents("b")).toEqual([]);
    expect(pool.getAgent("b", "../../etc/passwd")).toBeNull();
    expect(await pool.deleteAgent("b", "../../etc/passwd")).toBe(false);
    expect(await pool.deleteAgent("a", "../../etc/passwd")).toBe(true);
    expect(pool.getAgent("a", "../../etc/passwd")).toBeNull();
    pool.close();
  });

  test("two concurrent turns on one agent run one after the other", async () => {
    const pool = await openPool(join(root, "lease"));
    const engine = new BatchEngine(m, { pool });
    const base = promptOf(T + 2);
    const order: string[] = [];
    const one = async (tag: string, ids: number[]) => {
      for await (const e of engine.submit({ tenant: "a", agentId: "same", promptIds: ids, maxTokens: 3, sampling: GREEDY, stop: [] })) {
        if (e.type === "started" || e.type === "done") order.push(`${tag}:${e.type}`);
      }
    };
    await Promise.all([one("x", base), one("y", [...base, 5, 6])]);
    expect(order).toEqual(["x:started", "x:done", "y:started", "y:done"]);
    const busy = new BatchEngine(m, { pool, agentWaitMs: 0 });
    const held = busy.submit({ tenant: "a", agentId: "held", promptIds: base, maxTokens: 40, sampling: GREEDY, stop: [] })[Symbol.asyncIterator]();
    await held.next(); // holds the lease
    const second = busy.submit({ tenant: "a", agentId: "held", promptIds: base, maxTokens: 1, sampling: GREEDY, stop: [] })[Symbol.asyncIterator]();
    await expect(second.next()).rejects.toThrow("another request is running on this agent");
    await held.return?.(undefined);
    await pool.flush();
    pool.close();
  });
});

describe("tenants", () => {
  test("tenant B replaying tenant A's exact prompt gets no cached tokens; A does", async () => {
    const pool = await openPool(join(root, "tenants"));
    const engine = new BatchEngine(m, { pool });
    const p = promptOf(3 * T + 2);
    await run(engine, { tenant: "tenant-a", promptIds: p, maxTokens: 1 });
    expect((await run(engine, { tenant: "tenant-b", promptIds: p, maxTokens: 1 })).cached).toBe(0);
    expect((await run(engine, { tenant: "tenant-a", promptIds: p, maxTokens: 1 })).cached).toBe(3 * T);
    await pool.flush();
    pool.close();
  });
});

/** A pool in `dir` that cached a prompt of two blocks and three tokens, closed: the prompt, its cold greedy ids and the two block files. */
async function twoBlockFiles(dir: string): Promise<{ p: number[]; want: number[]; blockFiles: string[] }> {
  const p = promptOf(2 * T + 3);
  const want = await coldRun(2 * T + 3);
  const pool = await openPool(dir);
  await run(new BatchEngine(m, { pool }), { promptIds: p });
  await pool.flush();
  pool.close();
  const blockFiles = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith(".safetensors")).map((f) => join(dir, f));
  expect(blockFiles.length).toBe(2);
  return { p, want, blockFiles };
}

/** Opens the pool in `dir` again and runs `p` through it: the run and the pool's stats, closed after. */
async function reopenAndRun(dir: string, p: number[]) {
  const reopened = await openPool(dir);
  const r = await run(new BatchEngine(m, { pool: reopened }), { promptIds: p });
  const stats = reopened.stats();
  await reopened.flush();
  reopened.close();
  return { r, stats };
}

describe("bad cache files are never used", () => {
  const damage: [string, (file: string) => void][] = [
    ["truncated", (f) => truncateSync(f, Math.floor(statSync(f).size / 2))],
    ["a flipped data byte", (f) => { const b = readFileSync(f); b[b.length - 100] ^= 0xff; writeFileSync(f, b); }],
    ["a flipped header byte", (f) => { const b = readFileSync(f); b[20] ^= 0x20; writeFileSync(f, b); }],
    ["another model's tag", (f) => { const b = readFileSync(f).toString("latin1"); writeFileSync(f, Buffer.from(b.replace(m.tag, m.tag.replace(/.$/, (c) => (c === "x" ? "y" : "x"))), "latin1")); }],
    ["a lying header length", (f) => { const b = readFileSync(f); b.writeBigUInt64LE(1n << 40n, 0); writeFileSync(f, b); }],
  ];
  for (const [what, hurt] of damage) {
    test(what, async () => {
      const dir = join(root, `bad-${what.replace(/\W/g, "")}`);
      const { p, want, blockFiles } = await twoBlockFiles(dir);
      for (const f of blockFiles) hurt(f);
      const { r, stats } = await reopenAndRun(dir, p);
      expect(r.cached).toBe(0);
      expect(r.ids).toEqual(want);
      expect(stats.quarantined).toBeGreaterThanOrEqual(1);
    });
  }
});

test("block files from before the xxHash3 checksum (xxHash64, a bare hex string) still load and hit", async () => {
  const dir = join(root, "legacy-checksum");
  const { p, want, blockFiles } = await twoBlockFiles(dir);
  for (const f of blockFiles) {
    // The same file as the earlier code wrote it: its checksum is xxHash64 over the data, in hex.
    const b = readFileSync(f);
    const n = Number(b.readBigUInt64LE(0));
    const header = JSON.parse(b.subarray(8, 8 + n).toString("utf8"));
    expect(header.__metadata__.checksum).toStartWith("xxh3:");
    const parts = Object.entries(header).filter(([k]) => k !== "__metadata__").map(([, t]) => (t as { data_offsets: [number, number] }).data_offsets).sort((x, y) => x[0] - y[0]);
    let h = 0n;
    for (const [from, to] of parts) h = Bun.hash.xxHash64(b.subarray(8 + n + from, 8 + n + to), h);
    header.__metadata__.checksum = h.toString(16);
    const json = JSON.stringify(header);
    b.write(json.padEnd(n, " "), 8, "utf8");
    writeFileSync(f, b);
  }
  const { r, stats } = await reopenAndRun(dir, p);
  expect(r.cached).toBe(2 * T);
  expect(r.ids).toEqual(want);
  expect(stats.quarantined).toBe(0);
});

describe("budgets", () => {
  // The hot bytes of one block, from a pool that caches one.
  async function oneBlockBytes(name: string): Promise<number> {
    const probe = await openPool(join(root, name));
    await run(new BatchEngine(m, { pool: probe }), { promptIds: promptOf(T + 1), maxTokens: 1 });
    const bytes = probe.stats().hotBytes;
    await probe.flush();
    probe.close();
    return bytes;
  }

  test("a workload larger than the memory budget runs and the hot tier stays under it", async () => {
    const blockBytes = await oneBlockBytes("probe");
    const budget = 3 * blockBytes;
    const pool = await openPool(join(root, "budget"), budget);
    const engine = new BatchEngine(m, { pool });
    for (let i = 0; i < 4; i++) await run(engine, { promptIds: [i + 100, ...promptOf(2 * T)], maxTokens: 1 });
    await pool.flush();
    const s = pool.stats();
    expect(s.hotBytes).toBeLessThanOrEqual(budget);
    expect(s.evictions).toBeGreaterThan(0);
    expect(s.warmBlocks).toBeGreaterThan(0);
    // Evicted blocks come back from disk transparently.
    const again = await run(engine, { promptIds: [100, ...promptOf(2 * T)], maxTokens: 1 });
    expect(again.cached).toBe(2 * T);
    await pool.flush();
    pool.close();
  });

  test("a borrowed prefix stays readable while its blocks are evicted; they are freed once it is released, whatever was borrowed later", async () => {
    const blockBytes = await oneBlockBytes("borrow-probe");
    const pool = await openPool(join(root, "borrow"), 2 * blockBytes);
    const engine = new BatchEngine(m, { pool });
    const ids = promptOf(2 * T + 1);
    await run(engine, { promptIds: ids, maxTokens: 1 });
    await pool.flush();
    const match = await pool.prepare(pool.match("a", ids));
    expect(match.cachedTokens).toBe(2 * T);
    const borrowed = pool.borrow(match);
    const first = borrowed.layers[0].keys[0];
    const before = Array.from(first.toFloat32());
    const evictions = pool.stats().evictions;
    for (let i = 0; i < 2; i++) await run(engine, { promptIds: [i + 300, ...promptOf(2 * T)], maxTokens: 1 });
    await pool.flush();
    expect(pool.stats().evictions).toBeGreaterThan(evictions);
    expect(pool.stats().hotBytes).toBeLessThanOrEqual(2 * blockBytes);
    expect(first.freed).toBe(false);
    expect(Array.from(first.toFloat32())).toEqual(before);
    // A borrow made after the drop cannot hold what was dropped: releasing the first frees it.
    const later = pool.borrow(await pool.prepare(pool.match("a", [301, ...promptOf(2 * T)])));
    borrowed.release();
    expect(first.freed).toBe(true);
    later.release();
    pool.close();
  });

  test("the disk budget deletes least recently used files", async () => {
    const dir = join(root, "disk");
    const probe = await openPool(join(root, "disk-probe"));
    await run(new BatchEngine(m, { pool: probe }), { promptIds: promptOf(T + 1), maxTokens: 1 });
    await probe.flush();
    const fileBytes = probe.stats().diskBytes;
    probe.close();
    const pool = await openPool(dir, 1 << 30, 2 * fileBytes);
    const engine = new BatchEngine(m, { pool });
    for (let i = 0; i < 4; i++) await run(engine, { promptIds: [i + 200, ...promptOf(T)], maxTokens: 1 });
    await pool.flush();
    expect(pool.stats().diskBytes).toBeLessThanOrEqual(2 * fileBytes);
    pool.close();
  });
});

test("native handles return to baseline once pools are closed", () => {
  expect(handleCounts().forgotten).toBe(0);
  expect(existsSync(root)).toBe(true);
});
