// The batch engine over every architecture on tiny random models: rows of different lengths
// (longer than gemma3's sliding window of 4) decode together, prefill in small chunks, and each
// produces the tokens it produces alone.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BatchEngine } from "../../shared/engine/batch-engine.ts";
import { generate } from "../../shared/engine/generate.ts";
import { GREEDY } from "../../shared/engine/sampling/options.ts";
import { handleCounts } from "../../shared/mlx/index.ts";
import { loadModel } from "../../shared/models/load.ts";
import { type TinyArch, writeTinyModel } from "../helpers/tiny-model.ts";

let root: string;
beforeAll(() => (root = mkdtempSync(join(tmpdir(), "semantic-batch-arch-"))));
afterAll(() => rmSync(root, { recursive: true, force: true }));

// The tiny byte-level tokenizer has 257 ids: the model's vocabulary matches it, so every sampled id decodes.
const VOCAB = 257;
const prompts = [3, 11, 7, 20, 1, 14].map((n, r) => Array.from({ length: n }, (_, i) => (17 * i + 31 * r + 5) % 256));
const CHUNK = 5;

for (const arch of ["llama", "qwen2", "qwen3", "gemma3_text"] as TinyArch[]) {
  test(`${arch}: each row of a batch decodes what it decodes alone`, async () => {
    const dir = join(root, arch);
    writeTinyModel(dir, arch, { config: { vocab_size: VOCAB } });
    const m = await loadModel(dir);
    try {
      const alone = async (promptIds: number[]) => {
        const caches = m.model.makeCache();
        const ids: number[] = [];
        for await (const e of generate(m, { promptIds, maxTokens: 12, prefillChunk: CHUNK }, caches)) if (e.type === "token") ids.push(e.id);
        for (const c of caches) c.free();
        return ids;
      };
      const want: number[][] = [];
      for (const p of prompts) want.push(await alone(p));
      const handles = handleCounts().live; // after a first forward: models may build lazy state once
      let widest = 0;
      const engine = new BatchEngine(m, { maxBatch: 4, prefillChunk: CHUNK, onStep: (s) => (widest = Math.max(widest, s.decodeRows)) });
      const got = await Promise.all(prompts.map(async (promptIds) => {
        const ids: number[] = [];
        for await (const e of engine.submit({ tenant: "t", promptIds, maxTokens: 12, sampling: GREEDY, stop: [] })) if (e.type === "token") ids.push(e.id);
        return ids;
      }));
      expect(got).toEqual(want);
      expect(widest).toBeGreaterThan(1);
      expect(handleCounts().live).toBe(handles);
    } finally {
      m.model.free();
    }
  });
}
