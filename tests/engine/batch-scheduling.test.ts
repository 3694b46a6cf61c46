// Scheduling rules of the batch engine on a tiny random model (fast): memory pressure pauses
// admission without failing running sequences, one sequence's failure ends it alone, and turns
// on the same agent run one after the other.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentBusyError, BlockPool } from "../../shared/cache/index.ts";
import { BatchEngine } from "../../shared/engine/batch-engine.ts";
import type { GenerationRequest } from "../../shared/engine/engine.ts";
import { GREEDY } from "../../shared/engine/sampling/options.ts";
import { handleCounts } from "../../shared/mlx/index.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import { writeTinyModel } from "../helpers/tiny-model.ts";

let root: string;
let m: LoadedModel; // its tokenizer decodes ids 0..256 only
let wide: LoadedModel; // 300 ids: some of them its tokenizer cannot decode
beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "semantic-batch-sched-"));
  writeTinyModel(join(root, "m"), "llama", { config: { vocab_size: 257 } });
  writeTinyModel(join(root, "wide"), "llama", { seed: 99 });
  m = await loadModel(join(root, "m"));
  wide = await loadModel(join(root, "wide"));
});
afterAll(() => {
  m?.model.free();
  wide?.model.free();
  rmSync(root, { recursive: true, force: true });
});

const prompt = (n: number, salt: number) => Array.from({ length: n }, (_, i) => (13 * i + salt) % 256);
const req = (promptIds: number[], more: Partial<GenerationRequest> = {}): GenerationRequest => ({ tenant: "t", promptIds, maxTokens: 6, sampling: GREEDY, stop: [], ...more });

async function drain(it: AsyncIterable<unknown>): Promise<number> {
  let n = 0;
  for await (const e of it) if ((e as { type: string }).type === "token") n++;
  return n;
}

test("over the memory budget, admission pauses: sequences run one at a time and all finish", async () => {
  // 20-token prompts need ~10 KB of K/V each on this model; the budget fits one.
  let rows = 0;
  let running = 0;
  const e = new BatchEngine(m, { maxBatch: 4, memoryBudget: 15_000, onStep: (s) => (rows = Math.max(rows, s.decodeRows)) });
  const probe = setInterval(() => (running = Math.max(running, e.load().running)), 0);
  const counts = await Promise.all([1, 2, 3, 4].map((i) => drain(e.submit(req(prompt(20, i))))));
  clearInterval(probe);
  expect(counts.every((n) => n >= 1)).toBe(true);
  expect(rows).toBe(1);
  expect(running).toBe(1);

  const free = new BatchEngine(m, { maxBatch: 4, onStep: (s) => (rows = Math.max(rows, s.decodeRows)) });
  await Promise.all([1, 2, 3, 4].map((i) => drain(free.submit(req(prompt(20, i), { maxTokens: 12 })))));
  expect(rows).toBeGreaterThan(1);
});

test("a sequence whose token cannot be decoded fails alone; the rest of its batch finishes", async () => {
  const handles = handleCounts().live;
  const e = new BatchEngine(wide, { maxBatch: 8 });
  const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => drain(e.submit(req(prompt(3 + i, 7 * i), { maxTokens: 16 })))));
  const failed = results.filter((r) => r.status === "rejected");
  expect(failed.length).toBeGreaterThan(0);
  expect(failed.length).toBeLessThan(8);
  for (const f of failed) expect(String((f as PromiseRejectedResult).reason)).toContain("not in the vocabulary");
  expect(e.load()).toEqual({ queued: 0, running: 0 });
  // The engine goes on serving.
  expect(await drain(e.submit(req(prompt(4, 1), { maxTokens: 1 })))).toBeLessThanOrEqual(1);
  expect(handleCounts().live).toBe(handles);
});

test("two turns on the same agent run one after the other; other agents run beside them", async () => {
  const pool = await BlockPool.open({ dir: join(root, "pool"), tag: m.tag, spec: m.model.cacheSpec, blockTokens: 8, memoryBudget: 1 << 24 });
  try {
    const order: string[] = [];
    const e = new BatchEngine(m, { pool, maxBatch: 4 });
    const turn = async (label: string, agentId: string, ids: number[]) => {
      for await (const ev of e.submit(req(ids, { agentId, maxTokens: 4 }))) if (ev.type === "started" || ev.type === "done") order.push(`${label}:${ev.type}`);
    };
    const history = prompt(20, 3);
    await Promise.all([turn("a1", "a", history), turn("a2", "a", [...history, 9, 9]), turn("b1", "b", prompt(12, 5))]);
    expect(order.indexOf("a2:started")).toBeGreaterThan(order.indexOf("a1:done"));
    expect(order.indexOf("b1:started")).toBeLessThan(order.indexOf("a1:done"));
    // Every stream opens with "queued"; a turn that cannot get its agent's lease in time fails
    // before it (so the functions answer 409 before any byte), and the agent serves again after.
    const impatient = new BatchEngine(m, { pool, maxBatch: 4, agentWaitMs: 0 });
    const first = impatient.submit(req(history, { agentId: "c", maxTokens: 8 }))[Symbol.asyncIterator]();
    expect((await first.next()).value).toEqual({ type: "queued" });
    const second = impatient.submit(req(history, { agentId: "c", maxTokens: 1 }))[Symbol.asyncIterator]();
    await expect(second.next()).rejects.toThrow(AgentBusyError);
    while (!(await first.next()).done);
    expect(await drain(impatient.submit(req(history, { agentId: "c", maxTokens: 1 })))).toBe(1);
  } finally {
    await pool.flush();
    pool.close();
  }
});
