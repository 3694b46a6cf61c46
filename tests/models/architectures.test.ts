// Every architecture against an independent plain-TypeScript forward pass (reference-forward.ts)
// on tiny random models, dense and quantized: full forward at batch 1 and 2, incremental
// decoding through the caches, last-position logits, cache specs, and config errors.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { array, concatenate, cpuManyRowsTake, Dtype, handleCounts, type MxArray, tidy } from "../../shared/mlx/index.ts";
import { buildModel } from "../../shared/models/architectures.ts";
import type { LayerCache } from "../../shared/models/cache.ts";
import * as gemma3 from "../../shared/models/gemma3.ts";
import { type LoadedModel, loadModel } from "../../shared/models/load.ts";
import { loadGgufModel } from "../../shared/models/gguf-model.ts";
import { loadMlxFolder } from "../../shared/models/mlx-folder.ts";
import { Config, type LanguageModel, ModelLoadError, Weights } from "../../shared/models/model.ts";
import { expectClose } from "../helpers/numeric.ts";
import { ReferenceModel, readSafetensors } from "../helpers/reference-forward.ts";
import { type TinyArch, type TinyOptions, VOCAB, writeTinyGguf, writeTinyModel } from "../helpers/tiny-model.ts";

// Two different 11-token sequences (longer than gemma3's window of 4).
const SEQ_A = [5, 17, 200, 3, 99, 299, 42, 7, 150, 256, 11];
const SEQ_B = [250, 1, 64, 64, 180, 33, 298, 120, 9, 77, 140];
const L = SEQ_A.length;

// float32 activations against a float64 reference: the worst error seen is ~1e-5 on logits up
// to ~35 (float32 rounding through a few layers); 1e-4 leaves margin and still catches any
// real mistake (a wrong rotary pair, base, mask or norm moves logits by >1e-2).
const ATOL_FLOAT32 = 1e-4;
// Quantized matmuls of 16 rows or more on the many-row paths carry x to 16 bits, not float32's
// 24: on AMX tiles (ffi/qmm_amx.cpp) about 2^-17 of the sum of the terms' magnitudes, on int16
// panels (ffi/qmm_panels.cpp) 2^-16 of each group of 32's largest value; in these random tiny
// models the terms' magnitudes add up to ~100x the logit (qwen2's tied head: 2e-4 seen on tiles,
// 1e-3 on panels). A wrong layout or scale is off by more than 0.1.
const ATOL_16BIT = 3e-3;

const QUANT: Record<TinyArch, NonNullable<TinyOptions["quantize"]>> = {
  llama: { groupSize: 64, bits: 8 },
  qwen2: { groupSize: 32, bits: 4 },
  qwen3: { groupSize: 32, bits: 4 },
  gemma3_text: { groupSize: 32, bits: 4, scalesDtype: Dtype.bfloat16 },
  gemma3: { groupSize: 64, bits: 4, scalesDtype: Dtype.bfloat16 },
};

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "semantic-arch-"));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

const idsOf = (rows: number[][]) => array(Int32Array.from(rows.flat()), [rows.length, rows[0].length], Dtype.int32);

/** Logits (B, L, V) as float32 for `rows` run through `caches` (fresh ones by default). */
function run(model: LanguageModel, rows: number[][], caches?: LayerCache[], opts = {}): Float32Array {
  const own = caches ?? model.makeCache();
  try {
    const logits = tidy(() => model.forward(idsOf(rows), own, opts));
    try {
      return logits.toFloat32();
    } finally {
      logits.free();
    }
  } finally {
    if (!caches) for (const c of own) c.free();
  }
}

/** Logits of prefill `steps[0]` tokens, then chunks of the given sizes, through the same caches. */
function runIncremental(model: LanguageModel, rows: number[][], steps: number[]): Float32Array {
  const caches = model.makeCache();
  try {
    const parts: MxArray[] = [];
    let at = 0;
    for (const n of steps) {
      parts.push(tidy(() => model.forward(idsOf(rows.map((r) => r.slice(at, at + n))), caches)));
      at += n;
    }
    const all = tidy(() => concatenate(parts, 1));
    for (const p of parts) p.free();
    try {
      return all.toFloat32();
    } finally {
      all.free();
    }
  } finally {
    for (const c of caches) c.free();
  }
}

/** The reference's logits for several sequences, concatenated like (B, L, V). */
function expected(ref: ReferenceModel, rows: number[][]): Float64Array {
  const out = new Float64Array(rows.length * rows[0].length * VOCAB);
  rows.forEach((r, b) => out.set(ref.forward(r), b * r.length * VOCAB));
  return out;
}

const ARCHS: TinyArch[] = ["llama", "qwen2", "qwen3", "gemma3_text", "gemma3"];

for (const arch of ARCHS) {
  for (const variant of ["dense", "quantized"] as const) {
    describe(`${arch}, ${variant} checkpoint`, () => {
      let dir: string;
      let ref: ReferenceModel;
      let want: Float64Array; // (2, L, V) for [SEQ_A, SEQ_B]

      beforeAll(() => {
        dir = join(root, `${arch}-${variant}`);
        writeTinyModel(dir, arch, variant === "quantized" ? { quantize: QUANT[arch] } : {});
        ref = ReferenceModel.load(dir);
        want = expected(ref, [SEQ_A, SEQ_B]);
      });

      // "dense": MLX dequantizes at load; "quantized": quantized matmuls (float32 activations on the CPU).
      for (const mode of variant === "quantized" ? (["dense", "quantized"] as const) : (["dense"] as const)) {
        describe(`loaded with weights "${mode}"`, () => {
          const ATOL = mode === "quantized" && cpuManyRowsTake(QUANT[arch].groupSize, QUANT[arch].bits) ? ATOL_16BIT : ATOL_FLOAT32;
          let loaded: LoadedModel;
          beforeAll(async () => {
            loaded = await loadModel(dir, { weights: mode });
          });
          afterAll(() => loaded.model.free());

          test("batch 1 and batch 2 logits match the reference", () => {
            const m = loaded.model;
            expect(loaded.quantization).toBe(variant === "quantized" ? `q${QUANT[arch].bits}g${QUANT[arch].groupSize}` : "none");
            expectClose(run(m, [SEQ_A]), want.subarray(0, L * VOCAB), ATOL, 0, `${arch} batch 1`);
            expectClose(run(m, [SEQ_A, SEQ_B]), want, ATOL, 0, `${arch} batch 2`);
          });

          test("prefill 6 then 5 single steps (and prefill 6 then a chunk of 5) equal the full forward", () => {
            const m = loaded.model;
            const full = run(m, [SEQ_A, SEQ_B]);
            expectClose(runIncremental(m, [SEQ_A, SEQ_B], [6, 1, 1, 1, 1, 1]), full, ATOL, 0, `${arch} decode steps`);
            expectClose(runIncremental(m, [SEQ_A, SEQ_B], [6, 5]), full, ATOL, 0, `${arch} chunked prefill`);
          });

          test("lastOnly gives the last position's logits", () => {
            const last = run(loaded.model, [SEQ_A, SEQ_B], undefined, { lastOnly: true });
            expect(last.length).toBe(2 * VOCAB);
            for (let b = 0; b < 2; b++) {
              expectClose(last.subarray(b * VOCAB, (b + 1) * VOCAB), want.subarray((b * L + L - 1) * VOCAB, (b * L + L) * VOCAB), ATOL, 0, `${arch} last`);
            }
          });
        });
      }

      if (variant === "quantized") {
        // The quantized path on the GPU runs in float16 (load.ts); the CPU loader keeps float32, so
        // build the float16 model directly. float16 rounds each op to 2^-11 relative; over a few
        // layers the worst logit error seen is ~4e-3 of the largest logit, so allow 1e-2 of it.
        test("float16 activations stay within 1% of the largest logit", () => {
          const files = loadMlxFolder(dir);
          const weights = new Weights(files.arrays, () => QUANT[arch].groupSize, dir);
          weights.castFloats(Dtype.float16);
          const model = buildModel(new Config(files.config, dir), weights, Dtype.float16);
          try {
            expect(model.cacheSpec.kvDtype).toBe(Dtype.float16);
            const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
            expectClose(run(model, [SEQ_A, SEQ_B]), want, 1e-2 * scale, 0, `${arch} float16`);
          } finally {
            model.free();
          }
        });
      }
    });
  }
}

describe("cache specs", () => {
  const specs: Record<TinyArch, { nLayers: number; headDim: number; layers: unknown[] }> = {
    llama: { nLayers: 2, headDim: 16, layers: [{ kind: "global" }, { kind: "global" }] },
    qwen2: { nLayers: 2, headDim: 16, layers: [{ kind: "global" }, { kind: "global" }] },
    qwen3: { nLayers: 2, headDim: 32, layers: [{ kind: "global" }, { kind: "global" }] },
    gemma3_text: { nLayers: 3, headDim: 16, layers: [{ kind: "sliding", window: 4 }, { kind: "sliding", window: 4 }, { kind: "global" }] },
    gemma3: { nLayers: 3, headDim: 16, layers: [{ kind: "sliding", window: 4 }, { kind: "global" }, { kind: "sliding", window: 4 }] },
  };
  for (const arch of ARCHS) {
    test(arch, async () => {
      const dir = join(root, `${arch}-spec`);
      writeTinyModel(dir, arch);
      const loaded = await loadModel(dir, { weights: "dense" });
      try {
        const m = loaded.model;
        expect(m.modelType).toBe(arch);
        expect(m.vocabSize).toBe(VOCAB);
        expect(m.cacheSpec).toEqual({ ...specs[arch], nKvHeads: 2, kvDtype: Dtype.float32 } as never);
        expect(m.makeCache().length).toBe(specs[arch].nLayers);
      } finally {
        loaded.model.free();
      }
    });
  }

  test("gemma3 layer kinds: every 6th layer is global by default; layer_types must fit", () => {
    const base = { model_type: "gemma3_text", hidden_size: 64, intermediate_size: 128, num_hidden_layers: 12, sliding_window: 512 };
    const kinds = gemma3.parseArgs(new Config(base, "c.json")).layerKinds;
    expect(kinds.map((k, i) => (k.kind === "global" ? i : -1)).filter((i) => i >= 0)).toEqual([5, 11]);
    expect(kinds[0]).toEqual({ kind: "sliding", window: 512 });
    expect(() => gemma3.parseArgs(new Config({ ...base, layer_types: ["full_attention"] }, "c.json"))).toThrow(/layer_types/);
  });
});

describe("GGUF", () => {
  for (const arch of ["qwen2", "qwen3"] as const) {
    test(`${arch} from llama.cpp tensor names and metadata matches the reference`, () => {
      const dir = join(root, `${arch}-for-gguf`);
      writeTinyModel(dir, arch);
      const path = join(root, `${arch}.gguf`);
      writeTinyGguf(dir, path, readSafetensors(join(dir, "model.safetensors")));
      const files = loadGgufModel(path);
      expect(files.config).toMatchObject({ model_type: arch, head_dim: arch === "qwen3" ? 32 : 16, tie_word_embeddings: arch === "qwen2" });
      const model = buildModel(new Config(files.config, path), new Weights(files.arrays, () => 32, path), Dtype.float32);
      try {
        expectClose(run(model, [SEQ_A, SEQ_B]), expected(ReferenceModel.load(dir), [SEQ_A, SEQ_B]), ATOL_FLOAT32, 0, `${arch} gguf`);
      } finally {
        model.free();
      }
    });
  }

  // llama.cpp stores Gemma 3 norms with +1 added and leaves query_pre_attn_scalar and the
  // sliding pattern out of the metadata; until that is handled and checked, refuse clearly.
  test("gemma3 is refused with a clear error", () => {
    const path = join(root, "gemma3.gguf");
    const dir = join(root, "gemma3-for-gguf");
    writeTinyModel(dir, "gemma3_text");
    writeTinyGguf(dir, path, new Map(), "gemma3");
    expect(() => loadGgufModel(path)).toThrow(ModelLoadError);
    expect(() => loadGgufModel(path)).toThrow(/architecture "gemma3" is not supported from GGUF/);
  });
});

describe("config errors", () => {
  /** Writes a dense tiny model, lets `edit` change its config.json, and returns the load error. */
  async function loadError(arch: TinyArch, edit: (c: Record<string, unknown>) => void): Promise<Error> {
    const dir = mkdtempSync(join(root, `${arch}-broken-`));
    writeTinyModel(dir, arch);
    const path = join(dir, "config.json");
    const config = JSON.parse(readFileSync(path, "utf8"));
    edit(config);
    writeFileSync(path, JSON.stringify(config));
    try {
      const loaded = await loadModel(dir, { weights: "dense" });
      loaded.model.free();
    } catch (e) {
      return e as Error;
    }
    throw new Error("expected the load to fail");
  }

  const missing: [TinyArch, string][] = [
    ["llama", "hidden_size"], ["qwen2", "num_attention_heads"], ["qwen3", "intermediate_size"], ["gemma3_text", "num_hidden_layers"],
  ];
  for (const [arch, field] of missing) {
    test(`${arch} without "${field}" names the field and the file`, async () => {
      const e = await loadError(arch, (c) => delete c[field]);
      expect(e).toBeInstanceOf(ModelLoadError);
      expect(e.message).toContain(`"${field}"`);
      expect(e.message).toMatch(/config\.json/);
    });
  }

  test("gemma3 errors point into text_config", async () => {
    const e = await loadError("gemma3", (c) => delete (c.text_config as Record<string, unknown>).hidden_size);
    expect(e).toBeInstanceOf(ModelLoadError);
    expect(e.message).toMatch(/config\.json \(text_config\): missing field "hidden_size"/);
    const none = await loadError("gemma3", (c) => delete c.text_config);
    expect(none).toBeInstanceOf(ModelLoadError);
    expect(none.message).toContain('"text_config"');
  });

  test("an unknown model_type is a clear error listing the supported ones", async () => {
    const e = await loadError("llama", (c) => (c.model_type = "mamba9"));
    expect(e).toBeInstanceOf(ModelLoadError);
    expect(e.message).toMatch(/config\.json: unknown architecture "mamba9" \(supported: .*qwen2, qwen3, gemma3_text, gemma3\)/);
  });

  test("a missing tensor is named", async () => {
    const dir = join(root, "qwen2-no-bias");
    writeTinyModel(dir, "qwen2");
    // Same weights, but the config claims untied embeddings: lm_head is required and absent.
    const path = join(dir, "config.json");
    writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(path, "utf8")), tie_word_embeddings: false }));
    await expect(loadModel(dir, { weights: "dense" })).rejects.toThrow(/missing tensor "lm_head.weight"/);
  });
});

describe("native memory", () => {
  for (const arch of ["qwen2", "gemma3"] as const) {
    test(`${arch}: loading, running and freeing a model returns live handles to the baseline`, async () => {
      const dir = join(root, `${arch}-leak`);
      writeTinyModel(dir, arch, { quantize: QUANT[arch] });
      const before = handleCounts().live;
      for (const weights of ["dense", "quantized"] as const) {
        const loaded = await loadModel(dir, { weights });
        run(loaded.model, [SEQ_A, SEQ_B]);
        runIncremental(loaded.model, [SEQ_A, SEQ_B], [6, 1, 4]);
        loaded.model.free();
      }
      expect(handleCounts().live).toBe(before);
    });
  }
});
