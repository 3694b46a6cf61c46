// GGUF header reader (v2, v3): metadata, tensor infos and the data offset, read in
// slices through a file descriptor. Every length is checked against the file before
// use so a damaged file ends in a GgufError, never in a crash or a huge allocation.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";

export class GgufError extends Error {
  override readonly name = "GgufError";
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`GGUF file ${file}: ${reason}`);
  }
}

export type GgufValue = number | bigint | boolean | string | GgufValue[];

export interface GgufTensorInfo {
  name: string;
  /** ggml order: dims[0] is the fastest-varying (row length). */
  dims: number[];
  /** ggml type id (0 = F32, 1 = F16, 2 = Q4_0, 3 = Q4_1, 8 = Q8_0, ...). */
  type: number;
  typeName: string;
  /** Byte offset relative to `dataOffset`. */
  offset: number;
  byteSize: number;
}

export interface GgufHeader {
  path: string;
  version: 2 | 3;
  fileSize: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: GgufTensorInfo[];
  /** Absolute file offset where tensor data starts. */
  dataOffset: number;
}

const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
const DEFAULT_ALIGNMENT = 32;
const MAX_DIMS = 4; // GGML_MAX_DIMS
const MAX_TENSOR_NAME_BYTES = 63; // GGML_MAX_NAME - 1 (room for the NUL)
// No real key or value comes near these; they stop a forged length from allocating.
const MAX_STRING_BYTES = 64 << 20;
const MAX_ARRAY_DEPTH = 4;
const WINDOW_BYTES = 1 << 20;

const enum ValueType {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, Bool = 7,
  String = 8, Array = 9, U64 = 10, I64 = 11, F64 = 12,
}
// Smallest encoded size per value type, to bound array counts before looping.
const MIN_VALUE_BYTES = [1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8];

/** ggml type id -> [name, elements per block, bytes per block] (ggml.c type_traits). */
const GGML_TYPES: Record<number, [string, number, number]> = {
  0: ["F32", 1, 4], 1: ["F16", 1, 2], 2: ["Q4_0", 32, 18], 3: ["Q4_1", 32, 20],
  6: ["Q5_0", 32, 22], 7: ["Q5_1", 32, 24], 8: ["Q8_0", 32, 34], 9: ["Q8_1", 32, 36],
  10: ["Q2_K", 256, 84], 11: ["Q3_K", 256, 110], 12: ["Q4_K", 256, 144],
  13: ["Q5_K", 256, 176], 14: ["Q6_K", 256, 210], 15: ["Q8_K", 256, 292],
  16: ["IQ2_XXS", 256, 66], 17: ["IQ2_XS", 256, 74], 18: ["IQ3_XXS", 256, 98],
  19: ["IQ1_S", 256, 50], 20: ["IQ4_NL", 32, 18], 21: ["IQ3_S", 256, 110],
  22: ["IQ2_S", 256, 82], 23: ["IQ4_XS", 256, 136], 24: ["I8", 1, 1], 25: ["I16", 1, 2],
  26: ["I32", 1, 4], 27: ["I64", 1, 8], 28: ["F64", 1, 8], 29: ["IQ1_M", 256, 56],
  30: ["BF16", 1, 2], 34: ["TQ1_0", 256, 54], 35: ["TQ2_0", 256, 66], 39: ["MXFP4", 32, 17],
};

/** Sequential little-endian reads over a file, refilling a window buffer on demand. */
class FileCursor {
  pos = 0;
  // A Buffer, because its native utf8 slice is several times faster than TextDecoder on short strings.
  #window = Buffer.alloc(0);
  #view = new DataView(this.#window.buffer);
  #windowStart = 0;

  constructor(
    readonly fd: number,
    readonly size: number,
    readonly fail: (reason: string) => never,
  ) {}

  /** Makes `n` bytes at `pos` readable; `what` names the field for the truncation error. */
  #need(n: number, what: string): number {
    if (n > this.size - this.pos) {
      this.fail(`truncated: ${what} needs ${n} bytes at offset ${this.pos}, file has ${this.size}`);
    }
    const at = this.pos - this.#windowStart;
    if (at >= 0 && at + n <= this.#window.length) return at;
    const length = Math.min(Math.max(n, WINDOW_BYTES), this.size - this.pos);
    if (this.#window.length < length) {
      this.#window = Buffer.allocUnsafe(length);
      this.#view = new DataView(this.#window.buffer, this.#window.byteOffset, length);
    }
    const got = readSync(this.fd, this.#window, 0, length, this.pos);
    if (got < n) this.fail(`short read at offset ${this.pos}: wanted ${n} bytes, got ${got}`);
    this.#windowStart = this.pos;
    return 0;
  }

  u8(what: string): number {
    const at = this.#need(1, what);
    this.pos += 1;
    return this.#window[at]!;
  }
  u32(what: string): number {
    const at = this.#need(4, what);
    this.pos += 4;
    return this.#view.getUint32(at, true);
  }
  /** A u64 that must fit a JS number (counts, lengths, offsets); avoids BigInt on the hot path. */
  u64Number(what: string): number {
    const at = this.#need(8, what);
    this.pos += 8;
    const low = this.#view.getUint32(at, true);
    const high = this.#view.getUint32(at + 4, true);
    if (high > 0x1fffff) this.fail(`${what} ${this.#view.getBigUint64(at, true)} is out of range`);
    return high * 0x1_0000_0000 + low;
  }
  scalar(type: ValueType, what: string): number | bigint | boolean {
    const size = MIN_VALUE_BYTES[type]!;
    const at = this.#need(size, what);
    this.pos += size;
    const v = this.#view;
    switch (type) {
      case ValueType.U8: return v.getUint8(at);
      case ValueType.I8: return v.getInt8(at);
      case ValueType.U16: return v.getUint16(at, true);
      case ValueType.I16: return v.getInt16(at, true);
      case ValueType.U32: return v.getUint32(at, true);
      case ValueType.I32: return v.getInt32(at, true);
      case ValueType.F32: return v.getFloat32(at, true);
      case ValueType.U64: return v.getBigUint64(at, true);
      case ValueType.I64: return v.getBigInt64(at, true);
      case ValueType.F64: return v.getFloat64(at, true);
      case ValueType.Bool: {
        const b = v.getUint8(at);
        if (b > 1) this.fail(`${what}: bool byte is ${b}, expected 0 or 1`);
        return b === 1;
      }
      default: return this.fail(`${what}: not a scalar type ${type}`);
    }
  }
  string(what: string, maxBytes = MAX_STRING_BYTES): string {
    const length = this.u64Number(what);
    if (length > maxBytes) this.fail(`${what} length ${length} exceeds the limit of ${maxBytes} bytes`);
    const at = this.#need(length, what);
    this.pos += length;
    return this.#window.toString("utf8", at, at + length);
  }
}

function readValue(cur: FileCursor, type: number, what: string, depth: number): GgufValue {
  if (type === ValueType.String) return cur.string(what);
  if (type !== ValueType.Array) {
    if (type < 0 || type >= MIN_VALUE_BYTES.length) cur.fail(`${what}: unknown value type ${type}`);
    return cur.scalar(type, what);
  }
  if (depth >= MAX_ARRAY_DEPTH) cur.fail(`${what}: arrays nested deeper than ${MAX_ARRAY_DEPTH}`);
  const itemType = cur.u32(`${what} array type`);
  if (itemType >= MIN_VALUE_BYTES.length) cur.fail(`${what}: unknown array item type ${itemType}`);
  const count = cur.u64Number(`${what} array count`);
  const minBytes = MIN_VALUE_BYTES[itemType]!;
  if (count > (cur.size - cur.pos) / minBytes) {
    cur.fail(`truncated or corrupt: ${what}: array count ${count} cannot fit in the ${cur.size - cur.pos} bytes left`);
  }
  const items = new Array<GgufValue>(count);
  for (let i = 0; i < count; i++) items[i] = readValue(cur, itemType, what, depth + 1);
  return items;
}

function readMetadata(cur: FileCursor, count: number): Map<string, GgufValue> {
  const metadata = new Map<string, GgufValue>();
  for (let i = 0; i < count; i++) {
    const key = cur.string(`metadata key #${i}`);
    if (metadata.has(key)) cur.fail(`duplicate metadata key "${key}"`);
    const type = cur.u32(`type of metadata "${key}"`);
    metadata.set(key, readValue(cur, type, `metadata "${key}"`, 0));
  }
  return metadata;
}

function readTensorInfo(cur: FileCursor, index: number): GgufTensorInfo {
  const name = cur.string(`tensor #${index} name`, MAX_TENSOR_NAME_BYTES);
  const what = `tensor "${name}"`;
  const nDims = cur.u32(`${what} dimension count`);
  if (nDims > MAX_DIMS) cur.fail(`${what} has ${nDims} dimensions, at most ${MAX_DIMS} allowed`);
  const dims: number[] = [];
  let elements = 1;
  for (let d = 0; d < nDims; d++) {
    const dim = cur.u64Number(`${what} dimension ${d}`);
    dims.push(dim);
    elements *= dim;
    if (elements > Number.MAX_SAFE_INTEGER) cur.fail(`${what} element count overflows`);
  }
  const type = cur.u32(`${what} type`);
  const traits = GGML_TYPES[type];
  if (!traits) cur.fail(`${what} has unknown ggml type ${type}`);
  const [typeName, blockElements, blockBytes] = traits;
  if ((dims[0] ?? 1) % blockElements !== 0) {
    cur.fail(`${what}: row length ${dims[0]} is not a multiple of the ${typeName} block size ${blockElements}`);
  }
  const offset = cur.u64Number(`${what} offset`);
  const byteSize = (elements / blockElements) * blockBytes;
  return { name, dims, type, typeName, offset, byteSize };
}

function readAlignment(cur: FileCursor, metadata: Map<string, GgufValue>): number {
  const value = metadata.get("general.alignment");
  if (value === undefined) return DEFAULT_ALIGNMENT;
  if (typeof value !== "number" || !Number.isInteger(value) || value <= 0 || (value & (value - 1)) !== 0) {
    cur.fail(`general.alignment must be a positive power of two, got ${String(value)}`);
  }
  return value;
}

/** Tensor data must lie inside the file, aligned, without overlapping another tensor. */
function checkTensorRanges(cur: FileCursor, tensors: GgufTensorInfo[], dataOffset: number, alignment: number) {
  const dataBytes = cur.size - dataOffset;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (seen.has(t.name)) cur.fail(`duplicate tensor name "${t.name}"`);
    seen.add(t.name);
    if (t.offset % alignment !== 0) cur.fail(`tensor "${t.name}" offset ${t.offset} is not aligned to ${alignment}`);
    if (t.offset > dataBytes || t.byteSize > dataBytes - t.offset) {
      cur.fail(
        `truncated: tensor "${t.name}" data [${dataOffset + t.offset}, ${dataOffset + t.offset + t.byteSize}) ` +
          `lies outside the file (${cur.size} bytes)`,
      );
    }
  }
  const byOffset = [...tensors].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1]!;
    if (prev.offset + prev.byteSize > byOffset[i]!.offset) {
      cur.fail(`tensor "${prev.name}" overlaps tensor "${byOffset[i]!.name}"`);
    }
  }
}

function parse(cur: FileCursor, path: string): GgufHeader {
  const magic = cur.u32("magic");
  if (magic !== GGUF_MAGIC) cur.fail(`bad magic 0x${magic.toString(16).padStart(8, "0")}, not a GGUF file`);
  const version = cur.u32("version");
  if (version === 0x02000000 || version === 0x03000000) cur.fail("big-endian GGUF is not supported");
  if (version !== 2 && version !== 3) cur.fail(`unsupported GGUF version ${version} (supported: 2, 3)`);
  const tensorCount = cur.u64Number("tensor count");
  const kvCount = cur.u64Number("metadata count");
  // Smallest encodings: a tensor info is 24 bytes, a key/value 13; bounds counts by the file.
  const left = cur.size - cur.pos;
  if (tensorCount > left / 24) cur.fail(`truncated or corrupt: tensor count ${tensorCount} cannot fit in the ${left} bytes left`);
  if (kvCount > left / 13) cur.fail(`truncated or corrupt: metadata count ${kvCount} cannot fit in the ${left} bytes left`);

  const metadata = readMetadata(cur, kvCount);
  const alignment = readAlignment(cur, metadata);
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < tensorCount; i++) tensors.push(readTensorInfo(cur, i));
  const dataOffset = Math.ceil(cur.pos / alignment) * alignment;
  if (tensorCount > 0 && dataOffset > cur.size) cur.fail(`truncated: data section starts at ${dataOffset}, past the end`);
  checkTensorRanges(cur, tensors, dataOffset, alignment);
  return { path, version, fileSize: cur.size, alignment, metadata, tensors, dataOffset };
}

/**
 * Reads and validates a GGUF file's header without loading tensor data.
 * @example const h = readGgufHeader("model.gguf"); getString(h, "general.architecture") // "llama"
 */
export function readGgufHeader(path: string): GgufHeader {
  const file = basename(path);
  const fail = (reason: string): never => {
    throw new GgufError(file, reason);
  };
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (e) {
    return fail(`cannot open: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) fail("not a regular file");
    return parse(new FileCursor(fd, stat.size, fail), path);
  } catch (e) {
    if (e instanceof GgufError) throw e;
    return fail(`read failed: ${(e as Error).message}`);
  } finally {
    closeSync(fd);
  }
}

function isSafeBigInt(value: GgufValue): value is bigint {
  return typeof value === "bigint" && value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= BigInt(Number.MIN_SAFE_INTEGER);
}

function lookup(header: GgufHeader, key: string): GgufValue | undefined {
  return header.metadata.get(key);
}

function wrongType(header: GgufHeader, key: string, wanted: string, value: GgufValue): never {
  const got = Array.isArray(value) ? "array" : typeof value;
  throw new GgufError(basename(header.path), `metadata "${key}" should be ${wanted}, is ${got}`);
}

function missing(header: GgufHeader, key: string): never {
  throw new GgufError(basename(header.path), `metadata "${key}" is missing`);
}

/** A string key; `fallback` is returned when the key is absent (a wrong type still throws). */
export function getString(header: GgufHeader, key: string, fallback?: string): string {
  const value = lookup(header, key);
  if (value === undefined) return fallback ?? missing(header, key);
  return typeof value === "string" ? value : wrongType(header, key, "a string", value);
}

/** Any integer or float key as a number; 64-bit values must fit a safe integer. */
export function getNumber(header: GgufHeader, key: string, fallback?: number): number {
  const value = lookup(header, key);
  if (value === undefined) return fallback ?? missing(header, key);
  if (typeof value === "number") return value;
  if (isSafeBigInt(value)) return Number(value);
  return wrongType(header, key, "a number", value);
}

export function getBoolean(header: GgufHeader, key: string, fallback?: boolean): boolean {
  const value = lookup(header, key);
  if (value === undefined) return fallback ?? missing(header, key);
  return typeof value === "boolean" ? value : wrongType(header, key, "a bool", value);
}

/** An array key whose items are all strings or all numbers; 64-bit items become numbers. */
export function getArray(header: GgufHeader, key: string, items: "string"): string[];
export function getArray(header: GgufHeader, key: string, items: "number"): number[];
export function getArray(header: GgufHeader, key: string, items: "string" | "number"): string[] | number[] {
  const value = lookup(header, key);
  if (value === undefined) return missing(header, key);
  if (!Array.isArray(value)) return wrongType(header, key, `an array of ${items}s`, value);
  const out = value.map((item) => (items === "number" && isSafeBigInt(item) ? Number(item) : item));
  for (const item of out) {
    if (typeof item !== items) return wrongType(header, key, `an array of ${items}s`, item);
  }
  return out as string[] | number[];
}
