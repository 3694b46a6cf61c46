// Validates a safetensors file's header with our own code before MLX's loader sees the file:
// length bound and within the file, UTF-8 JSON, known dtypes, contiguous in-bounds offsets
// whose sizes equal shape x dtype size, all overflow-checked. A lying header never allocates.
import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { basename } from "node:path";

export class SafetensorsError extends Error {
  override name = "SafetensorsError";
  constructor(readonly file: string, readonly reason: string) {
    super(`${file}: ${reason}`);
  }
}

const DTYPE_BYTES: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1, U16: 2, I16: 2, F16: 2, BF16: 2,
  U32: 4, I32: 4, F32: 4, U64: 8, I64: 8, F64: 8, C64: 8,
};

const MAX_HEADER_BYTES = 100 << 20;

export type TensorEntry = { name: string; dtype: string; shape: number[]; begin: number; end: number };
export type SafetensorsHeader = { tensors: TensorEntry[]; metadata: Record<string, string>; dataOffset: number; fileSize: number };

/** Reads and checks the header of `path`; throws SafetensorsError naming the file and the reason. */
export function readSafetensorsHeader(path: string, opts: { noFollow?: boolean } = {}): SafetensorsHeader {
  const file = basename(path);
  let fd: number;
  try {
    // O_NOFOLLOW keeps a planted symlink in a cache folder from redirecting the read.
    fd = openSync(path, opts.noFollow ? constants.O_RDONLY | constants.O_NOFOLLOW : constants.O_RDONLY);
  } catch (e) {
    throw new SafetensorsError(file, `cannot open: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 8));
    readSync(fd, head, 0, head.length, 0);
    const n = headerLength(head, size, file);
    const buf = Buffer.alloc(8 + n);
    if (readSync(fd, buf, 0, 8 + n, 0) !== 8 + n) throw new SafetensorsError(file, "short read of the header");
    return parseHeader(buf, size, file);
  } finally {
    closeSync(fd);
  }
}

/** Checks a whole safetensors file already in memory (`bytes`), as readSafetensorsHeader does. */
export function parseSafetensors(bytes: Uint8Array, file: string): SafetensorsHeader {
  headerLength(bytes, bytes.length, file);
  return parseHeader(bytes, bytes.length, file);
}

function headerLength(head: Uint8Array, size: number, file: string): number {
  if (size < 8 || head.length < 8) throw new SafetensorsError(file, `truncated: ${size} bytes, shorter than the 8-byte header length`);
  const len = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
  if (len > BigInt(MAX_HEADER_BYTES)) throw new SafetensorsError(file, `header length ${len} exceeds ${MAX_HEADER_BYTES}`);
  const n = Number(len);
  if (8 + n > size) throw new SafetensorsError(file, `truncated: header of ${n} bytes does not fit in ${size} bytes`);
  return n;
}

// `bytes` holds at least the length prefix and the header; `size` is the whole file's size.
function parseHeader(bytes: Uint8Array, size: number, file: string): SafetensorsHeader {
  const fail = (reason: string): never => {
    throw new SafetensorsError(file, reason);
  };
  const n = headerLength(bytes, size, file);
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    return fail(`header is not UTF-8 JSON: ${(e as Error).message}`);
  }
  if (!json || typeof json !== "object" || Array.isArray(json)) fail("header is not a JSON object");
  return checkEntries(json as Record<string, unknown>, 8 + n, size, fail);
}

function checkEntries(json: Record<string, unknown>, dataOffset: number, fileSize: number, fail: (r: string) => never): SafetensorsHeader {
  const tensors: TensorEntry[] = [];
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json)) {
    if (name === "__metadata__") {
      if (!raw || typeof raw !== "object" || Object.values(raw).some((v) => typeof v !== "string")) fail("__metadata__ must map strings to strings");
      metadata = raw as Record<string, string>;
      continue;
    }
    const e = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (!e || typeof e !== "object") fail(`tensor "${name}" is not an object`);
    const bytes = typeof e.dtype === "string" ? DTYPE_BYTES[e.dtype] : undefined;
    if (!bytes) fail(`tensor "${name}" has unknown dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || e.shape.length > 8 || !e.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) fail(`tensor "${name}" has a bad shape`);
    const offs = e.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) fail(`tensor "${name}" has bad data_offsets`);
    const [begin, end] = offs as [number, number];
    let count = 1;
    for (const d of e.shape as number[]) {
      count *= d;
      if (!Number.isSafeInteger(count * bytes!)) fail(`tensor "${name}" is too large`);
    }
    if (end < begin || end - begin !== count * bytes!) fail(`tensor "${name}" spans ${end - begin} bytes, its shape and dtype need ${count * bytes!}`);
    if (dataOffset + end > fileSize) fail(`truncated: tensor "${name}" ends at ${dataOffset + end}, file has ${fileSize} bytes`);
    tensors.push({ name, dtype: e.dtype as string, shape: e.shape as number[], begin, end });
  }
  // Tensors must tile the data section exactly: no gaps, no overlaps.
  const sorted = [...tensors].sort((a, b) => a.begin - b.begin);
  let at = 0;
  for (const t of sorted) {
    if (t.begin !== at) fail(`tensor "${t.name}" starts at ${t.begin}, expected ${at} (gap or overlap)`);
    at = t.end;
  }
  if (dataOffset + at !== fileSize) fail(`data section is ${fileSize - dataOffset} bytes, tensors cover ${at}`);
  return { tensors, metadata, dataOffset, fileSize };
}
