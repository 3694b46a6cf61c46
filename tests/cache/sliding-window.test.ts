// The block pool with a Gemma-3-style model (sliding-window and global layers): cache hits give
// the cold run's tokens, and blocks behind every window drop their sliding layers from memory.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BlockPool } from "../../shared/cache/index.ts";
import type { GenerationRequest } from "../../shared/engine/engine.ts";
import { GREEDY } from "../../shared/engine/sampling/options.ts";
import { BatchEngine } from "../../shared/engine/batch-engine.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import { writeTinyModel } from "../helpers/tiny-model.ts";

const T = 4; // block tokens; the tiny model's window is 4 as well
let m: LoadedModel;
let root: string;
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "semantic-sliding-"));
  writeTinyModel(join(root, "model"), "gemma3_text", { seed: 7 });
  m = await loadModel(join(root, "model"), { weights: "dense" });
});
afterAll(() => {
  m?.model.free();
  rmSync(root, { recursive: true, force: true });
});

async function run(engine: BatchEngine, req: Partial<GenerationRequest> & { promptIds: number[] }) {
  const out = { ids: [] as number[], cached: -1 };
  for await (const e of engine.submit({ tenant: "t", maxTokens: 8, sampling: GREEDY, stop: [], ...req })) {
    if (e.type === "started") out.cached = e.cachedTokens;
    if (e.type === "token") out.ids.push(e.id);
  }
  return out;
}

// Byte tokens only (ids 0..255 are bytes in the tiny tokenizer): never an EOS.
const prompt = (n: number, salt = 0) => Array.from({ length: n }, (_, i) => 32 + ((i * 7 + salt) % 90));

test("the spec marks sliding and global layers", () => {
  expect(m.model.cacheSpec.layers).toEqual([{ kind: "sliding", window: 4 }, { kind: "sliding", window: 4 }, { kind: "global" }]);
});

test("hits from memory, from disk and after a restart give the cold run's tokens", async () => {
  for (const n of [T + 1, 2 * T, 5 * T + 3]) {
    const dir = join(root, `pool-${n}`);
    const want = (await run(new BatchEngine(m), { promptIds: prompt(n) })).ids;
    const pool = await BlockPool.open({ dir, tag: m.tag, spec: m.model.cacheSpec, blockTokens: T, memoryBudget: 1 << 30 });
    const engine = new BatchEngine(m, { pool });
    await run(engine, { promptIds: prompt(n) });
    const hot = await run(engine, { promptIds: prompt(n) });
    expect(hot.cached).toBeGreaterThan(0);
    expect(hot.ids).toEqual(want);
    await pool.flush();
    pool.close();
    const restarted = await BlockPool.open({ dir, tag: m.tag, spec: m.model.cacheSpec, blockTokens: T, memoryBudget: 1 << 30 });
    const warm = await run(new BatchEngine(m, { pool: restarted }), { promptIds: prompt(n) });
    expect(warm.cached).toBe(hot.cached);
    expect(warm.ids).toEqual(want);
    await restarted.flush();
    restarted.close();
  }
});

test("an agent's old blocks keep only their global layers in memory, and its next turns stay exact", async () => {
  const pool = await BlockPool.open({ dir: join(root, "agent"), tag: m.tag, spec: m.model.cacheSpec, blockTokens: T, memoryBudget: 1 << 30 });
  const engine = new BatchEngine(m, { pool });
  let history = prompt(6 * T + 1);
  let lastHot = 0;
  for (let turn = 0; turn < 3; turn++) {
    const r = await run(engine, { promptIds: history, agentId: "long" });
    expect(r.ids).toEqual((await run(new BatchEngine(m), { promptIds: history })).ids);
    if (turn > 0) expect(r.cached).toBeGreaterThan(history.length - 12);
    await pool.flush();
    history = [...history, ...r.ids, ...prompt(5, turn + 1)];
    lastHot = pool.stats().hotBytes;
  }
  // 3 layers per block; blocks behind the window keep 1 (the global one).
  const blocks = pool.stats().hotBlocks;
  const perLayerBlock = (2 * 2 * T * 16 * 4); // K and V, 2 kv heads, T tokens, head dim 16, float32
  expect(lastHot).toBeLessThan(blocks * 3 * perLayerBlock);
  await pool.flush();
  pool.close();
});
