// The embedded default model against transformers (scripts/reference/make-fixtures.sh wrote the
// fixture from the same GGUF): logits at every position, and the greedy continuation.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as mx from "../../shared/mlx/index.ts";
import { generate } from "../../shared/engine/generate.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import { defaultModelPath } from "../../shared/paths.ts";
import fixture from "../fixtures/smollm2-logits.json";

type Prompt = (typeof fixture.prompts)[number];

// Both weight modes run the transformers comparisons: dense float32 (BLAS matmuls) and quantized,
// the CPU default (the project's kernel: at every row count where it has a many-row path for the
// CPU, AMX tiles or AVX-512 VNNI panels from 16 rows; else up to CPU_KERNEL_MAX_ROWS rows, as the
// 5- and 30-token prompts run, and BLAS over a per-layer float32 copy above, as the 71-token one).
const models = new Map<string, LoadedModel>();
let m: LoadedModel; // the CPU default, for the generation tests
beforeAll(async () => {
  for (const mode of ["dense", "quantized"] as const) models.set(mode, await loadModel(defaultModelPath(), { weights: mode }));
  m = await loadModel(defaultModelPath());
});
afterAll(() => {
  for (const x of models.values()) x.model.free();
  m?.model.free();
});

/** Full-sequence logits (L, V) as float32. */
function logitsOf(m: LoadedModel, ids: number[]): Float32Array {
  const caches = m.model.makeCache();
  try {
    return mx.tidy(() => m.model.forward(mx.array(Int32Array.from(ids), [1, ids.length], mx.Dtype.int32), caches)).toFloat32();
  } finally {
    for (const c of caches) c.free();
  }
}

/** Worst |ours - reference| over the reference's top-20 at every position. */
function worstError(p: Prompt, all: Float32Array, V: number): number {
  let worst = 0;
  p.top.forEach((t, pos) => t.ids.forEach((id, j) => (worst = Math.max(worst, Math.abs(all[pos * V + id] - t.logits[j])))));
  return worst;
}

for (const mode of ["dense", "quantized"] as const) describe(`SmolLM2-135M-Instruct Q4_1 (${mode} weights) vs transformers`, () => {
  // Same dequantized weights in float32 on both sides: only summation order differs, which over
  // 30 layers moves logits of magnitude ~30 by ~1e-4. 2e-3 leaves room for BLAS kernels while
  // still catching any real error (a wrong RoPE layout or dequantization moves them by >0.5).
  // Quantized weights on a many-row path (from 16 rows: the 30- and 71-token prompts) carry x to
  // 16 bits (int16 panels: 2^-16 of each group of 32's largest value; 7e-3 seen), hence 2e-2.
  const TOLERANCE = mode === "quantized" && mx.cpuManyRowsTake(32, 4) ? 2e-2 : 2e-3;
  for (const p of fixture.prompts) {
    test(`${p.name}: top-20 logits at all ${p.ids.length} positions`, () => {
      const m = models.get(mode)!;
      expect(worstError(p, logitsOf(m, p.ids), m.model.vocabSize)).toBeLessThan(TOLERANCE);
    });

    test(`${p.name}: 32 greedy tokens with the KV cache equal transformers' full-sequence argmax`, () => {
      const m = models.get(mode)!;
      const caches = m.model.makeCache();
      const out: number[] = [];
      try {
        let next = mx.tidy(() => mx.argmax(m.model.forward(mx.array(Int32Array.from(p.ids), [1, p.ids.length], mx.Dtype.int32), caches, { lastOnly: true }), -1));
        for (let i = 0; i < p.greedy.length; i++) {
          const id = next.item();
          next.free();
          out.push(id);
          next = mx.tidy(() => mx.argmax(m.model.forward(mx.array(new Int32Array([id]), [1, 1], mx.Dtype.int32), caches), -1));
        }
        next.free();
      } finally {
        for (const c of caches) c.free();
      }
      expect(out).toEqual(p.greedy);
    });
  }
});

describe("generation on the CPU default weights", () => {
  test("the CPU default is quantized weights (the project's kernel)", () => {
    expect(m.weightMode).toBe("quantized");
  });

  test("generate streams the greedy tokens until EOS, with text, in chunked prefill", async () => {
    const p = fixture.prompts.find((q) => q.name === "chat")!;
    const caches = m.model.makeCache();
    const ids: number[] = [];
    let text = "";
    let done: { reason: string; completionTokens: number; cachedIds: number[] } | null = null;
    for await (const e of generate(m, { promptIds: p.ids, maxTokens: 32, prefillChunk: 7 }, caches)) {
      if (e.type === "token") ids.push(e.id);
      if (e.type !== "done") text += e.text;
      else done = e;
    }
    for (const c of caches) c.free();
    const eosAt = p.greedy.findIndex((id) => m.tokenizer.eosIds.includes(id));
    expect(ids).toEqual(p.greedy.slice(0, eosAt));
    expect(text).toBe(m.tokenizer.decode(p.greedy.slice(0, eosAt)));
    expect(done!.reason).toBe("eos");
    expect(done!.completionTokens).toBe(eosAt + 1);
    // The EOS token was fed back while its successor was queued: the caches hold it too.
    expect(done!.cachedIds).toEqual([...p.ids, ...p.greedy.slice(0, eosAt + 1)]);
  });

  test("stop strings end generation across token boundaries; max tokens ends with length", async () => {
    const p = fixture.prompts.find((q) => q.name === "plain")!;
    const full = m.tokenizer.decode(p.greedy.slice(0, 8));
    const stop = full.slice(3, 9); // spans several tokens
    let text = "";
    let reason = "";
    const caches = m.model.makeCache();
    for await (const e of generate(m, { promptIds: p.ids, maxTokens: 20, stop: [stop] }, caches)) {
      if (e.type === "done") reason = e.reason;
      else text += e.text;
    }
    for (const c of caches) c.free();
    expect(reason).toBe("stop");
    expect(text).toBe(full.slice(0, 3));

    let n = 0;
    const caches2 = m.model.makeCache();
    for await (const e of generate(m, { promptIds: p.ids, maxTokens: 3 }, caches2)) if (e.type === "done") { reason = e.reason; n = e.completionTokens; }
    for (const c of caches2) c.free();
    expect([reason, n]).toEqual(["length", 3]);
  });

  test("seeded sampling is reproducible and differs across seeds", async () => {
    const p = fixture.prompts.find((q) => q.name === "plain")!;
    const run = async (seed: number) => {
      const caches = m.model.makeCache();
      const ids: number[] = [];
      for await (const e of generate(m, { promptIds: p.ids, maxTokens: 12, sampling: { temperature: 1.2, top_k: 50, top_p: 0.95, seed } }, caches)) if (e.type === "token") ids.push(e.id);
      for (const c of caches) c.free();
      return ids;
    };
    const a = await run(1);
    expect(await run(1)).toEqual(a);
    expect(await run(2)).not.toEqual(a);
  });
});

