// bun run convert: the MLX folder written from the GGUF loads to the same model and tokenizer.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as mx from "../../shared/mlx/index.ts";
import { loadModel } from "../../shared/models/load.ts";
import { readSafetensorsHeader } from "../../shared/models/safetensors-header.ts";
import { defaultModelPath } from "../../shared/paths.ts";
import { convertGguf } from "../../scripts/convert.ts";
import tokenizerFixture from "../fixtures/smollm2-tokenizer.json";

const dir = mkdtempSync(join(tmpdir(), "semantic-convert-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("the converted folder gives identical logits, tokens and chat template", async () => {
  const out = join(dir, "smollm2");
  convertGguf(defaultModelPath(), out);
  const config = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
  expect(config.quantization).toEqual({ group_size: 32, bits: 4, "model.embed_tokens": { group_size: 32, bits: 8 } });
  // Quantized embedding (3) and final norm (1), then per layer two norms and seven quantized projections.
  expect(readSafetensorsHeader(join(out, "model.safetensors")).tensors.length).toBe(3 + 1 + 30 * (2 + 7 * 3));

  const a = await loadModel(defaultModelPath(), { weights: "quantized" });
  const b = await loadModel(out, { weights: "quantized" });
  try {
    expect(b.quantization).toBe(a.quantization);
    const ids = [504, 3575, 282, 4649, 314];
    const run = (m: typeof a) => {
      const caches = m.model.makeCache();
      const l = mx.tidy(() => m.model.forward(mx.array(Int32Array.from(ids), [1, ids.length], mx.Dtype.int32), caches, { lastOnly: true })).toFloat32();
      for (const c of caches) c.free();
      return l;
    };
    expect(Array.from(run(b))).toEqual(Array.from(run(a)));
    for (const c of tokenizerFixture.cases) expect(b.tokenizer.encode(c.text)).toEqual(a.tokenizer.encode(c.text));
    expect(b.tokenizer.eosIds).toEqual(a.tokenizer.eosIds);
    const messages = [{ role: "user" as const, content: "Hi" }];
    expect(b.chatTemplate.render({ messages, addGenerationPrompt: true })).toBe(a.chatTemplate.render({ messages, addGenerationPrompt: true }));
  } finally {
    a.model.free();
    b.model.free();
  }
});
