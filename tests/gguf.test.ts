// GGUF header reader: the real SmolLM2 file, synthetic files covering every value type,
// and damaged files that must each end in a GgufError naming the file.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufError, getArray, getBoolean, getNumber, getString, readGgufHeader } from "../shared/models/gguf.ts";

const MODEL = join(process.env.HOME ?? "/root", ".cache/semantic/models/SmolLM2-135M-Instruct.Q4_1.gguf");
const hasModel = existsSync(MODEL);
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "gguf-test-"));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Little-endian GGUF bytes, written field by field so tests can forge any of them. */
class GgufWriter {
  #bytes: number[] = [];
  get length() {
    return this.#bytes.length;
  }
  raw(bytes: ArrayLike<number>) {
    for (let i = 0; i < bytes.length; i++) this.#bytes.push(bytes[i]!);
    return this;
  }
  u32(v: number) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.raw(b);
  }
  u64(v: number | bigint) {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    return this.raw(b);
  }
  str(s: string) {
    const b = new TextEncoder().encode(s);
    return this.u64(b.length).raw(b);
  }
  pad(alignment: number) {
    while (this.#bytes.length % alignment !== 0) this.#bytes.push(0);
    return this;
  }
  bytes() {
    return Uint8Array.from(this.#bytes);
  }
}

function scalarBytes(type: number, value: number | bigint | boolean): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  const sizes: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const n = Number(value);
  [
    () => v.setUint8(0, n), () => v.setInt8(0, n), () => v.setUint16(0, n, true), () => v.setInt16(0, n, true),
    () => v.setUint32(0, n, true), () => v.setInt32(0, n, true), () => v.setFloat32(0, n, true), () => v.setUint8(0, n),
    () => {}, () => {}, () => v.setBigUint64(0, BigInt(value), true), () => v.setBigInt64(0, BigInt(value), true),
    () => v.setFloat64(0, n, true),
  ][type]!();
  return b.subarray(0, sizes[type]);
}

/** A small valid v3 file: one key of every type, two F32 tensors and their data. */
function syntheticGguf(version = 3): Uint8Array {
  const w = new GgufWriter().raw(new TextEncoder().encode("GGUF")).u32(version).u64(2).u64(16);
  const scalars: [string, number, number | bigint | boolean][] = [
    ["t.u8", 0, 200], ["t.i8", 1, -100], ["t.u16", 2, 60000], ["t.i16", 3, -30000], ["t.u32", 4, 4000000000],
    ["t.i32", 5, -2000000000], ["t.f32", 6, 1.5], ["t.bool", 7, true], ["t.u64", 10, 2n ** 60n],
    ["t.i64", 11, -(2n ** 40n)], ["t.f64", 12, Math.PI],
  ];
  for (const [key, type, value] of scalars) w.str(key).u32(type).raw(scalarBytes(type, value));
  w.str("t.string").u32(8).str("héllo ✓");
  w.str("t.strings").u32(9).u32(8).u64(3).str("a").str("").str("日本");
  w.str("t.ints").u32(9).u32(5).u64(3).raw(scalarBytes(5, 1)).raw(scalarBytes(5, -2)).raw(scalarBytes(5, 3));
  w.str("t.nested").u32(9).u32(9).u64(2).u32(0).u64(1).raw([7]).u32(0).u64(0);
  w.str("general.alignment").u32(4).u32(64);
  w.str("w").u32(2).u64(2).u64(4).u32(0).u64(0); // 2-D F32 [2, 4]: 32 bytes
  w.str("b").u32(1).u64(3).u32(0).u64(64); // 1-D F32 [3]: 12 bytes, next aligned offset
  w.pad(64);
  for (let i = 0; i < 64 + 12; i++) w.raw([i & 0xff]);
  return w.bytes();
}

function writeCase(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

function expectGgufError(path: string, reason: RegExp) {
  let error: unknown;
  try {
    readGgufHeader(path);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(GgufError);
  const message = (error as Error).message;
  expect(message).toContain(path.split("/").pop()!);
  expect(message).toMatch(reason);
}

describe.if(hasModel)("SmolLM2 GGUF header", () => {
  const header = hasModel ? readGgufHeader(MODEL) : undefined!;

  test("architecture and hyper-parameters", () => {
    expect(header.version).toBe(3);
    expect(getString(header, "general.architecture")).toBe("llama");
    expect(getNumber(header, "llama.block_count")).toBe(30);
    expect(getNumber(header, "llama.embedding_length")).toBe(576);
    expect(getNumber(header, "llama.attention.head_count")).toBe(9);
    expect(getNumber(header, "llama.attention.head_count_kv")).toBe(3);
    expect(getNumber(header, "llama.context_length")).toBe(8192);
    expect(getNumber(header, "llama.feed_forward_length")).toBe(1536);
    expect(getNumber(header, "llama.rope.freq_base")).toBe(100000);
  });

  test("tokenizer metadata", () => {
    expect(getString(header, "tokenizer.ggml.model")).toBe("gpt2");
    expect(getString(header, "tokenizer.ggml.pre")).toBe("smollm");
    const tokens = getArray(header, "tokenizer.ggml.tokens", "string");
    expect(tokens.length).toBe(49152);
    expect(tokens.slice(0, 3)).toEqual(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]);
    expect(getArray(header, "tokenizer.ggml.token_type", "number").length).toBe(49152);
    expect(getArray(header, "tokenizer.ggml.merges", "string")[0]).toBe("Ġ t");
    expect(getNumber(header, "tokenizer.ggml.eos_token_id")).toBe(2);
    expect(getBoolean(header, "tokenizer.ggml.add_bos_token")).toBe(false);
    expect(getString(header, "tokenizer.chat_template")).toContain("<|im_start|>");
  });

  test("tensor infos and data layout", () => {
    expect(header.tensors.length).toBe(272);
    expect(header.alignment).toBe(32);
    expect(header.dataOffset % 32).toBe(0);
    const embd = header.tensors.find((t) => t.name === "token_embd.weight")!;
    expect(embd.dims).toEqual([576, 49152]);
    expect(embd.typeName).toBe("Q8_0");
    expect(embd.byteSize).toBe((576 * 49152 * 34) / 32);
    const down = header.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!;
    expect(down).toMatchObject({ dims: [1536, 576], typeName: "Q4_1" });
    const end = Math.max(...header.tensors.map((t) => header.dataOffset + t.offset + t.byteSize));
    expect(end).toBe(header.fileSize);
  });

  test("getters name the key when it is missing or of another type", () => {
    expect(() => getString(header, "no.such.key")).toThrow(/"no.such.key" is missing/);
    expect(() => getNumber(header, "general.architecture")).toThrow(/"general.architecture" should be a number/);
    expect(() => getArray(header, "tokenizer.ggml.tokens", "number")).toThrow(/tokenizer.ggml.tokens/);
    expect(getNumber(header, "no.such.key", 7)).toBe(7);
  });

  describe("damaged copies", () => {
    // Cut points: inside the fixed header, inside the key/values, inside the tensor infos, inside the data.
    const cuts: [string, (size: number) => number, RegExp][] = [
      ["inside the fixed header", () => 10, /truncated: tensor count/],
      ["inside the key/value section", () => 1000, /truncated or corrupt: tensor count 272 cannot fit/],
      ["inside the token list", () => 300_000, /truncated or corrupt: metadata "tokenizer.ggml.tokens": array count 49152/],
      ["inside the merges", () => 1_600_000, /truncated: metadata "tokenizer.ggml.merges"/],
      ["inside the tensor infos", () => header.dataOffset - 2000, /truncated: tensor/],
      ["inside the tensor data", (size) => size - 1000, /truncated: tensor "output_norm.weight" data/],
      ["one byte short", (size) => size - 1, /truncated: tensor .* data/],
    ];
    for (const [what, cutAt, reason] of cuts) {
      test(`truncated ${what}`, async () => {
        const bytes = new Uint8Array(await Bun.file(MODEL).slice(0, cutAt(header.fileSize)).arrayBuffer());
        expectGgufError(writeCase(`cut-${cutAt(header.fileSize)}.gguf`, bytes), reason);
      });
    }

    test("absurd string length", async () => {
      const bytes = new Uint8Array(await Bun.file(MODEL).slice(0, 64 * 1024).arrayBuffer());
      new DataView(bytes.buffer).setBigUint64(24, 2n ** 40n, true); // first key's length
      expectGgufError(writeCase("long-string.gguf", bytes), /metadata key #0 length 1099511627776 exceeds the limit/);
      new DataView(bytes.buffer).setBigUint64(24, 100_000n, true); // within the limit, not the file
      expectGgufError(writeCase("long-string-2.gguf", bytes), /truncated: metadata key #0 needs 100000 bytes/);
    });

    test("absurd counts", async () => {
      const bytes = new Uint8Array(await Bun.file(MODEL).slice(0, 4096).arrayBuffer());
      new DataView(bytes.buffer).setBigUint64(8, 2n ** 62n, true); // tensor count
      expectGgufError(writeCase("many-tensors.gguf", bytes), /tensor count .* out of range/);
      new DataView(bytes.buffer).setBigUint64(8, 1_000_000n, true);
      expectGgufError(writeCase("many-tensors-2.gguf", bytes), /truncated or corrupt: tensor count 1000000 cannot fit/);
    });
  });
});

describe("synthetic GGUF", () => {
  test.each([2, 3])("every value type, v%d", (version) => {
    const h = readGgufHeader(writeCase(`types-v${version}.gguf`, syntheticGguf(version)));
    expect(h.version).toBe(version);
    const m = h.metadata;
    expect([m.get("t.u8"), m.get("t.i8"), m.get("t.u16"), m.get("t.i16")]).toEqual([200, -100, 60000, -30000]);
    expect([m.get("t.u32"), m.get("t.i32"), m.get("t.f32"), m.get("t.bool")]).toEqual([4000000000, -2000000000, 1.5, true]);
    expect([m.get("t.u64"), m.get("t.i64"), m.get("t.f64")]).toEqual([2n ** 60n, -(2n ** 40n), Math.PI]);
    expect(getString(h, "t.string")).toBe("héllo ✓");
    expect(getArray(h, "t.strings", "string")).toEqual(["a", "", "日本"]);
    expect(getArray(h, "t.ints", "number")).toEqual([1, -2, 3]);
    expect(m.get("t.nested")).toEqual([[7], []]);
    expect(getNumber(h, "t.i64")).toBe(-(2 ** 40));
    expect(() => getNumber(h, "t.u64")).toThrow(/"t.u64" should be a number/);
    expect(h.alignment).toBe(64);
    expect(h.tensors).toEqual([
      { name: "w", dims: [2, 4], type: 0, typeName: "F32", offset: 0, byteSize: 32 },
      { name: "b", dims: [3], type: 0, typeName: "F32", offset: 64, byteSize: 12 },
    ]);
    expect(h.dataOffset % 64).toBe(0);
    expect(h.dataOffset + 64 + 12).toBe(h.fileSize);
  });

  /** The synthetic file with `bytes` written over it at the offset of `marker`'s value. */
  function patched(name: string, marker: string, at: number, bytes: number[]): string {
    const data = syntheticGguf();
    const key = new TextEncoder().encode(marker);
    let i = 0;
    while (!key.every((b, k) => data[i + k] === b)) i++;
    data.set(bytes, i + key.length + at);
    return writeCase(name, data);
  }

  const damaged: [string, () => string, RegExp][] = [
    ["missing file", () => join(dir, "missing.gguf"), /cannot open: ENOENT/],
    ["a directory", () => (mkdirSync(join(dir, "folder.gguf"), { recursive: true }), join(dir, "folder.gguf")), /not a regular file|cannot open/],
    ["empty file", () => writeCase("empty.gguf", new Uint8Array(0)), /truncated: magic/],
    ["bad magic", () => writeCase("magic.gguf", new TextEncoder().encode("GGML and some more bytes here")), /bad magic/],
    ["version 1", () => writeCase("v1.gguf", Uint8Array.of(...syntheticGguf().subarray(0, 4), 1, 0, 0, 0, ...syntheticGguf().subarray(8))), /unsupported GGUF version 1/],
    ["version 4", () => writeCase("v4.gguf", Uint8Array.of(...syntheticGguf().subarray(0, 4), 4, 0, 0, 0, ...syntheticGguf().subarray(8))), /unsupported GGUF version 4/],
    ["big-endian", () => writeCase("be.gguf", Uint8Array.of(...syntheticGguf().subarray(0, 4), 0, 0, 0, 3, ...syntheticGguf().subarray(8))), /big-endian/],
    ["bool byte 2", () => patched("bool.gguf", "t.bool", 4, [2]), /bool byte is 2/],
    ["unknown value type", () => patched("vtype.gguf", "t.u8", 0, [13, 0, 0, 0]), /unknown value type 13/],
    ["absurd array count", () => patched("count.gguf", "t.ints", 8, [0, 0, 0, 0, 0, 0, 1, 0]), /truncated or corrupt: metadata "t.ints": array count 281474976710656 cannot fit/],
    ["nested array type", () => patched("atype.gguf", "t.strings", 4, [99, 0, 0, 0]), /unknown array item type 99/],
    ["duplicate key", () => patched("dup.gguf", "t.i8", -2, [0x75]), /duplicate metadata key "t.u8"/],
    ["bad alignment", () => patched("align.gguf", "general.alignment", 4, [48, 0, 0, 0]), /power of two/],
    ["too many dims", () => patched("dims.gguf", "\x01\x00\x00\x00\x00\x00\x00\x00w", 0, [5]), /5 dimensions/],
    ["overflowing shape", () => patched("overflow.gguf", "\x01\x00\x00\x00\x00\x00\x00\x00w", 4, [0, 0, 0, 0, 0, 0, 0x10, 0]), /element count overflows/],
    ["unknown ggml type", () => patched("gtype.gguf", "\x01\x00\x00\x00\x00\x00\x00\x00b", 12, [4, 0, 0, 0]), /unknown ggml type 4/],
    ["misaligned offset", () => patched("offset.gguf", "\x01\x00\x00\x00\x00\x00\x00\x00b", 16, [60]), /not aligned/],
    ["data past the end", () => patched("past.gguf", "\x01\x00\x00\x00\x00\x00\x00\x00b", 16, [128]), /lies outside the file/],
    ["overlapping tensors", () => patched("overlap.gguf", "\x01\x00\x00\x00\x00\x00\x00\x00b", 16, [0]), /overlaps/],
  ];
  for (const [what, make, reason] of damaged) {
    test(what, () => expectGgufError(make(), reason));
  }
});
