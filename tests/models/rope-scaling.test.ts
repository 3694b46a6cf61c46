// RoPE scaling (shared/models/rope.ts) against transformers' definitions written out
// independently in reference-forward.ts: first the rotation itself, then through a tiny llama
// whose config names the scaling, compared with the reference forward pass.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { array, Dtype, tidy } from "../../shared/mlx/index.ts";
import { loadModel } from "../../shared/models/load.ts";
import { parseRopeScaling, Rope } from "../../shared/models/rope.ts";
import { expectClose, seeded } from "../helpers/numeric.ts";
import { loadTensors, ReferenceModel, ropeParameters, rotate } from "../helpers/reference-forward.ts";
import { writeTinyModel } from "../helpers/tiny-model.ts";

const IDS = [5, 17, 200, 3, 99, 299, 42, 7, 150, 256, 11];
const DIM = 16; // the tiny llama's head_dim

type Case = { name: string; scaling: Record<string, unknown>; base: number; maxPositions: number };

// Each chosen so the scaling changes positions 0..10 noticeably (checked below).
const CASES: Case[] = [
  { name: "linear", scaling: { rope_type: "linear", factor: 4 }, base: 10000, maxPositions: 256 },
  { name: "linear (older `type` key)", scaling: { type: "linear", factor: 2 }, base: 10000, maxPositions: 256 },
  // 11 tokens > max_position_embeddings 8: the base grows with the sequence.
  { name: "dynamic NTK", scaling: { rope_type: "dynamic", factor: 2 }, base: 10000, maxPositions: 8 },
  // factor * original = max_position_embeddings, so older and newer transformers agree.
  { name: "yarn", scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 64 }, base: 10000, maxPositions: 256 },
  { name: "yarn with mscale", scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 64, mscale: 1, mscale_all_dim: 0.5, beta_fast: 16, beta_slow: 2 }, base: 10000, maxPositions: 256 },
  { name: "yarn with attention_factor, no truncation", scaling: { rope_type: "yarn", factor: 4, original_max_position_embeddings: 64, attention_factor: 1.5, truncate: false }, base: 10000, maxPositions: 256 },
  // A small base puts the 8 frequencies in all three llama3 bands (high, smoothed, scaled).
  { name: "llama3", scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 64 }, base: 500, maxPositions: 256 },
];

describe("Rope.apply against transformers' inverse frequencies and attention factor", () => {
  for (const c of CASES) {
    for (const offset of [0, 5]) {
      test(`${c.name}, positions from ${offset}`, () => {
        const H = 2;
        const L = IDS.length - offset;
        const x = seeded(H * L * DIM, 7); // (1, H, L, D)
        const rope = new Rope({ dims: DIM, base: c.base, traditional: false, maxPositionEmbeddings: c.maxPositions, scaling: parseRopeScaling(c.scaling) });
        try {
          const got = tidy(() => rope.apply(array(x, [1, H, L, DIM]), offset, L).toFloat32());
          // Dynamic NTK sizes its base by the longest position so far (offset + L), as transformers does.
          const params = ropeParameters(DIM, c.base, c.scaling, c.maxPositions, offset + L);
          const want = Float64Array.from(x);
          for (let h = 0; h < H; h++) for (let t = 0; t < L; t++) rotate(want, (h * L + t) * DIM, DIM, offset + t, params);
          expectClose(got, want, 1e-5, 1e-5, c.name);
        } finally {
          rope.free();
        }
      });
    }
  }
});

describe("a tiny llama with rope_scaling matches the reference forward", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "semantic-rope-"));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  CASES.forEach((c, i) => {
    test(c.name, async () => {
      const dir = join(root, `case-${i}`);
      writeTinyModel(dir, "llama", { config: { rope_scaling: c.scaling, rope_theta: c.base, max_position_embeddings: c.maxPositions } });
      const ref = ReferenceModel.load(dir);
      const want = ref.forward(IDS);
      // The scaling alone must move the logits at these positions, or this test proves nothing.
      const unscaled = new ReferenceModel({ ...ref.config, rope_scaling: null }, loadTensors(dir, 64)).forward(IDS);
      expect(Math.max(...want.map((v, j) => Math.abs(v - unscaled[j])))).toBeGreaterThan(1e-2);
      const loaded = await loadModel(dir, { weights: "dense" });
      const caches = loaded.model.makeCache();
      try {
        const got = tidy(() => loaded.model.forward(array(Int32Array.from(IDS), [1, IDS.length], Dtype.int32), caches).toFloat32());
        expectClose(got, want, 1e-4, 0, c.name);
      } finally {
        for (const cache of caches) cache.free();
        loaded.model.free();
      }
    });
  });
});
