// Files through MLX's loaders: safetensors round trip with metadata; GGUF tensors and metadata.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as mx from "../../shared/mlx/index.ts";
import { Dtype } from "../../shared/mlx/index.ts";
import { defaultModelPath } from "../../shared/paths.ts";

const dir = mkdtempSync(join(tmpdir(), "semantic-io-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("safetensors: arrays and string metadata round trip", () => {
  mx.tidy(() => {
    const path = join(dir, "a.safetensors");
    const k = mx.astype(mx.array([1.5, -2, 3.25, 0], [2, 2]), Dtype.float16);
    const ids = mx.array(new Int32Array([7, 8, 9]));
    mx.saveSafetensors(path, { k, ids }, { format: "semantic-test", tokens: "[7,8,9]" });
    const loaded = mx.loadSafetensors(path);
    expect([...loaded.arrays.keys()].sort()).toEqual(["ids", "k"]);
    const k2 = loaded.arrays.get("k")!;
    expect(k2.dtype).toBe(Dtype.float16);
    expect(k2.shape).toEqual([2, 2]);
    expect(Array.from(k2.toFloat32())).toEqual([1.5, -2, 3.25, 0]);
    // HostArray mixes number and bigint arrays: name the element type for Array.from.
    expect(Array.from<number | bigint>(loaded.arrays.get("ids")!.data())).toEqual([7, 8, 9]);
    expect(Object.fromEntries(loaded.metadata)).toEqual({ format: "semantic-test", tokens: "[7,8,9]" });
  });
});

test("safetensors: a missing file is an MlxError, not a crash", () => {
  expect(() => mx.loadSafetensors(join(dir, "missing.safetensors"))).toThrow(mx.MlxError);
});

test("gguf: the default model's tensors and typed metadata", () => {
  mx.tidy(() => {
    const g = mx.loadGguf(defaultModelPath());
    expect(g.metadata.get("general.architecture")).toBe("llama");
    expect(g.metadata.get("llama.block_count")).toBe(30);
    expect(g.metadata.get("llama.embedding_length")).toBe(576);
    expect(g.metadata.get("llama.rope.freq_base")).toBe(100000);
    const tokens = g.metadata.get("tokenizer.ggml.tokens") as string[];
    expect(tokens.length).toBe(49152);
    expect(tokens[0]).toBe("<|endoftext|>");
    expect((g.metadata.get("tokenizer.ggml.token_type") as number[]).length).toBe(49152);
    // Q4_1 becomes an MLX affine-quantized triple with group size 32.
    const w = g.arrays.get("blk.0.attn_q.weight")!;
    expect(w.dtype).toBe(Dtype.uint32);
    expect(w.shape).toEqual([576, 72]);
    expect(g.arrays.get("blk.0.attn_q.scales")!.shape).toEqual([576, 18]);
    expect(g.arrays.get("blk.0.attn_q.biases")!.dtype).toBe(Dtype.float16);
    for (const a of g.arrays.values()) a.free();
  });
});
